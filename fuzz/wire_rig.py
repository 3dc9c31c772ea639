"""A real server on loopback and a raw-bytes client for the wire harnesses.

``exchange(port, data, bytewise=...)`` sends ``data`` on one connection,
whole or one byte per ``send``, half-closes, and returns every response the
server wrote, parsed. A byte-at-a-time sender stops sending once the server
closed (like any client would) and keeps what was already answered.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from peersync_proto import EngineView
from peersync_server import Limits, PeerSyncServer, ServerConfig

CORPUS = Path(__file__).resolve().parent / "corpus"
#: Credentials of the fuzzed server: drawn per run, never in any input.
TOKEN = secrets.token_hex(16).encode()
SECRET = secrets.token_hex(16).encode()


@attrs.frozen(kw_only=True, slots=True)
class Answer:
    status: int
    code: str | None
    body: dict[str, Any] | None
    headers: dict[str, str]

    @property
    def key(self) -> tuple[int, str | None]:
        return (self.status, self.code)


class ErrorLog(logging.Handler):
    """Collects every ERROR (or worse) record of the server's loggers."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def fuzz_server(**overrides: Any) -> Iterator[tuple[PeerSyncServer, ErrorLog]]:
    """An in-memory server with short deadlines, its error log watched."""
    fields: dict[str, Any] = {
        "label": "a",
        "port": 0,
        "api_token": TOKEN,
        "control_plane_secret": SECRET,
        "limits": Limits(
            header_timeout_s=2.0, body_timeout_s=2.0, idle_timeout_s=2.0, send_timeout_s=5.0
        ),
        "decoder_workers": 1,
    }
    fields.update(overrides)
    server = PeerSyncServer(ServerConfig(**fields))
    errors = ErrorLog()
    logger = logging.getLogger("peersync")
    logger.addHandler(errors)
    server.start()
    try:
        yield server, errors
    finally:
        server.stop()
        logger.removeHandler(errors)


def engine_facts(view: EngineView) -> tuple[Any, ...]:
    """Everything a request could change (not the clock, not heartbeats)."""
    return (
        view.role,
        view.epoch,
        view.last_fencing_token,
        view.last_peer_epoch,
        view.lock,
        view.host,
        view.pending,
    )


def wait_idle(server: PeerSyncServer, timeout: float = 10.0) -> bool:
    """Every worker gave its connection back (no thread hangs on a request)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.busy_count == 0:
            return True
        time.sleep(0.005)
    return False


def _drain(sock: socket.socket, chunks: list[bytes]) -> bool:
    """Read what is there without blocking; ``True`` once the server closed."""
    while True:
        ready, _, _ = select.select([sock], [], [], 0)
        if not ready:
            return False
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, OSError):
            return True
        if not data:
            return True
        chunks.append(data)


def exchange(port: int, data: bytes, *, bytewise: bool = False, timeout: float = 10.0) -> bytes:
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        closed = False
        try:
            if bytewise:
                for i in range(len(data)):
                    sock.sendall(data[i : i + 1])
                    if _drain(sock, chunks):
                        closed = True
                        break
            else:
                sock.sendall(data)
            if not closed:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            # The server may answer and close (or reset) before we finish
            # sending: a broken pipe, a reset, or ENOTCONN on shutdown. A
            # close is an allowed outcome; what it sent is read below.
            pass
        deadline = time.monotonic() + timeout
        while not closed and (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            try:
                got = sock.recv(65536)
            except (TimeoutError, ConnectionResetError, OSError):
                break
            if not got:
                break
            chunks.append(got)
    return b"".join(chunks)


def parse_answers(raw: bytes) -> list[Answer]:
    """Back-to-back responses; each must be well framed."""
    out: list[Answer] = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, f"unterminated response head: {raw[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 "), lines[0]
        status = int(lines[0].split(" ")[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            assert colon, line
            headers[name.strip().lower()] = value.strip()
        if 100 <= status < 200:
            out.append(Answer(status=status, code=None, body=None, headers=headers))
            raw = rest
            continue
        length = int(headers["content-length"])
        if rest.startswith(b"HTTP/1.") or not rest:
            length = 0  # a HEAD answer: headers only
        body_raw, raw = rest[:length], rest[length:]
        body = json.loads(body_raw) if body_raw else None
        code = body.get("code") if isinstance(body, dict) and status >= 300 else None
        out.append(Answer(status=status, code=code, body=body, headers=headers))
    return out


def check_answers(answers: list[Answer]) -> None:
    """Only an open-endpoint 200 or an error with the contract's shape."""
    for answer in answers:
        assert answer.status != 500, f"500 from hostile bytes: {answer}"
        assert answer.headers.get("content-type") == "application/json", answer
        assert answer.headers.get("cache-control") == "no-store", answer
        if answer.status == 200:
            assert answer.body is not None and answer.body["engineLabel"] == "a", answer
            continue
        assert 400 <= answer.status < 600, answer
        if answer.body is None:
            continue  # a HEAD answer carries no body
        assert isinstance(answer.body.get("error"), str), answer
        assert isinstance(answer.code, str) and answer.code, answer


def corpus() -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(CORPUS.glob("*.http"))]


def thread_count() -> int:
    return threading.active_count()
