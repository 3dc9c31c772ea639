"""The keep window: after an answer the worker keeps its connection briefly, so a
client that asks again at once is served by the same thread (no park in the
accept loop and no hand-off back), without holding a slot another connection
needs, past the window, or past a graceful stop."""

from __future__ import annotations

import socket
import time

from srv_util import ServerFactory, request, split_responses

from peersync_server._server import DEFAULT_KEEP_WINDOW_S, PeerSyncServer

KEEP = request("GET", "/api/peer/health", close=False)


def _ask(sock: socket.socket) -> int:
    """One keep-alive health request on ``sock``; its status."""
    sock.sendall(KEEP)
    raw = b""
    while not raw.endswith(b"}"):
        data = sock.recv(65536)
        assert data, raw
        raw += data
    ((status, headers, _),) = split_responses(raw)
    assert headers.get("connection") != "close"
    return status


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def test_the_default_window_is_a_few_milliseconds() -> None:
    assert 0 < DEFAULT_KEEP_WINDOW_S <= 0.005


def test_sequential_requests_are_served_by_one_worker_without_a_park(
    make_server: ServerFactory,
) -> None:
    server = make_server(keep_window_s=2.0)  # a window no loaded machine misses
    before = server.dispatch_count
    with _connect(server.port) as sock:
        assert [_ask(sock) for _ in range(10)] == [200] * 10
        assert server.dispatch_count - before == 1  # before our close is seen


def test_without_the_window_every_request_is_handed_over(make_server: ServerFactory) -> None:
    server = make_server(keep_window_s=0)
    before = server.dispatch_count
    with _connect(server.port) as sock:
        assert [_ask(sock) for _ in range(10)] == [200] * 10
        assert server.dispatch_count - before == 10  # before our close is seen


def test_the_window_ends_and_the_connection_is_parked_holding_no_worker(
    make_server: ServerFactory,
) -> None:
    server = make_server(keep_window_s=0.3)
    with _connect(server.port) as sock:
        assert _ask(sock) == 200
        deadline = time.monotonic() + 3
        while server.busy_count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.busy_count == 0  # parked, not held
        before = server.dispatch_count
        assert _ask(sock) == 200  # served again from the accept loop
        assert server.dispatch_count - before == 1


def test_a_connection_in_its_window_gives_the_last_slot_up_at_once(
    make_server: ServerFactory,
) -> None:
    server = make_server(max_connections=1, keep_window_s=30.0)
    with _connect(server.port) as keeper, _connect(server.port) as other:
        assert _ask(keeper) == 200
        _wait_in_window(server)  # keeper's worker holds the only slot, idle
        started = time.monotonic()
        assert _ask(other) == 200  # not 503, and not after the 30 s window
        assert time.monotonic() - started < 2.0
        _wait_in_window(server)  # now other's worker holds it
        assert _ask(keeper) == 200  # the keeper was parked, not dropped


def _wait_in_window(server: PeerSyncServer) -> None:
    """Until one worker sits in its keep window (its answer fully done)."""
    deadline = time.monotonic() + 3
    while server._keeping != 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert server._keeping == 1 and server.busy_count == 1


def test_graceful_stop_does_not_wait_for_a_window(make_server: ServerFactory) -> None:
    server = make_server(keep_window_s=30.0)
    with _connect(server.port) as sock:
        assert _ask(sock) == 200
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 3.0
        assert sock.recv(65536) == b""  # closed, not left half-open
