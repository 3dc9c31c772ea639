"""The peer link in-process: a server watching a peer through a proxy."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import pytest

from peersync_proto import Role
from peersync_server import PeerSyncServer, ServerConfig
from peersync_server._peer import peer_link
from peersync_server._proxy import FaultProxy


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    with FaultProxy(None) as p:
        yield p


def _server(label: str, role: Role, peer_url: str) -> PeerSyncServer:
    config = ServerConfig(
        label=label, port=0, role=role, no_auth=True, peer_url=peer_url, decoder_workers=1
    )
    return PeerSyncServer(config, peer_monitor=peer_link)


def _wait(check: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_an_engine_watching_itself_reports_a_label_clash_and_never_promotes(
    proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="peersync.failover")
    server = _server("a", Role.FOLLOWER, proxy.url)
    server.start()
    try:
        proxy.set_upstream(server.port)  # the "peer" is this very engine
        assert _wait(lambda: "label clash" in caplog.text, 3.0)
        time.sleep(2.5)  # past the startup grace: still no failover
        assert server.driver.view().role is Role.FOLLOWER
        assert "promoted" not in caplog.text
    finally:
        server.stop()


def test_a_follower_whose_leader_stops_is_promoted_and_logs_the_evidence(
    proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="peersync.failover")
    leader = PeerSyncServer(ServerConfig(label="a", port=0, role=Role.LEADER, no_auth=True))
    leader.start()
    follower = _server("b", Role.FOLLOWER, proxy.url)
    leader_up = True
    try:
        proxy.set_upstream(leader.port)
        follower.start()
        assert _wait(lambda: "peer up: a leader" in caplog.text, 3.0)
        leader.stop()  # its port closes: the proxy resets, the probe reads refused
        leader_up = False
        assert _wait(lambda: follower.driver.view().role is Role.LEADER, 3.0)
        assert _wait(lambda: "promoted to leader: cause peer_down" in caplog.text, 1.0)
        assert "peer down: refused, refused, refused" in caplog.text
    finally:
        follower.stop()
        if leader_up:
            leader.stop()
