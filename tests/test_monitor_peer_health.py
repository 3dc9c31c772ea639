"""The peer-health parser the monitor and the reconciler share."""

from __future__ import annotations

import json
from typing import Any

import pytest

from peersync_proto._errors import RemoteProtocolError
from peersync_proto._peer_health import PeerStatus, parse_peer_health
from peersync_proto._values import Role
from peersync_proto._winner import Standing

GOOD: dict[str, Any] = {
    "status": "ok",
    "uptimeMs": 12345,
    "programSource": "cam-1",
    "lastCommandSeq": 1729,
    "engineLabel": "a",
    "epoch": 17,
    "role": "leader",
}


def body(**changes: Any) -> bytes:
    doc = {**GOOD, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def test_contract_example_parses() -> None:
    h = parse_peer_health(body())
    assert h.status is PeerStatus.OK
    assert h.role is Role.LEADER
    assert (h.engine_label, h.epoch, h.last_command_seq) == ("a", 17, 1729)
    assert (h.uptime_ms, h.program_source) == (12345, "cam-1")
    assert h.standing == Standing(label="a", epoch=17, last_command_seq=1729)


def test_stalled_parses_and_unknown_fields_are_ignored() -> None:
    h = parse_peer_health(body(status="stalled", extra={"x": [1, 2]}))
    assert h.status is PeerStatus.STALLED


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe",  # not UTF-8
        b"{",  # not JSON
        b'{"status": NaN}',  # not strict JSON
        b'{"status": "ok", "status": "ok"}',  # duplicate key
        b"[1]",  # not an object
        b"[" * 100_000 + b"]" * 100_000,  # too deep for anyone
        body(status="sleepy"),
        body(role="boss"),
        body(status=1),
        body(role=None),
        body(engineLabel=""),
        body(engineLabel=...),
        body(epoch=-1),
        body(epoch=2**63),
        body(epoch=1.0),
        body(epoch=True),
        body(lastCommandSeq="1"),
        body(uptimeMs=...),
        body(programSource=3),
    ],
)
def test_answers_breaking_contract_3_1_are_refused(raw: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_peer_health(raw)
    assert info.value.code == "invalid_peer_health"
