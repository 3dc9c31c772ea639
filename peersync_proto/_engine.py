"""The engine machine: one per engine, all nine endpoints (contract 3, 4.1).

``Engine.handle(event)`` is the whole interface: an event in, a tuple of
outputs back. Every check of a request happens before anything changes, so a
refused request (any 4xx) leaves the engine exactly as it was.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._config import EngineConfig, Entropy, Floors
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    Event,
    HostStatus,
    Request,
    SnapshotApplied,
    SnapshotApplyFailed,
    SnapshotCaptured,
    SnapshotCaptureFailed,
    Tick,
)
from ._head import authenticate, body_limit
from ._lock import LockView, ReconcileLock
from ._monitor import MonitorConfig, MonitorView, PeerMonitor
from ._never import assert_never
from ._outputs import (
    ApplySnapshot,
    BecomeLeader,
    CaptureSnapshot,
    FloorsRaised,
    HostStalled,
    Output,
    Response,
    StepDown,
)
from ._peer_events import MonitorOutput, OwnStanding, ProbeAnswered, ProbeFailed, Promote
from ._requests import (
    check_body_size,
    check_content_type,
    header_values,
    parse_acquire,
    parse_force_leader,
    parse_refresh,
)
from ._responses import error_response, json_response, raw_json_response
from ._role import RoleInput, role_move
from ._routes import Endpoint, Route, route
from ._snapshot import decode_snapshot, encode_snapshot
from ._values import Cause, ClockSync, DecodedSnapshot, Role
from ._winner import promotion_epoch

__all__ = ["Checkpoint", "Engine", "EngineView", "HostView"]

_NS_PER_MS = 1_000_000
LOCK_ID_BYTES = 16  #: contract 3.5: 128 bits from the host's entropy


@attrs.frozen(kw_only=True, slots=True)
class HostView:
    """What the host last reported (zero values until it does)."""

    program_source: str = ""
    preview_source: str = ""
    last_command_seq: int = 0
    last_executed_seq: int = 0
    last_executed_err: str = ""
    late_commands: int = 0
    clock_sync: ClockSync = attrs.field(factory=ClockSync)
    last_pong_sent_us: int = 0


@attrs.frozen(kw_only=True, slots=True)
class EngineView:
    """Everything the engine holds, at one instant, for hosts and tests.

    Two views taken at the same ``now`` are equal exactly when the engines
    would answer every request the same way.
    """

    label: str
    role: Role
    epoch: int
    last_fencing_token: int
    last_peer_epoch: int
    lock: LockView | None
    host: HostView
    stalled: bool
    started_at: int
    now: int
    pending: tuple[tuple[int, str], ...]
    monitor: MonitorView | None


#: The engine's plain attributes a checkpoint copies (values, never mutated in
#: place); the lock, the pending completions and the monitor are copied apart.
#: Everything else ``__init__`` sets never changes after it.
_CHECKPOINTED = (
    "_role",
    "_epoch",
    "_last_lock_id",
    "_last_peer_epoch",
    "_host",
    "_now",
    "_last_report_at",
    "_stall_reported",
)


@attrs.frozen(kw_only=True, slots=True)
class Checkpoint:
    """An opaque memento from :meth:`Engine.checkpoint` (see :meth:`Engine.restore`)."""

    serial: int
    values: tuple[Any, ...] = attrs.field(repr=False)


@attrs.frozen(kw_only=True, slots=True)
class _PendingCapture:
    pass


@attrs.frozen(kw_only=True, slots=True)
class _PendingApply:
    snapshot: DecodedSnapshot


class Engine:
    """One engine's peer-sync core. Pure: no I/O, no clock, no randomness.

    ``now`` is the host's monotonic clock at start; ``entropy(n)`` returns
    ``n`` random bytes (lock ids); ``floors`` is what the host persisted, or
    ``None`` for a fresh engine (which alone takes ``config.role``).
    With ``monitor`` the engine also watches its peer (contract 4.2): it asks
    the host to send probes (``SendProbe``), takes their outcomes
    (``ProbeAnswered``, ``ProbeFailed``) and, under policy ``auto``, promotes
    itself by the epoch rule.
    """

    def __init__(
        self,
        config: EngineConfig,
        *,
        now: int,
        entropy: Entropy,
        floors: Floors | None = None,
        monitor: MonitorConfig | None = None,
    ) -> None:
        Tick(now=now)  # validates now
        self._config = config
        self._entropy = entropy
        fresh = floors is None
        floors = Floors() if floors is None else floors
        self._role = config.role if fresh else Role.FOLLOWER
        self._epoch = floors.epoch
        self._lock = ReconcileLock(fencing_floor=floors.fencing_token)
        self._last_lock_id = ""
        self._last_peer_epoch = floors.peer_epoch
        self._host = HostView()
        self._started_at = now
        self._now = now
        self._last_report_at = now
        self._stall_reported = False
        self._pending: dict[int, _PendingCapture | _PendingApply] = {}
        self._serial = 0  # events handled; a checkpoint names the one it follows
        self._monitor = (
            None
            if monitor is None
            else PeerMonitor(monitor, now=now, last_peer_epoch=floors.peer_epoch)
        )

    # -- reading -----------------------------------------------------------
    @property
    def label(self) -> str:
        return self._config.label

    @property
    def role(self) -> Role:
        return self._role

    @property
    def epoch(self) -> int:
        return self._epoch

    def _stalled(self, now: int) -> bool:
        return now - self._last_report_at > self._config.stall_limit_ns

    def view(self) -> EngineView:
        now = self._now
        return EngineView(
            label=self.label,
            role=self._role,
            epoch=self._epoch,
            last_fencing_token=self._lock.last_fencing_token,
            last_peer_epoch=self._last_peer_epoch,
            lock=self._lock.view(now),
            host=self._host,
            stalled=self._stalled(now),
            started_at=self._started_at,
            now=now,
            pending=tuple(
                (rid, "apply" if isinstance(p, _PendingApply) else "capture")
                for rid, p in sorted(self._pending.items())
            ),
            monitor=None if self._monitor is None else self._monitor.view(),
        )

    def next_deadline(self) -> int | None:
        """When the engine next needs a ``Tick``: a lock expiry to report, or
        the instant the host's silence becomes a stall. ``None``: never."""
        deadlines = [self._lock.deadline()]
        if self._monitor is not None:
            deadlines.append(self._monitor.next_deadline())
        if not self._stall_reported:
            deadlines.append(self._last_report_at + self._config.stall_limit_ns + 1)
        return min((d for d in deadlines if d is not None), default=None)

    # -- undoing what could not be made durable ------------------------------
    def checkpoint(self) -> Checkpoint:
        """Everything the engine holds, to :meth:`restore` if the host cannot
        carry out the effects of the next event (a ``FloorsRaised`` that
        could not be written): then the grant or promotion never happened."""
        monitor = None if self._monitor is None else self._monitor.view()
        values = (
            *(getattr(self, name) for name in _CHECKPOINTED),
            self._lock.memento(),
            dict(self._pending),
            monitor,
        )
        return Checkpoint(serial=self._serial, values=values)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Undo the one event handled since ``checkpoint`` (or nothing).

        Only the last event can be undone: a checkpoint older than that is
        refused with :class:`LocalProtocolError`, since later events may have
        been answered on the strength of it.
        """
        if checkpoint.serial not in (self._serial, self._serial - 1):
            raise LocalProtocolError("only the last event can be undone")
        *plain, lock, pending, monitor = checkpoint.values
        for name, value in zip(_CHECKPOINTED, plain, strict=True):
            setattr(self, name, value)
        self._lock.restore(lock)
        self._pending = dict(pending)
        if self._monitor is not None:
            self._monitor.restore(monitor)
        self._serial = checkpoint.serial

    # -- the one entry point -------------------------------------------------
    def handle(self, event: Event) -> tuple[Output, ...]:
        if event.now < self._now:
            raise LocalProtocolError(
                f"time went backwards: now={event.now} after {self._now}; nothing changed"
            )
        self._check_completion(event)
        # The monitor validates its input before it changes; run it before
        # anything else moves, so a refused probe report changes nothing.
        peer_epoch = self._last_peer_epoch
        decisions = self._step_monitor(event)
        self._serial += 1
        out: list[Output] = []
        self._advance(event.now, out)
        if self._last_peer_epoch > peer_epoch and not any(
            isinstance(d, Promote) for d in decisions
        ):
            out.append(self._floors())  # a promotion below persists it too
        for decision in decisions:
            if isinstance(decision, Promote):
                # The monitor decided from our standing at this instant, when
                # we were follower; the role table refuses anything else.
                self.promote(decision.cause, out)
            else:
                out.append(decision)
        if isinstance(event, (ProbeAnswered, ProbeFailed)):
            pass  # the monitor's alone
        elif isinstance(event, Request):
            self._on_request(event, out)
        elif isinstance(event, HostStatus):
            self._on_status(event)
        elif isinstance(event, SnapshotCaptured):
            self._on_captured(event, out)
        elif isinstance(event, SnapshotCaptureFailed):
            self._pending.pop(event.request_id)
            out.append(error_response(event.request_id, _internal()))
        elif isinstance(event, SnapshotApplied):
            self._on_applied(event, out)
        elif isinstance(event, SnapshotApplyFailed):
            self._pending.pop(event.request_id)
            out.append(
                error_response(
                    event.request_id,
                    RemoteProtocolError(
                        "The engine could not apply the snapshot; its state is unchanged.",
                        status=500,
                        code="apply_failed",
                    ),
                )
            )
        elif isinstance(event, Tick):
            pass
        else:
            assert_never(event)
        return tuple(out)

    def _check_completion(self, event: Event) -> None:
        """Refuse a completion the engine never asked for, or a request id
        still in use, before anything changes."""
        if isinstance(event, Request) and event.request_id in self._pending:
            raise LocalProtocolError(f"request id {event.request_id} is already pending")
        if isinstance(event, (SnapshotCaptured, SnapshotCaptureFailed)):
            want: type[_PendingCapture | _PendingApply] = _PendingCapture
        elif isinstance(event, (SnapshotApplied, SnapshotApplyFailed)):
            want = _PendingApply
        else:
            return
        if not isinstance(self._pending.get(event.request_id), want):
            raise LocalProtocolError(
                f"{type(event).__name__}: request {event.request_id} is not awaiting it"
            )

    def _step_monitor(self, event: Event) -> tuple[MonitorOutput, ...]:
        monitor = self._monitor
        if monitor is None:
            if isinstance(event, (ProbeAnswered, ProbeFailed)):
                raise LocalProtocolError("a probe report, but this engine has no peer monitor")
            return ()
        own = OwnStanding(
            label=self.label,
            role=self._role,
            epoch=self._epoch,
            last_command_seq=self._host.last_command_seq,
        )
        if isinstance(event, (ProbeAnswered, ProbeFailed)):
            decisions = monitor.handle(event, own=own)
        elif event.now >= monitor.next_deadline():
            decisions = monitor.handle(Tick(now=event.now), own=own)
        else:
            return ()
        self._last_peer_epoch = max(self._last_peer_epoch, monitor.last_peer_epoch)
        return decisions

    def _advance(self, now: int, out: list[Output]) -> None:
        self._now = now
        expired = self._lock.expire(now)
        if expired is not None:
            out.append(expired)
        if not self._stall_reported and self._stalled(now):
            self._stall_reported = True
            out.append(HostStalled(silent_since=self._last_report_at))

    # -- host events ---------------------------------------------------------
    def _on_status(self, event: HostStatus) -> None:
        changes = {
            name: getattr(event, name)
            for name in (
                "program_source",
                "last_command_seq",
                "last_executed_seq",
                "last_executed_err",
                "late_commands",
                "clock_sync",
                "last_pong_sent_us",
            )
            if getattr(event, name) is not None
        }
        self._host = attrs.evolve(self._host, **changes)
        self._last_report_at = event.now
        self._stall_reported = False

    def _on_captured(self, event: SnapshotCaptured, out: list[Output]) -> None:
        self._pending.pop(event.request_id)
        body = encode_snapshot(
            engine_label=self.label,
            role=self._role,
            epoch=self._epoch,
            captured_at_us=event.captured_at_us,
            last_command_seq=event.last_command_seq,
            last_executed_seq=event.last_executed_seq,
            program_source=event.program_source,
            preview_source=event.preview_source,
            state=event.state,
            checksum=event.checksum,
        )
        out.append(raw_json_response(event.request_id, 200, body))

    def _on_applied(self, event: SnapshotApplied, out: list[Output]) -> None:
        pending = self._pending.pop(event.request_id)
        assert isinstance(pending, _PendingApply)
        snap = pending.snapshot
        if snap.epoch > self._epoch:
            self._epoch = snap.epoch
            out.append(self._floors())
        if snap.role is Role.LEADER and self._role is Role.LEADER:
            self._role = role_move(self._role, RoleInput.STEP_DOWN)
            out.append(StepDown(epoch=self._epoch, cause=Cause.SNAPSHOT))
        self._host = attrs.evolve(
            self._host,
            program_source=snap.program_source,
            preview_source=snap.preview_source,
            last_command_seq=snap.last_command_seq,
            last_executed_seq=snap.last_executed_seq,
        )
        out.append(
            json_response(
                event.request_id,
                200,
                {
                    "applied": True,
                    "epoch": self._epoch,
                    "role": self._role.value,
                    "lastCommandSeq": snap.last_command_seq,
                },
            )
        )

    # -- requests ------------------------------------------------------------
    def _on_request(self, req: Request, out: list[Output]) -> None:
        try:
            response = self._serve(req, out)
        except RemoteProtocolError as err:
            response = error_response(req.request_id, err)
        if response is not None:
            out.append(response)

    def _serve(self, req: Request, out: list[Output]) -> Response | None:
        found = route(req.method, req.target)
        endpoint = found.endpoint
        if endpoint is Endpoint.PEER_HEALTH:
            return json_response(req.request_id, 200, self._peer_health_body(req.now))
        authenticate(self._config, found, req.headers)
        if found.takes_body:
            check_body_size(req.body, body_limit(self._config, endpoint))
            if req.body or req.predecoded is not None:
                check_content_type(req.headers)
        rid = req.request_id
        if endpoint is Endpoint.FORCE_LEADER:
            return self._force_leader(req, out)
        if endpoint is Endpoint.SYNC_HEALTH:
            return json_response(rid, 200, self._sync_health_body(req.now))
        if endpoint is Endpoint.GET_STATE:
            self._pending[rid] = _PendingCapture()
            out.append(CaptureSnapshot(request_id=rid))
            return None
        if endpoint is Endpoint.APPLY_STATE:
            self._apply_state(req, out)
            return None
        if endpoint is Endpoint.ACQUIRE_LOCK:
            return self._acquire(req, out)
        if endpoint is Endpoint.REFRESH_LOCK:
            ttl = parse_refresh(req.body)
            out.append(self._lock.refresh(req.now, lock_id=_lock_id(found), ttl_ms=ttl))
            return json_response(rid, 200, self._lock.grant_body(req.now))
        if endpoint is Endpoint.RELEASE_LOCK:
            out.append(self._lock.release(req.now, lock_id=_lock_id(found)))
            return json_response(rid, 200, {"released": True})
        if endpoint is Endpoint.LOCK_STATUS:
            return json_response(rid, 200, self._lock.status_body(req.now))
        assert_never(endpoint)  # PEER_HEALTH was answered above

    def _peer_health_body(self, now: int) -> dict[str, Any]:
        host = self._host
        return {
            "status": "stalled" if self._stalled(now) else "ok",
            "uptimeMs": (now - self._started_at) // _NS_PER_MS,
            "programSource": host.program_source,
            "lastCommandSeq": host.last_command_seq,
            "engineLabel": self.label,
            "epoch": self._epoch,
            "role": self._role.value,
        }

    def _sync_health_body(self, now: int) -> dict[str, Any]:
        host = self._host
        clock = host.clock_sync
        return {
            "clockSync": {
                "mode": clock.mode.value,
                "offsetNs": clock.offset_ns,
                "jitterNs": clock.jitter_ns,
            },
            "lastCommandSeq": host.last_command_seq,
            "lastExecutedSeq": host.last_executed_seq,
            "lastExecutedErr": host.last_executed_err,
            "lateCommands": host.late_commands,
            "uptimeMs": (now - self._started_at) // _NS_PER_MS,
            "lastPongSentUs": host.last_pong_sent_us,
        }

    # -- endpoints that change things -------------------------------------------
    def _floors(self) -> FloorsRaised:
        return FloorsRaised(
            epoch=self._epoch,
            fencing_token=self._lock.last_fencing_token,
            peer_epoch=self._last_peer_epoch,
        )

    def promote(self, cause: Cause, out: list[Output], reason: str = "") -> None:
        """Become leader by the epoch rule (every cause goes through here)."""
        self._role = role_move(self._role, RoleInput.PROMOTE)
        self._epoch = promotion_epoch(self._epoch, self._last_peer_epoch)
        out.append(self._floors())
        out.append(BecomeLeader(epoch=self._epoch, cause=cause, reason=reason))

    def _force_leader(self, req: Request, out: list[Output]) -> Response:
        reason = parse_force_leader(req.body)
        if self._role is Role.LEADER:
            raise RemoteProtocolError(
                "This engine is already leader.",
                status=409,
                code="already_leader",
                extra={"epoch": self._epoch},
            )
        previous = self._role
        self.promote(Cause.FORCE, out, reason)
        return json_response(
            req.request_id,
            200,
            {
                "status": "leader",
                "engineLabel": self.label,
                "epoch": self._epoch,
                "previousRole": previous.value,
            },
        )

    def _apply_state(self, req: Request, out: list[Output]) -> None:
        lock_ids = header_values(req.headers, b"x-reconcile-lock-id")
        given = lock_ids[0].decode("latin-1") if len(lock_ids) == 1 else None
        if not self._lock.holds(req.now, given):
            raise RemoteProtocolError(
                "The caller does not hold this engine's reconcile lock.",
                status=409,
                code="lock_not_held",
            )
        if isinstance(req.predecoded, DecodedSnapshot):
            snap = req.predecoded
        elif isinstance(req.predecoded, RemoteProtocolError):
            raise req.predecoded
        else:
            snap = decode_snapshot(req.body)
        if snap.epoch < self._epoch:
            raise RemoteProtocolError(
                f"The snapshot's epoch {snap.epoch} is older than this engine's.",
                status=409,
                code="stale_snapshot",
                extra={"epoch": self._epoch},
            )
        if any(isinstance(p, _PendingApply) for p in self._pending.values()):
            raise RemoteProtocolError(
                "Another snapshot is being applied on this engine.",
                status=409,
                code="apply_in_progress",
            )
        self._pending[req.request_id] = _PendingApply(snapshot=snap)
        out.append(ApplySnapshot(request_id=req.request_id, snapshot=snap))

    def _acquire(self, req: Request, out: list[Output]) -> Response:
        owner, ttl_ms = parse_acquire(req.body)
        granted = self._lock.acquire(
            req.now, draw_id=self._draw_lock_id, owner=owner, ttl_ms=ttl_ms
        )
        out.append(self._floors())
        out.append(granted)
        return json_response(req.request_id, 200, self._lock.grant_body(req.now))

    def _draw_lock_id(self) -> str:
        """128 bits from the host's entropy; a broken source is a 500, not a grant."""
        try:
            raw = self._entropy(LOCK_ID_BYTES)
        except Exception as exc:
            raise _internal() from exc
        if not isinstance(raw, bytes) or len(raw) != LOCK_ID_BYTES:
            raise _internal()
        lock_id = raw.hex()
        if lock_id == self._last_lock_id:
            raise _internal()  # a stuck entropy source must never repeat an id
        self._last_lock_id = lock_id
        return lock_id


def _lock_id(found: Route) -> str:
    assert found.lock_id is not None
    return found.lock_id


def _internal() -> RemoteProtocolError:
    return RemoteProtocolError(
        "The engine could not serve this request.", status=500, code="internal"
    )
