"""Helpers of the server tests: raw sockets, subprocess servers, snapshots."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peersync_server import PeerSyncServer

#: ``make_server(**ServerConfig fields)`` -> a started server (conftest.py).
ServerFactory = Callable[..., "PeerSyncServer"]

TOKEN = "t0k-server-test-9f2c"
SECRET = "s3c-control-plane-41ab"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def raw_exchange(
    port: int, data: bytes, *, timeout: float = 5.0, shut_write: bool = False
) -> bytes:
    """Send ``data``, read until the server closes (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        return read_until_close(sock, timeout)


def read_until_close(sock: socket.socket, timeout: float) -> bytes:
    chunks = []
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def split_responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Parse back-to-back responses framed by Content-Length."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:length]))
        raw = rest[length:]
    return out


def one_response(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    responses = split_responses(raw)
    assert len(responses) == 1, raw[:500]
    status, headers, body = responses[0]
    return status, headers, json.loads(body)


def request(
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    version: str = "1.1",
    close: bool = True,
) -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def make_state(n_bytes: int, *, tag: int = 0) -> dict[str, Any]:
    """An engine state object whose canonical JSON is about ``n_bytes`` long."""
    item = "x" * 90
    count = max(1, n_bytes // 100)
    return {"tag": tag, "items": [f"{i:08d}{item}" for i in range(count)]}


def canonical(state: Any) -> bytes:
    return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def snapshot_body(
    state: Any, *, epoch: int = 1, seq: int = 5, label: str = "b", role: str = "leader"
) -> bytes:
    canon = canonical(state)
    envelope = {
        "formatVersion": 1,
        "engineLabel": label,
        "role": role,
        "epoch": epoch,
        "capturedAtUs": 1_713_200_000_000_000,
        "lastCommandSeq": seq,
        "lastExecutedSeq": seq,
        "programSource": f"cam-{seq}",
        "previewSource": "cam-2",
        "checksum": "sha256:" + hashlib.sha256(canon).hexdigest(),
    }
    head = json.dumps(envelope, separators=(",", ":"))[:-1].encode()
    return head + b',"state":' + canon + b"}"


class ServerProcess:
    """``python -m peersync_server`` in a child process, stopped by its PID."""

    def __init__(
        self, args: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None
    ) -> None:
        full_env = dict(os.environ)
        full_env.pop(TOKEN_ENV, None)
        full_env.pop(SECRET_ENV, None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "peersync_server", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=cwd,
        )
        self.port = 0
        self.url = ""

    def wait_listening(self, timeout: float = 20.0) -> int:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line or self.proc.poll() is not None:
                break
        text = line.decode().strip()
        assert text.startswith("listening on http://"), (text, self.stderr_text())
        self.url = text.removeprefix("listening on ")
        self.port = int(self.url.rsplit(":", 1)[1])
        return self.port

    def stderr_text(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> tuple[int, str, str]:
        self.signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill9()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


TOKEN_ENV = "PEERSYNC_API_TOKEN"
SECRET_ENV = "PEERSYNC_CONTROL_PLANE_SECRET"


@contextlib.contextmanager
def server_process(args: Sequence[str], **kw: Any) -> Iterator[ServerProcess]:
    proc = ServerProcess(args, **kw)
    try:
        yield proc
    finally:
        proc.close()


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it is true; fail the test past ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def free_port() -> int:
    """A loopback port free now (for a flag that needs it before the start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def drain_in_background(stream: IO[bytes]) -> None:
    """Read a server's log pipe to its end on a thread: a flood writes more
    than a pipe holds, and nobody reading it would be a test of its own."""

    def drain() -> None:
        with contextlib.suppress(OSError, ValueError):  # closed when the server stops
            while stream.read(65536):
                pass

    threading.Thread(target=drain, daemon=True).start()


def probe_ms(port: int, deadline_s: float = 0.15) -> float | None:
    """One probe like the peer monitor's (a fresh connection, one deadline):
    the milliseconds to a ``200`` head, or ``None`` when it came late or not."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=deadline_s) as sock:
            sock.sendall(b"GET /api/peer/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            raw = b""
            while b"\r\n\r\n" not in raw:
                sock.settimeout(max(0.001, started + deadline_s - time.monotonic()))
                chunk = sock.recv(4096)
                if not chunk:
                    break
                raw += chunk
    except OSError:
        return None
    took = time.monotonic() - started
    return took * 1e3 if raw.startswith(b"HTTP/1.1 200 ") and took <= deadline_s else None
