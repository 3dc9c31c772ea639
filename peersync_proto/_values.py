"""Small value types shared by events, outputs and machines."""

from __future__ import annotations

import enum

import attrs

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "Cause",
    "float_spelled_as_wide_int",
    "ClockMode",
    "ClockSync",
    "DecodedSnapshot",
    "Role",
]

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

_TWO_63 = 2.0**63
#: RFC 8785 writes a float below 1e21 in plain digits, no point, no exponent.
_JCS_PLAIN_BELOW = 1e21


def float_spelled_as_wide_int(value: float) -> bool:
    """RFC 8785 writes this float as an integer outside signed 64 bits
    (``9.3e18`` -> ``9300000000000000000``): its canonical bytes would read
    back as an integer the contract refuses, so such a float is refused
    wherever it enters (decoded input, a host's state)."""
    # Symmetric: -2**63 itself is written -9223372036854776000 (the shortest
    # digits that round-trip), which is below INT64_MIN.
    return _TWO_63 <= abs(value) < _JCS_PLAIN_BELOW


class Role(enum.Enum):
    """An engine's role in the pair."""

    LEADER = "leader"
    FOLLOWER = "follower"


class Cause(enum.Enum):
    """Why a role changed; carried by ``BecomeLeader`` and ``StepDown``."""

    FORCE = "force"  #: the control plane called force-leader
    PEER_DOWN = "peer_down"  #: our leader stopped answering (failover policy auto)
    ELECTED = "elected"  #: both engines were follower and we won by contract 4.3
    SNAPSHOT = "snapshot"  #: a leader's snapshot was applied over ours (contract 3.4)


class ClockMode(enum.Enum):
    PTP = "ptp"
    NTP = "ntp"
    FREE_RUN = "free-run"
    UNKNOWN = "unknown"


def _int64(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
        raise TypeError(f"{attribute.name} must be a signed 64-bit int, got {value!r}")


def _uint64(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or not 0 <= value <= INT64_MAX:
        raise TypeError(f"{attribute.name} must be a non-negative 64-bit int, got {value!r}")


@attrs.frozen(kw_only=True, slots=True)
class ClockSync:
    """The engine's clock discipline, as the host reports it (contract 3.3)."""

    mode: ClockMode = attrs.field(
        default=ClockMode.UNKNOWN, validator=attrs.validators.instance_of(ClockMode)
    )
    offset_ns: int = attrs.field(default=0, validator=_int64)
    jitter_ns: int = attrs.field(default=0, validator=_int64)


@attrs.frozen(kw_only=True, slots=True)
class DecodedSnapshot:
    """A validated snapshot envelope and the canonical (RFC 8785) state bytes.

    Produced by :func:`decode_snapshot`, a pure function of the body bytes that a
    shell may run in another process. ``state`` is never parsed again: the
    engine stores and serves it as bytes.
    """

    format_version: int
    engine_label: str
    role: Role
    epoch: int = attrs.field(validator=_uint64)
    captured_at_us: int = attrs.field(validator=_uint64)
    last_command_seq: int = attrs.field(validator=_uint64)
    last_executed_seq: int = attrs.field(validator=_uint64)
    program_source: str
    preview_source: str
    state: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    checksum: str
