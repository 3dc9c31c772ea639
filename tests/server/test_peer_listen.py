"""The peer's own address (``--peer-listen``, ``ServerConfig.peer_listen_host``).

Found by a tester: 300 clients each pipelining 200 peer-health requests and
reading the answers kept the accept loop so busy that the peer's probe, one
fresh connection among hundreds, waited its turn behind all of them (p50
125 ms, 27 of 50 probes past 150 ms); a real pair's follower took over the
healthy leader. Nothing in a request tells the peer's probe from a flood of
copies, so the peer gets an address of its own: its events go first in the
accept loop, which also answers its health probes itself, busy or not.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from srv_util import (
    AUTH,
    ServerFactory,
    drain_in_background,
    free_port,
    probe_ms,
    read_until_close,
    server_process,
)

from peersync_server._server import PeerSyncServer, ServerStartError

CAP = 4


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("connection") or ""
    finally:
        conn.close()


@pytest.fixture
def busy(make_server: ServerFactory) -> Iterator[PeerSyncServer]:
    """Every worker busy on a stalled upload to the main address."""
    server = make_server(max_connections=CAP, peer_listen_host="127.0.0.1")
    head = (
        "PUT /api/sync/state HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
        "Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    ).format(auth=AUTH["Authorization"])
    socks = []
    try:
        for _ in range(CAP):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(head.encode() + b'{"state":"')
            socks.append(sock)
        deadline = time.monotonic() + 5
        while server.busy_count < CAP and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.busy_count == CAP
        yield server
    finally:
        for sock in socks:
            sock.close()


def test_the_peer_address_is_its_own_port(make_server: ServerFactory) -> None:
    server = make_server(peer_listen_host="127.0.0.1")
    url = server.peer_listen_url
    assert url is not None and url != server.url
    port = int(url.rsplit(":", 1)[1])
    assert _get(port, "/api/peer/health")[0] == 200
    assert _get(port, "/api/sync/health", AUTH)[0] == 200  # every endpoint is served there
    assert make_server().peer_listen_url is None


def test_the_peers_probe_is_answered_at_once_when_every_worker_is_busy(
    busy: PeerSyncServer,
) -> None:
    url = busy.peer_listen_url
    assert url is not None
    port = int(url.rsplit(":", 1)[1])
    for _ in range(10):
        assert _get(port, "/api/peer/health") == (200, "close")  # answered by the accept loop
    # Other requests on the peer's address take a worker like any other.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"GET /api/sync/health HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: {AUTH['Authorization']}\r\n\r\n".encode()
        )
        assert read_until_close(sock, 5).startswith(b"HTTP/1.1 503 ")


def test_a_peer_address_in_use_fails_the_start_and_frees_the_main_port(
    make_server: ServerFactory,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ServerStartError, match="--peer-listen"):
            make_server(peer_listen_host="127.0.0.1", peer_listen_port=port)


HEALTH_FLOOD = Path(__file__).with_name("health_flood.py")


def test_the_peers_probe_keeps_its_deadline_while_300_clients_flood_health(
    tmp_path: Path,
) -> None:
    peer_port = free_port()
    args = ["--label", "a", "--listen", "127.0.0.1:0", "--no-auth", "--state-dir", str(tmp_path)]
    with server_process([*args, "--peer-listen", f"127.0.0.1:{peer_port}"], cwd=tmp_path) as proc:
        port = proc.wait_listening()
        assert proc.proc.stderr is not None
        drain_in_background(proc.proc.stderr)
        flood = subprocess.Popen(
            [sys.executable, str(HEALTH_FLOOD), str(port), "300", "200", "5"],
            stdout=subprocess.PIPE,
        )
        try:
            time.sleep(0.5)  # the flood is up to speed
            results = []
            next_at = time.monotonic()
            for _ in range(20):
                results.append(probe_ms(peer_port))
                next_at += 0.2
                time.sleep(max(0.0, next_at - time.monotonic()))
            assert flood.poll() is None, "the flood ended before the probes did"
        finally:
            flood.kill()
            flood.communicate(timeout=30)
    misses = "".join("." if ms is not None else "X" for ms in results)
    answered = sorted(ms for ms in results if ms is not None)
    print(f"peer-address probes: {misses}; ms {[round(ms, 1) for ms in answered]}")
    assert "XX" not in misses, misses  # three in a row would be a takeover
    assert len(answered) >= 16, misses  # on the main address: nearly all missed
