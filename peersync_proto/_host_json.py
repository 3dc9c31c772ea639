"""The JSON shapes a host sees: effects out, status reports in.

One definition shared by the replay tool (contract 6) and the flat host shim
(``peersync_proto.shim``), so an effect line printed by one reads the same in
the other: ``{"effect": "<Name>", ...fields}`` with camelCase field names,
enums as their values, monotonic instants as ``...Ms``, and a snapshot as its
identifying fields (never the state bytes, never a lock id).
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from ._errors import LocalProtocolError
from ._events import HostStatus
from ._outputs import Effect
from ._values import ClockMode, ClockSync, DecodedSnapshot

__all__ = ["STATUS_FIELDS", "camel", "effect_fields", "host_status"]

_NS_PER_MS = 1_000_000
#: The status report's JSON keys and the ``HostStatus`` fields they fill.
STATUS_FIELDS = {
    "programSource": "program_source",
    "lastCommandSeq": "last_command_seq",
    "lastExecutedSeq": "last_executed_seq",
    "lastExecutedErr": "last_executed_err",
    "lateCommands": "late_commands",
    "clockSync": "clock_sync",
    "lastPongSentUs": "last_pong_sent_us",
}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def effect_fields(output: Effect) -> dict[str, Any]:
    """An effect's fields as JSON-ready values (without the ``effect`` name)."""
    result: dict[str, Any] = {}
    for field in attrs.fields(type(output)):
        value = getattr(output, field.name)
        key = camel(field.name)
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, DecodedSnapshot):
            value = {
                "engineLabel": value.engine_label,
                "role": value.role.value,
                "epoch": value.epoch,
                "lastCommandSeq": value.last_command_seq,
                "checksum": value.checksum,
            }
        elif field.name in ("expires_at", "expired_at", "silent_since"):
            key, value = key + "Ms", value // _NS_PER_MS
        result[key] = value
    return result


def host_status(now: int, report: dict[str, Any]) -> HostStatus:
    """A status report (the keys of ``STATUS_FIELDS``) as a ``HostStatus``.

    An unknown key or a malformed ``clockSync`` is host misuse.
    """
    kwargs: dict[str, Any] = {}
    for key, value in report.items():
        if key not in STATUS_FIELDS:
            raise LocalProtocolError(f"unknown host status field {key!r}")
        if key == "clockSync":
            try:
                value = ClockSync(
                    mode=ClockMode(value.get("mode", "unknown")),
                    offset_ns=value.get("offsetNs", 0),
                    jitter_ns=value.get("jitterNs", 0),
                )
            except (AttributeError, TypeError, ValueError) as exc:
                raise LocalProtocolError(f"bad clockSync: {exc}") from None
        kwargs[STATUS_FIELDS[key]] = value
    return HostStatus(now=now, **kwargs)
