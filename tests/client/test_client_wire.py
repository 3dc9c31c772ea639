"""The client's wire rules, against raw-socket servers that misbehave on purpose."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
from fake_servers import GRANT, HEALTH, TOKEN, RawServer, answer, read_request

from peersync_server.client import (
    MAX_INTERIM_RESPONSES,
    BodyTooLarge,
    ConnectionClosed,
    ConnectionRefused,
    DeadlineExceeded,
    InvalidResponse,
    LockNotFound,
    PeerSyncClient,
    TransportError,
)


def _serve_then_close_on_next(server: RawServer, conn: socket.socket, index: int) -> None:
    """Connection 0 answers one request, then reads the next and hangs up unanswered
    (the server's idle timeout firing just as the request arrived). Later
    connections answer every request."""
    while True:
        request = server.read(conn)
        if not request:
            return
        if index == 0 and len(server.requests) > 1:
            return
        body = GRANT if request.startswith(b"POST") else HEALTH
        conn.sendall(answer(200, body))


def test_keep_alive_reuses_one_connection(raw_server) -> None:
    server = raw_server(
        lambda s, conn, i: [
            conn.sendall(answer(200, HEALTH)) for _ in iter(lambda: s.read(conn), b"")
        ]
    )
    with PeerSyncClient(server.url) as client:
        for _ in range(5):
            assert client.peer_health().engine_label == "b"
    assert server.accepted == 1
    assert len(server.requests) == 5


def test_get_is_resent_once_when_kept_alive_connection_was_closed(raw_server) -> None:
    server = raw_server(_serve_then_close_on_next)
    with PeerSyncClient(server.url) as client:
        client.peer_health()
        assert client.peer_health().role.value == "leader"
    assert server.accepted == 2
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("method", "call"),
    [
        ("POST /api/sync/reconcile-lock", lambda c: c.acquire_lock(owner="x")),
        ("POST /api/peer/force-leader", lambda c: c.force_leader(reason="r")),
    ],
)
def test_post_is_never_resent_on_a_closed_kept_alive_connection(raw_server, method, call) -> None:
    server = raw_server(_serve_then_close_on_next)
    with PeerSyncClient(server.url, api_token=TOKEN, control_plane_secret="s") as client:
        client.peer_health()
        with pytest.raises(ConnectionClosed, match="may or may not have taken effect"):
            call(client)
        time.sleep(0.05)
        assert server.accepted == 1
        assert len(server.requests) == 2
        assert server.requests[1].startswith(method.encode())
        # The client is still usable afterwards, on a new connection.
        assert client.peer_health().epoch == 2
    assert server.accepted == 2


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.peer_health(),
        lambda c: c.lock_status(),
        lambda c: c.release_lock("ab" * 16),
        lambda c: c.refresh_lock("ab" * 16),
        lambda c: c.apply_state(b"{}", "ab" * 16),
    ],
    ids=["GET health", "GET lock", "DELETE lock", "PUT lock", "PUT state"],
)
def test_idempotent_call_resent_only_once(raw_server, call) -> None:
    """A fresh connection that also closes unanswered is not tried a third time."""

    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read(conn)
        if index == 0:
            conn.sendall(answer(200, HEALTH))
            server.read(conn)

    server = raw_server(serve)
    with PeerSyncClient(server.url, api_token=TOKEN) as client:
        client.peer_health()
        with pytest.raises(ConnectionClosed):
            call(client)
    time.sleep(0.05)
    assert server.accepted == 2
    assert len(server.requests) == 3


def test_server_closing_idle_connection_is_noticed_before_sending(raw_server) -> None:
    """Even a POST goes through when the close happened before it was sent."""

    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        request = server.read(conn)
        conn.sendall(answer(200, GRANT if request.startswith(b"POST") else HEALTH))
        # then close at once: an idle timeout of zero

    server = raw_server(serve)
    with PeerSyncClient(server.url, api_token=TOKEN) as client:
        client.peer_health()
        time.sleep(0.1)
        assert client.acquire_lock().fencing_token == 7
    assert server.accepted == 2
    assert len(server.requests) == 2


def test_connection_close_answer_is_not_reused(raw_server) -> None:
    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read(conn)
        conn.sendall(answer(200, HEALTH, extra=b"Connection: close\r\n"))

    server = raw_server(serve)
    with PeerSyncClient(server.url) as client:
        client.peer_health()
        client.peer_health()
    assert server.accepted == 2


def test_answer_without_length_framing_is_rejected(raw_server) -> None:
    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
        conn.sendall(b'{"status": "ok"}')

    server = raw_server(serve)
    with PeerSyncClient(server.url) as client, pytest.raises(InvalidResponse, match="framing"):
        client.peer_health()


def test_http_10_answer_read_until_close_is_rejected(raw_server) -> None:
    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read(conn)
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + b"{}")

    server = raw_server(serve)
    with PeerSyncClient(server.url) as client, pytest.raises(InvalidResponse, match="framing"):
        client.peer_health()


def _interim_server(count: int):
    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read(conn)
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" * count + answer(200, HEALTH))

    return serve


def test_more_than_five_interim_answers_are_rejected(raw_server) -> None:
    server = raw_server(_interim_server(MAX_INTERIM_RESPONSES + 1))
    with PeerSyncClient(server.url) as client, pytest.raises(InvalidResponse, match="interim"):
        client.peer_health()


def test_five_interim_answers_are_accepted(raw_server) -> None:
    server = raw_server(_interim_server(MAX_INTERIM_RESPONSES))
    with PeerSyncClient(server.url) as client:
        assert client.peer_health().uptime_ms == 5


def test_body_over_limit_by_content_length_is_rejected_before_reading(raw_server) -> None:
    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n")  # and no body

    server = raw_server(serve)
    started = time.monotonic()
    with (
        PeerSyncClient(server.url, max_response_bytes=1000) as client,
        pytest.raises(InvalidResponse, match="1000-byte limit"),
    ):
        client.peer_health(timeout=5)
    assert time.monotonic() - started < 1


def test_chunked_body_over_limit_is_rejected(raw_server) -> None:
    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(5):
            conn.sendall(b"200\r\n" + b" " * 0x200 + b"\r\n")
        conn.sendall(b"0\r\n\r\n")

    server = raw_server(serve)
    with (
        PeerSyncClient(server.url, max_response_bytes=2048) as client,
        pytest.raises(InvalidResponse, match="2048-byte limit"),
    ):
        client.peer_health()


def test_chunked_answer_within_limit_is_read(raw_server) -> None:
    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read(conn)
        body = answer(200, HEALTH).partition(b"\r\n\r\n")[2]
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))

    server = raw_server(serve)
    with PeerSyncClient(server.url) as client:
        assert client.peer_health().program_source == "cam-1"


def test_state_answer_has_its_own_larger_limit(raw_server) -> None:
    state = {"blob": "x" * 5000}

    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        while server.read(conn):
            conn.sendall(answer(200, state))

    server = raw_server(serve)
    with PeerSyncClient(
        server.url, api_token=TOKEN, max_response_bytes=1000, max_snapshot_bytes=6000
    ) as client:
        assert len(client.get_state_bytes()) > 5000
        with pytest.raises(InvalidResponse, match="1000-byte limit"):
            client.sync_health()


def test_total_deadline_fires_on_a_server_trickling_the_body(raw_server) -> None:
    """Each byte arrives well within any per-read timeout; the call still ends on time."""
    stop = threading.Event()

    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{")
        while not stop.wait(0.02):
            conn.sendall(b" ")

    server = raw_server(serve)
    with PeerSyncClient(server.url, timeout=0.4) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            client.peer_health()
        elapsed = time.monotonic() - started
        stop.set()
    assert 0.39 <= elapsed < 0.8


def test_per_call_timeout_overrides_the_default(raw_server) -> None:
    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read(conn)
        time.sleep(0.5)

    server = raw_server(serve)
    with PeerSyncClient(server.url, timeout=30) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            client.peer_health(timeout=0.15)
        assert time.monotonic() - started < 0.3


def test_connection_refused_is_its_own_error() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    client = PeerSyncClient(f"http://127.0.0.1:{port}")
    with pytest.raises(ConnectionRefused) as caught:
        client.peer_health()
    assert not isinstance(caught.value, DeadlineExceeded)
    assert isinstance(caught.value, TransportError)


def test_connect_that_never_completes_is_a_missed_deadline() -> None:
    """A listener whose backlog is full drops our SYN: the connect hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
        time.sleep(0.05)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with PeerSyncClient(url, connect_timeout=0.2, timeout=5) as client:
            started = time.monotonic()
            with pytest.raises(DeadlineExceeded, match="connecting"):
                client.peer_health()
            assert time.monotonic() - started < 0.5
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_server_that_answers_early_and_closes_mid_upload_is_heard(raw_server) -> None:
    """A 413 sent before the body was read reaches the caller as BodyTooLarge."""

    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        conn.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        conn.sendall(
            answer(
                413, {"error": "too big", "code": "body_too_large"}, extra=b"Connection: close\r\n"
            )
        )
        conn.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and conn.recv(1 << 20):
            pass

    server = raw_server(serve)
    client = PeerSyncClient(server.url, api_token=TOKEN)
    with pytest.raises(BodyTooLarge) as caught:
        client.apply_state(b"x" * (8 << 20), "ab" * 16)
    assert caught.value.status == 413


def test_request_is_one_segment_on_a_nodelay_socket(raw_server) -> None:
    heads: list[bytes] = []

    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        conn.settimeout(5)
        heads.append(conn.recv(65536))  # a single recv gets the whole request
        conn.sendall(answer(200, GRANT))

    server = raw_server(serve)
    with PeerSyncClient(server.url, api_token=TOKEN) as client:
        client.acquire_lock(owner="o" * 100, ttl_ms=5000)
        sock = client._http._sock.sock  # the one place a test looks inside
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    head, _, body = heads[0].partition(b"\r\n\r\n")
    assert body == b'{"owner":"' + b"o" * 100 + b'","ttlMs":5000}'
    assert b"content-length: %d" % len(body) in head.lower()


def test_no_token_secret_or_lock_id_in_logs_or_errors(raw_server, caplog) -> None:
    lock_id = "0123456789abcdef0123456789abcdef"

    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        while request := server.read(conn):
            if request.startswith(b"DELETE"):
                return  # hang up unanswered, twice: a transport error
            conn.sendall(answer(404, {"error": "no such lock", "code": "lock_not_found"}))

    server = raw_server(serve)
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    with PeerSyncClient(server.url, api_token=TOKEN, control_plane_secret="s3cr3t") as client:
        for call in (
            lambda: client.refresh_lock(lock_id),
            lambda: client.apply_state(b"{}", lock_id),
            lambda: client.release_lock(lock_id),
        ):
            with pytest.raises((LockNotFound, TransportError)) as caught:
                call()
            errors.append(caught.value)
        text = repr(client) + "".join(str(e) + repr(e) for e in errors)
    text += "\n".join(r.getMessage() for r in caplog.records)
    assert "<redacted>" in text
    for secret in (lock_id, TOKEN, "s3cr3t"):
        assert secret not in text
    assert any(b"Bearer " + TOKEN.encode() in r for r in server.requests)


def test_bad_secret_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError) as caught:
        PeerSyncClient("http://127.0.0.1:1", api_token="abc\r\nX-Evil: 1")
    assert "Evil" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:1",
        "127.0.0.1:8470",
        "http://",
        "http://h:99999",
        "http://u:p@h:1",
        "http://h:1/?q",
    ],
)
def test_base_url_must_be_plain_http(url) -> None:
    with pytest.raises(ValueError):
        PeerSyncClient(url)


def test_base_url_path_prefix_is_kept(raw_server) -> None:
    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read(conn)
        conn.sendall(answer(200, HEALTH))

    server = raw_server(serve)
    with PeerSyncClient(server.url + "/engine-a/") as client:
        client.peer_health()
    assert server.requests[0].startswith(b"GET /engine-a/api/peer/health HTTP/1.1")


def test_read_request_helper_sees_closed_connection() -> None:
    left, right = socket.socketpair()
    right.close()
    assert read_request(left) == b""
    left.close()


def test_answer_that_is_not_http_is_invalid(raw_server) -> None:
    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read(conn)
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

    server = raw_server(serve)
    with PeerSyncClient(server.url) as client, pytest.raises(InvalidResponse, match=r"HTTP/1\.1"):
        client.peer_health()


def test_reset_mid_answer_is_connection_closed(raw_server) -> None:
    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.05)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    server = raw_server(serve)
    with PeerSyncClient(server.url) as client, pytest.raises(ConnectionClosed):
        client.peer_health()


def test_upload_to_a_server_that_never_reads_hits_the_deadline(raw_server) -> None:
    stop = threading.Event()

    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        stop.wait(5)

    server = raw_server(serve)
    client = PeerSyncClient(server.url, api_token=TOKEN)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="sending"):
        client.apply_state(b" " * (64 << 20), "ab" * 16, timeout=0.3)
    stop.set()
    assert time.monotonic() - started < 1.0
    client.close()


def test_waiting_for_a_shared_client_counts_against_the_deadline(raw_server) -> None:
    release = threading.Event()

    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read(conn)
        release.wait(5)
        conn.sendall(answer(200, HEALTH))

    server = raw_server(serve)
    with PeerSyncClient(server.url) as client:
        slow = threading.Thread(target=client.peer_health)
        slow.start()
        time.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="another call"):
            client.peer_health(timeout=0.1)
        assert time.monotonic() - started < 0.3
        release.set()
        slow.join()


def test_answer_sent_one_byte_at_a_time_reads_the_same(raw_server) -> None:
    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while server.read(conn):
            for byte in answer(200, HEALTH, extra=b"X-Pad: 1\r\n"):
                conn.sendall(bytes([byte]))

    server = raw_server(serve)
    with PeerSyncClient(server.url) as client:
        slow = client.peer_health()
        assert slow == client.peer_health()
        assert slow.engine_label == "b"
    assert server.accepted == 1


def test_trailing_junk_after_an_answer_retires_the_connection(raw_server) -> None:
    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        while server.read(conn):
            conn.sendall(answer(200, HEALTH) + b"JUNK")

    server = raw_server(serve)
    with PeerSyncClient(server.url) as client:
        first = client.peer_health()
        time.sleep(0.05)
        assert client.peer_health() == first
    assert server.accepted == 2
