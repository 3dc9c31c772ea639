# Invariant: any body (arbitrary JSON, a valid body with one field broken, or
# arbitrary bytes) sent with valid credentials to any of the nine endpoints, in
# any engine state (lock free, held or expired; leader or follower; any epoch),
# gets only a (status, code) pair the contract lists for that endpoint, as a
# JSON object with the contract headers; a refused request (any non-200) leaves
# `Engine.view()` exactly as it was at the same `now`; and no answer but the
# grant's own carries the live lock id.
"""JSON bodies into every endpoint of the core (see the invariant above)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from fuzz.core_rig import (
    ACQUIRE,
    ALLOWED,
    BEARER,
    CP,
    FORCE,
    GET_STATE,
    HEALTH,
    JSON_CT,
    LOCK_PATH,
    PUT_STATE,
    STATUS,
    SYNC_HEALTH,
    Rig,
    body_of,
    check_response_shape,
    make_engine,
    snapshot_obj,
)
from peersync_proto import Floors, Role, Tick

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELD_NAMES = [
    "owner",
    "ttlMs",
    "reason",
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
edge_values: st.SearchStrategy[Any] = st.sampled_from(
    [
        None,
        True,
        0,
        -1,
        1,
        999,
        1000,
        300_000,
        300_001,
        2**63 - 1,
        2**63,
        -(2**63) - 1,
        1.5,
        "",
        "x" * 128,
        "x" * 129,
        "x" * 257,
        [],
        {},
        "leader",
        "c",
        "1e3",
        "sha256:" + "0" * 64,
    ]
)


@st.composite
def broken_body(draw: st.DrawFn, valid: dict[str, Any]) -> bytes:
    """A valid body with fields replaced, dropped or added."""
    obj = dict(valid)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(set(obj) | set(FIELD_NAMES))))
        choice = draw(st.integers(0, 2))
        if choice == 0:
            obj.pop(key, None)
        else:
            obj[key] = draw(edge_values if choice == 1 else json_values)
    return body_of(obj)


raw_bodies = st.binary(max_size=64) | st.sampled_from(
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b'{"a":1,"a":2}',
        b'{"x":NaN}',
        b"\xff\xfe",
        b"[" * 70 + b"]" * 70,
        b'{"ttlMs":1e400}',
        b'{"owner":"\\ud800"}',
        b"{}" + b" " * 20_000,
        b'{"n":' + b"9" * 30 + b"}",
    ]
)


@st.composite
def scenario(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "role": draw(st.sampled_from([Role.FOLLOWER, Role.LEADER])),
        "epoch": draw(st.sampled_from([0, 3, 2**63 - 2])),
        "lock": draw(st.sampled_from(["held", "held", "held", "free", "expired"])),
        "endpoint": draw(st.sampled_from(sorted(ALLOWED))),
        "id_kind": draw(st.sampled_from(["live", "live", "live", "other", "garbage"])),
        "garbage_id": draw(st.text(alphabet="0123456789abcdefABCDEF-%._~", max_size=40)),
        "snap_epoch": draw(st.sampled_from([0, 2, 3, 4, 2**63 - 1])),
        "body_kind": draw(st.sampled_from(["valid", "broken", "json", "raw"])),
        "json": draw(json_values),
        "raw": draw(raw_bodies),
        "data": draw(st.data()),
    }


def _setup(sc: dict[str, Any]) -> tuple[Rig, str]:
    floors = Floors(epoch=sc["epoch"], fencing_token=3) if sc["epoch"] else None
    rig = Rig(make_engine(role=sc["role"], floors=floors))
    if sc["role"] is Role.LEADER and floors is not None:
        rig.send(*FORCE, headers=(CP,))  # a restarted engine comes back follower
    lock_id = ""
    if sc["lock"] != "free":
        lock_id = rig.acquire(ttl_ms=1000)
        if sc["lock"] == "expired":
            rig.advance_ms(1000)
    rig.advance_ms(1)
    rig.engine.handle(Tick(now=rig.now))  # the view below is taken at the request's now
    return rig, lock_id


def _request(sc: dict[str, Any], lock_id: str) -> tuple[str, str, list[tuple[bytes, bytes]], bytes]:
    ep = sc["endpoint"]
    data = sc["data"]
    path_id = {
        "live": lock_id or "0" * 32,
        "other": "f" * 32,
        "garbage": sc["garbage_id"] or "x",
    }[sc["id_kind"]]
    valid: dict[str, Any] = {}
    method, target = {
        "health": HEALTH,
        "force": FORCE,
        "sync_health": SYNC_HEALTH,
        "get_state": GET_STATE,
        "put_state": PUT_STATE,
        "acquire": ACQUIRE,
        "status": STATUS,
        "refresh": ("PUT", LOCK_PATH + path_id),
        "release": ("DELETE", LOCK_PATH + path_id),
    }[ep]
    headers = [CP if ep == "force" else BEARER, JSON_CT]
    if ep == "put_state":
        headers.append((b"x-reconcile-lock-id", path_id.encode("latin-1")))
        valid = snapshot_obj({"scene": "fuzz", "n": [1, 2]}, epoch=sc["snap_epoch"])
    elif ep == "acquire":
        valid = {"owner": "b", "ttlMs": 5000}
    elif ep == "refresh":
        valid = {"ttlMs": 2000}
    elif ep == "force":
        valid = {"reason": "fuzz"}
    kind = sc["body_kind"]
    if kind == "valid":
        body = body_of(valid) if valid else b""
    elif kind == "broken":
        body = data.draw(broken_body(valid))
    elif kind == "json":
        body = body_of(sc["json"])
    else:
        body = sc["raw"]
    return method, target, headers, body


@SETTINGS
@given(sc=scenario())
@example(
    sc={
        "role": Role.FOLLOWER,
        "epoch": 0,
        "lock": "held",
        "endpoint": "put_state",
        "id_kind": "live",
        "garbage_id": "",
        "snap_epoch": 2,
        "body_kind": "valid",
        "json": None,
        "raw": b"",
        "data": None,
    }
)
def test_core_answers_only_contract_codes_and_refusals_change_nothing(sc: dict[str, Any]) -> None:
    check(sc)


def check(sc: dict[str, Any]) -> None:
    rig, lock_id = _setup(sc)
    method, target, headers, body = _request(sc, lock_id)
    before = rig.engine.view()
    resp = rig.send(method, target, headers=headers, body=body)
    obj = check_response_shape(resp)
    code = None if resp.status == 200 else obj["code"]
    event(f"{sc['endpoint']} {resp.status} {code}")
    assert (resp.status, code) in ALLOWED[sc["endpoint"]], (resp.status, obj)
    if resp.status != 200:
        assert rig.engine.view() == before, f"refused {resp.status} {code} changed the engine"
    granted_here = sc["endpoint"] in ("acquire", "refresh") and resp.status == 200
    if lock_id and not granted_here:
        assert lock_id not in resp.body.decode("utf-8"), "a lock id leaked into an answer"
    if sc["endpoint"] == "status":
        assert "lockId" not in obj and json.dumps(obj).count(lock_id or "\x00") == 0
