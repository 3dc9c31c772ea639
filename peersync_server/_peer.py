"""The peer link: the engine's peer monitor wired to the network, and the
reconciler started where a split brain is won.

The core's monitor (inside the engine, ``Engine(..., monitor=...)``) decides
when to probe; this module only does what it is told and reports back:

* ``SendProbe(probe_id, deadline)``: a GET ``/api/peer/health`` on a fresh,
  dedicated connection (``Connection: close``) in its own thread, bounded by
  the probe's deadline. Connection refused or reset before an answer ->
  ``ProbeFailure.REFUSED``; the deadline -> ``TIMEOUT``; anything else ->
  ``ERROR``; an answer -> ``ProbeAnswered(status, body)`` (the core parses
  it). Every report goes back through the driver, stamped with a fresh clock
  read under the engine lock.
* ``AbandonProbe(probe_id)``: that probe's socket is shut down and closed at
  once; nothing is reported for it.
* Reports (``PeerUp``, ``PeerDown``, ``PeerChanged``, ``LabelClash``,
  ``SplitBrain``, ``NoLeader``) and role effects are logged on
  ``peersync.failover``, one line each, with the evidence.
* A split brain this engine wins starts one reconciler
  (``_reconcile_runner``) against itself and its peer in a background thread;
  while the split brain lasts (a failed run, say) another run starts at most
  every ``reconcile_retry_s``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING

import h11

from peersync_proto import (
    AbandonProbe,
    BecomeLeader,
    Entropy,
    LabelClash,
    NoLeader,
    Output,
    PeerChanged,
    PeerDown,
    PeerUp,
    ProbeAnswered,
    ProbeFailed,
    ProbeFailure,
    ReconcilerConfig,
    Role,
    SendProbe,
    SplitBrain,
    Standing,
    StepDown,
    pick_winner,
)
from peersync_proto._monitor import Relation
from peersync_proto._reconcile_events import ReconcileOutput

from ._reconcile_runner import Endpoint, ReconcileRun, describe

if TYPE_CHECKING:
    from ._server import PeerSyncServer

__all__ = ["DEFAULT_RECONCILE_RETRY_S", "PeerLink", "peer_link", "probe_health"]

_log = logging.getLogger("peersync.failover")

#: A split brain that outlives a reconcile run gets another run at most this often.
DEFAULT_RECONCILE_RETRY_S = 1.0
#: A health answer is a few hundred bytes; anything far larger is broken.
_MAX_HEALTH_BYTES = 64 * 1024
_USER_AGENT = b"peersync-monitor/0.1"
_MS = 1_000_000
_NS = 1_000_000_000


class _Probe:
    """One probe's connection, closable from another thread (AbandonProbe)."""

    __slots__ = ("abandoned", "lock", "sock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.abandoned = False

    def attach(self, sock: socket.socket) -> bool:
        with self.lock:
            if self.abandoned:
                return False
            self.sock = sock
            return True

    def abandon(self) -> None:
        with self.lock:
            self.abandoned = True
            sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def probe_health(
    host: str, port: int, prefix: str, deadline_s: float, probe: _Probe | None = None
) -> tuple[int, bytes] | ProbeFailure:
    """GET ``prefix/api/peer/health`` on a fresh connection, by ``deadline_s``
    (``time.monotonic`` seconds). Returns ``(status, body)`` or how it failed."""
    probe = probe or _Probe()
    left = deadline_s - time.monotonic()
    if left <= 0:
        return ProbeFailure.TIMEOUT
    try:
        sock = socket.create_connection((host, port), timeout=left)
    except (ConnectionRefusedError, ConnectionResetError):
        return ProbeFailure.REFUSED
    except TimeoutError:
        return ProbeFailure.TIMEOUT
    except OSError:
        return ProbeFailure.ERROR
    if not probe.attach(sock):
        sock.close()
        return ProbeFailure.TIMEOUT
    answered = False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEALTH_BYTES)
        head = [
            (b"host", f"{host}:{port}".encode("idna")),
            (b"user-agent", _USER_AGENT),
            (b"connection", b"close"),
        ]
        wire = conn.send(
            h11.Request(method="GET", target=prefix + "/api/peer/health", headers=head)
        )
        sock.settimeout(max(1e-3, deadline_s - time.monotonic()))
        sock.sendall((wire or b"") + (conn.send(h11.EndOfMessage()) or b""))
        status = 0
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                left = deadline_s - time.monotonic()
                if left <= 0:
                    return ProbeFailure.TIMEOUT
                sock.settimeout(left)
                data = sock.recv(65536)
                answered = answered or bool(data)
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > _MAX_HEALTH_BYTES:
                    return ProbeFailure.ERROR
            elif isinstance(event, h11.EndOfMessage):
                return status, bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                return ProbeFailure.ERROR
    except (ConnectionResetError, BrokenPipeError):
        # A reset before any byte of an answer: nothing listens behind the
        # address (a proxy in front of a dead process resets, as a host does).
        return ProbeFailure.ERROR if answered else ProbeFailure.REFUSED
    except TimeoutError:
        return ProbeFailure.TIMEOUT
    except (OSError, h11.ProtocolError):
        return ProbeFailure.ERROR
    finally:
        with probe.lock:
            probe.sock = None
        sock.close()


def _local_url(url: str) -> str:
    """The server's own URL as a client on this host reaches it."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{parts.port}"


class PeerLink:
    """Serves the engine's peer monitor and reconciles split brains it wins.

    Made by :func:`peer_link` (the server's ``peer_monitor`` hook) once the
    server runs; ``stop()`` at shutdown.
    """

    def __init__(
        self,
        server: PeerSyncServer,
        *,
        entropy: Entropy = os.urandom,
        reconcile_retry_s: float = DEFAULT_RECONCILE_RETRY_S,
    ) -> None:
        cfg = server.config
        if cfg.peer_url is None:
            raise ValueError("a peer link needs config.peer_url")
        self._driver = server.driver
        self._label = cfg.label
        self._entropy = entropy
        self._retry_ns = int(reconcile_retry_s * _NS)
        peer_token = cfg.peer_api_token if cfg.peer_api_token is not None else cfg.api_token
        self._own = Endpoint(url=_local_url(server.url), api_token=cfg.api_token)
        self._peer = Endpoint(url=cfg.peer_url, api_token=peer_token)
        self._peer_address = self._peer.address()
        self._lock = threading.Lock()
        self._probes: dict[int, _Probe] = {}
        self._stopping = False
        self._reconciling: threading.Thread | None = None
        self._last_run_end = -(2**62)
        self._driver.add_listener(self._on_outputs)
        _log.info("watching peer %s (failover %s)", cfg.peer_url, cfg.failover)
        # The core may have asked for its first probe before we listened.
        monitor = self._driver.view().monitor
        if monitor is not None and monitor.outstanding_id:
            self._send(
                SendProbe(probe_id=monitor.outstanding_id, deadline=monitor.outstanding_deadline)
            )

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            probes, self._probes = list(self._probes.values()), {}
            thread = self._reconciling
        for probe in probes:
            probe.abandon()
        if thread is not None:
            thread.join(timeout=2.0)

    # -- outputs of the core ---------------------------------------------------

    def _on_outputs(self, outputs: Sequence[Output]) -> None:
        for out in outputs:
            if isinstance(out, SendProbe):
                self._send(out)
            elif isinstance(out, AbandonProbe):
                with self._lock:
                    probe = self._probes.pop(out.probe_id, None)
                if probe is not None:
                    probe.abandon()
            elif isinstance(out, PeerUp):
                h = out.health
                _log.info(
                    "peer up: %s %s epoch %d seq %d (status %s)",
                    h.engine_label,
                    h.role.value,
                    h.epoch,
                    h.last_command_seq,
                    h.status.value,
                )
            elif isinstance(out, PeerDown):
                span = (self._driver.clock.now() - out.since) / _MS
                _log.warning(
                    "peer down: %s (first failure %.0f ms ago)",
                    ", ".join(kind.value for kind in out.evidence),
                    span,
                )
            elif isinstance(out, PeerChanged):
                _log.info(
                    "peer changed: %s epoch %d -> %s epoch %d",
                    out.previous_role.value,
                    out.previous_epoch,
                    out.role.value,
                    out.epoch,
                )
            elif isinstance(out, LabelClash):
                _log.error(
                    "label clash: the peer also says it is %r; misconfigured pair, no failover",
                    out.label,
                )
            elif isinstance(out, SplitBrain):
                _log.warning(
                    "split brain: both leader (own epoch %d seq %d, peer %s epoch %d seq %d);"
                    " winner %s",
                    out.own.epoch,
                    out.own.last_command_seq,
                    out.peer.label,
                    out.peer.epoch,
                    out.peer.last_command_seq,
                    out.winner,
                )
                if out.winner == self._label:
                    self._start_reconcile("split brain won")
            elif isinstance(out, NoLeader):
                _log.info("no leader: both follower; %s is elected", out.winner)
            elif isinstance(out, BecomeLeader):
                _log.warning("promoted to leader: cause %s, epoch %d", out.cause.value, out.epoch)
            elif isinstance(out, StepDown):
                _log.warning(
                    "stepped down to follower: cause %s, epoch %d", out.cause.value, out.epoch
                )

    # -- probes ----------------------------------------------------------------

    def _send(self, order: SendProbe) -> None:
        probe = _Probe()
        with self._lock:
            if self._stopping or order.probe_id in self._probes:
                return
            self._probes[order.probe_id] = probe
        threading.Thread(
            target=self._run_probe, args=(order, probe), name="peer-probe", daemon=True
        ).start()

    def _run_probe(self, order: SendProbe, probe: _Probe) -> None:
        host, port, prefix = self._peer_address
        # The core's deadline is on the same monotonic clock as time.monotonic.
        result = probe_health(host, port, prefix, order.deadline / _NS, probe)
        with self._lock:
            mine = self._probes.pop(order.probe_id, None) is probe
            if self._stopping:
                return
        if not mine:
            return  # abandoned: the monitor counted the miss already
        try:
            if isinstance(result, ProbeFailure):
                self._driver.handle(
                    lambda now: ProbeFailed(now=now, probe_id=order.probe_id, failure=result)
                )
            else:
                status, body = result
                self._driver.handle(
                    lambda now: ProbeAnswered(
                        now=now, probe_id=order.probe_id, status=status, body=body
                    )
                )
                self._maybe_reconcile_again()
        except Exception:
            _log.exception("could not report probe %d", order.probe_id)

    # -- split brain -------------------------------------------------------------

    def _maybe_reconcile_again(self) -> None:
        """A split brain that outlived a run gets another, if we win it."""
        view = self._driver.view()
        monitor = view.monitor
        if monitor is None or monitor.relation is not Relation.SPLIT_BRAIN or monitor.peer is None:
            return
        if view.role is not Role.LEADER or monitor.clash:
            return
        own = Standing(
            label=view.label, epoch=view.epoch, last_command_seq=view.host.last_command_seq
        )
        if pick_winner(own, monitor.peer.standing).label != self._label:
            return
        with self._lock:
            due = self._last_run_end + self._retry_ns <= time.monotonic_ns()
        if due:
            self._start_reconcile("split brain persists")

    def _start_reconcile(self, why: str) -> None:
        with self._lock:
            if self._stopping or (self._reconciling is not None and self._reconciling.is_alive()):
                return
            thread = threading.Thread(
                target=self._reconcile, args=(why,), name="peer-reconcile", daemon=True
            )
            self._reconciling = thread
        thread.start()

    def _reconcile(self, why: str) -> None:
        peer_label = "b" if self._label == "a" else "a"
        engines = {self._label: self._own, peer_label: self._peer}
        labels = tuple(sorted(engines))
        config = ReconcilerConfig(engines=(labels[0], labels[1]), owner=f"engine-{self._label}")
        _log.warning("reconcile: starting (%s)", why)

        def on_output(output: ReconcileOutput) -> None:
            shown = describe(output)
            if shown is not None:
                _log.info(
                    "reconcile: %s",
                    " ".join(f"{k}={v}" for k, v in shown.items() if v not in (None, "")),
                )

        try:
            outcome = ReconcileRun(
                engines, config=config, entropy=self._entropy, on_output=on_output
            ).run()
            _log.warning("reconcile: finished: %s", describe(outcome))
        except Exception:
            _log.exception("reconcile: crashed")
        finally:
            with self._lock:
                self._last_run_end = time.monotonic_ns()


def peer_link(server: PeerSyncServer) -> PeerLink:
    """The server's ``peer_monitor`` factory: ``PeerSyncServer(cfg, peer_monitor=peer_link)``."""
    return PeerLink(server)
