"""``python -m tests.sim``: run seeds, replay one, or measure.

python -m tests.sim --seeds 10000 --first 0   # N seeds (make sim SEEDS=N)
python -m tests.sim --seed 1234               # replay one seed, print its trace
python -m tests.sim --measure [--samples N]   # the distributions of docs/failover.md
python -m tests.sim --hours 24                # false takeovers in 24 simulated hours
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.sim.checks import SimFailure
from tests.sim.measure import crash_takeover, false_takeovers, hang_takeover, partition_heal
from tests.sim.runner import run_seed, run_seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.sim",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seeds", type=int, default=1000, help="how many seeds to run")
    parser.add_argument("--first", type=int, default=0, help="the first seed")
    parser.add_argument("--seed", type=int, help="replay this one seed and print its trace")
    parser.add_argument("--measure", action="store_true", help="print the distributions")
    parser.add_argument("--samples", type=int, default=1000, help="runs per distribution")
    parser.add_argument("--hours", type=float, help="count false takeovers over this long")
    args = parser.parse_args(argv)
    if args.seed is not None:
        return replay(args.seed)
    if args.measure:
        print("| what | runs | p50 | p99 | max |\n|---|---|---|---|---|")
        for measure in (crash_takeover, hang_takeover, partition_heal):
            print(measure(args.samples).row(), flush=True)
        return 0
    if args.hours is not None:
        for jitter, loss in ((20, 0.0), (20, 0.01)):
            started = time.perf_counter()
            count = false_takeovers(args.hours, jitter_ms=jitter, probe_loss=loss)
            print(
                f"{args.hours:g} simulated h, jitter {jitter} ms, probe loss {loss:.0%}: "
                f"{count} false takeovers ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        return 0
    batch = run_seeds(args.first, args.seeds)
    failures = batch.failures
    for failure in failures[:3]:
        print(failure, end="\n\n")
    print(f"{args.seeds} seeds from {args.first}: {len(failures)} failed in {batch.seconds:.1f} s")
    if batch.settled_ns:
        xs = sorted(batch.settled_ns)
        p50, p99 = (xs[min(len(xs) - 1, int(p * len(xs)))] / 1e6 for p in (0.5, 0.99))
        print(
            f"settled after the last fault: p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
            f"max {xs[-1] / 1e6:.0f} ms"
        )
    if failures:
        print("failing seeds:", " ".join(str(f.seed) for f in failures))
    return 1 if failures else 0


def replay(seed: int) -> int:
    try:
        world = run_seed(seed)
    except SimFailure as failure:
        print(failure)
        return 1
    print("\n".join(world.scenario.describe()))
    print(f"last {len(world.trace)} events:")
    for at, label, what, detail in world.trace:
        print(f"  {at / 1e6:10.3f} ms  {label:<2} {what} {detail}")
    print(f"seed {seed}: every check held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
