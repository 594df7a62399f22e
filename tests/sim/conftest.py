"""Seeds for the Raft simulation: `--seeds N` runs seeds 0..N-1 (default: the CI set),
`--seed S` replays one seed, `--sim-ticks T` changes the chaos phase's length."""

from __future__ import annotations

import pytest

CI_SEEDS = 1000


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("raft simulation")
    group.addoption("--seeds", type=int, default=None, help="run simulation seeds 0..N-1")
    group.addoption("--seed", type=int, default=None, help="run only this simulation seed")
    group.addoption("--sim-ticks", type=int, default=None, help="chaos ticks per seed")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sim_seed" not in metafunc.fixturenames:
        return
    one = metafunc.config.getoption("seed", None)
    count = metafunc.config.getoption("seeds", None)
    seeds = [one] if one is not None else list(range(count if count is not None else CI_SEEDS))
    metafunc.parametrize("sim_seed", seeds, ids=[f"seed={s}" for s in seeds])


@pytest.fixture
def sim_ticks(request: pytest.FixtureRequest) -> int | None:
    value = request.config.getoption("sim_ticks", None)
    return int(value) if value is not None else None
