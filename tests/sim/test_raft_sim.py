"""Seeded simulations of a Raft cluster under faults (see tests/sim/simulation.py).

Every seed checks election safety, log matching, leader completeness and state machine
safety after each step, liveness once the faults heal, and linearizability of the client
history at the end. A failure prints the seed and the command that replays it.
"""

from __future__ import annotations

from tests.sim.simulation import Scenario, Simulation


def test_raft_simulation(sim_seed: int, sim_ticks: int | None) -> None:
    Simulation(Scenario.from_seed(sim_seed, sim_ticks)).run()
