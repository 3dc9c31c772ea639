"""Run seeds: each one a scenario drawn from the seed, checked to the end."""

from __future__ import annotations

import time

from peersync_proto import ProtocolError
from tests.sim.checks import SimFailure
from tests.sim.scenario import draw_scenario
from tests.sim.world import World

__all__ = ["run_seed", "run_seeds"]


def run_seed(seed: int) -> World:
    """Run one seed; raises :class:`SimFailure` with its trace when a rule breaks.

    An exception escaping the core (host misuse, or a bug) is a failure too,
    reported with the same trace and replay command.
    """
    world = World(draw_scenario(seed))
    try:
        world.run()
    except SimFailure:
        raise
    except (ProtocolError, AssertionError, KeyError, ValueError, TypeError) as exc:
        raise SimFailure(world, f"{type(exc).__name__}: {exc}") from exc
    return world


def run_seeds(first: int, count: int) -> tuple[list[SimFailure], float]:
    """Run ``count`` seeds from ``first``; the failures and the seconds taken."""
    failures: list[SimFailure] = []
    started = time.perf_counter()
    for seed in range(first, first + count):
        try:
            run_seed(seed)
        except SimFailure as failure:
            failures.append(failure)
    return failures, time.perf_counter() - started
