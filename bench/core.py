"""The core alone: requests per second in-process, and snapshot decoding.

Run: `make bench-core` (or `python bench/core.py`). Prints a table; nothing
here is a timed test. Each figure is the median of several rounds.
"""

from __future__ import annotations

import os
import pathlib
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from peersync_proto import Engine, EngineConfig, Request, Role

ROUNDS = 5
TOKEN = b"bench-token"
AUTH = ((b"authorization", b"Bearer " + TOKEN),)


def per_second(fn: Callable[[int], None], n: int) -> float:
    rates = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        fn(n)
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def make_engine() -> Engine:
    return Engine(
        EngineConfig(label="a", role=Role.LEADER, api_token=TOKEN),
        now=time.monotonic_ns(),
        entropy=os.urandom,
    )


def health(n: int) -> None:
    engine = make_engine()
    now = time.monotonic_ns()
    for i in range(n):
        engine.handle(Request(now=now, request_id=i, method="GET", target="/api/peer/health"))


def lock_cycle(n: int) -> None:
    engine = make_engine()
    now = time.monotonic_ns()
    rid = 0
    for _ in range(n):
        rid += 3
        out = engine.handle(
            Request(
                now=now,
                request_id=rid,
                method="POST",
                target="/api/sync/reconcile-lock",
                headers=AUTH,
            )
        )
        body = out[-1].body  # type: ignore[union-attr]
        lock_id = body[12:44].decode()
        path = "/api/sync/reconcile-lock/" + lock_id
        engine.handle(Request(now=now, request_id=rid + 1, method="PUT", target=path, headers=AUTH))
        engine.handle(
            Request(now=now, request_id=rid + 2, method="DELETE", target=path, headers=AUTH)
        )


def main() -> int:
    rows = [
        ("peer health, requests/s", per_second(health, 20_000)),
        ("acquire+refresh+release cycles/s", per_second(lock_cycle, 5_000)),
    ]
    title = f"core, in-process (median of {ROUNDS} rounds)"
    print(f"{title:<45} {'rate':>12}")
    for label, rate in rows:
        print(f"{label:<45} {rate:>12,.0f}")
    try:
        from core_codec import codec_rows
    except ImportError:  # pragma: no cover
        return 0
    print()
    print(f"{'snapshot validate + checksum':<30} {'ours s':>9} {'json.loads s':>13} {'ratio':>7}")
    for label, ours, bare, ratio in codec_rows():
        print(f"{label:<30} {ours:>9.3f} {bare:>13.3f} {ratio:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
