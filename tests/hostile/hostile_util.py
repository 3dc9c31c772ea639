"""Helpers of the hostile tests: real server processes, snapshots, /proc figures.

``PEERSYNC_LONG=1`` (``make hostile-long``) selects the long variants: the
figures in docs/reliability.md come from those runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

LONG = os.environ.get("PEERSYNC_LONG", "") not in ("", "0")
TOKEN = "t0k-hostile-" + "7e1d" * 6
SECRET = "s3c-hostile-" + "a9b2" * 6
PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[2]


def scaled(short: float, long: float) -> float:
    return long if LONG else short


def canonical(state: Any) -> bytes:
    return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def make_state(n_bytes: int, *, tag: int) -> dict[str, Any]:
    """A state whose canonical JSON is about ``n_bytes`` long, unique per ``tag``."""
    count = max(1, n_bytes // 100)
    return {"tag": tag, "items": [f"{tag:08d}-{i:08d}" + "y" * 82 for i in range(count)]}


def snapshot_body(state: Any, *, epoch: int = 1, seq: int = 5, role: str = "follower") -> bytes:
    """A PUT state body with the state written canonically (the fast path)."""
    canon = canonical(state)
    envelope = {
        "formatVersion": 1,
        "engineLabel": "b",
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


def state_text(get_body: bytes) -> bytes:
    """The raw bytes of ``"state"`` in a GET body, exactly as served."""
    start = get_body.index(b'"state":') + len(b'"state":')
    end = get_body.rindex(b',"checksum":')
    return get_body[start:end]


class Server:
    """``python -m peersync_server`` in a child process, stopped by its PID."""

    def __init__(
        self,
        tmp: Path,
        *,
        state_dir: Path | None = None,
        extra: Sequence[str] = (),
        preexec: Callable[[], None] | None = None,
        log_level: str = "INFO",
    ) -> None:
        token_file = tmp / "token"
        token_file.write_text(TOKEN)
        secret_file = tmp / "secret"
        secret_file.write_text(SECRET)
        self.state_dir = state_dir or tmp / "state"
        self.stderr_path = tmp / f"stderr-{time.monotonic_ns()}.log"
        args = [
            PYTHON, "-m", "peersync_server", "--label", "a", "--listen", "127.0.0.1:0",
            "--state-dir", str(self.state_dir), "--api-token-file", str(token_file),
            "--control-plane-secret-file", str(secret_file), "--log-level", log_level, *extra,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEERSYNC_")}
        env["PYTHONPATH"] = str(REPO)
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=tmp,
            preexec_fn=preexec,
        )
        self.port = 0
        self.url = ""

    def wait_listening(self, timeout: float = 30.0) -> int:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line or self.proc.poll() is not None:
                break
        text = line.decode().strip()
        assert text.startswith("listening on http://"), (text, self.stderr())
        self.url = text.removeprefix("listening on ")
        self.port = int(self.url.rsplit(":", 1)[1])
        return self.port

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def kill9(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill9()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    def threads(self) -> int:
        return _proc_status(self.proc.pid, "Threads")

    def rss_kib(self) -> int:
        return _proc_status(self.proc.pid, "VmRSS")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


def _proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@contextlib.contextmanager
def server(tmp: Path, **kw: Any) -> Iterator[Server]:
    proc = Server(tmp, **kw)
    try:
        proc.wait_listening()
        yield proc
    finally:
        proc.close()


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]
