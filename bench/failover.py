"""Failover with real processes: takeover, heal and force-leader times.

Run: ``python bench/failover.py`` (quick: 20 kills, 10 stops, 5 partitions,
10 forces) or ``python bench/failover.py --kill 100 --stop 50``. Not part of
``make test``. One pair of real ``peersync-server`` processes on loopback,
each watching the other through a fault proxy (``peersync_server._pair``),
default monitor settings (200 ms period, 150 ms deadline, threshold 3):

* kill: ``kill -9`` of the leader; time until the follower's own health
  answer says leader. The killed engine is restarted (it comes back
  follower) and the next run kills the new leader.
* stop: ``SIGSTOP`` of the leader; time until the follower says leader. Then
  ``SIGCONT``; the split brain heals (the promoted engine wins) before the
  next run.
* partition: both proxies blackhole; once the follower leads, both pass
  again; time from the heal to one leader with equal state checksums.
* force: ``POST /api/peer/force-leader`` on the follower (the control
  plane); time until its call returns (it is leader when it answers).

Times are observed from outside, by polling health every 5 ms: they include
the poll's own latency (a few ms). Prints p50 / p99 / max per scenario.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from collections.abc import Sequence

from peersync_proto import Role
from peersync_server._pair import EnginePair


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _other(label: str) -> str:
    return "b" if label == "a" else "a"


def _settle(pair: EnginePair, timeout: float = 10.0) -> tuple[str, float]:
    """Wait for one leader and equal states; returns the leader and the time."""

    def check() -> str | None:
        leaders = pair.leaders()
        if len(leaders) != 1:
            return None
        a, b = pair.checksum("a"), pair.checksum("b")
        return leaders[0] if a is not None and a == b else None

    return pair.wait_for("one leader, equal states", check, timeout=timeout)


def _leader(pair: EnginePair) -> str:
    leaders = pair.leaders()
    if len(leaders) != 1:
        raise RuntimeError(f"expected one leader, saw {leaders}")
    return leaders[0]


def _both_see_each_other(pair: EnginePair) -> None:
    # Each engine answers its peer's probes and has seen the other up since
    # its last change: give the monitors two periods to agree.
    time.sleep(0.45)


def bench_kill(pair: EnginePair, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        leader = _leader(pair)
        follower = _other(leader)
        killed_at = time.monotonic()
        pair.engine(leader).kill9()
        pair.wait_role(follower, Role.LEADER, timeout=10)
        times.append(time.monotonic() - killed_at)
        ups = pair.engine(leader).log().count("peer up")
        pair.start_engine(leader)
        pair.wait_log(leader, "peer up", timeout=5, count=ups + 1)
        _both_see_each_other(pair)
    return times


def bench_stop(pair: EnginePair, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        leader = _leader(pair)
        follower = _other(leader)
        stopped_at = time.monotonic()
        pair.engine(leader).send(signal.SIGSTOP)
        try:
            pair.wait_role(follower, Role.LEADER, timeout=10)
            times.append(time.monotonic() - stopped_at)
        finally:
            pair.engine(leader).send(signal.SIGCONT)
        _settle(pair)
        _both_see_each_other(pair)
    return times


def bench_partition(pair: EnginePair, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        follower = _other(_leader(pair))
        pair.partition()
        try:
            pair.wait_role(follower, Role.LEADER, timeout=10)
        finally:
            pair.heal()
        times.append(_settle(pair)[1])
        _both_see_each_other(pair)
    return times


def bench_force(pair: EnginePair, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        follower = _other(_leader(pair))
        with pair.engine(follower).client(timeout=5) as control_plane:
            started = time.monotonic()
            control_plane.force_leader(reason="bench")
            times.append(time.monotonic() - started)
        _settle(pair)
        _both_see_each_other(pair)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kill", type=int, default=20, metavar="N", help="kill -9 runs")
    parser.add_argument("--stop", type=int, default=10, metavar="N", help="SIGSTOP runs")
    parser.add_argument("--partition", type=int, default=5, metavar="N", help="partition runs")
    parser.add_argument("--force", type=int, default=10, metavar="N", help="force-leader runs")
    args = parser.parse_args(argv)
    results: list[tuple[str, list[float]]] = []
    scenarios = (
        ("kill -9 leader -> follower leads", bench_kill, args.kill),
        ("SIGSTOP leader -> follower leads", bench_stop, args.stop),
        ("partition healed -> one leader, equal state", bench_partition, args.partition),
        ("force-leader call -> leader", bench_force, args.force),
    )
    with EnginePair.create() as pair:
        pair.start(a_role="leader", b_role="follower")
        pair.wait_log("a", "peer up", timeout=5)
        pair.wait_log("b", "peer up", timeout=5)
        pair.seed("a", {"scene": "bench-a"}, seq=2, program="cam-1")
        pair.seed("b", {"scene": "bench-b"}, seq=1, program="cam-2")
        _both_see_each_other(pair)
        for name, run, n in scenarios:
            if n <= 0:
                continue
            started = time.monotonic()
            times = run(pair, n)
            results.append((name, times))
            print(f"# {name}: {n} runs in {time.monotonic() - started:.1f} s", file=sys.stderr)
    print("| scenario | runs | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    for name, times in results:
        ms = [t * 1000 for t in times]
        print(
            f"| {name} | {len(ms)} | {percentile(ms, 50):.0f} | {percentile(ms, 99):.0f}"
            f" | {max(ms):.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
