"""Health checks: Docker's semantics, driven with a fake clock and a scripted check."""

from __future__ import annotations

import pytest

from shoal.agent.health import HealthMonitor, HealthSpec, health_spec
from shoal.api.types import HealthConfig

S = 1_000_000_000


def test_spec_from_docker_health_config() -> None:
    assert health_spec(None) is None
    assert health_spec(HealthConfig(test=["NONE"])) is None
    spec = health_spec(HealthConfig(test=["CMD-SHELL", "curl -f localhost"], interval=2 * S))
    assert spec == HealthSpec(["/bin/sh", "-c", "curl -f localhost"], 2.0, 30.0, 3, 0.0)
    spec = health_spec(HealthConfig(test=["CMD", "true"], retries=5, start_period=S))
    assert spec is not None and spec.argv == ["true"] and spec.retries == 5
    assert spec.start_period == 1.0


class Script:
    """A check that answers from a script, on a clock the sleeps advance."""

    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers
        self.now = 0.0
        self.calls = 0

    async def check(self, argv: list[str], timeout: float) -> bool:
        self.calls += 1
        return self.answers.pop(0)

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def monitor(script: Script, retries: int = 3, start_period: float = 0.0) -> HealthMonitor:
    spec = HealthSpec(
        ["true"], interval=1.0, timeout=1.0, retries=retries, start_period=start_period
    )
    return HealthMonitor(spec, script.check, lambda: script.now, script.sleep)


async def test_healthy_at_the_first_pass() -> None:
    script = Script([False, False, True])
    assert await monitor(script).wait_healthy() is True
    assert script.calls == 3


async def test_unhealthy_before_ever_passing() -> None:
    script = Script([False, False, False, True])
    assert await monitor(script).wait_healthy() is False
    assert script.calls == 3


async def test_failures_in_the_start_period_do_not_count() -> None:
    script = Script([False] * 5 + [True])
    assert await monitor(script, retries=2, start_period=4.5).wait_healthy() is True


async def test_unhealthy_after_consecutive_failures_only() -> None:
    script = Script([True, False, False, True, False, False, False])
    m = monitor(script)
    assert await m.wait_healthy() is True
    await m.wait_unhealthy()
    assert script.calls == 7 and not script.answers


@pytest.mark.parametrize("test", [["CMD"], []])
def test_empty_commands_mean_no_check(test: list[str]) -> None:
    assert health_spec(HealthConfig(test=test)) is None
