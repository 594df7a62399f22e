"""The linearizability checker: accepts linearizable histories, rejects known violations,
and agrees with a brute-force reading of the definition on random small histories."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sim.linearizability import Op, brute_force_linearizable, check_history, linearizable


def put(c: int, v: int, start: float, end: float | None, key: str = "k") -> Op:
    return Op(c, "put", key, v, start, end)


def get(c: int, v: int | None, start: float, end: float, key: str = "k") -> Op:
    return Op(c, "get", key, v, start, end)


def test_sequential_history() -> None:
    assert linearizable([put(1, 1, 0, 1), get(1, 1, 2, 3), put(1, 2, 4, 5), get(2, 2, 6, 7)])


def test_read_of_absent_key() -> None:
    assert linearizable([get(1, None, 0, 1), put(1, 1, 2, 3)])
    assert not linearizable([put(1, 1, 0, 1), get(2, None, 2, 3)])


def test_concurrent_put_may_be_seen_or_not() -> None:
    ops = [put(1, 1, 0, 10), get(2, 1, 1, 2), get(3, 1, 3, 4)]
    assert linearizable(ops)
    assert linearizable([put(1, 1, 0, 10), get(2, None, 1, 2), get(3, 1, 3, 4)])


def test_stale_read_after_completed_write_is_rejected() -> None:
    # put(2) completed before the get started, yet the get saw the older value.
    assert not linearizable([put(1, 1, 0, 1), put(1, 2, 2, 3), get(2, 1, 4, 5)])


def test_value_going_back_in_time_is_rejected() -> None:
    # Two sequential reads during a concurrent write: new then old is impossible.
    ops = [put(1, 1, 0, 1), put(2, 2, 2, 20), get(3, 2, 3, 4), get(3, 1, 5, 6)]
    assert not linearizable(ops)


def test_read_of_a_never_written_value_is_rejected() -> None:
    assert not linearizable([put(1, 1, 0, 1), get(2, 7, 2, 3)])


def test_read_before_write_started_is_rejected() -> None:
    assert not linearizable([get(2, 5, 0, 1), put(1, 5, 2, 3)])


def test_timed_out_put_may_apply_late_or_never() -> None:
    assert linearizable([put(1, 1, 0, None), get(2, None, 1, 2), get(2, 1, 3, 4)])
    assert linearizable([put(1, 1, 0, None), get(2, None, 5, 6)])
    # ...but once observed, it cannot be undone by nothing.
    ops = [put(1, 1, 0, None), get(2, 1, 1, 2), get(2, None, 3, 4)]
    assert not linearizable(ops)


def test_keys_are_checked_separately() -> None:
    ok, why = check_history(
        [put(1, 1, 0, 1, "a"), get(2, None, 2, 3, "b"), put(1, 2, 4, 5, "a"), get(2, 1, 6, 7, "a")]
    )
    assert not ok
    assert "'a'" in why


def test_long_concurrent_history_is_fast() -> None:
    # 30 overlapping writes and reads: without memoization this would not finish.
    ops = [put(i, i, i, 100 + i) for i in range(15)]
    ops += [get(100 + i, 14, 200 + 2 * i, 201 + 2 * i) for i in range(15)]
    assert linearizable(ops)
    assert not linearizable([*ops, get(999, 3, 300, 301)])


def _history() -> st.SearchStrategy[list[Op]]:
    def build(specs: list[tuple[bool, int, int, int, bool]]) -> list[Op]:
        ops = []
        for i, (is_put, value, start, length, lost) in enumerate(specs):
            end = None if (lost and is_put) else start + length + 0.5
            if is_put:
                ops.append(put(i, i + 1, start, end))
            else:
                ops.append(get(i, value or None, start, start + length + 0.5))
        return ops

    spec = st.tuples(
        st.booleans(),
        st.integers(0, 4),
        st.integers(0, 8),
        st.integers(0, 4),
        st.booleans(),
    )
    return st.lists(spec, min_size=1, max_size=6).map(build)


@settings(max_examples=300, deadline=None)
@given(_history())
def test_agrees_with_brute_force(ops: list[Op]) -> None:
    assert linearizable(ops) == brute_force_linearizable(ops)
