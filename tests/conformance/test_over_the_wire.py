"""One over-the-wire suite for every server on the core (the threaded
``peersync_server`` and docs/examples/asyncio_server.py): each endpoint and
its main error codes through ``http.client`` and real loopback sockets."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import socket
import time
from typing import Any

from wire_servers import HEAD_TIMEOUT_S, SECRET, TOKEN, StartServer

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CP = {"X-Control-Plane-Secret": SECRET}
JSON = {"Content-Type": "application/json"}
Body = bytes | dict[str, Any] | None


def call(
    port: int, method: str, path: str, body: Body = None, headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, dict[str, Any], http.client.HTTPResponse]:  # fmt: skip
    """One request; checks the headers every response must have (contract 2)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    all_headers = dict(headers or {})
    if raw is not None and "Content-Type" not in all_headers:
        all_headers.update(JSON)
    try:
        conn.request(method, path, body=raw, headers=all_headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        if own:
            conn.close()
    assert response.getheader("Content-Type") == "application/json"
    assert response.getheader("Cache-Control") == "no-store"
    assert int(response.getheader("Content-Length", "-1")) == len(data)
    obj = json.loads(data)
    assert isinstance(obj, dict)
    return response.status, obj, response


def expect_error(port: int, status: int, code: str, *args: Any, **kw: Any) -> dict[str, Any]:
    got, body, _ = call(port, *args, **kw)
    assert (got, body.get("code")) == (status, code), body
    assert isinstance(body["error"], str) and body["error"]
    return body


def acquire(port: int, **fields: Any) -> dict[str, Any]:
    status, grant, _ = call(port, "POST", "/api/sync/reconcile-lock", fields or None, AUTH)
    assert status == 200, grant
    return grant


def snapshot_body(state: Any, *, epoch: int, role: str = "leader", checksum: str = "") -> bytes:
    canon = json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return json.dumps(
        {
            "formatVersion": 1, "engineLabel": "b", "role": role, "epoch": epoch,
            "capturedAtUs": 1_713_200_000_000_000, "lastCommandSeq": 9, "lastExecutedSeq": 8,
            "programSource": "cam-9", "previewSource": "cam-3", "state": state,
            "checksum": checksum or "sha256:" + hashlib.sha256(canon).hexdigest(),
        }
    ).encode()  # fmt: skip


# -- 1 peer health ------------------------------------------------------------------


def test_peer_health_is_open_and_has_the_contract_shape(start: StartServer) -> None:
    port = start()
    status, body, _ = call(port, "GET", "/api/peer/health", headers={"Authorization": "x"})
    assert status == 200
    assert set(body) == {"status", "uptimeMs", "programSource", "lastCommandSeq",
                         "engineLabel", "epoch", "role"}  # fmt: skip
    assert (body["status"], body["engineLabel"], body["role"], body["epoch"]) == (
        "ok", "a", "follower", 0)  # fmt: skip


def test_peer_health_stays_ok_past_the_stall_limit_while_the_host_beats(
    start: StartServer,
) -> None:
    port = start()
    time.sleep(0.7)  # longer than the 500 ms stall limit
    assert call(port, "GET", "/api/peer/health")[1]["status"] == "ok"


# -- 2 force leader --------------------------------------------------------------------


def test_force_leader_checks_secret_then_body_then_role(start: StartServer) -> None:
    port = start()
    path = "/api/peer/force-leader"
    expect_error(port, 401, "unauthorized", "POST", path)
    expect_error(port, 401, "unauthorized", "POST", path, None, {**AUTH})
    expect_error(port, 401, "unauthorized", "POST", path, None, {"X-Control-Plane-Secret": "no"})
    expect_error(port, 400, "invalid_request", "POST", path, {"reason": "x" * 257}, CP)
    expect_error(port, 400, "invalid_json", "POST", path, b"{nope", CP)
    status, body, _ = call(port, "POST", path, {"reason": "drill"}, CP)
    assert (status, body) == (200, {"status": "leader", "engineLabel": "a", "epoch": 1,
                                    "previousRole": "follower"})  # fmt: skip
    again = expect_error(port, 409, "already_leader", "POST", path, None, CP)
    assert again["epoch"] == 1
    health = call(port, "GET", "/api/peer/health")[1]
    assert (health["role"], health["epoch"]) == ("leader", 1)


def test_force_leader_without_a_configured_secret_is_501(start: StartServer) -> None:
    port = start(secret=None)
    expect_error(port, 501, "not_configured", "POST", "/api/peer/force-leader", None, CP)


# -- 3 sync health ------------------------------------------------------------------------


def test_sync_health_needs_the_bearer_token_and_has_the_contract_shape(
    start: StartServer,
) -> None:
    port = start()
    status, body, response = call(port, "GET", "/api/sync/health")
    assert (status, body["code"]) == (401, "unauthorized")
    assert response.getheader("WWW-Authenticate") == 'Bearer realm="peersync"'
    expect_error(port, 401, "unauthorized", "GET", "/api/sync/health", None,
                 {"Authorization": "Bearer wrong"})  # fmt: skip
    status, body, _ = call(port, "GET", "/api/sync/health", None, AUTH)
    assert status == 200
    assert body["clockSync"]["mode"] in {"ptp", "ntp", "free-run", "unknown"}
    assert {"lastCommandSeq", "lastExecutedSeq", "lastExecutedErr", "lateCommands",
            "uptimeMs", "lastPongSentUs"} <= set(body)  # fmt: skip


# -- 4, 5 state snapshots ------------------------------------------------------------------


def test_get_state_is_a_checksummed_snapshot_of_this_engine(start: StartServer) -> None:
    port = start(role="leader")
    expect_error(port, 401, "unauthorized", "GET", "/api/sync/state")
    status, snap, _ = call(port, "GET", "/api/sync/state", None, AUTH)
    assert status == 200
    assert (snap["formatVersion"], snap["engineLabel"], snap["role"]) == (1, "a", "leader")
    canon = json.dumps(snap["state"], sort_keys=True, separators=(",", ":")).encode()
    assert snap["checksum"] == "sha256:" + hashlib.sha256(canon).hexdigest()


def test_put_state_checks_the_lock_then_json_then_snapshot_then_epoch(
    start: StartServer,
) -> None:
    port = start()
    call(port, "POST", "/api/peer/force-leader", None, CP)  # epoch 1
    put = ("PUT", "/api/sync/state")
    good = snapshot_body({"scene": "news"}, epoch=2)
    expect_error(port, 401, "unauthorized", *put, good)
    expect_error(port, 409, "lock_not_held", *put, good, AUTH)
    lock = {**AUTH, "X-Reconcile-Lock-Id": "0" * 32}
    expect_error(port, 409, "lock_not_held", *put, good, lock)
    lock["X-Reconcile-Lock-Id"] = acquire(port)["lockId"]
    expect_error(port, 415, "unsupported_media_type", *put, good,
                 {**lock, "Content-Type": "text/plain"})  # fmt: skip
    expect_error(port, 400, "invalid_json", *put, b'{"formatVersion": 1,', lock)
    bad_sum = snapshot_body({"scene": "news"}, epoch=2, checksum="sha256:" + "0" * 64)
    expect_error(port, 400, "invalid_snapshot", *put, bad_sum, lock)
    expect_error(port, 409, "stale_snapshot", *put, snapshot_body({}, epoch=0), lock)
    assert call(port, "GET", "/api/peer/health")[1]["role"] == "leader"  # nothing changed
    status, result, _ = call(port, *put, good, lock)
    assert (status, result) == (200, {"applied": True, "epoch": 2, "role": "follower",
                                      "lastCommandSeq": 9})  # fmt: skip
    status, snap, _ = call(port, "GET", "/api/sync/state", None, AUTH)
    assert (snap["state"], snap["epoch"], snap["role"]) == ({"scene": "news"}, 2, "follower")
    assert (snap["programSource"], snap["previewSource"]) == ("cam-9", "cam-3")


# -- 6-9 the reconcile lock -------------------------------------------------------------


def test_lock_acquire_is_exclusive_and_validates_its_fields(start: StartServer) -> None:
    port = start()
    path = "/api/sync/reconcile-lock"
    expect_error(port, 401, "unauthorized", "POST", path)
    expect_error(port, 400, "invalid_request", "POST", path, {"ttlMs": 999}, AUTH)
    expect_error(port, 400, "invalid_request", "POST", path, {"owner": ""}, AUTH)
    expect_error(port, 400, "invalid_json", "POST", path, b"[1]", AUTH)
    expect_error(port, 415, "unsupported_media_type", "POST", path, b"{}",
                 {**AUTH, "Content-Type": "text/plain"})  # fmt: skip
    grant = acquire(port)
    assert len(grant["lockId"]) == 32 and int(grant["lockId"], 16) >= 0
    assert (grant["owner"], grant["expiresMs"], grant["fencingToken"]) == ("anonymous", 30000, 1)
    held = expect_error(port, 409, "lock_held", "POST", path, {"owner": "anonymous"}, AUTH)
    assert held["owner"] == "anonymous" and held["fencingToken"] == 1
    assert 0 < held["remainingMs"] <= 30000
    assert grant["lockId"] not in json.dumps(held)


def test_lock_refresh_release_and_status_by_id(start: StartServer) -> None:
    port = start()
    grant = acquire(port, owner="rec", ttlMs=5000)
    by_id = f"/api/sync/reconcile-lock/{grant['lockId']}"
    status, refreshed, _ = call(port, "PUT", by_id, {"ttlMs": 9000}, AUTH)
    assert status == 200
    assert (refreshed["lockId"], refreshed["fencingToken"], refreshed["expiresMs"]) == (
        grant["lockId"], 1, 9000)  # fmt: skip
    expect_error(port, 400, "invalid_request", "PUT", by_id, {"ttlMs": 300001}, AUTH)
    expect_error(port, 404, "lock_not_found", "PUT", "/api/sync/reconcile-lock/" + "f" * 32,
                 None, AUTH)  # fmt: skip
    expect_error(port, 404, "lock_not_found", "DELETE", "/api/sync/reconcile-lock/xyz", None, AUTH)
    status, held, _ = call(port, "GET", "/api/sync/reconcile-lock", None, AUTH)
    assert (status, held["held"], held["owner"], held["ttlMs"]) == (200, True, "rec", 9000)
    assert grant["lockId"] not in json.dumps(held)
    assert call(port, "DELETE", by_id, None, AUTH)[:2] == (200, {"released": True})
    expect_error(port, 404, "lock_not_found", "DELETE", by_id, None, AUTH)
    expect_error(port, 404, "lock_not_found", "PUT", by_id, None, AUTH)
    status, free, _ = call(port, "GET", "/api/sync/reconcile-lock", None, AUTH)
    assert (status, free) == (200, {"held": False, "lastFencingToken": 1})
    expect_error(port, 401, "unauthorized", "GET", "/api/sync/reconcile-lock")
    expect_error(port, 401, "unauthorized", "DELETE", by_id)


def test_a_lock_is_free_at_its_ttl_and_never_revived(start: StartServer) -> None:
    port = start()
    grant = acquire(port, ttlMs=1000)
    time.sleep(1.05)
    status, free, _ = call(port, "GET", "/api/sync/reconcile-lock", None, AUTH)
    assert (status, free["held"]) == (200, False)
    by_id = f"/api/sync/reconcile-lock/{grant['lockId']}"
    expect_error(port, 404, "lock_not_found", "PUT", by_id, None, AUTH)
    assert acquire(port)["fencingToken"] == 2


# -- transport: routing, sizes, keep-alive, framing ------------------------------------------


def test_unknown_path_is_404_and_wrong_method_is_405_with_allow(start: StartServer) -> None:
    port = start()
    expect_error(port, 404, "not_found", "GET", "/api/nope", None, AUTH)
    body = expect_error(port, 405, "method_not_allowed", "PATCH", "/api/sync/state", None, AUTH)
    assert body
    _, _, response = call(port, "POST", "/api/peer/health")
    assert response.status == 405
    assert response.getheader("Allow") == "GET"


def test_a_small_body_over_16_kib_is_413(start: StartServer) -> None:
    port = start()
    big = json.dumps({"owner": "x", "pad": "p" * 17_000}).encode()
    expect_error(port, 413, "body_too_large", "POST", "/api/sync/reconcile-lock", big, AUTH)
    assert call(port, "GET", "/api/peer/health")[0] == 200  # still serving


def test_one_keep_alive_connection_serves_many_requests(start: StartServer) -> None:
    port = start()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        grant = None
        for n in range(5):
            assert call(port, "GET", "/api/peer/health", conn=conn)[0] == 200
            expect_error(port, 401, "unauthorized", "GET", "/api/sync/health", conn=conn)
            if n == 0:
                status, grant, _ = call(port, "POST", "/api/sync/reconcile-lock", None, AUTH,
                                        conn=conn)  # fmt: skip
                assert status == 200
        assert grant is not None
        path = f"/api/sync/reconcile-lock/{grant['lockId']}"
        assert call(port, "DELETE", path, None, AUTH, conn=conn)[0] == 200
    finally:
        conn.close()


def test_a_head_request_gets_its_405_as_headers_only_and_the_connection_lives_on(
    start: StartServer,
) -> None:
    """HEAD is not among the contract's methods (405 with ``Allow``); the
    answer to a HEAD carries no body, so the client stays in step."""
    port = start()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("HEAD", "/api/peer/health")
        response = conn.getresponse()
        assert response.status == 405 and response.read() == b""
        assert response.getheader("Allow") == "GET"
        assert response.getheader("Content-Type") == "application/json"
        assert call(port, "GET", "/api/peer/health", conn=conn)[0] == 200  # same connection
    finally:
        conn.close()


def test_bytes_that_are_not_http_get_400_and_a_close(start: StartServer) -> None:
    port = start()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"this is not http\r\n\r\n")
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body)["code"] == "bad_request"


# -- answers from the request head alone (raw sockets) -------------------------------
#
# A server must refuse what it can from the head, before it reads a body: a client
# without the token, or one that declares a body over the limit, gets its answer at
# once and the connection closes, without the server reading (or waiting for) a byte
# of the body. Framing the core never sees is refused the same way.

SNAPSHOT_LIMIT = 64 * 1024 * 1024


def exchange_raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` (a head, maybe no body) and read until the server closes."""
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                got = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not got:
                break
            chunks.append(got)
    return b"".join(chunks)


def closing_answer(raw: bytes, status: int, code: str) -> tuple[dict[str, str], dict[str, Any]]:
    """One final answer with the contract's headers, then the close."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no answer before the close or the timeout: {raw[:200]!r}"
    status_line, *lines = head.decode("latin-1").split("\r\n")
    assert status_line.startswith(f"HTTP/1.1 {status} "), status_line
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    obj = json.loads(body)
    assert obj["code"] == code and isinstance(obj["error"], str) and obj["error"]
    return headers, obj


def put_state_head(length: int, *, token: str | None, content_type: str = "application/json",
                   extra: str = "") -> bytes:  # fmt: skip
    auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
    return (
        f"PUT /api/sync/state HTTP/1.1\r\nHost: x\r\n{auth}X-Reconcile-Lock-Id: {'0' * 32}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


def test_a_64_mib_upload_without_the_token_is_401_from_the_head(start: StartServer) -> None:
    port = start()
    for token in (None, "wrong"):
        raw = exchange_raw(port, put_state_head(SNAPSHOT_LIMIT + 1, token=token))  # no body sent
        headers, _ = closing_answer(raw, 401, "unauthorized")
        assert headers["www-authenticate"].startswith("Bearer")


def test_an_upload_over_the_snapshot_limit_is_413_from_the_head(start: StartServer) -> None:
    port = start()
    raw = exchange_raw(port, put_state_head(SNAPSHOT_LIMIT + 1, token=TOKEN))  # no body sent
    _, body = closing_answer(raw, 413, "body_too_large")
    assert body["limitBytes"] == SNAPSHOT_LIMIT
    # The size comes before the media type, as the core orders them ...
    raw = exchange_raw(port, put_state_head(SNAPSHOT_LIMIT + 1, token=TOKEN, content_type="x/y"))
    closing_answer(raw, 413, "body_too_large")
    # ... and a body within the limit but not JSON is 415, still before a byte is read.
    raw = exchange_raw(port, put_state_head(10_000_000, token=TOKEN, content_type="text/plain"))
    closing_answer(raw, 415, "unsupported_media_type")
    assert call(port, "GET", "/api/peer/health")[0] == 200  # still serving


def test_content_length_with_transfer_encoding_is_400(start: StartServer) -> None:
    port = start()
    raw = exchange_raw(
        port,
        b"POST /api/sync/reconcile-lock HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    )
    closing_answer(raw, 400, "bad_request")
    assert call(port, "GET", "/api/sync/reconcile-lock", None, AUTH)[1]["held"] is False


def test_transfer_encoding_on_http_1_0_is_400(start: StartServer) -> None:
    port = start()
    raw = exchange_raw(
        port,
        b"POST /api/sync/reconcile-lock HTTP/1.0\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    closing_answer(raw, 400, "bad_request")


def test_an_http_version_other_than_1_0_or_1_1_is_505(start: StartServer) -> None:
    port = start()
    raw = exchange_raw(port, b"GET /api/peer/health HTTP/2.0\r\nHost: x\r\n\r\n")
    closing_answer(raw, 505, "http_version_not_supported")


def test_an_absolute_form_target_is_400(start: StartServer) -> None:
    port = start()
    raw = exchange_raw(port, b"GET http://x/api/peer/health HTTP/1.1\r\nHost: x\r\n\r\n")
    closing_answer(raw, 400, "bad_request")


def test_expect_100_continue_with_a_wrong_token_gets_the_401_at_once_and_no_100(
    start: StartServer,
) -> None:
    port = start()
    head = put_state_head(1000, token="wrong", extra="Expect: 100-continue\r\n")
    raw = exchange_raw(port, head)
    assert not raw.startswith(b"HTTP/1.1 100"), raw[:100]
    closing_answer(raw, 401, "unauthorized")


def test_expect_100_continue_is_answered_once_the_head_passed(start: StartServer) -> None:
    port = start()
    body = b'{"owner": "x-owner"}'
    head = (
        "POST /api/sync/reconcile-lock HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim  # with its reason
        sock.sendall(body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        grant = json.loads(response.read())
    assert response.status == 200 and grant["owner"] == "x-owner"


# -- the request head's own limits: size, field count, an absolute deadline ----------


def health_head(extra: str = "", *, end: bool = True) -> bytes:
    """A GET peer health head with ``extra`` header lines; ``end=False``: left partial."""
    head = f"GET /api/peer/health HTTP/1.1\r\nHost: x\r\n{extra}"
    return (head + "\r\n" if end else head).encode()


def test_a_request_head_over_16_kib_is_431_even_when_it_comes_in_one_piece(
    start: StartServer,
) -> None:
    port = start()
    padding = f"X-Pad: {'x' * (17 * 1024)}\r\n"  # one send: h11 alone limits a partial head only
    closing_answer(exchange_raw(port, health_head(padding)), 431, "request_header_fields_too_large")
    raw = exchange_raw(port, health_head(padding, end=False))  # a partial head past it
    closing_answer(raw, 431, "request_header_fields_too_large")
    assert call(port, "GET", "/api/peer/health")[0] == 200


def test_more_than_100_header_fields_is_431(start: StartServer) -> None:
    port = start()
    fields = [f"X-F{n}: {n}\r\n" for n in range(100)]  # with Host: 101
    raw = exchange_raw(port, health_head("".join(fields)))
    closing_answer(raw, 431, "request_header_fields_too_large")
    raw = exchange_raw(port, health_head("Connection: close\r\n" + "".join(fields[:98])))
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:100]  # 100 in all: served


def test_a_head_trickled_past_the_absolute_header_deadline_is_408(start: StartServer) -> None:
    port = start()
    head = b"GET /api/peer/health HTTP/1.1\r\nHost: x\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        began = time.monotonic()
        sock.sendall(head)
        raw = b""
        while time.monotonic() - began < HEAD_TIMEOUT_S * 4:  # a line every fifth of it
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(HEAD_TIMEOUT_S / 5)
            try:
                got = sock.recv(65536)
            except TimeoutError:
                continue
            raw += got
            if not got or b"\r\n\r\n" in raw:
                break
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            while got := sock.recv(65536):
                raw += got
        took = time.monotonic() - began
    closing_answer(raw, 408, "request_timeout")
    assert HEAD_TIMEOUT_S * 0.9 <= took < HEAD_TIMEOUT_S * 3, took


def test_a_chunked_upload_of_many_small_chunks_is_read_in_linear_time(start: StartServer) -> None:
    port = start()
    chunk = b"400\r\n" + b" " * 1024 + b"\r\n"
    body = chunk * (16 * 1024) + b"0\r\n\r\n"  # 16 MiB in 16384 chunks of 1 KiB
    head = put_state_head(0, token=TOKEN).replace(
        b"Content-Length: 0", b"Transfer-Encoding: chunked"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        began = time.monotonic()
        sock.sendall(head + body)
        response = http.client.HTTPResponse(sock)
        response.begin()  # lock not held: 409, once the whole body was read
        answer = json.loads(response.read())
        took = time.monotonic() - began
    assert (response.status, answer["code"]) == (409, "lock_not_held")
    assert took < 3, took  # both servers: 0.1-0.4 s; a copy of the whole body per chunk: 8.7 s


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(start: StartServer) -> None:
    port = start()
    raw = exchange_raw(port, b"", timeout=15)  # past the head deadline: no 408 for silence
    assert raw == b""
