"""Run seeds: each one a scenario drawn from the seed, checked to the end."""

from __future__ import annotations

import time

import attrs

from peersync_proto import ProtocolError
from tests.sim.checks import SimFailure
from tests.sim.scenario import draw_scenario
from tests.sim.world import World

__all__ = ["Batch", "run_seed", "run_seeds"]


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


@attrs.frozen(kw_only=True)
class Batch:
    failures: list[SimFailure]
    seconds: float
    settled_ns: list[int]  #: per passing seed: faults end -> last role change or reconcile


def run_seeds(first: int, count: int) -> Batch:
    """Run ``count`` seeds from ``first``."""
    failures: list[SimFailure] = []
    settled: list[int] = []
    started = time.perf_counter()
    for seed in range(first, first + count):
        try:
            settled.append(run_seed(seed).settled_after())
        except SimFailure as failure:
            failures.append(failure)
    return Batch(failures=failures, seconds=time.perf_counter() - started, settled_ns=settled)
