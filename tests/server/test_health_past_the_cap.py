"""Peer health answers 200 past the busy cap (contract 3.1 and rule 5.5).

Found by a tester: 66 connections that each sent half a request head held
all 64 workers (each waiting for the rest of its head), so every health probe
got ``503 overloaded``; the peer counted those as failures and took over from
a healthy leader. Two rules close it, each tested here: a request head is
gathered by the accept loop without a worker, and a health request that
finds every worker busy is answered by the accept loop itself.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from collections.abc import Iterator

import pytest
from srv_util import AUTH, ServerFactory, one_response, read_until_close, request

from peersync_server._connection import Limits
from peersync_server._server import PeerSyncServer

CAP = 4
HALF_HEAD = b"GET /api/peer/health HTTP/1.1\r\nHost: x\r\n"


def _probe(port: int) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/api/peer/health")
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@contextlib.contextmanager
def _held(port: int, count: int, data: bytes) -> Iterator[list[socket.socket]]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(data)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def _wait(predicate: object, timeout: float = 5.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_half_sent_heads_past_the_cap_hold_no_worker_and_health_answers_200(
    make_server: ServerFactory,
) -> None:
    server = make_server(max_connections=CAP)
    with _held(server.port, CAP * 3, HALF_HEAD):
        time.sleep(0.3)  # every half head has arrived and been looked at
        assert server.busy_count == 0, "a half-sent head holds a worker"
        for _ in range(10):
            status, body = _probe(server.port)
            assert status == 200 and body["status"] == "ok", body


def test_a_half_sent_head_still_gets_408_at_the_header_deadline(
    make_server: ServerFactory,
) -> None:
    server = make_server(max_connections=CAP, limits=Limits(header_timeout_s=0.5))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(HALF_HEAD)
        started = time.monotonic()
        raw = read_until_close(sock, 5.0)
    took = time.monotonic() - started
    status, headers, body = one_response(raw)
    assert (status, body["code"]) == (408, "request_timeout")
    assert headers["connection"] == "close"
    assert 0.4 < took < 3.0, took


def test_a_head_finished_in_pieces_is_served(make_server: ServerFactory) -> None:
    server = make_server(max_connections=CAP)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for piece in (b"GET /api/peer/he", b"alth HTTP/1.1\r\nHo", b"st: x\r\n", b"\r\n"):
            sock.sendall(piece)
            time.sleep(0.05)
        sock.sendall(b"")
        data = b""
        while b"}" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 "), data


@pytest.fixture
def saturated(make_server: ServerFactory) -> Iterator[PeerSyncServer]:
    """Every worker busy reading an authenticated upload that stalled."""
    server = make_server(max_connections=CAP)
    head = (
        "PUT /api/sync/state HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
        "Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    ).format(auth=AUTH["Authorization"])
    with _held(server.port, CAP, head.encode() + b'{"state":"') as socks:
        assert _wait(lambda: server.busy_count == CAP), server.busy_count
        yield server
        del socks


def test_health_answers_200_when_every_worker_is_busy(saturated: PeerSyncServer) -> None:
    for _ in range(10):
        status, body = _probe(saturated.port)
        assert status == 200 and body["engineLabel"] == "a", body


def test_other_requests_still_get_503_when_every_worker_is_busy(
    saturated: PeerSyncServer,
) -> None:
    with socket.create_connection(("127.0.0.1", saturated.port), timeout=5) as sock:
        sock.sendall(request("GET", "/api/sync/health", headers=AUTH))
        raw = read_until_close(sock, 5.0)
    status, headers, body = one_response(raw)
    assert (status, body["code"]) == (503, "overloaded")
    assert headers["retry-after"] == "1"


PIPELINED_PROBES = b"GET /api/peer/health HTTP/1.1\r\nHost: x\r\n\r\n" * 1000


def test_past_the_cap_a_health_answer_closes_the_connection(saturated: PeerSyncServer) -> None:
    """The accept loop answers one probe per connection past the cap: a
    second one pipelined behind it is not served there."""
    with socket.create_connection(("127.0.0.1", saturated.port), timeout=5) as sock:
        sock.sendall(PIPELINED_PROBES[: len(PIPELINED_PROBES) // 500])  # two probes
        raw = read_until_close(sock, 5.0)
    status, headers, body = one_response(raw)
    assert (status, body["status"]) == (200, "ok")
    assert headers["connection"] == "close"
    assert raw.count(b"HTTP/1.1 ") == 1


def test_past_the_cap_pipelined_probes_never_keep_the_accept_loop_from_the_next_one(
    saturated: PeerSyncServer,
) -> None:
    """Found by a tester: connections that pipelined a thousand probes each
    past the cap kept the accept loop serving them one after the other, so
    a new connection (the peer's probe) waited until they were all done."""
    with _held(saturated.port, 20, PIPELINED_PROBES):
        for _ in range(10):
            started = time.monotonic()
            status, body = _probe(saturated.port)
            assert status == 200 and body["status"] == "ok", body
            assert time.monotonic() - started < 1.0
