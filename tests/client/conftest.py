"""Fixtures of the client tests: real servers on loopback (see fake_servers.py)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from fake_servers import EngineModel, RawServer, StdlibEngine


@pytest.fixture
def stdlib_engine() -> Iterator[StdlibEngine]:
    engine = StdlibEngine(EngineModel())
    yield engine
    engine.close()


@pytest.fixture
def raw_server() -> Iterator[
    Callable[[Callable[[RawServer, socket.socket, int], None]], RawServer]
]:
    servers: list[RawServer] = []

    def start(serve: Callable[[RawServer, socket.socket, int], None]) -> RawServer:
        holder: list[RawServer] = []
        server = RawServer(lambda conn, index: serve(holder[0], conn, index))
        holder.append(server)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
        assert not server.errors, server.errors
