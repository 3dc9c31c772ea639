"""Two real ``peersync-server`` processes on loopback, each watching the other
through a :class:`~peersync_server._proxy.FaultProxy`: the demo's, the
failover tests' and the failover benchmark's shared harness.

::

    with EnginePair.create() as pair:       # temp dir, token, secret, proxies
        pair.start(a_role="leader", b_role="follower")
        pair.a.kill9(); pair.wait_role("b", Role.LEADER, timeout=5)
        pair.a.start()                       # over its state dir, same port
        pair.partition(); pair.heal()

Only processes this harness started are signalled, by PID; ``close()``
(also on any failure) kills what is left and removes the temp dir. Every wait
is bounded by a timeout.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

from peersync_proto import Role, canonical_json, encode_snapshot
from peersync_proto._canonical import JSONValue

from ._client import PeerSyncClient
from ._client_errors import PeerSyncClientError
from ._client_values import PeerHealth
from ._proxy import FaultProxy, ProxyMode

__all__ = ["EngineProcess", "EnginePair", "PairError"]

_START_TIMEOUT_S = 20.0
_POLL_S = 0.005
_T = TypeVar("_T")


class PairError(Exception):
    """A process would not start, or a wait ran out."""


class EngineProcess:
    """One ``python -m peersync_server`` child: start, signal, restart."""

    def __init__(
        self,
        label: str,
        *,
        root: Path,
        token_file: Path,
        secret_file: Path,
        peer_url: str | None,
        extra_args: tuple[str, ...] = (),
        peer_listen: bool = False,
    ) -> None:
        self.label = label
        self.state_dir = root / f"state-{label}"
        self.log_path = root / f"engine-{label}.log"
        self._token_file = token_file
        self._secret_file = secret_file
        self._peer_url = peer_url
        self._extra = extra_args
        self.port = 0
        #: The engine's own address for its peer (``--peer-listen``), else 0.
        self.peer_port = _free_port() if peer_listen else 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = token_file.read_text().strip()
        self.secret = secret_file.read_text().strip()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise PairError(f"engine {self.label} is not running")
        return self.proc.pid

    def start(self, role: str = "follower") -> float:
        """Start (or restart over its state dir, on the same port); returns
        the seconds until it printed ``listening on``."""
        if self.proc is not None and self.proc.poll() is None:
            raise PairError(f"engine {self.label} is already running")
        args = [
            sys.executable, "-m", "peersync_server",
            "--label", self.label,
            "--listen", f"127.0.0.1:{self.port}",
            "--role", role,
            "--state-dir", str(self.state_dir),
            "--api-token-file", str(self._token_file),
            "--control-plane-secret-file", str(self._secret_file),
            *(("--peer", self._peer_url) if self._peer_url is not None else ()),
            *(("--peer-listen", f"127.0.0.1:{self.peer_port}") if self.peer_port else ()),
            *self._extra,
        ]  # fmt: skip
        started = time.monotonic()
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL
            )
        finally:
            log.close()
        assert self.proc.stdout is not None
        line = _read_line(self.proc.stdout, _START_TIMEOUT_S)
        if not line.startswith("listening on http://"):
            self.kill9()
            raise PairError(f"engine {self.label} did not start: {line!r}; see {self.log_path}")
        self.port = int(line.rsplit(":", 1)[1])
        return time.monotonic() - started

    def send(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill9(self) -> None:
        """``kill -9`` and reap (a stopped process is killed too)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def terminate(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        self.send(signal.SIGCONT)
        self.send(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            return None
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
        return code

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def client(self, *, timeout: float = 2.0) -> PeerSyncClient:
        return PeerSyncClient(
            self.url,
            api_token=self.token,
            control_plane_secret=self.secret,
            timeout=timeout,
            connect_timeout=min(timeout, 1.0),
        )

    def health(self, *, timeout: float = 0.5) -> PeerHealth | None:
        """This engine's own health answer, or ``None`` when it gives none."""
        if self.proc is None:
            return None
        try:
            with self.client(timeout=timeout) as client:
                return client.peer_health()
        except PeerSyncClientError:
            return None


def _free_port() -> int:
    """A loopback port free now (the engine binds it at once; a restart
    gets it back through ``SO_REUSEADDR``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _read_line(stream: IO[bytes], timeout: float) -> str:
    """One line from a child's stdout, within ``timeout``."""
    fd = stream.fileno()
    buf = b""
    end = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf and (left := end - time.monotonic()) > 0:
            if not sel.select(left):
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    return buf.decode("utf-8", "replace").strip()


class EnginePair:
    """Engines ``a`` and ``b``; ``a`` reaches ``b`` through ``proxy_to_b`` and
    ``b`` reaches ``a`` through ``proxy_to_a``."""

    def __init__(
        self,
        root: Path,
        *,
        extra_args: tuple[str, ...] = (),
        own_root: bool,
        peer_listen: bool = False,
    ) -> None:
        self.root = root
        self._own_root = own_root
        token_file = root / "api-token"
        secret_file = root / "cp-secret"
        token_file.write_text(secrets.token_hex(16))
        secret_file.write_text(secrets.token_hex(16))
        token_file.chmod(0o600)
        secret_file.chmod(0o600)
        self.proxy_to_a = FaultProxy(None)
        self.proxy_to_b = FaultProxy(None)
        self.proxy_to_a.start()
        self.proxy_to_b.start()
        self.a, self.b = (
            EngineProcess(
                label,
                root=root,
                token_file=token_file,
                secret_file=secret_file,
                peer_url=proxy.url,
                extra_args=extra_args,
                peer_listen=peer_listen,
            )
            for label, proxy in (("a", self.proxy_to_b), ("b", self.proxy_to_a))
        )

    @classmethod
    def create(cls, *, extra_args: tuple[str, ...] = (), peer_listen: bool = False) -> EnginePair:
        """``peer_listen``: each engine serves its peer on its own address
        (``--peer-listen``), and the peer's proxy forwards there."""
        root = Path(tempfile.mkdtemp(prefix="peersync-pair-"))
        try:
            return cls(root, extra_args=extra_args, own_root=True, peer_listen=peer_listen)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise

    def __enter__(self) -> EnginePair:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def engine(self, label: str) -> EngineProcess:
        return self.a if label == "a" else self.b

    def start(self, *, a_role: str = "leader", b_role: str = "follower") -> None:
        """Start both (``a`` first) and point each proxy at its engine."""
        self.start_engine("a", a_role)
        self.start_engine("b", b_role)

    def start_engine(self, label: str, role: str = "follower") -> float:
        engine = self.engine(label)
        took = engine.start(role)
        upstream = engine.peer_port or engine.port
        (self.proxy_to_a if label == "a" else self.proxy_to_b).set_upstream(upstream)
        return took

    def partition(self, mode: ProxyMode = ProxyMode.BLACKHOLE) -> None:
        """Cut both directions: neither engine reaches the other."""
        self.proxy_to_a.set_mode(mode)
        self.proxy_to_b.set_mode(mode)

    def heal(self) -> None:
        self.proxy_to_a.set_mode(ProxyMode.PASS)
        self.proxy_to_b.set_mode(ProxyMode.PASS)

    def roles(self, *, timeout: float = 2.0) -> dict[str, PeerHealth | None]:
        """Both engines' own health answers (``None``: no answer in ``timeout``;
        generous, so a loaded machine does not read as a lost leader)."""
        return {"a": self.a.health(timeout=timeout), "b": self.b.health(timeout=timeout)}

    def leaders(self) -> list[str]:
        return [
            label
            for label, health in self.roles().items()
            if health is not None and health.role is Role.LEADER
        ]

    def wait_for(
        self, what: str, check: Callable[[], _T | None], *, timeout: float
    ) -> tuple[_T, float]:
        """Poll ``check`` until it returns a value (not ``None``/False) or
        ``timeout`` passes; returns the value and the seconds it took."""
        started = time.monotonic()
        end = started + timeout
        while True:
            value = check()
            if value is not None and value is not False:
                return value, time.monotonic() - started
            if time.monotonic() >= end:
                raise PairError(f"timed out after {timeout:.1f} s waiting for {what}")
            time.sleep(_POLL_S)

    def wait_role(self, label: str, role: Role, *, timeout: float) -> float:
        def check() -> bool:
            health = self.engine(label).health(timeout=0.3)
            return health is not None and health.role is role

        return self.wait_for(f"{label} to be {role.value}", check, timeout=timeout)[1]

    def wait_log(self, label: str, text: str, *, timeout: float, count: int = 1) -> float:
        engine = self.engine(label)
        return self.wait_for(
            f"{label}'s log to say {text!r}",
            lambda: engine.log().count(text) >= count,
            timeout=timeout,
        )[1]

    def seed(self, label: str, state: dict[str, JSONValue], *, seq: int, program: str) -> str:
        """Put ``state`` into engine ``label`` over the API (lock, PUT,
        release); returns the state's checksum as the engine serves it."""
        engine = self.engine(label)
        with engine.client(timeout=5.0) as client:
            health = client.peer_health()
            body = encode_snapshot(
                engine_label=label,
                role=Role.FOLLOWER,  # a leader's snapshot would step a leader down
                epoch=health.epoch,
                captured_at_us=time.time_ns() // 1000,
                last_command_seq=seq,
                last_executed_seq=seq,
                program_source=program,
                preview_source="",
                state=canonical_json(state),
            )
            grant = client.acquire_lock(owner="demo-seed", ttl_ms=10_000)
            try:
                client.apply_state(body, grant.lock_id)
            finally:
                client.release_lock(grant.lock_id)
            return client.get_state().checksum

    def checksum(self, label: str) -> str | None:
        try:
            with self.engine(label).client(timeout=5.0) as client:
                return client.get_state().checksum
        except PeerSyncClientError:
            return None

    def close(self) -> None:
        for engine in (self.a, self.b):
            with contextlib.suppress(Exception):
                engine.kill9()
        for proxy in (self.proxy_to_a, self.proxy_to_b):
            with contextlib.suppress(Exception):
                proxy.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
