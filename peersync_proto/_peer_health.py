"""The peer-health answer (contract 3.1) as the monitor and reconciler read it.

:func:`parse_peer_health` turns the body of ``GET /api/peer/health`` into a
:class:`PeerHealth`, or raises :class:`RemoteProtocolError` (code
``invalid_peer_health``) when the peer's answer breaks the contract: not
strict JSON by the codec's :func:`decode_json` (UTF-8, no duplicate keys, no
``NaN``, depth and integer limits), not an object, a field missing or of the
wrong type. Unknown fields are ignored (contract 2). ``stalled`` parses fine: whether it
counts as a failure is the monitor's business, not the parser's.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from ._errors import RemoteProtocolError
from ._json import decode_json
from ._values import INT64_MAX, Role
from ._winner import Standing

__all__ = ["PeerHealth", "PeerStatus", "parse_peer_health"]


class PeerStatus(enum.Enum):
    OK = "ok"
    STALLED = "stalled"


@attrs.frozen(kw_only=True, slots=True)
class PeerHealth:
    """One health answer; ``standing`` is what the winner rule ranks."""

    status: PeerStatus
    engine_label: str
    role: Role
    epoch: int
    last_command_seq: int
    uptime_ms: int
    program_source: str

    @property
    def standing(self) -> Standing:
        return Standing(
            label=self.engine_label, epoch=self.epoch, last_command_seq=self.last_command_seq
        )


def _bad(why: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"peer health answer is invalid: {why}", status=502, code="invalid_peer_health"
    )


def _str(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str):
        raise _bad(f"field {name!r} must be a string, got {value!r}")
    return value


def _int(doc: dict[str, Any], name: str) -> int:
    value = doc.get(name)
    if type(value) is not int or not 0 <= value <= INT64_MAX:
        raise _bad(f"field {name!r} must be a non-negative 64-bit integer, got {value!r}")
    return value


def parse_peer_health(body: bytes) -> PeerHealth:
    """Parse a peer-health body, strictly; see the module docstring."""
    try:
        doc = decode_json(body)
    except RemoteProtocolError as exc:
        raise _bad(exc.message) from None
    status = _str(doc, "status")
    role = _str(doc, "role")
    try:
        parsed_status = PeerStatus(status)
        parsed_role = Role(role)
    except ValueError as exc:
        raise _bad(str(exc)) from None
    label = _str(doc, "engineLabel")
    if not label:
        raise _bad("field 'engineLabel' is empty")
    return PeerHealth(
        status=parsed_status,
        engine_label=label,
        role=parsed_role,
        epoch=_int(doc, "epoch"),
        last_command_seq=_int(doc, "lastCommandSeq"),
        uptime_ms=_int(doc, "uptimeMs"),
        program_source=_str(doc, "programSource"),
    )
