"""The ``start`` fixture: a fresh engine ``a`` on each server of ``SERVERS``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from wire_servers import SECRET, SERVERS, Running, StartServer


@pytest.fixture(params=sorted(SERVERS))
def start(request: pytest.FixtureRequest) -> Iterator[StartServer]:
    """``start(role="follower", secret=SECRET) -> port`` of a fresh engine ``a``."""
    running: list[Running] = []

    def make(role: str = "follower", secret: str | None = SECRET) -> int:
        server = SERVERS[request.param](role, None if secret is None else secret.encode())
        running.append(server)
        return server.port

    yield make
    for server in running:
        server.stop()
