"""What the blocking client returns: one attrs value per answer shape.

Each value is built from the answer's JSON object by :func:`from_wire`, which
checks every field the contract names (type and, for integers, the signed
64-bit range) and ignores unknown ones; :func:`to_wire` gives the contract's
shape back (the ``peersync`` tool prints it). The wire name of each field sits
in its metadata, so the mapping lives in one place.

A lock id is a capability: :class:`LockGrant` hides it from ``repr`` so it never
lands in a log line by accident.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

import attrs

from peersync_proto import ClockMode, ClockSync, Role
from peersync_proto._values import INT64_MAX, INT64_MIN

from ._client_errors import InvalidResponse

__all__ = [
    "ApplyResult",
    "ForceLeaderResult",
    "HealthStatus",
    "LockGrant",
    "LockStatus",
    "PeerHealth",
    "ReleaseResult",
    "StateSnapshot",
    "SyncHealth",
    "from_wire",
    "to_wire",
]


class HealthStatus(enum.Enum):
    """Contract 3.1: ``stalled`` means the HTTP side lives but the engine froze."""

    OK = "ok"
    STALLED = "stalled"


def _wire(name: str, kind: Any, *, optional: bool = False) -> dict[str, Any]:
    """Field metadata: the JSON name, the JSON value's kind, and whether it may be absent."""
    return {"wire": name, "kind": kind, "optional": optional}


@attrs.frozen(kw_only=True, slots=True)
class PeerHealth:
    status: HealthStatus = attrs.field(metadata=_wire("status", HealthStatus))
    uptime_ms: int = attrs.field(metadata=_wire("uptimeMs", int))
    program_source: str = attrs.field(metadata=_wire("programSource", str))
    last_command_seq: int = attrs.field(metadata=_wire("lastCommandSeq", int))
    engine_label: str = attrs.field(metadata=_wire("engineLabel", str))
    epoch: int = attrs.field(metadata=_wire("epoch", int))
    role: Role = attrs.field(metadata=_wire("role", Role))


@attrs.frozen(kw_only=True, slots=True)
class ForceLeaderResult:
    status: str = attrs.field(metadata=_wire("status", str))
    engine_label: str = attrs.field(metadata=_wire("engineLabel", str))
    epoch: int = attrs.field(metadata=_wire("epoch", int))
    previous_role: Role = attrs.field(metadata=_wire("previousRole", Role))


@attrs.frozen(kw_only=True, slots=True)
class SyncHealth:
    clock_sync: ClockSync = attrs.field(metadata=_wire("clockSync", ClockSync))
    last_command_seq: int = attrs.field(metadata=_wire("lastCommandSeq", int))
    last_executed_seq: int = attrs.field(metadata=_wire("lastExecutedSeq", int))
    last_executed_err: str = attrs.field(metadata=_wire("lastExecutedErr", str))
    late_commands: int = attrs.field(metadata=_wire("lateCommands", int))
    uptime_ms: int = attrs.field(metadata=_wire("uptimeMs", int))
    last_pong_sent_us: int = attrs.field(metadata=_wire("lastPongSentUs", int))


@attrs.frozen(kw_only=True, slots=True)
class LockGrant:
    lock_id: str = attrs.field(repr=False, metadata=_wire("lockId", str))
    expires_ms: int = attrs.field(metadata=_wire("expiresMs", int))
    fencing_token: int = attrs.field(metadata=_wire("fencingToken", int))
    owner: str = attrs.field(metadata=_wire("owner", str))


@attrs.frozen(kw_only=True, slots=True)
class LockStatus:
    """``held`` decides which of the other fields are set (contract 3.5)."""

    held: bool = attrs.field(metadata=_wire("held", bool))
    owner: str | None = attrs.field(default=None, metadata=_wire("owner", str, optional=True))
    remaining_ms: int | None = attrs.field(
        default=None, metadata=_wire("remainingMs", int, optional=True)
    )
    ttl_ms: int | None = attrs.field(default=None, metadata=_wire("ttlMs", int, optional=True))
    fencing_token: int | None = attrs.field(
        default=None, metadata=_wire("fencingToken", int, optional=True)
    )
    last_fencing_token: int | None = attrs.field(
        default=None, metadata=_wire("lastFencingToken", int, optional=True)
    )


@attrs.frozen(kw_only=True, slots=True)
class ReleaseResult:
    released: bool = attrs.field(metadata=_wire("released", bool))


@attrs.frozen(kw_only=True, slots=True)
class ApplyResult:
    applied: bool = attrs.field(metadata=_wire("applied", bool))
    epoch: int = attrs.field(metadata=_wire("epoch", int))
    role: Role = attrs.field(metadata=_wire("role", Role))
    last_command_seq: int = attrs.field(metadata=_wire("lastCommandSeq", int))


@attrs.frozen(kw_only=True, slots=True)
class StateSnapshot:
    """A snapshot as served: the envelope fields and the body exactly as received.

    ``body`` is what ``apply_state`` sends on unchanged; ``state`` is the
    engine's own JSON value, parsed once together with the envelope.
    """

    format_version: int = attrs.field(metadata=_wire("formatVersion", int))
    engine_label: str = attrs.field(metadata=_wire("engineLabel", str))
    role: Role = attrs.field(metadata=_wire("role", Role))
    epoch: int = attrs.field(metadata=_wire("epoch", int))
    captured_at_us: int = attrs.field(metadata=_wire("capturedAtUs", int))
    last_command_seq: int = attrs.field(metadata=_wire("lastCommandSeq", int))
    last_executed_seq: int = attrs.field(metadata=_wire("lastExecutedSeq", int))
    program_source: str = attrs.field(metadata=_wire("programSource", str))
    preview_source: str = attrs.field(metadata=_wire("previewSource", str))
    checksum: str = attrs.field(metadata=_wire("checksum", str))
    state: Any = attrs.field(default=None, repr=False, eq=False, metadata={"wire": None})
    body: bytes = attrs.field(
        default=b"", repr=lambda b: f"<{len(b)} bytes>", metadata={"wire": None}
    )


_T = TypeVar("_T", bound=attrs.AttrsInstance)


def _check(cls_name: str, name: str, kind: Any, value: Any) -> Any:
    """``value`` converted to ``kind``, or :class:`InvalidResponse`."""
    if kind is int:
        if type(value) is int and INT64_MIN <= value <= INT64_MAX:
            return value
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is ClockSync:
        if isinstance(value, dict):
            mode = _check(cls_name, f"{name}.mode", ClockMode, value.get("mode"))
            offset = _check(cls_name, f"{name}.offsetNs", int, value.get("offsetNs"))
            jitter = _check(cls_name, f"{name}.jitterNs", int, value.get("jitterNs"))
            return ClockSync(mode=mode, offset_ns=offset, jitter_ns=jitter)
    elif isinstance(kind, type) and issubclass(kind, enum.Enum):
        for member in kind:
            if member.value == value:
                return member
    raise InvalidResponse(f"{cls_name} answer: field {name!r} is missing or of the wrong type")


def from_wire(cls: type[_T], obj: Any, **extra: Any) -> _T:
    """Build ``cls`` from a decoded JSON object; ``extra`` fills non-wire fields."""
    if not isinstance(obj, dict):
        raise InvalidResponse(f"{cls.__name__} answer is not a JSON object")
    kwargs: dict[str, Any] = dict(extra)
    for field in attrs.fields(cls):
        wire = field.metadata.get("wire")
        if wire is None:
            continue
        if field.metadata["optional"] and wire not in obj:
            continue
        kwargs[field.name] = _check(cls.__name__, wire, field.metadata["kind"], obj.get(wire))
    return cls(**kwargs)


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, ClockSync):
        return {"mode": value.mode.value, "offsetNs": value.offset_ns, "jitterNs": value.jitter_ns}
    return value


def to_wire(value: Any) -> dict[str, Any]:
    """The contract's JSON shape of a value (optional fields that are unset left out)."""
    out: dict[str, Any] = {}
    for field in attrs.fields(type(value)):
        wire = field.metadata.get("wire")
        if wire is None:
            continue
        item = getattr(value, field.name)
        if item is None and field.metadata["optional"]:
            continue
        out[wire] = _plain(item)
    return out
