"""The fault proxy and the monitor's probe, against real sockets: each proxy
mode looks to a probe like the failure it stands for."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from peersync_proto import ProbeFailure
from peersync_server import PeerSyncServer, ServerConfig
from peersync_server._peer import probe_health
from peersync_server._proxy import FaultProxy, ProxyMode


@pytest.fixture
def server() -> Iterator[PeerSyncServer]:
    srv = PeerSyncServer(ServerConfig(label="a", port=0, no_auth=True, decoder_workers=1))
    srv.start()
    yield srv
    srv.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _probe(port: int, within: float = 0.3) -> tuple[int, bytes] | ProbeFailure:
    return probe_health("127.0.0.1", port, "", time.monotonic() + within)


def test_probe_of_a_live_engine_returns_its_answer_as_served(server: PeerSyncServer) -> None:
    result = _probe(server.port)
    assert not isinstance(result, ProbeFailure)
    status, body = result
    assert status == 200 and json.loads(body)["engineLabel"] == "a"


def test_probe_of_a_closed_port_is_refused() -> None:
    assert _probe(_free_port()) is ProbeFailure.REFUSED


def test_proxy_passes_probes_through(server: PeerSyncServer) -> None:
    with FaultProxy(server.port) as proxy:
        result = _probe(proxy.port)
        assert not isinstance(result, ProbeFailure) and result[0] == 200


def test_proxy_in_front_of_a_dead_engine_resets_which_counts_as_refused() -> None:
    with FaultProxy(_free_port()) as proxy:
        assert _probe(proxy.port) is ProbeFailure.REFUSED
    with FaultProxy(None) as proxy:  # upstream not known yet
        assert _probe(proxy.port) is ProbeFailure.REFUSED


def test_proxy_refuse_mode_resets_new_connections(server: PeerSyncServer) -> None:
    with FaultProxy(server.port) as proxy:
        proxy.set_mode(ProxyMode.REFUSE)
        assert _probe(proxy.port) is ProbeFailure.REFUSED
        proxy.set_mode(ProxyMode.PASS)
        result = _probe(proxy.port)
        assert not isinstance(result, ProbeFailure) and result[0] == 200


def test_proxy_blackhole_holds_connections_until_the_probe_deadline(
    server: PeerSyncServer,
) -> None:
    with FaultProxy(server.port) as proxy:
        proxy.set_mode(ProxyMode.BLACKHOLE)
        started = time.monotonic()
        assert _probe(proxy.port, within=0.15) is ProbeFailure.TIMEOUT
        took = time.monotonic() - started
        assert 0.14 <= took < 1.0  # bounded by the probe's own deadline


def test_leaving_pass_cuts_connections_already_forwarded(server: PeerSyncServer) -> None:
    with FaultProxy(server.port) as proxy:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        sock.sendall(b"GET /api/peer/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        proxy.set_mode(ProxyMode.BLACKHOLE)
        try:
            sock.sendall(b"GET /api/peer/health HTTP/1.1\r\nHost: x\r\n\r\n")
            data = sock.recv(65536)
        except OSError:
            data = b""
        assert data == b""  # the kept-alive connection did not leak through
        sock.close()


def test_abandoning_a_probe_closes_its_connection_at_once(server: PeerSyncServer) -> None:
    import threading

    from peersync_server._peer import _Probe

    with FaultProxy(server.port) as proxy:
        proxy.set_mode(ProxyMode.BLACKHOLE)
        probe = _Probe()
        results: list[object] = []
        thread = threading.Thread(
            target=lambda: results.append(
                probe_health("127.0.0.1", proxy.port, "", time.monotonic() + 5.0, probe)
            )
        )
        started = time.monotonic()
        thread.start()
        time.sleep(0.1)
        probe.abandon()
        thread.join(timeout=2)
        assert not thread.is_alive() and time.monotonic() - started < 1.0
        assert len(results) == 1 and isinstance(results[0], ProbeFailure)  # ignored anyway
