"""Inputs and outputs of the peer monitor (contract 4.2).

The monitor is driven by three inputs, each carrying ``now`` (monotonic ns):
the engine's :class:`~peersync_proto.Tick` (time passed; the host woke at the
monitor's ``next_deadline``), :class:`ProbeAnswered` and :class:`ProbeFailed`
(the host's report on a probe it was asked to send). With every input the
engine also hands in :class:`OwnStanding`: its own label, role, epoch and
sequence at that instant; the monitor owns none of them.

Outputs are instructions for the host (:class:`SendProbe`,
:class:`AbandonProbe`), reports (each once per episode) and one decision,
:class:`Promote`, which the engine applies.
"""

from __future__ import annotations

import enum

import attrs

from ._errors import LocalProtocolError
from ._peer_health import PeerHealth
from ._values import INT64_MAX, Cause, Role
from ._winner import Standing

__all__ = [
    "AbandonProbe",
    "FailureKind",
    "LabelClash",
    "MonitorOutput",
    "NoLeader",
    "OwnStanding",
    "PeerChanged",
    "PeerDown",
    "PeerUp",
    "ProbeAnswered",
    "ProbeFailed",
    "ProbeFailure",
    "Promote",
    "SendProbe",
    "SplitBrain",
]


def _u64(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or not 0 <= value <= INT64_MAX:
        raise LocalProtocolError(
            f"{attribute.name} must be a non-negative 64-bit int, got {value!r}"
        )


class ProbeFailure(enum.Enum):
    """How a probe failed, as the host saw it."""

    #: Connection refused or reset: nothing listens. Strong evidence of a crash.
    REFUSED = "refused"
    #: The host's own timeout fired before the monitor's deadline.
    TIMEOUT = "timeout"
    #: Anything else (DNS, a broken answer the host could not frame, ...).
    ERROR = "error"


class FailureKind(enum.Enum):
    """One piece of evidence against the peer, as ``PeerDown`` reports it."""

    MISSED_DEADLINE = "missed_deadline"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    ERROR = "error"
    BAD_STATUS = "bad_status"  #: an answer other than 200
    UNPARSABLE = "unparsable"  #: a 200 whose body breaks contract 3.1
    STALLED = "stalled"  #: the peer says its engine is frozen


@attrs.frozen(kw_only=True, slots=True)
class OwnStanding:
    """The engine's own state, handed in with every monitor input."""

    label: str
    role: Role = attrs.field(validator=attrs.validators.instance_of(Role))
    epoch: int = attrs.field(validator=_u64)
    last_command_seq: int = attrs.field(validator=_u64)

    @property
    def standing(self) -> Standing:
        return Standing(label=self.label, epoch=self.epoch, last_command_seq=self.last_command_seq)


@attrs.frozen(kw_only=True, slots=True)
class ProbeAnswered:
    """The peer answered probe ``probe_id`` with an HTTP ``status`` and ``body``."""

    now: int = attrs.field(validator=_u64)
    probe_id: int = attrs.field(validator=_u64)
    status: int = attrs.field(validator=_u64)
    body: bytes = attrs.field(converter=bytes, repr=lambda b: f"<{len(b)} bytes>")


@attrs.frozen(kw_only=True, slots=True)
class ProbeFailed:
    """Probe ``probe_id`` got no HTTP answer."""

    now: int = attrs.field(validator=_u64)
    probe_id: int = attrs.field(validator=_u64)
    failure: ProbeFailure = attrs.field(validator=attrs.validators.instance_of(ProbeFailure))


@attrs.frozen(kw_only=True, slots=True)
class SendProbe:
    """GET ``/api/peer/health`` on the peer now; report back by ``deadline``
    (monotonic ns) or the monitor counts a miss and abandons the probe."""

    probe_id: int
    deadline: int


@attrs.frozen(kw_only=True, slots=True)
class AbandonProbe:
    """Probe ``probe_id`` missed its deadline: close its connection. Any
    later report for it is ignored."""

    probe_id: int


@attrs.frozen(kw_only=True, slots=True)
class PeerUp:
    """The peer answers again (or for the first time)."""

    health: PeerHealth


@attrs.frozen(kw_only=True, slots=True)
class PeerDown:
    """Consecutive failures reached the threshold. ``evidence`` lists them in
    order; ``since`` is when the first of them was seen."""

    evidence: tuple[FailureKind, ...]
    since: int


@attrs.frozen(kw_only=True, slots=True)
class PeerChanged:
    """The peer's role or epoch differs from what it said before."""

    role: Role
    epoch: int
    previous_role: Role
    previous_epoch: int


@attrs.frozen(kw_only=True, slots=True)
class LabelClash:
    """The peer reports our own label: a misconfigured pair. No failover and
    no election happen while this lasts."""

    label: str


@attrs.frozen(kw_only=True, slots=True)
class SplitBrain:
    """Peer reachable and both leader. ``winner`` is the contract 4.3 winner's
    label: the engine that should run the reconciler."""

    own: Standing
    peer: Standing
    winner: str


@attrs.frozen(kw_only=True, slots=True)
class NoLeader:
    """Peer reachable and both follower; ``winner`` is who gets elected."""

    own: Standing
    peer: Standing
    winner: str


@attrs.frozen(kw_only=True, slots=True)
class Promote:
    """Decision (policy ``auto`` only): become leader with ``epoch``, which
    is the contract's rule ``max(own epoch, last_peer_epoch) + 1``."""

    cause: Cause
    epoch: int


MonitorOutput = (
    SendProbe
    | AbandonProbe
    | PeerUp
    | PeerDown
    | PeerChanged
    | LabelClash
    | SplitBrain
    | NoLeader
    | Promote
)
