"""The threaded server: accept loop, connection cap, graceful stop.

::

    server = PeerSyncServer(ServerConfig(label="a", state_dir=tmp, no_auth=True))
    port = server.start()          # bound port (config port 0 = any free port)
    ...                            # http://127.0.0.1:{port}/api/peer/health
    server.stop()                  # graceful: finish in-flight work, persist

One thread per connection, at most ``max_connections`` of them. When a new
connection finds every slot taken, the least recently active *idle*
connection (keep-alive between requests, or accepted and silent) is closed to
make room; only when every slot is busy does the accept loop answer ``503``
with ``Retry-After`` itself. So a peer probe is never starved by idle clients.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import attrs

from peersync_proto import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_SNAPSHOT_BYTES,
    DEFAULT_STALL_LIMIT_NS,
    EngineConfig,
    Entropy,
    Role,
)

from ._clock import Clock
from ._connection import Connection, Limits, own_error
from ._decoder_pool import DEFAULT_DECODER_WORKERS, DecoderPool
from ._driver import EngineDriver
from ._host import DEFAULT_HEARTBEAT_INTERVAL_S, EngineHost, HostStateError, StandaloneHost

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_PORT",
    "DEFAULT_RETRY_AFTER_S",
    "DEFAULT_SHUTDOWN_GRACE_S",
    "PeerMonitorFactory",
    "PeerSyncServer",
    "ServerConfig",
    "ServerStartError",
]

_log = logging.getLogger("peersync.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8470
#: Connection threads; past it idle connections are closed, then 503.
DEFAULT_MAX_CONNECTIONS = 64
#: Seconds a client is told to wait after a 503.
DEFAULT_RETRY_AFTER_S = 1
#: SIGTERM: in-flight requests get this long to finish.
DEFAULT_SHUTDOWN_GRACE_S = 5.0
_LISTEN_BACKLOG = 256
_REJECT_QUEUE = 128
_REJECT_LINGER_S = 0.5


class ServerStartError(Exception):
    """The server cannot start (port in use, state directory unusable)."""


def _opt_path(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None else Path(value)


@attrs.frozen(kw_only=True, slots=True)
class ServerConfig:
    """Everything ``peersync-server`` can be told; every field has a default
    but ``label``. ``state_dir=None`` keeps the engine in memory (tests)."""

    label: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    role: Role = attrs.field(default=Role.FOLLOWER, converter=Role)
    state_dir: Path | None = attrs.field(default=None, converter=_opt_path)
    api_token: bytes | None = attrs.field(default=None, repr=False)
    control_plane_secret: bytes | None = attrs.field(default=None, repr=False)
    no_auth: bool = False
    #: Stored for the failover issue (see ``PeerSyncServer(peer_monitor=...)``).
    peer_url: str | None = None
    failover: str = "auto"
    max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    limits: Limits = attrs.field(factory=Limits)
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    stall_limit_ns: int = DEFAULT_STALL_LIMIT_NS
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    decoder_workers: int = DEFAULT_DECODER_WORKERS

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            label=self.label,
            role=self.role,
            api_token=self.api_token,
            control_plane_secret=self.control_plane_secret,
            no_auth=self.no_auth,
            stall_limit_ns=self.stall_limit_ns,
            max_body_bytes=self.max_body_bytes,
            max_snapshot_bytes=self.max_snapshot_bytes,
        )


class _Stoppable(Protocol):
    def stop(self) -> None: ...


#: The failover hook: called once at start when ``peer_url`` is set, with the
#: running server (``server.driver.handle`` feeds the core under its lock,
#: ``server.driver.add_listener`` sees every output); returns what to stop.
PeerMonitorFactory = Callable[["PeerSyncServer"], _Stoppable]


class _Registry:
    """The connection slots; one lock guards every connection's idle flag."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._lock = threading.Lock()
        self._conns: dict[Connection, threading.Thread | None] = {}

    def admit(self, conn: Connection) -> tuple[bool, list[Connection]]:
        with self._lock:
            live = [c for c in self._conns if not c.evicted]
            victims: list[Connection] = []
            if len(live) >= self._cap:
                idle = [c for c in live if c.idle]
                if not idle:
                    return False, []
                victim = min(idle, key=lambda c: c.last_active)
                victim.evicted = True
                victims.append(victim)
            self._conns[conn] = None
            return True, victims

    def attach(self, conn: Connection, thread: threading.Thread) -> None:
        with self._lock:
            if conn in self._conns:
                self._conns[conn] = thread

    def busy(self, conn: Connection) -> bool:
        with self._lock:
            if conn.evicted:
                return False
            conn.idle = False
            conn.last_active = time.monotonic()
            return True

    def idle(self, conn: Connection) -> None:
        with self._lock:
            conn.idle = True
            conn.last_active = time.monotonic()

    def remove(self, conn: Connection) -> None:
        with self._lock:
            self._conns.pop(conn, None)

    def evict_idle(self) -> list[Connection]:
        with self._lock:
            victims = [c for c in self._conns if c.idle and not c.evicted]
            for c in victims:
                c.evicted = True
            return victims

    def all(self) -> list[tuple[Connection, threading.Thread | None]]:
        with self._lock:
            return list(self._conns.items())

    def count(self) -> int:
        with self._lock:
            return sum(1 for c in self._conns if not c.evicted)


class PeerSyncServer:
    """The engine core behind a threaded HTTP/1.1 server.

    ``host`` plugs in an engine program's own :class:`EngineHost`; by default
    a :class:`StandaloneHost` keeps the engine in ``config.state_dir``.
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        host: EngineHost | None = None,
        entropy: Entropy = os.urandom,
        peer_monitor: PeerMonitorFactory | None = None,
    ) -> None:
        self.config = config
        self._host: EngineHost = host or StandaloneHost(
            config.state_dir, heartbeat_interval_s=config.heartbeat_interval_s
        )
        self._entropy = entropy
        self._peer_monitor_factory = peer_monitor
        self._peer_monitor: _Stoppable | None = None
        self._clock = Clock()
        self._registry = _Registry(config.max_connections)
        self._decoder = DecoderPool(config.decoder_workers)
        self._driver: EngineDriver | None = None
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._accept_thread: threading.Thread | None = None
        self._rejects: queue.Queue[socket.socket | None] = queue.Queue(_REJECT_QUEUE)
        self._reject_thread: threading.Thread | None = None
        self._draining = False
        self._stopped = False
        self._port = 0
        self._retry_503 = own_error(
            503,
            "overloaded",
            "The server is busy; retry shortly.",
            headers=((b"retry-after", b"%d" % DEFAULT_RETRY_AFTER_S),),
        )

    # -- properties ----------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = self.config.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self._port}"

    @property
    def driver(self) -> EngineDriver:
        if self._driver is None:
            raise RuntimeError("server not started")
        return self._driver

    @property
    def connection_count(self) -> int:
        return self._registry.count()

    # -- start -----------------------------------------------------------------------

    def start(self) -> int:
        """Open the state, bind, and serve in background threads; returns the port."""
        cfg = self.config
        try:
            self._driver = EngineDriver(
                cfg.engine_config(), self._host, clock=self._clock, entropy=self._entropy
            )
        except HostStateError as exc:
            raise ServerStartError(str(exc)) from exc
        try:
            self._listener = self._bind(cfg.host, cfg.port)
        except OSError as exc:
            self._host.close()
            raise ServerStartError(
                f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}"
            ) from exc
        self._port = self._listener.getsockname()[1]
        self._driver.start()
        self._decoder.warm_up()
        self._reject_thread = threading.Thread(
            target=self._reject_loop, name="peersync-reject", daemon=True
        )
        self._reject_thread.start()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="peersync-accept", daemon=True
        )
        self._accept_thread.start()
        if cfg.peer_url is not None:
            self._start_peer_monitor()
        _log.info("engine %s serving on %s", cfg.label, self.url)
        return self._port

    def _start_peer_monitor(self) -> None:
        """Hook for the failover issue: ``--peer URL`` / ``--failover``."""
        if self._peer_monitor_factory is None:
            _log.warning(
                "peer %s configured (failover %s) but no peer monitor is plugged in",
                self.config.peer_url,
                self.config.failover,
            )
            return
        self._peer_monitor = self._peer_monitor_factory(self)

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(_LISTEN_BACKLOG)
        except OSError:
            sock.close()
            raise
        return sock

    # -- accepting --------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        listener = self._listener
        with selectors.DefaultSelector() as sel:
            sel.register(listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._draining:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        sock, addr = listener.accept()
                    except OSError as exc:  # EMFILE and friends: back off briefly
                        _log.warning("accept failed: %s", exc)
                        time.sleep(0.05)
                        continue
                    self._admit(sock, addr)

    def _admit(self, sock: socket.socket, addr: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(
            sock,
            f"{addr[0]}:{addr[1]}",
            driver=self.driver,
            decoder=self._decoder,
            limits=self.config.limits,
            on_busy=self._registry.busy,
            on_idle=self._registry.idle,
            draining=lambda: self._draining,
        )
        ok, victims = self._registry.admit(conn)
        for victim in victims:
            victim.evict()
        if not ok:
            self._reject(sock)
            return
        thread = threading.Thread(
            target=self._run_connection, args=(conn,), name="peersync-conn", daemon=True
        )
        self._registry.attach(conn, thread)
        thread.start()

    def _run_connection(self, conn: Connection) -> None:
        try:
            conn.run()
        finally:
            self._registry.remove(conn)

    def _reject(self, sock: socket.socket) -> None:
        """503 from the accept loop itself; the linger happens elsewhere."""
        try:
            sock.setblocking(False)
            sock.send(self._retry_503)  # a few hundred bytes: fits the buffer
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        _log.warning("over %d connections: answered 503", self.config.max_connections)
        try:
            self._rejects.put_nowait(sock)
        except queue.Full:
            sock.close()

    def _reject_loop(self) -> None:
        while True:
            sock = self._rejects.get()
            if sock is None:
                return
            deadline = time.monotonic() + _REJECT_LINGER_S
            try:
                while (remaining := deadline - time.monotonic()) > 0:
                    sock.settimeout(remaining)
                    if not sock.recv(65536):
                        break
            except OSError:
                pass
            finally:
                sock.close()

    # -- stopping -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (bounded), persist."""
        if self._stopped:
            return
        self._stopped = True
        self._draining = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        for conn in self._registry.evict_idle():
            conn.evict()
        deadline = time.monotonic() + self.config.shutdown_grace_s
        for _conn, thread in self._registry.all():
            if thread is not None:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        leftovers = self._registry.all()
        for conn, _thread in leftovers:
            conn.evicted = True
            conn.evict()
        for _conn, thread in leftovers:
            if thread is not None:
                thread.join(timeout=1.0)
        if self._peer_monitor is not None:
            self._peer_monitor.stop()
        if self._driver is not None:
            self._driver.stop()
        self._decoder.close()
        with contextlib.suppress(queue.Full):
            self._rejects.put_nowait(None)
        self._wake_r.close()
        self._wake_w.close()
        _log.info("engine %s stopped", self.config.label)

    def __enter__(self) -> PeerSyncServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
