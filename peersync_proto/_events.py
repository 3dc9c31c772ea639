"""Inputs to the engine core.

Every event carries ``now``: the host's monotonic clock in integer
nanoseconds. It never decreases across the events handed to one engine; an
event whose ``now`` is earlier than the last one is refused with
:class:`LocalProtocolError` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from ._errors import LocalProtocolError, RemoteProtocolError
from ._peer_events import ProbeAnswered, ProbeFailed
from ._values import INT64_MAX, ClockSync, DecodedSnapshot

__all__ = [
    "Event",
    "HostStatus",
    "Request",
    "SnapshotApplied",
    "SnapshotApplyFailed",
    "SnapshotCaptureFailed",
    "SnapshotCaptured",
    "Tick",
]

Headers = tuple[tuple[bytes, bytes], ...]


def _now(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or not 0 <= value <= INT64_MAX:
        raise LocalProtocolError(f"{attribute.name} must be a non-negative int (ns), got {value!r}")


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _normalize_headers(raw: Iterable[tuple[str | bytes, str | bytes]]) -> Headers:
    """Header pairs as bytes, names lowercased (h11's convention)."""
    return tuple((_as_bytes(name).lower(), _as_bytes(value).strip(b" \t")) for name, value in raw)


def _request_id(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 0:
        raise LocalProtocolError(f"{attribute.name} must be a non-negative int, got {value!r}")


@attrs.frozen(kw_only=True, slots=True)
class Request:
    """An HTTP request, already framed by the shell.

    ``request_id`` is chosen by the host and echoed on the ``Response`` and on
    any effect the request causes, so a host can match completions. ``target``
    is the request target as sent (a query string is ignored). ``predecoded``
    lets a shell hand in the result of :func:`decode_snapshot` for a
    ``PUT /api/sync/state`` body, computed elsewhere (a worker process); the
    engine then never parses that body itself.
    """

    now: int = attrs.field(validator=_now)
    request_id: int = attrs.field(validator=_request_id)
    method: str
    target: str
    headers: Headers = attrs.field(default=(), converter=_normalize_headers)
    body: bytes = attrs.field(default=b"", converter=bytes)
    predecoded: DecodedSnapshot | RemoteProtocolError | None = None


def _opt_str(_inst: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and not isinstance(value, str):
        raise LocalProtocolError(f"host status {attribute.name} must be str, got {value!r}")


def _opt_u64(_inst: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and (type(value) is not int or not 0 <= value <= INT64_MAX):
        raise LocalProtocolError(
            f"host status {attribute.name} must be a non-negative 64-bit int, got {value!r}"
        )


def _opt_clock(
    _inst: object, attribute: attrs.Attribute[ClockSync | None], value: ClockSync | None
) -> None:
    if value is not None and not isinstance(value, ClockSync):
        raise LocalProtocolError(f"host status {attribute.name} must be ClockSync, got {value!r}")


@attrs.frozen(kw_only=True, slots=True)
class HostStatus:
    """The engine host reports status; ``None`` means "unchanged".

    A report with every field ``None`` is a heartbeat: it only says the engine
    loop is alive (see the stall limit). A wrong-typed field is host misuse.
    """

    now: int = attrs.field(validator=_now)
    program_source: str | None = attrs.field(default=None, validator=_opt_str)
    last_command_seq: int | None = attrs.field(default=None, validator=_opt_u64)
    last_executed_seq: int | None = attrs.field(default=None, validator=_opt_u64)
    last_executed_err: str | None = attrs.field(default=None, validator=_opt_str)
    late_commands: int | None = attrs.field(default=None, validator=_opt_u64)
    clock_sync: ClockSync | None = attrs.field(default=None, validator=_opt_clock)
    last_pong_sent_us: int | None = attrs.field(default=None, validator=_opt_u64)


@attrs.frozen(kw_only=True, slots=True)
class SnapshotCaptured:
    """The host's answer to ``CaptureSnapshot``: one consistent instant.

    ``state`` is the engine's state as canonical RFC 8785 bytes (see
    :func:`canonical_json`); the engine checksums and serves them as they are.
    """

    now: int = attrs.field(validator=_now)
    request_id: int = attrs.field(validator=_request_id)
    state: bytes
    captured_at_us: int = attrs.field(validator=_now)
    program_source: str
    preview_source: str
    last_command_seq: int = attrs.field(validator=_now)
    last_executed_seq: int = attrs.field(validator=_now)
    #: ``state_checksum(state)`` if the host kept it (saves hashing a large
    #: state on every GET); ``None`` and the engine computes it.
    checksum: str | None = None

    def __attrs_post_init__(self) -> None:
        # The peer refuses such a snapshot (contract 3.4): never serve one.
        if self.last_executed_seq > self.last_command_seq:
            raise LocalProtocolError("captured last_executed_seq is above last_command_seq")


@attrs.frozen(kw_only=True, slots=True)
class SnapshotCaptureFailed:
    """The host could not capture; the request is answered ``500 internal``."""

    now: int = attrs.field(validator=_now)
    request_id: int = attrs.field(validator=_request_id)
    reason: str = ""


@attrs.frozen(kw_only=True, slots=True)
class SnapshotApplied:
    """The host applied the snapshot of ``ApplySnapshot`` durably."""

    now: int = attrs.field(validator=_now)
    request_id: int = attrs.field(validator=_request_id)


@attrs.frozen(kw_only=True, slots=True)
class SnapshotApplyFailed:
    """The host could not apply; its previous state is whole."""

    now: int = attrs.field(validator=_now)
    request_id: int = attrs.field(validator=_request_id)
    reason: str = ""


@attrs.frozen(kw_only=True, slots=True)
class Tick:
    """Only time passes (the host woke at ``next_deadline``)."""

    now: int = attrs.field(validator=_now)


Event = (
    Request
    | HostStatus
    | SnapshotCaptured
    | SnapshotCaptureFailed
    | SnapshotApplied
    | SnapshotApplyFailed
    | Tick
    | ProbeAnswered
    | ProbeFailed
)
