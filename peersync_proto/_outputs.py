"""Outputs of the engine core: a response to send, or an effect for the host.

Run the outputs of one ``handle`` call in order, effects before the response
they precede: ``FloorsRaised`` must be durable before a grant or a promotion
is answered, so a fencing token or an epoch never goes back after a crash.
No output ever carries a lock id except the ``Response`` to the caller that
was granted it.
"""

from __future__ import annotations

import attrs

from ._peer_events import (
    AbandonProbe,
    LabelClash,
    NoLeader,
    PeerChanged,
    PeerDown,
    PeerUp,
    SendProbe,
    SplitBrain,
)
from ._values import Cause, DecodedSnapshot

__all__ = [
    "ApplySnapshot",
    "BecomeLeader",
    "CaptureSnapshot",
    "Effect",
    "FloorsRaised",
    "HostStalled",
    "LockExpired",
    "LockGranted",
    "LockRefreshed",
    "LockReleased",
    "Output",
    "PeerReport",
    "Response",
    "StepDown",
]


@attrs.frozen(kw_only=True, slots=True)
class Response:
    """An HTTP response; ``headers`` already include Content-Type,
    Content-Length and Cache-Control, and ``body`` is the JSON bytes."""

    request_id: int
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")


@attrs.frozen(kw_only=True, slots=True)
class BecomeLeader:
    epoch: int
    cause: Cause
    reason: str = ""


@attrs.frozen(kw_only=True, slots=True)
class StepDown:
    epoch: int
    cause: Cause


@attrs.frozen(kw_only=True, slots=True)
class FloorsRaised:
    """Persist these before sending the response that follows: on restart
    hand them back as ``Floors`` so none of them ever goes back. If the write
    fails, ``Engine.restore`` the checkpoint taken before the event and
    answer 500: nothing that was not durable is acknowledged."""

    epoch: int
    fencing_token: int
    peer_epoch: int = 0


@attrs.frozen(kw_only=True, slots=True)
class CaptureSnapshot:
    """Capture one consistent instant; answer with ``SnapshotCaptured``."""

    request_id: int


@attrs.frozen(kw_only=True, slots=True)
class ApplySnapshot:
    """Apply durably, keeping the old state whole on failure; answer with
    ``SnapshotApplied`` or ``SnapshotApplyFailed``."""

    request_id: int
    snapshot: DecodedSnapshot


@attrs.frozen(kw_only=True, slots=True)
class LockGranted:
    owner: str
    fencing_token: int
    ttl_ms: int
    expires_at: int  #: monotonic ns


@attrs.frozen(kw_only=True, slots=True)
class LockRefreshed:
    owner: str
    fencing_token: int
    ttl_ms: int
    expires_at: int


@attrs.frozen(kw_only=True, slots=True)
class LockReleased:
    owner: str
    fencing_token: int


@attrs.frozen(kw_only=True, slots=True)
class LockExpired:
    """Reported once per grant that ran out without a release."""

    owner: str
    fencing_token: int
    expired_at: int


@attrs.frozen(kw_only=True, slots=True)
class HostStalled:
    """The host reported nothing for longer than the stall limit; peer health
    now answers ``stalled``. Reported once per silence."""

    silent_since: int


#: Reports of the peer monitor the engine passes on to its host (contract
#: 4.2): send or abandon a probe, and each change of the peer's standing.
PeerReport = (
    SendProbe | AbandonProbe | PeerUp | PeerDown | PeerChanged | LabelClash | SplitBrain | NoLeader
)
Effect = (
    BecomeLeader
    | StepDown
    | FloorsRaised
    | CaptureSnapshot
    | ApplySnapshot
    | LockGranted
    | LockRefreshed
    | LockReleased
    | LockExpired
    | HostStalled
    | PeerReport
)
Output = Response | Effect
