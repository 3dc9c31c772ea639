"""peersync_proto: a pure, I/O-free core for a redundant pair of live engines.

Events go in (each carrying the host's monotonic ``now``), outputs come out:
responses to send and effects for the engine host. Nothing here reads a clock,
opens a socket, starts a thread, draws a random number or touches a file.
See ``docs/api.md``.
"""

from ._canonical import canonical_json, state_checksum
from ._config import (
    DEFAULT_LOCK_OWNER,
    DEFAULT_LOCK_TTL_MS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_SNAPSHOT_BYTES,
    DEFAULT_STALL_LIMIT_NS,
    MAX_LOCK_TTL_MS,
    MAX_OWNER_CHARS,
    MAX_REASON_CHARS,
    MIN_LOCK_TTL_MS,
    EngineConfig,
    Entropy,
    Floors,
)
from ._engine import Engine, EngineView, HostView
from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
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
from ._json import decode_json, encode_json
from ._lock import LockView
from ._outputs import (
    ApplySnapshot,
    BecomeLeader,
    CaptureSnapshot,
    Effect,
    FloorsRaised,
    HostStalled,
    LockExpired,
    LockGranted,
    LockRefreshed,
    LockReleased,
    Output,
    Response,
    StepDown,
)
from ._snapshot import decode_snapshot, encode_snapshot
from ._values import Cause, ClockMode, ClockSync, DecodedSnapshot, Role

__all__ = [
    "DEFAULT_LOCK_OWNER",
    "DEFAULT_LOCK_TTL_MS",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_SNAPSHOT_BYTES",
    "DEFAULT_STALL_LIMIT_NS",
    "MAX_LOCK_TTL_MS",
    "MAX_OWNER_CHARS",
    "MAX_REASON_CHARS",
    "MIN_LOCK_TTL_MS",
    "ApplySnapshot",
    "BecomeLeader",
    "CaptureSnapshot",
    "Cause",
    "ClockMode",
    "ClockSync",
    "DecodedSnapshot",
    "Effect",
    "Engine",
    "EngineConfig",
    "EngineView",
    "Entropy",
    "Event",
    "Floors",
    "FloorsRaised",
    "HostStalled",
    "HostStatus",
    "HostView",
    "LocalProtocolError",
    "LockExpired",
    "LockGranted",
    "LockRefreshed",
    "LockReleased",
    "LockView",
    "Output",
    "ProtocolError",
    "RemoteProtocolError",
    "Request",
    "Response",
    "Role",
    "SnapshotApplied",
    "SnapshotApplyFailed",
    "SnapshotCaptureFailed",
    "SnapshotCaptured",
    "StepDown",
    "Tick",
    "canonical_json",
    "decode_json",
    "decode_snapshot",
    "encode_json",
    "encode_snapshot",
    "state_checksum",
]
