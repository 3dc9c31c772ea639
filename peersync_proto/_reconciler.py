"""The reconciler (contract 4.3): the ordered two-lock protocol, as a pure
machine of calls to make and answers consumed.

Steps: acquire the lock on the first engine (the lower label, ``a``), then on
the second; re-read both engines' health under the locks and pick the winner
(:func:`pick_winner`); GET the winner's snapshot; PUT it, bytes as they came,
to the loser with the loser's lock id; release both locks in reverse order.
Held locks are refreshed every TTL/3. A 409 on acquire releases what is held
and retries after a jittered back-off, within ``max_attempts`` rounds. A lock
found lost (404 on refresh, or its TTL run out by our own conservative
clock) aborts at the next step boundary, never later than just before the PUT.
Every path releases every lock acquired. The table in ``_reconcile_table``
is the spec; the configuration and its defaults are in ``_reconcile_config``.

Usable from an engine (the winner of a split brain reconciles itself and its
peer) or from a control plane: the machine only names engines by label.
"""

from __future__ import annotations

import enum
import json
import re

import attrs

from ._config import Entropy
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import Tick
from ._json import decode_json
from ._peer_health import PeerHealth, parse_peer_health
from ._reconcile_config import ReconcilerConfig
from ._reconcile_events import (
    LOCK_PATH,
    AbandonCall,
    Call,
    CallAnswered,
    CallFailed,
    Reconciled,
    ReconcileFailed,
    ReconcileOutput,
    ReconcileStep,
)
from ._reconcile_table import RECONCILE_TRANSITIONS, ReconcileInput, ReconcileState
from ._values import INT64_MAX
from ._winner import pick_winner

__all__ = [
    "HeldLock",
    "PendingCall",
    "Purpose",
    "ReconcileEvent",
    "Reconciler",
    "ReconcilerView",
]

_MS = 1_000_000
_LOCK_ID = re.compile(r"[0-9a-f]{32}")
_JSON = ((b"content-type", b"application/json"),)
#: A release that got no answer (refused, reset, timed out) is sent once more:
#: a lock left behind blocks every reconciler of the pair until its TTL ends.
_RELEASE_TRIES = 2


class Purpose(enum.Enum):
    ACQUIRE = "acquire"
    READ_HEALTH = "read_health"
    FETCH = "fetch"
    APPLY = "apply"
    RELEASE = "release"
    REFRESH = "refresh"


@attrs.frozen(kw_only=True, slots=True)
class HeldLock:
    """A lock we were granted. ``expires_est`` is our conservative view of
    its expiry: the send time of the call that granted or refreshed it plus
    the TTL (the engine's clock started later, so its expiry is later)."""

    label: str
    lock_id: str = attrs.field(repr=False)
    fencing_token: int
    expires_est: int
    refresh_at: int
    refresh_call: int = 0  #: a refresh in flight, or 0
    lost: bool = False
    released: bool = False  #: its release was sent
    release_tries: int = 0


@attrs.frozen(kw_only=True, slots=True)
class PendingCall:
    call_id: int
    purpose: Purpose
    target: str
    sent_at: int
    deadline: int


@attrs.frozen(kw_only=True, slots=True)
class ReconcilerView:
    """Everything the reconciler knows; a frozen value."""

    state: ReconcileState
    now: int
    attempts: int  #: acquire rounds begun
    last_call_id: int
    step_call: int  #: the call the current step waits for, or 0
    calls: tuple[PendingCall, ...]
    abandoned: frozenset[int]
    locks: tuple[HeldLock, ...]  #: in acquisition order
    healths: tuple[PeerHealth, ...]  #: read under the locks, in lock order
    winner: str
    loser: str
    snapshot: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    applied: tuple[int, int]  #: the loser's (epoch, seq) after the apply
    goal: ReconcileInput | None  #: what sent us down the release path
    backoff_until: int
    failure: tuple[str, str]  #: (reason code, detail) once something failed
    outcome: Reconciled | ReconcileFailed | None


ReconcileEvent = Tick | CallAnswered | CallFailed

_IDLE_VIEW = ReconcilerView(
    state=ReconcileState.IDLE,
    now=0,
    attempts=0,
    last_call_id=0,
    step_call=0,
    calls=(),
    abandoned=frozenset(),
    locks=(),
    healths=(),
    winner="",
    loser="",
    snapshot=b"",
    applied=(0, 0),
    goal=None,
    backoff_until=0,
    failure=("", ""),
    outcome=None,
)


@attrs.frozen(kw_only=True, slots=True)
class _Result:
    """One call's end: an answer (``status`` and ``body``) or a failure
    (``status`` None and a ``reason``)."""

    call: PendingCall
    status: int | None
    body: bytes = b""
    reason: str = ""

    def describe(self) -> str:
        what = f"{self.call.purpose.value} on {self.call.target}"
        if self.status is None:
            return f"{what} failed: {self.reason or 'no answer'}"
        return f"{what} answered {self.status}"


class Reconciler:
    """One run of the contract 4.3 protocol. ``entropy(n)`` returns ``n``
    random bytes (back-off jitter). Call :meth:`start`, then feed answers and
    ticks until :attr:`outcome` is set."""

    def __init__(self, config: ReconcilerConfig, *, entropy: Entropy) -> None:
        self._config = config
        self._entropy = entropy
        self._view = _IDLE_VIEW

    @property
    def config(self) -> ReconcilerConfig:
        return self._config

    @property
    def state(self) -> ReconcileState:
        return self._view.state

    @property
    def outcome(self) -> Reconciled | ReconcileFailed | None:
        return self._view.outcome

    def view(self) -> ReconcilerView:
        return self._view

    def next_deadline(self) -> int | None:
        """When to call again with a ``Tick``; ``None`` when only answers can
        move the machine, or nothing can."""
        v = self._view
        times = [c.deadline for c in v.calls]
        times += [lk.refresh_at for lk in v.locks if _refreshable(lk)]
        if v.state is ReconcileState.BACKING_OFF:
            times.append(v.backoff_until)
        return min(times, default=None)

    def start(self, now: int) -> tuple[ReconcileOutput, ...]:
        """Begin: the first lock acquire goes out."""
        Tick(now=now)  # validates now
        out: list[ReconcileOutput] = []
        view = attrs.evolve(self._view, now=now)
        view = self._move(view, ReconcileInput.START, out)
        self._view = view  # the only place state changes
        return tuple(out)

    def handle(self, event: ReconcileEvent) -> tuple[ReconcileOutput, ...]:
        """Feed a tick or a call's answer; returns outputs to act on, in order.

        Time first: calls whose deadline passed are abandoned (and count as
        failed) before the input, even when the input is that call's late
        answer, which is then ignored like any answer for an abandoned call.
        Raises :class:`LocalProtocolError` on host misuse (a decreasing
        ``now``, an answer for a call never made or already answered); the
        machine is then unchanged.
        """
        v = self._view
        if event.now < v.now:
            raise LocalProtocolError(f"now went backwards: {event.now} < {v.now}")
        known = v.abandoned | {c.call_id for c in v.calls}
        if isinstance(event, (CallAnswered, CallFailed)) and event.call_id not in known:
            raise LocalProtocolError(f"call {event.call_id} is not awaiting an answer")
        out: list[ReconcileOutput] = []
        v = self._timers(attrs.evolve(v, now=event.now), out)
        pending = {c.call_id: c for c in v.calls}
        if isinstance(event, CallAnswered) and event.call_id in pending:
            result = _Result(call=pending[event.call_id], status=event.status, body=event.body)
            v = self._timers(self._finish(v, result, out), out)
        elif isinstance(event, CallFailed) and event.call_id in pending:
            result = _Result(call=pending[event.call_id], status=None, reason=event.reason)
            v = self._timers(self._finish(v, result, out), out)
        self._view = v  # the only place state changes
        return tuple(out)

    # -- the machine: the table, then each state's entry action ---------------

    def _move(
        self, v: ReconcilerView, what: ReconcileInput, out: list[ReconcileOutput]
    ) -> ReconcilerView:
        try:
            target = RECONCILE_TRANSITIONS[(v.state, what)]
        except KeyError:
            raise LocalProtocolError(
                f"reconciler: no move from {v.state.value} on {what.value}"
            ) from None
        releasing = (ReconcileState.RELEASING_SECOND, ReconcileState.RELEASING_FIRST)
        if target in releasing and v.goal is None:
            v = attrs.evolve(v, goal=what)
        return self._enter(attrs.evolve(v, state=target, step_call=0), out)

    def _enter(self, v: ReconcilerView, out: list[ReconcileOutput]) -> ReconcilerView:
        cfg, state = self._config, v.state
        first, second = cfg.engines
        St = ReconcileState
        if state is St.ACQUIRING_FIRST:
            v = attrs.evolve(v, attempts=v.attempts + 1, locks=(), healths=(), goal=None)
        if state in (St.ACQUIRING_FIRST, St.ACQUIRING_SECOND):
            body = json.dumps({"owner": cfg.owner, "ttlMs": cfg.ttl_ms}).encode()
            target = first if state is St.ACQUIRING_FIRST else second
            detail = f"attempt {v.attempts} of {cfg.max_attempts}"
            return self._step(v, out, Purpose.ACQUIRE, target, "POST", LOCK_PATH[:-1], body, detail)
        if state in (St.READING_FIRST, St.READING_SECOND):
            target = first if state is St.READING_FIRST else second
            return self._step(v, out, Purpose.READ_HEALTH, target, "GET", "/api/peer/health")
        if state is St.FETCHING:
            detail = f"winner {v.winner} over {v.loser}"
            return self._step(
                v, out, Purpose.FETCH, v.winner, "GET", "/api/sync/state", b"", detail
            )
        if state is St.APPLYING:
            detail = f"{len(v.snapshot)} bytes from {v.winner}"
            return self._step(
                v, out, Purpose.APPLY, v.loser, "PUT", "/api/sync/state", v.snapshot, detail
            )
        if state in (St.RELEASING_SECOND, St.RELEASING_FIRST):
            lock = _lock_of(v, second if state is St.RELEASING_SECOND else first)
            tries = lock.release_tries + 1
            v = _with_lock(v, attrs.evolve(lock, released=True, release_tries=tries))
            path, detail = LOCK_PATH + lock.lock_id, "" if tries == 1 else "once more"
            return self._step(v, out, Purpose.RELEASE, lock.label, "DELETE", path, b"", detail)
        if state is St.BACKING_OFF:
            delay = self._backoff(v.attempts)
            out.append(ReconcileStep(step=state.value, target=None, detail=f"{delay} ns"))
            return attrs.evolve(v, backoff_until=v.now + delay)
        outcome: Reconciled | ReconcileFailed
        if state is St.SUCCEEDED:
            epoch, seq = v.applied
            outcome = Reconciled(winner=v.winner, loser=v.loser, epoch=epoch, seq=seq)
            detail = f"{v.loser} now holds {v.winner}'s state"
        elif state is St.FAILED:
            outcome = ReconcileFailed(reason=v.failure[0], detail=v.failure[1])
            detail = f"{v.failure[0]}: {v.failure[1]}"
        else:  # IDLE is never entered
            raise AssertionError(state)
        out += [ReconcileStep(step=state.value, target=None, detail=detail), outcome]
        return attrs.evolve(v, outcome=outcome)

    def _step(
        self,
        v: ReconcilerView,
        out: list[ReconcileOutput],
        purpose: Purpose,
        target: str,
        method: str,
        path: str,
        body: bytes = b"",
        detail: str = "",
    ) -> ReconcilerView:
        """Make the one call the current step waits for, with its notice."""
        out.append(ReconcileStep(step=v.state.value, target=target, detail=detail))
        v, call_id = self._issue(v, out, purpose, target, method, path, body)
        return attrs.evolve(v, step_call=call_id)

    def _issue(
        self,
        v: ReconcilerView,
        out: list[ReconcileOutput],
        purpose: Purpose,
        target: str,
        method: str,
        path: str,
        body: bytes = b"",
    ) -> tuple[ReconcilerView, int]:
        cfg = self._config
        call_id = v.last_call_id + 1
        headers: tuple[tuple[bytes, bytes], ...] = _JSON if body else ()
        if purpose is Purpose.APPLY:
            lock_id = _lock_of(v, target).lock_id
            headers = (*headers, (b"x-reconcile-lock-id", lock_id.encode("ascii")))
        slow = purpose in (Purpose.FETCH, Purpose.APPLY)
        timeout = cfg.transfer_timeout_ns if slow else cfg.call_timeout_ns
        pending = PendingCall(
            call_id=call_id, purpose=purpose, target=target, sent_at=v.now, deadline=v.now + timeout
        )
        out.append(
            Call(
                call_id=call_id, target=target, method=method, path=path, headers=headers, body=body
            )
        )
        return attrs.evolve(v, last_call_id=call_id, calls=(*v.calls, pending)), call_id

    def _backoff(self, attempts: int) -> int:
        cfg = self._config
        ceiling = min(cfg.backoff_cap_ns, cfg.backoff_base_ns << min(attempts - 1, 62))
        draw = self._entropy(4)
        if not isinstance(draw, bytes) or len(draw) != 4:
            raise LocalProtocolError(f"entropy(4) must return 4 bytes, got {draw!r}")
        half = ceiling // 2
        return half + (ceiling - half) * int.from_bytes(draw, "big") // 2**32

    # -- time ----------------------------------------------------------------

    def _timers(self, v: ReconcilerView, out: list[ReconcileOutput]) -> ReconcilerView:
        for call in [c for c in v.calls if c.deadline <= v.now]:
            out.append(AbandonCall(call_id=call.call_id))
            v = attrs.evolve(v, abandoned=v.abandoned | {call.call_id})
            v = self._finish(v, _Result(call=call, status=None, reason="timed out"), out)
        if v.state is ReconcileState.BACKING_OFF and v.now >= v.backoff_until:
            v = self._move(v, ReconcileInput.WAKE, out)
        for lock in v.locks:
            if _refreshable(lock) and lock.refresh_at <= v.now:
                path = LOCK_PATH + lock.lock_id
                v, call_id = self._issue(v, out, Purpose.REFRESH, lock.label, "PUT", path)
                v = _with_lock(v, attrs.evolve(lock, refresh_call=call_id))
        return v

    # -- answers -------------------------------------------------------------

    def _finish(self, v: ReconcilerView, r: _Result, out: list[ReconcileOutput]) -> ReconcilerView:
        v = attrs.evolve(v, calls=tuple(c for c in v.calls if c.call_id != r.call.call_id))
        if r.call.purpose is Purpose.REFRESH:
            return self._refreshed(v, r, out)
        what, v = self._classify(v, r)
        return self._move(v, what, out)

    def _refreshed(
        self, v: ReconcilerView, r: _Result, out: list[ReconcileOutput]
    ) -> ReconcilerView:
        held = [lk for lk in v.locks if lk.refresh_call == r.call.call_id]
        if not held:  # a new round began since; that lock was released
            return v
        lock = attrs.evolve(held[0], refresh_call=0)
        every = self._config.refresh_every_ns
        if r.status == 200:
            lock = attrs.evolve(
                lock, expires_est=r.call.sent_at + self._config.ttl_ns, refresh_at=v.now + every
            )
        elif r.status == 404:
            lock = attrs.evolve(lock, lost=True)
            out.append(ReconcileStep(step="lock_lost", target=lock.label, detail=r.describe()))
        else:  # try again sooner: two more chances before the TTL runs out
            lock = attrs.evolve(lock, refresh_at=v.now + every // 2)
        return _with_lock(v, lock)

    def _classify(self, v: ReconcilerView, r: _Result) -> tuple[ReconcileInput, ReconcilerView]:
        """What the step call's end means, as an input to the table."""
        In, St, cfg = ReconcileInput, ReconcileState, self._config
        state = v.state
        lost = [lk.label for lk in v.locks if lk.lost or v.now >= lk.expires_est]
        if state in (St.RELEASING_SECOND, St.RELEASING_FIRST):
            tries = _lock_of(v, r.call.target).release_tries
            if r.status is None and tries < _RELEASE_TRIES:
                return In.RELEASE_AGAIN, v
            if state is St.RELEASING_SECOND:
                return In.RELEASED, v
            if v.goal is In.BUSY:
                return In.RELEASED_RETRY, v
            return (In.RELEASED_SUCCEED if v.goal is In.OK else In.RELEASED_FAIL), v
        if state in (St.ACQUIRING_FIRST, St.ACQUIRING_SECOND):
            if r.status == 409:
                if v.attempts >= cfg.max_attempts:
                    detail = f"lock on {r.call.target} held after {v.attempts} attempts"
                    return In.BUSY_SPENT, _failed(v, "busy", detail)
                return In.BUSY, v
            grant = _parse_grant(r.body) if r.status == 200 else None
            if grant is None:
                return In.ERROR, _failed(v, _code(r), r.describe())
            lock = HeldLock(
                label=r.call.target,
                lock_id=grant[0],
                fencing_token=grant[1],
                expires_est=r.call.sent_at + cfg.ttl_ns,
                refresh_at=v.now + cfg.refresh_every_ns,
            )
            v = attrs.evolve(v, locks=(*v.locks, lock))
            if lost:
                return In.LOST, _failed(v, "lock_lost", f"lock on {lost[0]} lost")
            return In.GRANTED, v
        if lost and state is not St.APPLYING:
            return In.LOST, _failed(v, "lock_lost", f"lock on {lost[0]} lost before the apply")
        if r.status != 200:
            return In.ERROR, _failed(
                v,
                "apply_refused" if state is St.APPLYING and r.status is not None else _code(r),
                r.describe(),
            )
        if state in (St.READING_FIRST, St.READING_SECOND):
            try:
                health = parse_peer_health(r.body)
            except RemoteProtocolError as exc:
                return In.ERROR, _failed(v, "bad_answer", f"health of {r.call.target}: {exc}")
            if health.engine_label != r.call.target:
                detail = f"engine {r.call.target} reports label {health.engine_label!r}"
                return In.ERROR, _failed(v, "label_mismatch", detail)
            v = attrs.evolve(v, healths=(*v.healths, health))
            if state is St.READING_SECOND:
                x, y = (h.standing for h in v.healths)
                winner = pick_winner(x, y)
                loser = y if winner is x else x
                v = attrs.evolve(v, winner=winner.label, loser=loser.label)
            return In.OK, v
        if state is St.FETCHING:
            return In.OK, attrs.evolve(v, snapshot=r.body)
        if state is St.APPLYING:
            won = next(h for h in v.healths if h.engine_label == v.winner)
            fallback = (won.epoch, won.last_command_seq)
            return In.OK, attrs.evolve(v, applied=_parse_apply_result(r.body) or fallback)
        raise AssertionError(state)  # no call is awaited in any other state


def _failed(v: ReconcilerView, reason: str, detail: str) -> ReconcilerView:
    return v if v.failure[0] else attrs.evolve(v, failure=(reason, detail))


def _code(r: _Result) -> str:
    return "call_failed" if r.status is None else "bad_answer"


def _refreshable(lock: HeldLock) -> bool:
    return not (lock.released or lock.lost or lock.refresh_call)


def _lock_of(v: ReconcilerView, label: str) -> HeldLock:
    return next(lk for lk in v.locks if lk.label == label)


def _with_lock(v: ReconcilerView, lock: HeldLock) -> ReconcilerView:
    return attrs.evolve(v, locks=tuple(lock if lk.label == lock.label else lk for lk in v.locks))


def _json_object(body: bytes) -> dict[str, object] | None:
    try:
        return decode_json(body)
    except RemoteProtocolError:
        return None


def _parse_grant(body: bytes) -> tuple[str, int] | None:
    """A LockGrant's (lockId, fencingToken), or None when it is not one."""
    doc = _json_object(body)
    if doc is None:
        return None
    lock_id, token = doc.get("lockId"), doc.get("fencingToken")
    if not isinstance(lock_id, str) or not _LOCK_ID.fullmatch(lock_id):
        return None
    if type(token) is not int or not 0 <= token <= INT64_MAX:
        return None
    return lock_id, token


def _parse_apply_result(body: bytes) -> tuple[int, int] | None:
    doc = _json_object(body)
    if doc is None:
        return None
    epoch, seq = doc.get("epoch"), doc.get("lastCommandSeq")
    if type(epoch) is not int or type(seq) is not int:
        return None
    return epoch, seq
