"""Fixtures of the server tests: an in-process server on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from srv_util import SECRET, TOKEN, ServerFactory

from peersync_server import PeerSyncServer, ServerConfig


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[ServerFactory]:
    servers: list[PeerSyncServer] = []

    def make(**overrides: Any) -> PeerSyncServer:
        fields: dict[str, Any] = {
            "label": "a",
            "port": 0,
            "state_dir": tmp_path / f"state-{len(servers)}",
            "api_token": TOKEN.encode(),
            "control_plane_secret": SECRET.encode(),
        }
        fields.update(overrides)
        server = PeerSyncServer(ServerConfig(**fields))
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: ServerFactory) -> PeerSyncServer:
    return make_server()
