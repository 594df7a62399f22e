"""Idle managers: a tick with nothing to hand over does not wake the Raft driver, and the
daemon's timers share one grid (`shoal.wakeups`), so they wake the loop together."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest

from shoal import timeouts, wakeups
from shoal.manager.controlapi.services import create_service
from shoal.wakeups import GRID, grid_after, grid_time, sleep_on_grid
from tests.unit.manager.raft.cluster import FAST, Cluster, spec

# Heartbeats every 10 ticks: most of a follower's ticks have nothing to hand over.
SPARSE = replace(FAST, election_tick=50, heartbeat_tick=10)


async def test_an_idle_followers_ticks_do_not_wake_its_driver(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3, seed=3, config=SPARSE)
    c.start_all()
    try:
        c[1].node.campaign()
        leader = await c.wait_leader(5)
        follower = next(m for m in c.up() if m is not leader).node
        ticks = rounds = 0
        raw, after_round = follower._raw, follower._after_round
        tick = raw.tick

        def counting_tick() -> None:
            nonlocal ticks
            ticks += 1
            tick()

        def counting_round() -> None:
            nonlocal rounds
            rounds += 1
            after_round()

        raw.tick = counting_tick  # type: ignore[method-assign]
        follower._after_round = counting_round  # type: ignore[method-assign]
        await c.until(lambda: ticks >= 60, 10, "60 follower ticks")
        # ~6 heartbeats (one round each) in 60 ticks; a round per tick would be >= 60
        assert rounds < ticks // 2, (rounds, ticks)
        assert follower.leader_id == leader.id  # and it still follows
    finally:
        await c.close()


async def test_a_follower_ticking_by_itself_still_elects_when_the_leader_dies(
    tmp_path: Path,
) -> None:
    c = Cluster(tmp_path, 3, seed=4, config=SPARSE)
    c.start_all()
    try:
        c[1].node.campaign()
        old = await c.wait_leader(5)
        await c.crash(old.id)
        new = await c.wait_leader(5)  # 50-100 ticks of 20 ms
        assert new is not old
    finally:
        await c.close()


@pytest.mark.parametrize("period", [0.1, 0.02, 0.25])
def test_grid_after_is_a_multiple_about_a_period_away(period: float) -> None:
    for k in (1, 7, 123_456):
        at = grid_time(k, period)
        for now in (at - 1e-9, at, at + 0.3 * period, at + 0.49 * period):
            nxt = grid_after(now, period)
            assert nxt == grid_time(k + 1, period)  # the very float every such timer uses
            assert period / 2 - 1e-9 <= nxt - now <= 1.5 * period


async def test_sleep_on_grid_sleeps_at_least_the_delay_and_ends_on_the_grid() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await sleep_on_grid(0.05)
    now = loop.time()
    assert now - start >= 0.05
    assert now - start <= 0.05 + GRID + 0.5  # at most a grid step longer (+ a busy machine)


async def test_an_idle_followers_timer_does_not_fire_while_heartbeats_come(
    tmp_path: Path,
) -> None:
    """The ticker sleeps until the due tick, at most `max_sleep_ticks` (one more than the
    heartbeat gap): an idle follower's heartbeats come first and step its quiet ticks."""
    c = Cluster(tmp_path, 3, seed=5, config=SPARSE)
    c.start_all()
    try:
        c[1].node.campaign()
        leader = await c.wait_leader(5)
        follower = next(m for m in c.up() if m is not leader).node
        assert follower.config.max_sleep_ticks == 17  # idle heartbeats every 16 ticks
        fires = ticks = 0
        raw, fire = follower._raw, follower._fire
        tick = raw.tick

        def counting_tick() -> None:
            nonlocal ticks
            ticks += 1
            tick()

        def counting_fire() -> None:
            nonlocal fires
            fires += 1
            fire()

        raw.tick = counting_tick  # type: ignore[method-assign]
        follower._fire = counting_fire  # type: ignore[method-assign]
        follower._arm(follower._timer_slot + 1)  # the current timer calls the old method
        await c.until(lambda: ticks >= 100, 10, "100 follower ticks")
        # a heartbeat every 16 ticks, the timer 17 ahead: a few fires (load), not 100
        assert fires < ticks // 4, (fires, ticks)
        assert follower.leader_id == leader.node.id and follower.term == leader.node.term
    finally:
        await c.close()


async def test_a_stalled_loop_replays_no_ticks(tmp_path: Path) -> None:
    """The whole loop (every manager of the test: a machine-wide stall) blocks for three
    election timeouts: each sleeping timer fires late and counts one tick, so nobody
    campaigns against the live leader afterwards."""
    config = replace(FAST, tick_interval=0.02, election_tick=10, heartbeat_tick=1)
    assert config.idle_heartbeat_tick == 3 and config.max_sleep_ticks == 4
    c = Cluster(tmp_path, 3, seed=6, config=config)
    c.start_all()
    try:
        c[1].node.campaign()
        leader = await c.wait_leader(5)
        term = leader.node.term
        await asyncio.sleep(0.5)  # idle: heartbeats every 3 ticks
        for _ in range(3):
            time.sleep(3 * config.election_timeout)  # the loop stalls
            await asyncio.sleep(0.3)
        assert all(m.node.term == term for m in c.up()), [m.node.term for m in c.up()]
        assert all(m.node.leader_id == leader.node.id for m in c.up())
    finally:
        await c.close()


async def test_quiet_ticks_are_caught_up_before_an_input(tmp_path: Path) -> None:
    """A follower's clock still runs while its timer sleeps: the ticks since the last
    one counted are stepped before any message, so a leader that stops sending is
    replaced within the election timeout's range as before."""
    c = Cluster(tmp_path, 3, seed=7, config=SPARSE)
    c.start_all()
    try:
        c[1].node.campaign()
        leader = await c.wait_leader(5)
        follower = next(m for m in c.up() if m is not leader).node
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        slots: list[int] = []

        def input_() -> None:  # any input; runs after the catch-up
            slots.append(follower._base)
            slots.append(wakeups.grid_floor(loop.time(), SPARSE.tick_interval))
            done.set_result(None)

        await asyncio.sleep(0.1)
        follower._submit(input_)
        await timeouts.wait_for(done, 5)
        base, now = slots
        assert now - 1 <= base <= now  # every tick up to now counted before the input
    finally:
        await c.close()


async def test_sleep_riding_wakes_with_a_tickers_wake_up_after_its_delay() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    sleeper = asyncio.ensure_future(wakeups.sleep_riding(0.2, 5.0))
    await asyncio.sleep(0.05)
    wakeups.ride(loop.time())  # before the delay: not released
    await asyncio.sleep(0)
    assert not sleeper.done()
    await asyncio.sleep(0.2)
    wakeups.ride(loop.time())
    await timeouts.wait_for(sleeper, 1.0)
    assert 0.2 <= loop.time() - start < 1.0  # far sooner than delay + slack
    assert not wakeups._riders


async def test_sleep_riding_alone_ends_on_the_grid_after_its_slack() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await wakeups.sleep_riding(0.05, 0.1)
    now = loop.time()
    assert 0.15 <= now - start <= 0.15 + GRID + 0.05
    assert abs(now - grid_time(round((now - wakeups.PHASE) / GRID), GRID)) < 0.02


async def test_wait_applied_sleeps_through_heartbeat_rounds(tmp_path: Path) -> None:
    """What only the store or the configuration changes (the role watch, RaftMembers)
    waits for an applied entry, not for every round: idle heartbeats do not wake it."""
    c = Cluster(tmp_path, 3, seed=8, config=FAST)
    c.start_all()
    try:
        c[1].node.campaign()
        leader = await c.wait_leader(5)
        follower = next(m for m in c.up() if m is not leader).node
        await c.until(lambda: follower.applied == leader.node.applied, 5, "caught up")
        rounds = 0
        after_round = follower._after_round

        def counting_round() -> None:
            nonlocal rounds
            rounds += 1
            after_round()

        follower._after_round = counting_round  # type: ignore[method-assign]
        assert not await follower.wait_applied(follower.applied, 0.5)  # idle: times out
        assert rounds >= 5  # heartbeat rounds happened meanwhile
        waiter = asyncio.ensure_future(follower.wait_applied(follower.applied, 10))
        await create_service(leader.store, spec("one"))
        assert await timeouts.wait_for(waiter, 10)
    finally:
        await c.close()


async def test_a_stopped_node_keeps_no_tick_timer(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3, seed=9, config=FAST)
    c.start_all()
    try:
        c[1].node.campaign()
        await c.wait_leader(5)
        node = c[2].node
        ticks = 0
        tick = node._raw.tick

        def counting_tick() -> None:
            nonlocal ticks
            ticks += 1
            tick()

        node._raw.tick = counting_tick  # type: ignore[method-assign]
        await node.stop()
        assert node._timer is None
        node._arm()  # a late round's re-arm after the ticker ended does nothing
        assert node._timer is None
        before = ticks
        await asyncio.sleep(10 * FAST.tick_interval)
        assert ticks == before
    finally:
        await c.close()
