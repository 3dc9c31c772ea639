"""Every limit and framing rule of the shell, with raw socket bytes (one test each)."""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from srv_util import (
    AUTH,
    ServerFactory,
    make_state,
    one_response,
    raw_exchange,
    read_until_close,
    request,
    snapshot_body,
    split_responses,
)

from peersync_server._connection import Limits
from peersync_server._server import PeerSyncServer

HEALTH = request("GET", "/api/peer/health")


def _assert_own_error(raw: bytes, status: int, code: str) -> dict[str, object]:
    got, headers, body = one_response(raw)
    assert got == status, raw[:300]
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert headers["connection"] == "close"
    return body


def test_head_larger_than_16_kib_in_one_piece_gets_431(server: PeerSyncServer) -> None:
    raw = request("GET", "/api/peer/health", headers={"X-Pad": "p" * (17 * 1024)})
    _assert_own_error(raw_exchange(server.port, raw), 431, "request_header_fields_too_large")


def test_head_growing_past_16_kib_without_an_end_gets_431(server: PeerSyncServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /api/peer/health HTTP/1.1\r\nHost: x\r\n")
        for _ in range(20):  # 20 x 1 KiB, never a blank line
            try:
                sock.sendall(b"X-Pad: " + b"p" * 1017 + b"\r\n")
            except OSError:
                break
        raw = read_until_close(sock, 5)
    _assert_own_error(raw, 431, "request_header_fields_too_large")


def test_more_than_100_header_fields_gets_431(server: PeerSyncServer) -> None:
    headers = {f"X-F{i}": "v" for i in range(101)}
    raw = raw_exchange(server.port, request("GET", "/api/peer/health", headers=headers))
    _assert_own_error(raw, 431, "request_header_fields_too_large")


def test_100_header_fields_are_still_served(server: PeerSyncServer) -> None:
    headers = {f"X-F{i}": "v" for i in range(98)}  # + Host + Connection = 100
    status, _, _ = one_response(
        raw_exchange(server.port, request("GET", "/api/peer/health", headers=headers))
    )
    assert status == 200


def test_head_not_finished_by_the_header_deadline_gets_408(make_server: ServerFactory) -> None:
    server = make_server(limits=Limits(header_timeout_s=0.4))
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /api/peer/health HTTP/1.1\r\n")
        for _ in range(3):  # slowloris: a byte now and then keeps nothing alive
            time.sleep(0.1)
            sock.sendall(b"X")
        raw = read_until_close(sock, 5)
    elapsed = time.monotonic() - started
    _assert_own_error(raw, 408, "request_timeout")
    assert 0.35 < elapsed < 2.0


def test_connection_that_never_sends_a_byte_is_closed_silently(
    make_server: ServerFactory,
) -> None:
    server = make_server(limits=Limits(idle_timeout_s=0.3))
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        raw = read_until_close(sock, 5)
    assert raw == b""
    assert 0.25 < time.monotonic() - started < 2.0


def test_body_not_finished_by_the_body_deadline_gets_408(make_server: ServerFactory) -> None:
    server = make_server(limits=Limits(body_timeout_s=0.4))
    head = (
        b"POST /api/sync/reconcile-lock HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + AUTH["Authorization"].split()[1].encode() + b"\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"owner":'
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head)
        raw = read_until_close(sock, 5)
    _assert_own_error(raw, 408, "request_timeout")


def test_reader_that_stops_reading_is_cut_off_at_the_send_deadline(
    make_server: ServerFactory,
) -> None:
    server = make_server(limits=Limits(send_timeout_s=0.3))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/api/sync/reconcile-lock", headers=AUTH)
    lock_id = json.loads(conn.getresponse().read())["lockId"]
    conn.request(
        "PUT",
        "/api/sync/state",
        body=snapshot_body(make_state(12_000_000)),
        headers={**AUTH, "Content-Type": "application/json", "X-Reconcile-Lock-Id": lock_id},
    )
    assert conn.getresponse().status == 200
    conn.close()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    try:
        sock.sendall(request("GET", "/api/sync/state", headers=AUTH))  # and never read
        started = time.monotonic()
        while server.connection_count and time.monotonic() - started < 5:
            time.sleep(0.05)
        assert server.connection_count == 0
        assert time.monotonic() - started < 3
    finally:
        sock.close()


def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(
    make_server: ServerFactory,
) -> None:
    server = make_server(limits=Limits(idle_timeout_s=0.4))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request("GET", "/api/peer/health", close=False))
        started = time.monotonic()
        raw = read_until_close(sock, 5)
    elapsed = time.monotonic() - started
    ((status, headers, _),) = split_responses(raw)
    assert status == 200
    assert "close" not in headers.get("connection", "")
    assert 0.3 < elapsed < 2.0


def test_idle_timeout_is_advertised_in_keep_alive(server: PeerSyncServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request("GET", "/api/peer/health", close=False))
        sock.sendall(request("GET", "/api/peer/health", close=True))
        raw = read_until_close(sock, 5)
    first, second = split_responses(raw)
    assert first[1]["keep-alive"] == "timeout=5"
    assert second[1]["connection"] == "close"


def test_connection_closes_after_max_requests(make_server: ServerFactory) -> None:
    server = make_server(limits=Limits(max_requests_per_connection=3))
    keep = request("GET", "/api/peer/health", close=False)
    raw = raw_exchange(server.port, keep * 5)
    responses = split_responses(raw)
    assert [r[0] for r in responses] == [200, 200, 200]
    assert responses[2][1]["connection"] == "close"


def test_content_length_over_the_body_limit_gets_413_before_the_body(
    server: PeerSyncServer,
) -> None:
    head = (
        "POST /api/sync/reconcile-lock HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {AUTH['Authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {16 * 1024 + 1}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head)  # and no body at all
        raw = read_until_close(sock, 5)
    body = _assert_own_error(raw, 413, "body_too_large")
    assert body["limitBytes"] == 16 * 1024


def test_peer_health_drops_a_small_body_and_refuses_a_large_one_like_any_request(
    server: PeerSyncServer,
) -> None:
    """docs/protocol.md: health answers 200 whatever body of up to 16 KiB it
    carries (read and dropped, the connection kept); past that the size
    check comes first, as for every request."""
    small = b"x" * (16 * 1024)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        head = b"GET /api/peer/health HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
        sock.sendall(head % len(small) + small + request("GET", "/api/peer/health"))
        raw = b""
        while raw.count(b"HTTP/1.1 200 ") < 2 or not raw.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, raw
            raw += chunk
    assert [status for status, _, _ in split_responses(raw)] == [200, 200]
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head % (len(small) + 1))  # and no body at all
        raw = read_until_close(sock, 5)
    assert _assert_own_error(raw, 413, "body_too_large")["limitBytes"] == 16 * 1024


def test_snapshot_content_length_over_the_snapshot_limit_gets_413(
    make_server: ServerFactory,
) -> None:
    server = make_server(max_snapshot_bytes=1000)
    head = (
        "PUT /api/sync/state HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {AUTH['Authorization']}\r\nX-Reconcile-Lock-Id: {'0' * 32}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1001\r\n\r\n"
    ).encode()
    raw = raw_exchange(server.port, head)
    body = _assert_own_error(raw, 413, "body_too_large")
    assert body["limitBytes"] == 1000


def test_chunked_body_passing_the_limit_gets_413(server: PeerSyncServer) -> None:
    head = (
        "POST /api/sync/reconcile-lock HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {AUTH['Authorization']}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"1000\r\n" + b" " * 4096 + b"\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head)
        for _ in range(5):  # 20 KiB > 16 KiB
            try:
                sock.sendall(chunk)
            except OSError:
                break
        raw = read_until_close(sock, 5)
    _assert_own_error(raw, 413, "body_too_large")


def test_content_length_with_transfer_encoding_gets_400(server: PeerSyncServer) -> None:
    raw = raw_exchange(
        server.port,
        b"POST /api/sync/reconcile-lock HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    _assert_own_error(raw, 400, "bad_request")


def test_transfer_encoding_on_http_1_0_gets_400(server: PeerSyncServer) -> None:
    raw = raw_exchange(
        server.port,
        b"POST /api/sync/reconcile-lock HTTP/1.0\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    _assert_own_error(raw, 400, "bad_request")


def test_http_version_other_than_1_0_or_1_1_gets_505(server: PeerSyncServer) -> None:
    raw = raw_exchange(server.port, b"GET /api/peer/health HTTP/2.0\r\nHost: x\r\n\r\n")
    _assert_own_error(raw, 505, "http_version_not_supported")


def test_absolute_form_target_gets_400(server: PeerSyncServer) -> None:
    raw = raw_exchange(
        server.port, b"GET http://127.0.0.1/api/peer/health HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    _assert_own_error(raw, 400, "bad_request")


def test_malformed_request_line_gets_400(server: PeerSyncServer) -> None:
    raw = raw_exchange(server.port, b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n")
    _assert_own_error(raw, 400, "bad_request")


def test_http_1_0_request_is_served_and_closed(server: PeerSyncServer) -> None:
    raw = raw_exchange(server.port, b"GET /api/peer/health HTTP/1.0\r\n\r\n")
    ((status, _, body),) = split_responses(raw)
    assert status == 200 and b'"status"' in body


def _expect_head(auth: bool, length: int = 20) -> bytes:
    lines = [
        "POST /api/sync/reconcile-lock HTTP/1.1",
        "Host: x",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        "Expect: 100-continue",
    ]
    if auth:
        lines.append(f"Authorization: {AUTH['Authorization']}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_expect_100_continue_is_answered_after_auth_passed(server: PeerSyncServer) -> None:
    body = b'{"owner":"x-owner" }'
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(_expect_head(auth=True, length=len(body)))
        interim = sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(body)
        sock.settimeout(5)
        raw = b""
        while b"\r\n\r\n" not in raw or len(split_responses(raw)[0][2]) == 0:
            raw += sock.recv(65536)
    status, _, grant = split_responses(raw)[0]
    assert status == 200
    assert b'"owner":"x-owner"' in grant


def test_expect_100_continue_is_not_answered_without_auth(server: PeerSyncServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(_expect_head(auth=False))
        raw = read_until_close(sock, 5)
    assert b" 100 " not in raw.split(b"\r\n", 1)[0]
    status, headers, body = one_response(raw)
    assert status == 401 and body["code"] == "unauthorized"
    assert headers["www-authenticate"].startswith("Bearer")


def test_expect_100_continue_is_not_answered_when_too_large(server: PeerSyncServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(_expect_head(auth=True, length=1 << 20))
        raw = read_until_close(sock, 5)
    _assert_own_error(raw, 413, "body_too_large")


def test_pipelined_requests_get_ordered_answers(server: PeerSyncServer) -> None:
    pipeline = b"".join(
        [
            request("GET", "/api/peer/health", close=False),
            request("GET", "/api/sync/health", headers=AUTH, close=False),
            request("GET", "/api/nowhere", close=False),
            request("GET", "/api/sync/reconcile-lock", headers=AUTH, close=False),
            request("DELETE", "/api/sync/health", headers=AUTH, close=True),
        ]
    )
    raw = raw_exchange(server.port, pipeline)
    responses = split_responses(raw)
    assert [r[0] for r in responses] == [200, 200, 404, 200, 405]
    assert b'"engineLabel"' in responses[0][2]
    assert b'"clockSync"' in responses[1][2]
    assert b'"held"' in responses[3][2]


def test_accept_loop_answers_503_when_every_slot_is_busy(make_server: ServerFactory) -> None:
    server = make_server(max_connections=2)
    busy = []
    stalled = request(
        "PUT",
        "/api/sync/state",
        headers={**AUTH, "Content-Type": "application/json", "Content-Length": "1000000"},
        close=False,
    )
    try:
        for _ in range(2):  # two stalled uploads keep both slots busy (a half-sent
            # head holds none, and peer health is answered past the cap: see
            # test_health_past_the_cap.py)
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(stalled + b'{"state":')
            busy.append(sock)
        time.sleep(0.2)
        raw = raw_exchange(server.port, request("GET", "/api/sync/health", headers=AUTH))
        body = _assert_own_error(raw, 503, "overloaded")
        assert body["error"]
        assert one_response(raw)[1]["retry-after"] == "1"
    finally:
        for sock in busy:
            sock.close()


def test_idle_connections_hold_no_worker_so_the_busy_cap_still_serves(
    make_server: ServerFactory,
) -> None:
    server = make_server(max_connections=2)
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(20)]
    try:
        for _ in range(3):
            status, _, body = one_response(raw_exchange(server.port, HEALTH))
            assert status == 200 and body["status"] == "ok"
        deadline = time.monotonic() + 2
        while server.busy_count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.busy_count == 0  # the 20 idle ones hold no worker
    finally:
        for sock in idle:
            sock.close()


def test_oldest_idle_connection_is_closed_first_past_the_idle_cap(
    make_server: ServerFactory,
) -> None:
    server = make_server(max_idle_connections=3)
    idle = []
    try:
        for _ in range(4):
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
            time.sleep(0.05)
        assert read_until_close(idle[0], 2) == b""  # the oldest went first
        for sock in idle[1:]:
            sock.settimeout(0.2)
            with contextlib.suppress(TimeoutError):  # still open, as it should be
                assert sock.recv(1) != b""
        status, _, _ = one_response(raw_exchange(server.port, HEALTH))
        assert status == 200
    finally:
        for sock in idle:
            sock.close()


def test_each_answer_leaves_in_one_write_with_nodelay(server: PeerSyncServer) -> None:
    """A keep-alive answer written in two sends would wait ~40 ms for a delayed ACK."""
    keep = request("GET", "/api/peer/health", close=False)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for _ in range(30):
            started = time.perf_counter()
            sock.sendall(keep)
            raw = b""
            while not raw.endswith(b"}"):
                raw += sock.recv(65536)
            times.append(time.perf_counter() - started)
    times.sort()
    assert times[len(times) // 2] < 0.02, times


def test_restarted_server_gets_its_port_back_at_once(make_server: ServerFactory) -> None:
    first = make_server()
    port = first.port
    for _ in range(3):  # leave connections in TIME_WAIT on the server side
        raw_exchange(port, HEALTH)
    first.stop()
    second = make_server(port=port)
    assert second.port == port
    status, _, _ = one_response(raw_exchange(port, HEALTH))
    assert status == 200


def test_head_request_gets_headers_without_a_body_and_framing_holds(
    server: PeerSyncServer,
) -> None:
    pipeline = request("HEAD", "/api/peer/health", close=False) + HEALTH
    raw = raw_exchange(server.port, pipeline)
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 ")
    assert b"content-length: " in head.lower()
    assert rest.startswith(b"HTTP/1.1 200 ")  # no body bytes between the two answers


def _put_state_head(content_type: str, length: int) -> bytes:
    return (
        "PUT /api/sync/state HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {AUTH['Authorization']}\r\nX-Reconcile-Lock-Id: {'0' * 32}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_wrong_media_type_is_refused_before_the_body_is_read(server: PeerSyncServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(_put_state_head("text/plain", 10_000_000))  # and no body
        raw = read_until_close(sock, 5)
    status, _, body = one_response(raw)
    assert (status, body["code"]) == (415, "unsupported_media_type")


def test_size_is_checked_before_media_type_as_the_core_does(make_server: ServerFactory) -> None:
    server = make_server(max_snapshot_bytes=1000)
    raw = raw_exchange(server.port, _put_state_head("text/plain", 1001))
    _assert_own_error(raw, 413, "body_too_large")


def test_unauthenticated_upload_is_refused_before_the_body_is_read(
    server: PeerSyncServer,
) -> None:
    head = _put_state_head("application/json", 10_000_000).replace(
        AUTH["Authorization"].encode(), b"Bearer wrong"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head)
        raw = read_until_close(sock, 5)
    status, _, body = one_response(raw)
    assert (status, body["code"]) == (401, "unauthorized")


def test_every_status_line_carries_its_reason_phrase(server: PeerSyncServer) -> None:
    """The core's answers as well as the server's own (``409 Conflict``)."""
    ok = raw_exchange(server.port, HEALTH)
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n"), ok[:40]
    lock = request("POST", "/api/sync/reconcile-lock", headers=AUTH)
    raw_exchange(server.port, lock)
    held = raw_exchange(server.port, lock)
    assert held.startswith(b"HTTP/1.1 409 Conflict\r\n"), held[:40]
    refused = raw_exchange(server.port, request("GET", "/api/sync/health"))
    assert refused.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), refused[:40]


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_the_listen_queue_is_as_long_as_the_kernel_allows(server: PeerSyncServer) -> None:
    """A burst of connections past a short listen queue (it was 256) had
    SYNs dropped, and a dropped probe is retried by the kernel a whole
    second later: a missed deadline (found by a tester, 1,851 overflows)."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{server.port}"], capture_output=True, text=True, timeout=10
    ).stdout.split()
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert int(out[2]) == min(socket.SOMAXCONN, somaxconn), out  # Send-Q: the backlog
