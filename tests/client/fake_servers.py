"""Real servers on 127.0.0.1 port 0 for the client tests (fixtures in conftest.py).

- ``stdlib_engine``: a ``http.server.ThreadingHTTPServer`` whose handler is a
  small, honest model of one engine (contract 3): it keeps a role, an epoch, a
  lock with a TTL and a state document, checks auth, media type, JSON, ranges
  and lock ownership in the contract's order, and answers with the contract's
  shapes and error bodies. It records every request it saw.
- ``raw_server``: a bare TCP server that runs a test's own function on each
  accepted connection, for the answers no well-behaved server gives.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "t0k-abc"
SECRET = "s3c-xyz"


def canonical(state: Any) -> bytes:
    return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def checksum(state: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical(state)).hexdigest()


class EngineModel:
    """What the stdlib handler serves; every field is plain and inspectable."""

    def __init__(self, *, secret: str | None = SECRET) -> None:
        self.guard = threading.Lock()
        self.started = time.monotonic()
        self.secret = secret
        self.label = "a"
        self.role = "follower"
        self.epoch = 17
        self.state: Any = {"scene": "opening", "layers": [1, 2, 3]}
        self.program = "cam-1"
        self.lock_id: str | None = None
        self.lock_owner = ""
        self.lock_ttl_ms = 0
        self.lock_expires = 0.0
        self.fencing = 41
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.connections: set[tuple[str, int]] = set()
        self.fail_next_with: tuple[int, bytes, dict[str, str]] | None = None

    def uptime_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def lock_held(self) -> bool:
        return self.lock_id is not None and time.monotonic() < self.lock_expires

    def snapshot(self) -> dict[str, Any]:
        return {
            "formatVersion": 1,
            "engineLabel": self.label,
            "role": self.role,
            "epoch": self.epoch,
            "capturedAtUs": 1713200000000000,
            "lastCommandSeq": 1729,
            "lastExecutedSeq": 1728,
            "programSource": self.program,
            "previewSource": "cam-2",
            "state": self.state,
            "checksum": checksum(self.state),
        }


class _Answer(Exception):
    def __init__(self, status: int, code: str, sentence: str, **extra: Any) -> None:
        self.status = status
        self.body = {"error": sentence, "code": code, **extra}
        self.headers: dict[str, str] = {}


def _make_handler(model: EngineModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Buffered, so head and body leave together (flushed after each request):
        # two small writes would wait ~40 ms on Nagle and the delayed ACK.
        wbufsize = 64 * 1024

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            with model.guard:
                model.seen.append((method, self.path, headers, body))
                model.connections.add(self.client_address)
                canned, model.fail_next_with = model.fail_next_with, None
            if canned is not None:
                self._send(canned[0], canned[1], canned[2])
                return
            try:
                with model.guard:
                    status, obj = _route(model, method, self.path, headers, body)
                self._send(status, json.dumps(obj).encode())
            except _Answer as answer:
                self._send(answer.status, json.dumps(answer.body).encode(), answer.headers)

    return Handler


def _json(headers: dict[str, str], body: bytes, *, required: bool = False) -> dict[str, Any]:
    if not body:
        if required:
            raise _Answer(400, "invalid_json", "the body is empty")
        return {}
    if headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise _Answer(415, "unsupported_media_type", "send Content-Type: application/json")
    try:
        obj = json.loads(body)
    except ValueError:
        raise _Answer(400, "invalid_json", "the body is not JSON") from None
    if not isinstance(obj, dict):
        raise _Answer(400, "invalid_json", "the top level is not an object")
    return obj


def _bearer(model: EngineModel, headers: dict[str, str]) -> None:
    if headers.get("authorization") != f"Bearer {TOKEN}":
        answer = _Answer(401, "unauthorized", "missing or wrong bearer token")
        answer.headers["WWW-Authenticate"] = 'Bearer realm="peersync"'
        raise answer


def _ttl(obj: dict[str, Any], default: int) -> int:
    ttl = obj.get("ttlMs", default)
    if type(ttl) is not int or not 1000 <= ttl <= 300000:
        raise _Answer(400, "invalid_request", "ttlMs must be an integer in 1000..300000")
    return ttl


def _route(
    model: EngineModel, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, Any]]:
    lock_prefix = "/api/sync/reconcile-lock/"
    known = {
        "/api/peer/health": "GET",
        "/api/peer/force-leader": "POST",
        "/api/sync/health": "GET",
        "/api/sync/state": "GET, PUT",
        "/api/sync/reconcile-lock": "GET, POST",
    }
    allow = "PUT, DELETE" if path.startswith(lock_prefix) else known.get(path)
    if allow is None:
        raise _Answer(404, "not_found", "no such path")
    if method not in allow.split(", "):
        answer = _Answer(405, "method_not_allowed", "method not allowed here")
        answer.headers["Allow"] = allow
        raise answer
    if path == "/api/peer/health":
        return 200, {
            "status": "ok",
            "uptimeMs": model.uptime_ms(),
            "programSource": model.program,
            "lastCommandSeq": 1729,
            "engineLabel": model.label,
            "epoch": model.epoch,
            "role": model.role,
        }
    if path == "/api/peer/force-leader":
        if model.secret is None:
            raise _Answer(501, "not_configured", "no control-plane secret configured")
        if headers.get("x-control-plane-secret") != model.secret:
            raise _Answer(401, "unauthorized", "missing or wrong control-plane secret")
        reason = _json(headers, body).get("reason", "")
        if not isinstance(reason, str) or len(reason) > 256:
            raise _Answer(400, "invalid_request", "reason must be a string of at most 256")
        if model.role == "leader":
            raise _Answer(409, "already_leader", "already leader", epoch=model.epoch)
        previous, model.role, model.epoch = model.role, "leader", model.epoch + 1
        return 200, {
            "status": "leader",
            "engineLabel": model.label,
            "epoch": model.epoch,
            "previousRole": previous,
        }
    _bearer(model, headers)
    if path == "/api/sync/health":
        return 200, {
            "clockSync": {"mode": "ptp", "offsetNs": 1234, "jitterNs": 500},
            "lastCommandSeq": 1729,
            "lastExecutedSeq": 1728,
            "lastExecutedErr": "",
            "lateCommands": 0,
            "uptimeMs": model.uptime_ms(),
            "lastPongSentUs": 1713200000000000,
        }
    if path == "/api/sync/state" and method == "GET":
        return 200, model.snapshot()
    if path == "/api/sync/state":
        if not model.lock_held() or headers.get("x-reconcile-lock-id") != model.lock_id:
            raise _Answer(409, "lock_not_held", "the named lock is not held")
        snap = _json(headers, body, required=True)
        if not isinstance(snap.get("epoch"), int) or snap.get("checksum") != checksum(
            snap.get("state")
        ):
            raise _Answer(400, "invalid_snapshot", "checksum does not match state")
        if snap["epoch"] < model.epoch:
            raise _Answer(409, "stale_snapshot", "snapshot epoch is below ours")
        model.state, model.epoch = snap["state"], snap["epoch"]
        if snap.get("role") == "leader":
            model.role = "follower"
        return 200, {
            "applied": True,
            "epoch": model.epoch,
            "role": model.role,
            "lastCommandSeq": 1729,
        }
    if path == "/api/sync/reconcile-lock" and method == "GET":
        if model.lock_held():
            remaining = int((model.lock_expires - time.monotonic()) * 1000)
            return 200, {
                "held": True,
                "owner": model.lock_owner,
                "remainingMs": remaining,
                "ttlMs": model.lock_ttl_ms,
                "fencingToken": model.fencing,
            }
        return 200, {"held": False, "lastFencingToken": model.fencing}
    if path == "/api/sync/reconcile-lock":
        obj = _json(headers, body)
        owner = obj.get("owner", "anonymous")
        if not isinstance(owner, str) or not 1 <= len(owner) <= 128:
            raise _Answer(400, "invalid_request", "owner must be 1..128 characters")
        ttl = _ttl(obj, 30000)
        if model.lock_held():
            remaining = int((model.lock_expires - time.monotonic()) * 1000)
            raise _Answer(
                409,
                "lock_held",
                "the lock is held",
                owner=model.lock_owner,
                remainingMs=remaining,
                fencingToken=model.fencing,
            )
        model.lock_id, model.lock_owner, model.lock_ttl_ms = os.urandom(16).hex(), owner, ttl
        model.lock_expires = time.monotonic() + ttl / 1000
        model.fencing += 1
        return 200, _grant(model)
    lock_id = path[len(lock_prefix) :]
    if method == "PUT":
        ttl = _ttl(_json(headers, body), model.lock_ttl_ms)
        if not model.lock_held() or lock_id != model.lock_id:
            raise _Answer(404, "lock_not_found", "no such lock")
        model.lock_ttl_ms, model.lock_expires = ttl, time.monotonic() + ttl / 1000
        return 200, _grant(model)
    if not model.lock_held() or lock_id != model.lock_id:
        raise _Answer(404, "lock_not_found", "no such lock")
    model.lock_id = None
    return 200, {"released": True}


def _grant(model: EngineModel) -> dict[str, Any]:
    return {
        "lockId": model.lock_id,
        "expiresMs": model.lock_ttl_ms,
        "fencingToken": model.fencing,
        "owner": model.lock_owner,
    }


class StdlibEngine:
    def __init__(self, model: EngineModel) -> None:
        self.model = model
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(model))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- raw sockets ----------------------------------------------------------------


def read_request(conn: socket.socket, timeout: float = 5.0) -> bytes:
    """Read one request (head and Content-Length body); b"" if the peer closed first."""
    conn.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, first = data.partition(b"\r\n\r\n")
    rest = bytearray(first)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = conn.recv(1 << 20)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + bytes(rest)


def answer(status: int, obj: Any, *, extra: bytes = b"") -> bytes:
    body = json.dumps(obj).encode()
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )


HEALTH = {
    "status": "ok",
    "uptimeMs": 5,
    "programSource": "cam-1",
    "lastCommandSeq": 3,
    "engineLabel": "b",
    "epoch": 2,
    "role": "leader",
}
GRANT = {"lockId": "ab" * 16, "expiresMs": 30000, "fencingToken": 7, "owner": "x"}


class RawServer:
    """Accepts connections and runs ``serve(conn, index)`` on each, in a thread."""

    def __init__(self, serve: Callable[[socket.socket, int], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.serve = serve
        self.accepted = 0
        self.requests: list[bytes] = []
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._stop = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            index = self.accepted
            self.accepted += 1
            thread = threading.Thread(target=self._run, args=(conn, index), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, conn: socket.socket, index: int) -> None:
        try:
            self.serve(conn, index)
        except OSError:
            pass
        except BaseException as exc:  # surfaced by the fixture's teardown
            self.errors.append(exc)
        finally:
            conn.close()

    def read(self, conn: socket.socket) -> bytes:
        request = read_request(conn)
        if request:
            self.requests.append(request)
        return request

    def close(self) -> None:
        self._stop = True
        self.listener.close()
        for thread in self._threads:
            thread.join(timeout=5)
