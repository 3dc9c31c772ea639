"""The peer monitor (contract 4.2): a pure machine, one per engine.

It says when to probe the peer, consumes the host's reports, keeps the
verdict on the peer (the transition table below is the spec), reports each
episode once, and under policy ``auto`` returns a :class:`Promote` decision
for the engine to apply. It owns no clock: ``now`` comes with every input.

The rules, with their reasons, are in ``docs/failover.md``:

* A probe every ``probe_period_ns``; at most one outstanding. A probe not
  answered by its deadline counts as a miss at that ``now`` and is abandoned.
* ``failure_threshold`` consecutive failures declare the peer down; one
  success declares it up. ``PeerUp`` and ``PeerDown`` alternate: ``PeerUp``
  on the first sighting and after a ``PeerDown`` only (a suspect peer that
  answers again was never reported down, so it is not reported up).
* Fast confirmation of a crash: after a *refused* probe of a peer that was
  up, the next probe goes out ``refused_retry_ns`` later instead of a full
  period. The count and threshold are unchanged; a timeout never hastens.
* A peer never seen since start is not declared down before
  ``startup_grace_ns`` has passed: it may simply not have started yet.
"""

from __future__ import annotations

import enum

import attrs

from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import Tick
from ._peer_events import (
    AbandonProbe,
    FailureKind,
    LabelClash,
    MonitorOutput,
    NoLeader,
    OwnStanding,
    PeerChanged,
    PeerDown,
    PeerUp,
    ProbeAnswered,
    ProbeFailed,
    ProbeFailure,
    Promote,
    SendProbe,
    SplitBrain,
)
from ._peer_health import PeerHealth, PeerStatus, parse_peer_health
from ._values import INT64_MAX, Cause, Role
from ._winner import pick_winner, promotion_epoch

__all__ = [
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_PROBE_DEADLINE_NS",
    "DEFAULT_PROBE_PERIOD_NS",
    "DEFAULT_REFUSED_RETRY_NS",
    "DEFAULT_STARTUP_GRACE_NS",
    "PROBE_TRANSITIONS",
    "TRANSITIONS",
    "FailoverPolicy",
    "MonitorConfig",
    "MonitorEvent",
    "MonitorView",
    "PeerMonitor",
    "PeerState",
    "ProbeInput",
    "ProbeSlot",
    "Relation",
    "Verdict",
]

_MS = 1_000_000

#: Contract 4.2: about 5 probes a second.
DEFAULT_PROBE_PERIOD_NS = 200 * _MS
#: Contract 4.2: a loopback or LAN answer takes well under a millisecond; 150 ms
#: rides out a scheduler hiccup and still leaves 50 ms before the next probe.
DEFAULT_PROBE_DEADLINE_NS = 150 * _MS
#: Contract 4.2: one lost probe or one GC pause is not a dead peer; three in a
#: row (about 0.6 s) is. A hung peer is declared down within 750 ms worst case.
DEFAULT_FAILURE_THRESHOLD = 3
#: After a refusal, the next probe goes 50 ms later: three refusals then span
#: 100 ms, so a killed peer is down at most one period + 100 ms after it died
#: (300 ms), leaving 100 ms of the 400 ms target for the promotion itself.
DEFAULT_REFUSED_RETRY_NS = 50 * _MS
#: A peer never seen may not have started yet: a pair launched together comes
#: up within a second or two of each other. Before this grace has passed an
#: unseen peer is never declared down (and so never causes a promotion).
DEFAULT_STARTUP_GRACE_NS = 2_000 * _MS


class FailoverPolicy(enum.Enum):
    AUTO = "auto"  #: promote on a dead leader, elect when both are follower
    MANUAL = "manual"  #: report only


class PeerState(enum.Enum):
    """The monitor's verdict on the peer."""

    UNKNOWN = "unknown"  #: never answered since start
    UP = "up"
    SUSPECT = "suspect"  #: was up; failures seen, below the threshold
    DOWN = "down"


class Verdict(enum.Enum):
    """A probe's outcome, classified against the failure count."""

    SUCCESS = "success"
    FAILURE = "failure"  #: a failure that does not (yet) make the peer down
    FAILURE_AT_THRESHOLD = "failure_at_threshold"  #: the count reached the threshold


#: The verdict machine. A missing entry is a bug and raises LocalProtocolError.
#: ``(DOWN, FAILURE)`` is absent on purpose: a down peer's count is at the
#: threshold already, so every further failure classifies as at-threshold.
TRANSITIONS: dict[tuple[PeerState, Verdict], PeerState] = {
    (PeerState.UNKNOWN, Verdict.SUCCESS): PeerState.UP,
    (PeerState.UNKNOWN, Verdict.FAILURE): PeerState.UNKNOWN,
    (PeerState.UNKNOWN, Verdict.FAILURE_AT_THRESHOLD): PeerState.DOWN,
    (PeerState.UP, Verdict.SUCCESS): PeerState.UP,
    (PeerState.UP, Verdict.FAILURE): PeerState.SUSPECT,
    (PeerState.UP, Verdict.FAILURE_AT_THRESHOLD): PeerState.DOWN,
    (PeerState.SUSPECT, Verdict.SUCCESS): PeerState.UP,
    (PeerState.SUSPECT, Verdict.FAILURE): PeerState.SUSPECT,
    (PeerState.SUSPECT, Verdict.FAILURE_AT_THRESHOLD): PeerState.DOWN,
    (PeerState.DOWN, Verdict.SUCCESS): PeerState.UP,
    (PeerState.DOWN, Verdict.FAILURE_AT_THRESHOLD): PeerState.DOWN,
}


class ProbeSlot(enum.Enum):
    IDLE = "idle"
    IN_FLIGHT = "in_flight"


class ProbeInput(enum.Enum):
    SEND = "send"
    REPORT = "report"  #: the host reported the outstanding probe
    MISS = "miss"  #: its deadline passed first


#: The probe slot: at most one probe is ever outstanding.
PROBE_TRANSITIONS: dict[tuple[ProbeSlot, ProbeInput], ProbeSlot] = {
    (ProbeSlot.IDLE, ProbeInput.SEND): ProbeSlot.IN_FLIGHT,
    (ProbeSlot.IN_FLIGHT, ProbeInput.REPORT): ProbeSlot.IDLE,
    (ProbeSlot.IN_FLIGHT, ProbeInput.MISS): ProbeSlot.IDLE,
}


class Relation(enum.Enum):
    """How the two engines stand, as of the last successful probe."""

    NONE = "none"  #: peer not reachable (or never seen)
    NORMAL = "normal"  #: exactly one leader
    SPLIT_BRAIN = "split_brain"
    NO_LEADER = "no_leader"


def _positive(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or not 0 < value <= INT64_MAX:
        raise LocalProtocolError(f"{attribute.name} must be a positive int, got {value!r}")


@attrs.frozen(kw_only=True, slots=True)
class MonitorConfig:
    """The monitor's tunables; every default is explained beside its constant.

    The probe deadline may not exceed the period (one probe at a time), and
    the refused-retry interval may not either (it only ever hastens).
    """

    policy: FailoverPolicy = attrs.field(
        default=FailoverPolicy.AUTO, validator=attrs.validators.instance_of(FailoverPolicy)
    )
    probe_period_ns: int = attrs.field(default=DEFAULT_PROBE_PERIOD_NS, validator=_positive)
    probe_deadline_ns: int = attrs.field(default=DEFAULT_PROBE_DEADLINE_NS, validator=_positive)
    failure_threshold: int = attrs.field(default=DEFAULT_FAILURE_THRESHOLD, validator=_positive)
    refused_retry_ns: int = attrs.field(default=DEFAULT_REFUSED_RETRY_NS, validator=_positive)
    startup_grace_ns: int = attrs.field(default=DEFAULT_STARTUP_GRACE_NS, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.probe_deadline_ns > self.probe_period_ns:
            raise LocalProtocolError("probe_deadline_ns must not exceed probe_period_ns")
        if self.refused_retry_ns > self.probe_period_ns:
            raise LocalProtocolError("refused_retry_ns must not exceed probe_period_ns")


MonitorEvent = Tick | ProbeAnswered | ProbeFailed


@attrs.frozen(kw_only=True, slots=True)
class MonitorView:
    """Everything the monitor knows; a frozen value (the machine's state)."""

    state: PeerState
    slot: ProbeSlot
    now: int
    started_at: int
    next_probe_at: int
    outstanding_id: int  #: 0 when the slot is idle
    outstanding_deadline: int
    last_probe_id: int
    failures: tuple[FailureKind, ...]  #: the current run of consecutive failures
    failures_since: int
    peer: PeerHealth | None  #: the last answer that parsed
    last_peer_epoch: int
    clash: bool
    relation: Relation
    #: (own epoch, peer epoch, winner) when ``relation`` was last seen. A new
    #: split brain (or no-leader) episode starts when any of them changes, not
    #: only the relation: re-entering a split brain takes a promotion, which
    #: raises an epoch even if no probe saw the pair leave it; and both
    #: leaders run commands, so the winner by sequence can change within one
    #: split brain (the engine that now wins must hear of it, or no one heals).
    episode: tuple[int, int, str] = (0, 0, "")


class PeerMonitor:
    """See the module docstring. ``last_peer_epoch`` may be handed in from a
    persisted floor; it only ever rises."""

    def __init__(self, config: MonitorConfig, *, now: int, last_peer_epoch: int = 0) -> None:
        for name, value in (("now", now), ("last_peer_epoch", last_peer_epoch)):
            if type(value) is not int or not 0 <= value <= INT64_MAX:
                raise LocalProtocolError(f"{name} must be a non-negative int, got {value!r}")
        self._config = config
        self._view = MonitorView(
            state=PeerState.UNKNOWN,
            slot=ProbeSlot.IDLE,
            now=now,
            started_at=now,
            next_probe_at=now,
            outstanding_id=0,
            outstanding_deadline=0,
            last_probe_id=0,
            failures=(),
            failures_since=0,
            peer=None,
            last_peer_epoch=last_peer_epoch,
            clash=False,
            relation=Relation.NONE,
        )

    @property
    def config(self) -> MonitorConfig:
        return self._config

    @property
    def state(self) -> PeerState:
        return self._view.state

    @property
    def last_peer_epoch(self) -> int:
        """The largest epoch the peer ever reported."""
        return self._view.last_peer_epoch

    def view(self) -> MonitorView:
        return self._view

    def restore(self, view: MonitorView) -> None:
        """Go back to an earlier :meth:`view` (the engine's checkpoint)."""
        self._view = view

    def next_deadline(self) -> int:
        """When to call again with a ``Tick``: the next probe to send or the
        outstanding probe's deadline, whichever is first."""
        if self._view.slot is ProbeSlot.IN_FLIGHT:
            return min(self._view.outstanding_deadline, self._view.next_probe_at)
        return self._view.next_probe_at

    def handle(self, event: MonitorEvent, *, own: OwnStanding) -> tuple[MonitorOutput, ...]:
        """Feed one input; returns the outputs to act on, in order.

        Raises :class:`LocalProtocolError` on host misuse (a decreasing
        ``now``, a report for a probe never sent); the monitor is unchanged.
        """
        if event.now < self._view.now:
            raise LocalProtocolError(f"now went backwards: {event.now} < {self._view.now}")
        if isinstance(event, (ProbeAnswered, ProbeFailed)) and not (
            0 < event.probe_id <= self._view.last_probe_id
        ):
            raise LocalProtocolError(f"probe {event.probe_id} was never sent")
        view = attrs.evolve(self._view, now=event.now)
        outputs: list[MonitorOutput] = []
        # Time first: a deadline that passed before this input counts as a
        # miss even when the input is that probe's (late) report.
        view = self._on_tick(view, own, outputs)
        if isinstance(event, (ProbeAnswered, ProbeFailed)):
            view = self._on_report(view, event, own, outputs)
        self._view = view  # the only place state changes
        return tuple(outputs)

    # -- handlers: compute a new view and outputs, never assign state ---------

    def _on_tick(
        self, view: MonitorView, own: OwnStanding, out: list[MonitorOutput]
    ) -> MonitorView:
        now = view.now
        if view.slot is ProbeSlot.IN_FLIGHT and now >= view.outstanding_deadline:
            out.append(AbandonProbe(probe_id=view.outstanding_id))
            view = _slot(view, ProbeInput.MISS)
            view = self._failure(view, FailureKind.MISSED_DEADLINE, own, out)
        if view.slot is ProbeSlot.IDLE and now >= view.next_probe_at:
            probe_id = view.last_probe_id + 1
            deadline = now + self._config.probe_deadline_ns
            view = attrs.evolve(
                _slot(view, ProbeInput.SEND),
                last_probe_id=probe_id,
                outstanding_id=probe_id,
                outstanding_deadline=deadline,
                next_probe_at=now + self._config.probe_period_ns,
            )
            out.append(SendProbe(probe_id=probe_id, deadline=deadline))
        return view

    def _on_report(
        self,
        view: MonitorView,
        event: ProbeAnswered | ProbeFailed,
        own: OwnStanding,
        out: list[MonitorOutput],
    ) -> MonitorView:
        if view.slot is ProbeSlot.IDLE or event.probe_id != view.outstanding_id:
            return view  # abandoned (or already reported): ignored
        view = _slot(view, ProbeInput.REPORT)
        if isinstance(event, ProbeFailed):
            return self._failure(view, _FROM_PROBE_FAILURE[event.failure], own, out)
        if event.status != 200:
            return self._failure(view, FailureKind.BAD_STATUS, own, out)
        try:
            health = parse_peer_health(event.body)
        except RemoteProtocolError:
            return self._failure(view, FailureKind.UNPARSABLE, own, out)
        previous, was_clash = view.peer, view.clash
        view = attrs.evolve(
            view,
            peer=health,
            last_peer_epoch=max(view.last_peer_epoch, health.epoch),
            clash=health.engine_label == own.label,
        )
        if view.clash and not was_clash:
            out.append(LabelClash(label=own.label))
        if previous is not None and (previous.role, previous.epoch) != (health.role, health.epoch):
            out.append(
                PeerChanged(
                    role=health.role,
                    epoch=health.epoch,
                    previous_role=previous.role,
                    previous_epoch=previous.epoch,
                )
            )
        if health.status is PeerStatus.STALLED:
            return self._failure(view, FailureKind.STALLED, own, out)
        return self._success(view, health, own, out)

    def _success(
        self, view: MonitorView, health: PeerHealth, own: OwnStanding, out: list[MonitorOutput]
    ) -> MonitorView:
        before = view.state
        view = attrs.evolve(
            view, state=_move(before, Verdict.SUCCESS), failures=(), failures_since=0
        )
        if before in (PeerState.UNKNOWN, PeerState.DOWN):  # a suspect peer was never down
            out.append(PeerUp(health=health))
        relation = _relation(own.role, health.role) if not view.clash else Relation.NONE
        winner = "" if view.clash else pick_winner(own.standing, health.standing).label
        episode = (own.epoch, health.epoch, winner)
        new_episode = relation is not view.relation or episode != view.episode
        if new_episode and relation in (Relation.SPLIT_BRAIN, Relation.NO_LEADER):
            report = SplitBrain if relation is Relation.SPLIT_BRAIN else NoLeader
            out.append(report(own=own.standing, peer=health.standing, winner=winner))
        view = attrs.evolve(view, relation=relation, episode=episode)
        if (
            self._config.policy is FailoverPolicy.AUTO
            and relation is Relation.NO_LEADER
            and winner == own.label
        ):
            out.append(
                Promote(cause=Cause.ELECTED, epoch=promotion_epoch(own.epoch, view.last_peer_epoch))
            )
        return view

    def _failure(
        self, view: MonitorView, kind: FailureKind, own: OwnStanding, out: list[MonitorOutput]
    ) -> MonitorView:
        cfg = self._config
        failures = (*view.failures, kind)
        since = view.failures_since if view.failures else view.now
        reached = len(failures) >= cfg.failure_threshold and (
            view.state is not PeerState.UNKNOWN
            or view.now >= view.started_at + cfg.startup_grace_ns
        )
        verdict = Verdict.FAILURE_AT_THRESHOLD if reached else Verdict.FAILURE
        before = view.state
        after = _move(before, verdict)
        # Keep the run bounded: only the last `threshold` pieces of evidence matter.
        view = attrs.evolve(
            view, state=after, failures=failures[-cfg.failure_threshold :], failures_since=since
        )
        if after is PeerState.DOWN:
            view = attrs.evolve(view, relation=Relation.NONE)
            if before is not PeerState.DOWN:
                out.append(PeerDown(evidence=view.failures, since=since))
            if cfg.policy is FailoverPolicy.AUTO and own.role is Role.FOLLOWER and not view.clash:
                out.append(
                    Promote(
                        cause=Cause.PEER_DOWN,
                        epoch=promotion_epoch(own.epoch, view.last_peer_epoch),
                    )
                )
        elif after is PeerState.SUSPECT and kind is FailureKind.REFUSED:
            view = attrs.evolve(
                view, next_probe_at=min(view.next_probe_at, view.now + cfg.refused_retry_ns)
            )
        return view


_FROM_PROBE_FAILURE = {
    ProbeFailure.REFUSED: FailureKind.REFUSED,
    ProbeFailure.TIMEOUT: FailureKind.TIMEOUT,
    ProbeFailure.ERROR: FailureKind.ERROR,
}


def _move(state: PeerState, verdict: Verdict) -> PeerState:
    try:
        return TRANSITIONS[(state, verdict)]
    except KeyError:
        raise LocalProtocolError(f"no move from {state.value} on {verdict.value}") from None


def _slot(view: MonitorView, what: ProbeInput) -> MonitorView:
    try:
        slot = PROBE_TRANSITIONS[(view.slot, what)]
    except KeyError:
        raise LocalProtocolError(
            f"no probe-slot move from {view.slot.value} on {what.value}"
        ) from None
    return attrs.evolve(view, slot=slot)


def _relation(own: Role, peer: Role) -> Relation:
    if own is not peer:
        return Relation.NORMAL
    return Relation.SPLIT_BRAIN if own is Role.LEADER else Relation.NO_LEADER
