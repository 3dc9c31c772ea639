"""Snapshot codec cost beside a bare ``json.loads`` of the same bytes.

A helper for ``bench/core.py`` (:func:`codec_rows`), runnable on its own:
``python bench/core_codec.py [MB ...]``. Not a timed test.

The state is shaped like an engine's: a map of sources (nested objects of
strings, integers and booleans, a few short lists), a list of playlists and
some settings. Two spellings of the same snapshot are timed:

- ``canonical``: the body a peer's ``GET /api/sync/state`` returns (built by
  :func:`encode_snapshot` around canonical state bytes): the apply path of a
  reconciliation;
- ``foreign``: the same snapshot as a generic encoder writes it (spaced,
  members unsorted, non-ASCII escaped), whose state must be written out again.

Each figure is the median of 3 runs; the garbage collector is collected
before and disabled during every run, and the result is freed inside the
timing, on both sides alike.
"""

from __future__ import annotations

import functools
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from peersync_proto._canonical import canonical_json
from peersync_proto._snapshot import decode_snapshot, encode_snapshot
from peersync_proto._values import Role

RUNS = 3
_WORDS = (
    "cam",
    "preview",
    "program",
    "overlay",
    "lower-third",
    "graphic",
    "clip",
    "audio",
    "mix",
    "key",
    "aux",
    "Zürich",
    "señal",
    "カメラ",
)


def make_state(size_bytes: int, *, seed: int = 1) -> dict[str, Any]:
    """An engine-like state whose canonical form is about ``size_bytes`` long."""
    rng = random.Random(seed)
    sources: dict[str, Any] = {}
    playlists: list[dict[str, Any]] = []
    state: dict[str, Any] = {
        "engine": {"name": "main", "version": 3, "live": True, "standards": ["1080p50", "2160p50"]},
        "sources": sources,
        "playlists": playlists,
    }
    size = 0
    index = 0
    while size < size_bytes:
        name = f"src-{index}"
        source = {
            "id": name,
            "label": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4))),
            "kind": rng.choice(["camera", "clip", "graphic", "audio"]),
            "enabled": rng.random() < 0.8,
            "tally": {"program": rng.random() < 0.1, "preview": rng.random() < 0.1},
            "gainMilliDb": rng.randint(-60000, 12000),
            "position": {
                "x": rng.randint(0, 3840),
                "y": rng.randint(0, 2160),
                "z": rng.randint(0, 9),
            },
            "tags": [rng.choice(_WORDS) for _ in range(rng.randint(0, 3))],
            "lastCueUs": 1713200000000000 + rng.randint(0, 10**12),
            "note": None if rng.random() < 0.5 else "x" * rng.randint(0, 40),
        }
        sources[name] = source
        if index % 50 == 0:
            items = [f"src-{rng.randint(0, index)}" for _ in range(20)]
            playlists.append({"name": f"list {index}", "items": items, "loop": False})
        size += len(json.dumps(source, separators=(",", ":"), ensure_ascii=False).encode())
        size += len(name) + 4
        index += 1
    return state


def bodies(size_mb: float) -> tuple[bytes, bytes, bytes]:
    """The canonical state, and the snapshot in its ``canonical`` and ``foreign`` spellings."""
    state = canonical_json(make_state(int(size_mb * 1_000_000)))
    canonical = encode_snapshot(
        engine_label="a",
        role=Role.LEADER,
        epoch=17,
        captured_at_us=1713200000000000,
        last_command_seq=1729,
        last_executed_seq=1728,
        program_source="cam-1",
        preview_source="cam-2",
        state=state,
    )
    envelope = json.loads(canonical)
    envelope["state"] = _unsorted(envelope["state"])
    foreign = json.dumps(envelope).encode()  # spaces after separators, \u escapes
    return state, canonical, foreign


def _unsorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unsorted(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_unsorted(v) for v in value]
    return value


def _median_seconds(run: Callable[[], object]) -> float:
    """Median wall time of ``run()``, freeing its result inside the timing.

    Freeing a parsed 50 MB document costs a good part of parsing it; the
    server pays it on both paths, so both sides are timed with it.
    """
    times = []
    for _ in range(RUNS):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return statistics.median(times)


def codec_rows(sizes_mb: tuple[float, ...] = (1, 10, 50)) -> list[tuple[str, float, float, float]]:
    """``(label, seconds ours, seconds bare json.loads, ratio)`` per size and spelling.

    "Ours" is :func:`decode_snapshot`: strict JSON, envelope validation, the
    canonical state bytes and the checksum check. Each result is checked.
    """
    rows: list[tuple[str, float, float, float]] = []
    for size in sizes_mb:
        state, canonical, foreign = bodies(size)
        for spelling, body in (("canonical", canonical), ("foreign", foreign)):
            decoded = decode_snapshot(body)
            if decoded.state != state:
                raise AssertionError(f"{spelling} {size} MB: state bytes differ")
            ours = _median_seconds(functools.partial(decode_snapshot, body))
            bare = _median_seconds(functools.partial(json.loads, body))
            label = f"snapshot apply {len(body) / 1e6:.1f} MB ({spelling})"
            rows.append((label, ours, bare, ours / bare))
    return rows


def main(argv: list[str]) -> None:
    sizes = tuple(float(a) for a in argv) or (1, 10, 50)
    head = "decode_snapshot (validate + checksum)"
    print(f"{head:44} {'ours s':>9} {'json.loads s':>13} {'ratio':>6}")
    for label, ours, bare, ratio in codec_rows(sizes):
        print(f"{label:44} {ours:9.4f} {bare:13.4f} {ratio:6.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
