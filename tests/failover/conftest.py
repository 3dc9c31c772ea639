"""Fixtures of the real-process failover tests: a pair of engines behind proxies."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from peersync_server._pair import EnginePair


@pytest.fixture
def make_pair() -> Iterator[Callable[..., EnginePair]]:
    """``make_pair(extra_args=...)``: a fresh pair; both engines' logs are
    printed at teardown (pytest shows them when the test failed)."""
    pairs: list[EnginePair] = []

    def make(**kwargs: object) -> EnginePair:
        pair = EnginePair.create(**kwargs)  # type: ignore[arg-type]
        pairs.append(pair)
        return pair

    yield make
    for pair in pairs:
        for engine in (pair.a, pair.b):
            print(f"--- engine {engine.label} log ---")
            print("\n".join(engine.log().splitlines()[-60:]))
        pair.close()


@pytest.fixture
def pair(make_pair: Callable[..., EnginePair]) -> EnginePair:
    return make_pair()
