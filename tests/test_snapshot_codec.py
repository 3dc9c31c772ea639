"""Snapshot bodies (contract 3.4): decode_snapshot and encode_snapshot."""

from __future__ import annotations

import codecs
import json
import pickle
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_canonical import TEXT, VALUES
from test_json_strict import Refused, json_object, reference_decode

from peersync_proto._canonical import canonical_json, state_checksum
from peersync_proto._errors import LocalProtocolError, RemoteProtocolError
from peersync_proto._snapshot import decode_snapshot, encode_snapshot
from peersync_proto._values import INT64_MAX, DecodedSnapshot, Role

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

STATE = {"program": {"source": "cam-1", "cue": 12}, "tally": [True, False, None], "é": "ü"}
HOST = {
    "engine_label": "a",
    "role": Role.LEADER,
    "epoch": 17,
    "captured_at_us": 1713200000000000,
    "last_command_seq": 1729,
    "last_executed_seq": 1728,
    "program_source": "cam-1",
    "preview_source": "cam-2",
}


def wire(state: Any = STATE, **changes: Any) -> dict[str, Any]:
    """A valid envelope as a dict (checksum of ``state``), with ``changes`` applied."""
    envelope: dict[str, Any] = {
        "formatVersion": 1,
        "engineLabel": "a",
        "role": "leader",
        "epoch": 17,
        "capturedAtUs": 1713200000000000,
        "lastCommandSeq": 1729,
        "lastExecutedSeq": 1728,
        "programSource": "cam-1",
        "previewSource": "cam-2",
        "state": state,
        "checksum": state_checksum(canonical_json(state)) if isinstance(state, dict) else "",
    }
    envelope.update(changes)
    return envelope


def around(state_text: str, checksum: str, *, pretty: bool = False, **changes: Any) -> bytes:
    """A body with ``state_text`` embedded verbatim."""
    envelope = wire(**changes)
    del envelope["state"]
    envelope["checksum"] = checksum
    sep = ",\n  " if pretty else ","
    colon = ": " if pretty else ":"
    members = [json.dumps(k) + colon + json.dumps(v) for k, v in envelope.items()]
    members.insert(0, '"state"' + colon + state_text)
    return ("{" + sep.join(members) + "}").encode()


def refused(body: bytes, code: str) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        decode_snapshot(body)
    assert info.value.status == 400
    assert info.value.code == code, info.value.message
    return info.value


def field_refused(body: bytes, field: str) -> None:
    error = refused(body, "invalid_snapshot")
    assert error.extra == {"field": field}
    assert field in error.message


# --- encode ------------------------------------------------------------------


def test_encode_snapshot_writes_the_contract_shape_in_its_order() -> None:
    state = canonical_json(STATE)
    body = encode_snapshot(**HOST, state=state)
    checksum = state_checksum(state)
    assert body == (
        b'{"formatVersion":1,"engineLabel":"a","role":"leader","epoch":17,'
        b'"capturedAtUs":1713200000000000,"lastCommandSeq":1729,"lastExecutedSeq":1728,'
        b'"programSource":"cam-1","previewSource":"cam-2","state":'
        + state
        + b',"checksum":"'
        + checksum.encode()
        + b'"}'
    )
    assert json.loads(body) == wire()


def test_encode_snapshot_embeds_the_state_bytes_without_parsing_them() -> None:
    odd = b'{"b":1,"a":2}'  # not canonical: embedded and summed as given all the same
    body = encode_snapshot(**HOST, state=odd)
    assert odd in body
    assert json.loads(body)["checksum"] == state_checksum(odd)


@pytest.mark.parametrize(
    "change",
    [
        {"engine_label": ""},
        {"engine_label": "x" * 33},
        {"engine_label": 7},
        {"engine_label": "\ud800"},
        {"role": "leader"},
        {"epoch": -1},
        {"epoch": True},
        {"epoch": 2**63},
        {"captured_at_us": 1.5},
        {"last_command_seq": None},
        {"last_executed_seq": -5},
        {"program_source": "x" * 257},
        {"preview_source": b"cam"},
        {"state": "{}"},
        {"state": b"[]"},
        {"state": b""},
        {"state": bytearray(b"{}")},
    ],
    ids=repr,
)
def test_encode_snapshot_refuses_host_values_out_of_contract(change: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {**HOST, "state": b"{}", **change}
    with pytest.raises(LocalProtocolError):
        encode_snapshot(**arguments)


LABELS = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=32)
SOURCES = st.text(st.characters(blacklist_categories=("Cs",)), max_size=256)
U64 = st.integers(0, INT64_MAX)


@SETTINGS
@given(
    label=LABELS,
    role=st.sampled_from(Role),
    numbers=st.tuples(U64, U64, U64, U64),
    sources=st.tuples(SOURCES, SOURCES),
    state=st.dictionaries(TEXT, VALUES, max_size=5),
)
def test_decode_of_encode_gives_back_the_same_fields_and_bytes(
    label: str,
    role: Role,
    numbers: tuple[int, int, int, int],
    sources: tuple[str, str],
    state: dict[str, Any],
) -> None:
    epoch, captured, command, executed = numbers
    command, executed = max(command, executed), min(command, executed)
    canonical = canonical_json(state)
    body = encode_snapshot(
        engine_label=label,
        role=role,
        epoch=epoch,
        captured_at_us=captured,
        last_command_seq=command,
        last_executed_seq=executed,
        program_source=sources[0],
        preview_source=sources[1],
        state=canonical,
    )
    assert decode_snapshot(body) == DecodedSnapshot(
        format_version=1,
        engine_label=label,
        role=role,
        epoch=epoch,
        captured_at_us=captured,
        last_command_seq=command,
        last_executed_seq=executed,
        program_source=sources[0],
        preview_source=sources[1],
        state=canonical,
        checksum=state_checksum(canonical),
    )
    assert decode_snapshot(body + b"\n") == decode_snapshot(body)
    for junk in (b"x", b"}", b",", b'"', b"{}"):
        refused(body + junk, "invalid_json")


# --- the state comes back canonical, whatever its spelling ---------------------

NON_CANONICAL = [
    '{"b":1,"a":2}',
    '{ "a" : 1 }',
    '{"a":{"c":1,"b":[2,{"e":1,"d":0}]}}',
    '{"a":1.0}',
    '{"a":1E5}',
    '{"a":2.50,"b":[1e-7,0.000001,1e21,1e+0]}',
    '{"a":-0.0}',
    '{"a":-0}',
    '{"a":[-0,-0.5]}',
    '{"a":"\\/"}',
    '{"a":"\\u00e9\\u00E9"}',
    '{"a":"\\u0009\\u000A\\u001F"}',
    '{"\\ud83d\\ude00":1,"\\ue000":2}',
    '{"\ue000":1,"\U0001f600":2}',
    '{"b":1,"\ue000":{"\U0001f600":1,"a":2}}',
    '{"\U0001f600":[1.5,{"y":1,"x":2.0}]}',
]


@pytest.mark.parametrize("pretty", [False, True])
@pytest.mark.parametrize("state_text", NON_CANONICAL)
def test_state_in_any_spelling_comes_back_canonical(state_text: str, pretty: bool) -> None:
    expected = rfc8785.dumps(json.loads(state_text))
    body = around(state_text, state_checksum(expected), pretty=pretty)
    assert decode_snapshot(body).state == expected


@pytest.mark.parametrize("state_text", NON_CANONICAL)
def test_checksum_over_a_non_canonical_spelling_is_a_mismatch(state_text: str) -> None:
    body = around(state_text, state_checksum(state_text.encode()))
    field_refused(body, "checksum")


@pytest.mark.parametrize(
    "state_text",
    [
        '{"a":1,"b":[1.5,"x"],"c":{"d":null}}',
        '{"é":"\\n\\u001f","\U0001f600":1,"\ue000":2}',
        '{"a":"-0","b":"x:-0,","c":-1}',
    ],
)
def test_canonical_state_is_taken_verbatim(state_text: str) -> None:
    canonical = state_text.encode()
    assert canonical_json(json.loads(state_text)) == canonical
    for pretty in (False, True):
        decoded = decode_snapshot(around(state_text, state_checksum(canonical), pretty=pretty))
        assert decoded.state == canonical


@SETTINGS
@given(json_object(), st.booleans())
def test_decode_snapshot_agrees_with_reference_on_tricky_state_text(
    state_text: str, pretty: bool
) -> None:
    try:
        value = reference_decode(state_text.encode(), max_depth=63)
    except Refused:
        refused(around(state_text, "sha256:" + "0" * 64, pretty=pretty), "invalid_json")
        return
    expected = canonical_json(value)
    decoded = decode_snapshot(around(state_text, state_checksum(expected), pretty=pretty))
    assert decoded.state == expected


# --- invalid_snapshot, naming the field ---------------------------------------

MISSING = [
    "formatVersion",
    "engineLabel",
    "role",
    "epoch",
    "capturedAtUs",
    "lastCommandSeq",
    "lastExecutedSeq",
    "programSource",
    "previewSource",
    "state",
    "checksum",
]


@pytest.mark.parametrize("field", MISSING)
def test_every_field_is_required(field: str) -> None:
    envelope = wire()
    del envelope[field]
    field_refused(json.dumps(envelope).encode(), field)


BAD_VALUES = [
    ("formatVersion", 2),
    ("formatVersion", 0),
    ("formatVersion", True),
    ("formatVersion", 1.0),
    ("formatVersion", "1"),
    ("engineLabel", ""),
    ("engineLabel", "x" * 33),
    ("engineLabel", 1),
    ("engineLabel", None),
    ("role", "primary"),
    ("role", "Leader"),
    ("role", 1),
    ("role", ["leader"]),
    ("epoch", -1),
    ("epoch", True),
    ("epoch", 17.0),
    ("epoch", "17"),
    ("capturedAtUs", None),
    ("capturedAtUs", -1),
    ("lastCommandSeq", False),
    ("lastCommandSeq", 1.5),
    ("lastExecutedSeq", -1),
    ("lastExecutedSeq", {}),
    ("programSource", "x" * 257),
    ("programSource", None),
    ("previewSource", 3),
    ("previewSource", ["cam"]),
    ("state", []),
    ("state", "{}"),
    ("state", None),
    ("checksum", "sha256:" + "A" * 64),
    ("checksum", "sha256:" + "0" * 63),
    ("checksum", "sha256:" + "0" * 65),
    ("checksum", "SHA256:" + "0" * 64),
    ("checksum", "0" * 64),
    ("checksum", 1),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES, ids=repr)
def test_wrong_type_or_range_names_the_field(field: str, value: Any) -> None:
    field_refused(json.dumps(wire(**{field: value})).encode(), field)


def test_limits_themselves_are_accepted() -> None:
    body = json.dumps(
        wire(engineLabel="x" * 32, programSource="p" * 256, previewSource="", epoch=0)
    ).encode()
    decoded = decode_snapshot(body)
    assert (decoded.engine_label, decoded.program_source, decoded.epoch) == ("x" * 32, "p" * 256, 0)
    assert decode_snapshot(json.dumps(wire(epoch=INT64_MAX)).encode()).epoch == INT64_MAX


def test_last_executed_above_last_command_names_last_executed_seq() -> None:
    field_refused(json.dumps(wire(lastExecutedSeq=1730)).encode(), "lastExecutedSeq")
    assert decode_snapshot(json.dumps(wire(lastExecutedSeq=1729)).encode())


def test_checksum_mismatch_names_checksum() -> None:
    error = refused(json.dumps(wire(checksum="sha256:" + "0" * 64)).encode(), "invalid_snapshot")
    assert error.extra == {"field": "checksum"}
    assert "match" in error.message


def test_first_bad_field_in_contract_order_is_named() -> None:
    body = json.dumps(wire(role="x", epoch=-1, checksum="nope")).encode()
    field_refused(body, "role")


def test_unknown_fields_are_ignored_and_member_order_is_free() -> None:
    envelope = dict(reversed(list(wire().items())))
    envelope["extra"] = {"deep": [1.5, {"x": None}], "why": "later versions"}
    decoded = decode_snapshot(json.dumps(envelope, indent=1).encode())
    assert decoded.state == canonical_json(STATE)
    assert decoded.role is Role.LEADER


def test_follower_role_and_empty_state_object() -> None:
    decoded = decode_snapshot(json.dumps(wire(state={}, role="follower")).encode())
    assert (decoded.role, decoded.state) == (Role.FOLLOWER, b"{}")


# --- invalid_json, before any field is looked at ------------------------------

GOOD = json.dumps(wire())


@pytest.mark.parametrize(
    "body",
    [
        codecs.BOM_UTF8 + GOOD.encode(),
        GOOD.encode("utf-16"),
        GOOD.encode("utf-32-le"),
        GOOD.replace('"cam-1"', '"cam\udcff"', 1).encode("utf-8", "surrogateescape"),
        b"",
        b"nope",
        b"[]",
        b'"state"',
        b"{1:2}",
        b'{"a" 1}',
        b'{"a":1 "b":2}',
        b'{"a":1,}',
        b'{"a":}',
        b'{"a":1} x',
        b'{"a":1}}',
        GOOD.replace('"epoch": 17', '"epoch": 17, "epoch": 18').encode(),
        GOOD.replace('"state": {', '"state": {"tally": 1, ').encode(),
        GOOD.replace('"epoch": 17', '"epoch": 9223372036854775808').encode(),
        GOOD.replace('"epoch": 17', '"epoch": NaN').encode(),
        GOOD.replace('"cue": 12', '"cue": 1e400').encode(),
        GOOD.replace('"cue": 12', '"cue": -Infinity').encode(),
        GOOD.replace('"cue": 12', '"cue": ' + "9" * 5000).encode(),
        GOOD.replace('"cam-1"', '"\\ud800"', 1).encode(),
        GOOD.replace('"cue": 12', '"\\udc00": 12').encode(),
        GOOD.replace('"cue": 12', '"cue": "\\ud800"').encode(),
        GOOD.replace('"cue": 12', '"cue": [2.5, "\\udfff"]').encode(),
        GOOD.replace('"cue": 12', '"cue": [2.5, "\\udbff"]').encode(),
        GOOD.replace('"cue": 12', '"cue": ["\\udfff2.5\\udfff"]').encode(),
        GOOD.replace('"epoch"', '"\\udfff": 1, "epoch"').encode(),
        json.dumps({"state": ["\ud800", 1.5], "zz": 1}).encode(),
        json.dumps({"state": {"a": "\ud800"}, "checksum": 5}).encode(),
        GOOD.replace('"cue": 12', '"cue": ' + "[" * 63 + "]" * 63).encode(),
        b'{"state":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"state":' + b"{" * 100_000,
    ],
)
def test_strict_json_rules_apply_and_come_first(body: bytes) -> None:
    refused(body, "invalid_json")


def test_nesting_up_to_64_in_total_is_accepted() -> None:
    state = {"cue": json.loads("[" * 62 + "]" * 62)}  # envelope 1 + state 1 + 62 arrays
    assert decode_snapshot(json.dumps(wire(state=state)).encode()).state == canonical_json(state)


def test_whitespace_around_and_inside_the_envelope_is_allowed() -> None:
    body = b" \r\n\t" + json.dumps(wire(), indent="\t").encode() + b"\n\n"
    assert decode_snapshot(body).state == canonical_json(STATE)


def test_empty_envelope_names_the_first_field() -> None:
    field_refused(b"{ }", "formatVersion")


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_remote_errors(body: bytes) -> None:
    try:
        decode_snapshot(body)
    except RemoteProtocolError as exc:
        assert exc.code in ("invalid_json", "invalid_snapshot")


@SETTINGS
@given(st.data())
def test_mutated_bodies_raise_only_remote_errors(data: st.DataObject) -> None:
    body = bytearray(encode_snapshot(**HOST, state=canonical_json(STATE)))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body)))
        if data.draw(st.booleans()):
            del body[at : at + data.draw(st.integers(1, 4))]
        else:
            body[at:at] = data.draw(st.binary(min_size=1, max_size=3))
    try:
        decoded = decode_snapshot(bytes(body))
    except RemoteProtocolError as exc:
        assert exc.code in ("invalid_json", "invalid_snapshot")
    else:
        assert decoded.checksum == state_checksum(decoded.state)
        assert canonical_json(json.loads(decoded.state)) == decoded.state


# --- a pure function of the bytes: runs in a worker process --------------------


def test_decode_snapshot_runs_in_a_worker_process_and_its_answers_pickle() -> None:
    good = encode_snapshot(**HOST, state=canonical_json(STATE))
    bad = json.dumps(wire(epoch=-1)).encode()
    with ProcessPoolExecutor(max_workers=1) as pool:
        assert pool.submit(decode_snapshot, good).result() == decode_snapshot(good)
        with pytest.raises(RemoteProtocolError) as info:
            pool.submit(decode_snapshot, bad).result()
    assert (info.value.code, info.value.extra) == ("invalid_snapshot", {"field": "epoch"})
    assert pickle.loads(pickle.dumps(decode_snapshot(good))) == decode_snapshot(good)
