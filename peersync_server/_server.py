"""The threaded server: accept loop, connection cap, graceful stop.

::

    server = PeerSyncServer(ServerConfig(label="a", state_dir=tmp, no_auth=True))
    port = server.start()          # bound port (config port 0 = any free port)
    ...                            # http://127.0.0.1:{port}/api/peer/health
    server.stop()                  # graceful: finish in-flight work, persist

A connection with a request in flight holds one worker thread, at most
``max_connections`` of them; when every one is busy the accept loop answers
``503`` with ``Retry-After`` itself. An *idle* connection (accepted and silent,
or keep-alive between requests) holds no thread at all: the accept loop parks
it in its selector until it speaks, closes it at its idle deadline, and closes
the oldest first when more than ``max_idle_connections`` are parked. So idle
and slow clients cannot starve a peer probe, and a flood of idle connections
costs an ``accept`` each, not a thread each.

After an answer the worker keeps its connection for a short, bounded window
(``DEFAULT_KEEP_WINDOW_S``) before parking it: a keep-alive client that asks
again at once is served by the same thread, with no hand-off to the accept
loop and back. A connection in its window has no request in flight, so it
never counts toward the ``503`` cap: when another connection needs its slot,
the accept loop waits for it (the window is cut short) instead of refusing.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import queue
import resource
import select
import selectors
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import attrs

from peersync_proto import (
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_SNAPSHOT_BYTES,
    DEFAULT_PROBE_DEADLINE_NS,
    DEFAULT_PROBE_PERIOD_NS,
    DEFAULT_REFUSED_RETRY_NS,
    DEFAULT_STALL_LIMIT_NS,
    EngineConfig,
    Entropy,
    FailoverPolicy,
    MonitorConfig,
    Role,
)

from ._clock import Clock
from ._connection import (
    DEFAULT_RETRY_AFTER_S,
    DEFAULT_STATE_READS,
    Connection,
    Limits,
    own_error,
)
from ._decoder_pool import DEFAULT_DECODER_WORKERS, DecoderPool
from ._driver import EngineDriver
from ._gate import DEFAULT_RUN_SLOTS, RunGate
from ._host import DEFAULT_HEARTBEAT_INTERVAL_S, EngineHost, HostStateError, StandaloneHost
from ._workers import WorkerPool

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_KEEP_WINDOW_S",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_IDLE_CONNECTIONS",
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
#: Connections with a request in flight (one worker thread each); past it 503.
DEFAULT_MAX_CONNECTIONS = 64
#: Idle connections parked without a thread; past it the oldest is closed.
DEFAULT_MAX_IDLE_CONNECTIONS = 512
#: SIGTERM: in-flight requests get this long to finish.
DEFAULT_SHUTDOWN_GRACE_S = 5.0
#: After an answer, the worker waits this long for the same connection's next
#: request before parking it in the accept loop. A client that asks again at
#: once (a probe loop, any sequential keep-alive client: tens of microseconds
#: on loopback) is served by the same thread, saving the two thread hand-offs
#: under the GIL of a park (worker -> accept loop -> worker), which cost more
#: than the request itself. 2 ms covers a client's turnaround on a loaded
#: machine and is too short for an idle connection to hold a worker in any
#: way that matters (the window is cut short when another connection needs
#: the slot, and at shutdown). 0 turns it off.
DEFAULT_KEEP_WINDOW_S = 0.002
#: Files besides connections: listeners, wake pipes, logs, state files, the
#: decoder's pipes and spool files.
_SPARE_FILES = 64
#: With a peer address: other sockets looked at per turn of the accept loop.
_EVENT_BATCH = 16
_LISTEN_BACKLOG = socket.SOMAXCONN  # the kernel clamps it to net.core.somaxconn
_REJECT_QUEUE = 128
_ACCEPT_BATCH = 64
_REJECT_LINGER_S = 0.5
#: A connection waiting for a keeper's slot is retried at least this often
#: (keepers give the slot up at once; this only bounds a missed wake-up).
_DEFER_RECHECK_S = 0.001


def _for_peer(key: selectors.SelectorKey, peer_listener: socket.socket | None) -> bool:
    """An event of the peer's own address: its listener or one of its connections."""
    return key.fileobj is peer_listener or (isinstance(key.data, Connection) and key.data.for_peer)


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
    #: A second address that serves the peer (``None``: none). Its events go
    #: first in the accept loop, and a health probe on it is answered there at
    #: once, busy or not, so clients flooding ``host:port`` cannot make the
    #: peer's probes late (docs/decisions.md). Port 0 picks a free one.
    peer_listen_host: str | None = None
    peer_listen_port: int = 0
    failover: str = "auto"
    #: The peer monitor's tunables (docs/failover.md); used with ``peer_url``.
    probe_interval_ms: int = DEFAULT_PROBE_PERIOD_NS // 1_000_000
    probe_deadline_ms: int = DEFAULT_PROBE_DEADLINE_NS // 1_000_000
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    #: The peer's bearer token when it differs from ours (else ``api_token``).
    peer_api_token: bytes | None = attrs.field(default=None, repr=False)
    max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_idle_connections: int = DEFAULT_MAX_IDLE_CONNECTIONS
    limits: Limits = attrs.field(factory=Limits)
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    stall_limit_ns: int = DEFAULT_STALL_LIMIT_NS
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    decoder_workers: int = DEFAULT_DECODER_WORKERS
    #: Worker threads that run request code at once (see ``_gate.py``).
    run_slots: int = DEFAULT_RUN_SLOTS
    #: ``GET /api/sync/state`` answers in flight at once; more wait, then 503.
    state_reads: int = DEFAULT_STATE_READS
    keep_window_s: float = DEFAULT_KEEP_WINDOW_S

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

    def monitor_config(self) -> MonitorConfig | None:
        """The engine's peer monitor, when a peer is configured."""
        if self.peer_url is None:
            return None
        period = self.probe_interval_ms * 1_000_000
        return MonitorConfig(
            policy=FailoverPolicy(self.failover),
            probe_period_ns=period,
            probe_deadline_ns=self.probe_deadline_ms * 1_000_000,
            failure_threshold=self.failure_threshold,
            refused_retry_ns=min(DEFAULT_REFUSED_RETRY_NS, period),
        )


class _Stoppable(Protocol):
    def stop(self) -> None: ...


#: The failover hook: called once at start when ``peer_url`` is set, with the
#: running server (``server.driver.handle`` feeds the core under its lock,
#: ``server.driver.add_listener`` sees every output); returns what to stop.
PeerMonitorFactory = Callable[["PeerSyncServer"], _Stoppable]


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
        self._workers = WorkerPool(config.max_connections)
        self._gate = RunGate(config.run_slots)
        self._state_reads = threading.BoundedSemaphore(config.state_reads)
        self._lock = threading.Lock()
        self._busy_changed = threading.Condition(self._lock)
        self._busy: set[Connection] = set()  # in flight, or in their keep window
        self._keeping = 0  # of ``_busy``: in their keep window (no request in flight)
        self._want_slot = False  # the accept loop waits for a keeping worker's slot
        self._dispatched = 0  # hand-offs from the accept loop to a worker
        self._inbox: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self._reactor_done = False
        self._parked_count = 0
        self._decoder = DecoderPool(config.decoder_workers, spool_dir=config.state_dir)
        self._driver: EngineDriver | None = None
        self._listener: socket.socket | None = None
        self._peer_listener: socket.socket | None = None
        self._peer_port = 0
        self._wake_r, self._wake_w = socket.socketpair()
        # Readable while keeping workers must give their slot up (cut windows short).
        self._preempt_r, self._preempt_w = socket.socketpair()
        self._preempt_r.setblocking(False)
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
    def peer_listen_url(self) -> str | None:
        """The peer's own address (``ServerConfig.peer_listen_host``), if any."""
        host = self.config.peer_listen_host
        if host is None:
            return None
        return f"http://{f'[{host}]' if ':' in host else host}:{self._peer_port}"

    @property
    def driver(self) -> EngineDriver:
        if self._driver is None:
            raise RuntimeError("server not started")
        return self._driver

    @property
    def connection_count(self) -> int:
        """Open connections: with a request in flight, or parked idle."""
        with self._lock:
            return len(self._busy) + self._parked_count

    @property
    def busy_count(self) -> int:
        """Connections holding a worker: a request in flight, or the keep window."""
        with self._lock:
            return len(self._busy)

    @property
    def dispatch_count(self) -> int:
        """How many times the accept loop handed a connection to a worker (a
        request served within the keep window needs no hand-off)."""
        with self._lock:
            return self._dispatched

    # -- start -----------------------------------------------------------------------

    def start(self) -> int:
        """Open the state, bind, and serve in background threads; returns the port."""
        cfg = self.config
        # Bind first: a start that fails (port in use) must leave a fresh
        # state dir fresh, so the next start still applies ``--role``.
        try:
            self._listener = self._bind(cfg.host, cfg.port)
        except OSError as exc:
            raise ServerStartError(
                f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}"
            ) from exc
        if cfg.peer_listen_host is not None:
            try:
                self._peer_listener = self._bind(cfg.peer_listen_host, cfg.peer_listen_port)
            except OSError as exc:
                self._listener.close()
                self._listener = None
                raise ServerStartError(
                    f"cannot listen on {cfg.peer_listen_host}:{cfg.peer_listen_port} "
                    f"(--peer-listen): {exc.strerror or exc}"
                ) from exc
            self._peer_port = self._peer_listener.getsockname()[1]
        try:
            # The engine watches its peer only when something serves its
            # probes (the ``peer_monitor`` hook); unserved probes would look
            # like a dead peer.
            monitor = cfg.monitor_config() if self._peer_monitor_factory is not None else None
            self._driver = EngineDriver(
                cfg.engine_config(),
                self._host,
                clock=self._clock,
                entropy=self._entropy,
                monitor=monitor,
            )
        except HostStateError as exc:
            self._listener.close()
            self._listener = None
            if self._peer_listener is not None:
                self._peer_listener.close()
                self._peer_listener = None
            raise ServerStartError(str(exc)) from exc
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
        self._check_open_files()
        _log.info("engine %s serving on %s", cfg.label, self.url)
        if self.peer_listen_url is not None:
            _log.info("engine %s serving its peer on %s", cfg.label, self.peer_listen_url)
        return self._port

    def _check_open_files(self) -> None:
        """Every parked and busy connection is a file descriptor. Raise the
        soft open-file limit toward the hard one when this configuration can
        use more; warn when even the hard limit is short (past it, accepts
        fail with EMFILE and new connections, the peer's probes among them,
        wait in the listen queue: found by a tester under ``ulimit -n 512``)."""
        cfg = self.config
        need = cfg.max_connections + cfg.max_idle_connections + _SPARE_FILES
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < need:
            raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
                soft = raised
        if soft != resource.RLIM_INFINITY and soft < need:
            _log.warning(
                "open-file limit %d is below the %d this server can use "
                "(--max-connections + --max-idle-connections + %d); raise it (ulimit -n)",
                soft,
                need,
                _SPARE_FILES,
            )

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Wait until the snapshot decoder's worker process is up, so the first
        apply does not compete with a process start (the CLI does this before
        it prints ``listening on``)."""
        return self._decoder.wait_warm(timeout)

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
        """The reactor: accepts, parks idle connections (no thread each),
        gathers each request head without a worker, hands a connection to a
        worker once a whole head is in, and closes idle ones at their deadline
        (``408`` for half a head) or when too many are parked (oldest first)."""
        assert self._listener is not None
        listener = self._listener
        listener.setblocking(False)
        limits = self.config.limits
        parked: OrderedDict[Connection, float] = OrderedDict()  # conn -> deadline
        deadlines: list[tuple[float, int, Connection]] = []
        counter = itertools.count()
        deferred: list[Connection] = []  # spoke while the busy cap was held by keepers
        peer_listener = self._peer_listener
        with selectors.DefaultSelector() as sel:
            sel.register(listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            if peer_listener is not None:
                peer_listener.setblocking(False)
                sel.register(peer_listener, selectors.EVENT_READ)

            def park(conn: Connection, now: float) -> None:
                deadline = conn.head_deadline or now + limits.idle_timeout_s
                try:
                    sel.register(conn.sock, selectors.EVENT_READ, conn)
                except (ValueError, OSError):  # closed under us
                    conn.close()
                    return
                parked[conn] = deadline
                heapq.heappush(deadlines, (deadline, next(counter), conn))
                while len(parked) > self.config.max_idle_connections:
                    oldest, _ = parked.popitem(last=False)
                    sel.unregister(oldest.sock)
                    oldest.close()

            def unpark(conn: Connection) -> None:
                del parked[conn]
                sel.unregister(conn.sock)

            while not self._draining:
                now = time.monotonic()
                while deadlines and (
                    deadlines[0][2] not in parked or parked[deadlines[0][2]] != deadlines[0][0]
                ):
                    heapq.heappop(deadlines)  # stale entry
                if deadlines and deadlines[0][0] <= now:
                    _, _, conn = heapq.heappop(deadlines)
                    unpark(conn)
                    conn.time_out_head()  # idle: close silently; half a head: 408
                    self._parked_count = len(parked)
                    continue
                timeout = deadlines[0][0] - now if deadlines else None
                if deferred:
                    deferred = self._dispatch_deferred(deferred)
                    if deferred:  # keepers give their slots up at once; recheck soon
                        timeout = min(timeout or _DEFER_RECHECK_S, _DEFER_RECHECK_S)
                events = sel.select(timeout)
                if peer_listener is not None:
                    # The peer's events first, then a bounded batch of the
                    # rest: a ready socket not looked at now is reported again
                    # by the next select, and the peer never waits behind more
                    # than one batch (found by a tester: 300 clients flooding
                    # peer health made the peer's probe wait for all of them).
                    events.sort(key=lambda event: not _for_peer(event[0], peer_listener))
                budget = _EVENT_BATCH if peer_listener is not None else len(events)
                for key, _ in events:
                    if peer_listener is not None and key.fileobj is peer_listener:
                        for conn in self._accept_some(peer_listener, peer=True):
                            park(conn, time.monotonic())
                        continue
                    if key.fileobj is self._wake_r:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                        continue
                    if budget <= 0 and not _for_peer(key, peer_listener):
                        continue
                    budget -= 1
                    if key.fileobj is listener:
                        for conn in self._accept_some(listener):
                            park(conn, time.monotonic())
                        continue
                    conn = key.data
                    if conn not in parked:
                        continue  # evicted (oldest idle) earlier in this same batch
                    unpark(conn)
                    if not conn.gather():
                        park(conn, time.monotonic())  # half a head: no worker yet
                    elif conn.for_peer and conn.is_health_probe():
                        self._serve_inline(conn)  # the peer's probe: at once, busy or not
                    elif not self._dispatch(conn):
                        deferred.append(conn)
                while True:
                    try:
                        conn = self._inbox.get_nowait()
                    except queue.Empty:
                        break
                    if not conn.head_ready:
                        park(conn, time.monotonic())
                    elif not self._dispatch(conn):  # a head came in since the worker looked
                        deferred.append(conn)
                with self._lock:
                    self._parked_count = len(parked)
            with self._lock:
                self._reactor_done = True
                self._parked_count = 0
            for conn in [*parked, *deferred]:
                conn.close()
            while True:
                try:
                    self._inbox.get_nowait().close()
                except queue.Empty:
                    break

    def _accept_some(self, listener: socket.socket, *, peer: bool = False) -> list[Connection]:
        accepted = []
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, addr = listener.accept()
            except BlockingIOError:
                break
            except OSError as exc:  # EMFILE and friends: back off briefly
                _log.warning("accept failed: %s", exc)
                time.sleep(0.05)
                break
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            accepted.append(
                Connection(
                    sock,
                    f"{addr[0]}:{addr[1]}",
                    driver=self.driver,
                    decoder=self._decoder,
                    limits=self.config.limits,
                    draining=lambda: self._draining,
                    gate=self._gate,
                    for_peer=peer,
                    state_reads=self._state_reads,
                )
            )
        return accepted

    def _dispatch(self, conn: Connection) -> bool:
        """A parked connection spoke: a worker serves it, or 503 when every
        slot has a request in flight. ``False``: every slot is taken but some
        only by a keep window; the caller retries once those are given up."""
        cap = self.config.max_connections
        with self._lock:
            if len(self._busy) < cap:
                self._busy.add(conn)
                self._dispatched += 1
                full = False
            elif len(self._busy) - self._keeping < cap:
                if not self._want_slot:
                    self._want_slot = True
                    with contextlib.suppress(OSError):
                        self._preempt_w.send(b"p")
                return False
            else:
                full = True
        if full:
            if conn.is_health_probe():
                # Peer health answers 200 in every state (contract 5.5): past
                # the cap the accept loop answers it itself, briefly.
                self._serve_inline(conn)
            else:
                self._reject(conn.sock)
            return True
        self._workers.submit(lambda: self._work(conn))
        return True

    def _serve_inline(self, conn: Connection) -> None:
        """One peer-health probe served on the accept loop's thread (a short
        core call and a few hundred bytes written without waiting), then
        closed: a connection that pipelined more probes behind it never keeps
        the accept loop serving them (found by a tester: 70 such connections
        kept it from ever accepting the peer's probe)."""
        conn.serve_inline()

    def _dispatch_deferred(self, deferred: list[Connection]) -> list[Connection]:
        """Retry the connections that waited for a keeper's slot; returns those
        still waiting. When none is left, keep windows are allowed again."""
        waiting = [conn for conn in deferred if not self._dispatch(conn)]
        if not waiting:
            with self._lock:
                self._want_slot = False
                with contextlib.suppress(OSError):
                    while self._preempt_r.recv(4096):
                        pass
        return waiting

    def _work(self, conn: Connection) -> None:
        keep = conn.serve_ready()  # closes the connection itself when False
        keeping = False
        while keep:
            keeping = self._enter_window()
            if not keeping:
                break
            if conn.read_ready():  # asked again already: serve it (no poll)
                with self._lock:
                    self._keeping -= 1
                    keeping = False
            else:
                # Only a whole head is served here; part of one goes back to
                # the accept loop, which gathers the rest without a worker.
                if not self._spoke_within_window(conn) or not conn.read_ready():
                    break
                with self._lock:  # leave the window and serve, unless told to park
                    if self._want_slot or self._draining:
                        break
                    self._keeping -= 1
                    keeping = False
            keep = conn.serve_ready()
        with self._lock:  # one step: a waiting dispatch never sees a half-freed slot
            if keeping:
                self._keeping -= 1
            self._busy.discard(conn)
            self._busy_changed.notify_all()
            park = keep and not self._reactor_done and not self._draining
            if park:
                self._inbox.put(conn)
            wake = park or self._want_slot
        if wake:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"w")
        if keep and not park:
            conn.close()

    def _enter_window(self) -> bool:
        """Start a keep window (counted in ``_keeping``), unless it is off, a
        connection waits for a slot, or the server is stopping."""
        if self.config.keep_window_s <= 0:
            return False
        with self._lock:
            if self._want_slot or self._draining:
                return False
            self._keeping += 1
            return True

    def _spoke_within_window(self, conn: Connection) -> bool:
        """Wait up to the keep window for the client's next bytes; ``False``
        when the window passed or was cut short (a slot is wanted, shutdown)."""
        try:
            poller = select.poll()
            poller.register(conn.sock, select.POLLIN)
            poller.register(self._preempt_r, select.POLLIN)
            ready = poller.poll(self.config.keep_window_s * 1e3)
        except (OSError, ValueError):
            return False
        preempt = self._preempt_r.fileno()
        return any(fd != preempt for fd, _ in ready)

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
        with contextlib.suppress(OSError):
            self._preempt_w.send(b"x")  # cut keep windows short
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        if self._peer_listener is not None:
            self._peer_listener.close()
        deadline = time.monotonic() + self.config.shutdown_grace_s
        with self._busy_changed:
            while self._busy and (remaining := deadline - time.monotonic()) > 0:
                self._busy_changed.wait(remaining)
            leftovers = list(self._busy)
        for conn in leftovers:
            conn.abort()
        with self._busy_changed:
            end = time.monotonic() + 1.0
            while self._busy and (remaining := end - time.monotonic()) > 0:
                self._busy_changed.wait(remaining)
        self._workers.stop()
        if self._peer_monitor is not None:
            self._peer_monitor.stop()
        if self._driver is not None:
            self._driver.stop()
        self._decoder.close()
        with contextlib.suppress(queue.Full):
            self._rejects.put_nowait(None)
        self._wake_r.close()
        self._wake_w.close()
        self._preempt_r.close()
        self._preempt_w.close()
        _log.info("engine %s stopped", self.config.label)

    def __enter__(self) -> PeerSyncServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
