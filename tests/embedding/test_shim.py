"""The flat host shim: plain values in and out, every rule still the core's."""

from __future__ import annotations

import hashlib
import json
import pathlib
from typing import Any

import pytest
from shim_replay import run as shim_run

from peersync_proto import LocalProtocolError, canonical_json
from peersync_proto.replay import SeededEntropy, run_scenario
from peersync_proto.shim import NO_DEADLINE, PENDING, EngineHandle, create_engine

VECTORS = pathlib.Path(__file__).resolve().parents[1] / "vectors"
SCENARIOS = sorted(VECTORS.glob("*.scenario.jsonl"))
MS = 1_000_000
AUTH = ("Authorization", "Bearer t0k")
CP = ("X-Control-Plane-Secret", "s3c")
JSON = ("Content-Type", "application/json")


def make(role: str = "follower", **kw: Any) -> EngineHandle:
    args: dict[str, Any] = {
        "label": "a",
        "role": role,
        "api_token": "t0k",
        "control_plane_secret": "s3c",
        "epoch_floor": -1,
        "fencing_floor": -1,
        "seed_or_entropy": 7,
        "now_ns": 0,
    }
    args.update(kw)
    return create_engine(**args)


def effects(jsonl: str) -> list[dict[str, Any]]:
    assert jsonl == "" or jsonl.endswith("\n")
    return [json.loads(line) for line in jsonl.splitlines()]


def acquire(h: EngineHandle, rid: int, now: int, body: bytes = b"") -> tuple[int, Any, str]:
    headers = [AUTH, JSON] if body else [AUTH]
    status, _, raw, jsonl = h.request(rid, "POST", "/api/sync/reconcile-lock", headers, body, now)
    return status, json.loads(raw), jsonl


def snapshot_body(state: dict[str, Any], *, epoch: int, role: str = "leader") -> bytes:
    canon = canonical_json(state)
    return json.dumps(
        {
            "formatVersion": 1,
            "engineLabel": "b",
            "role": role,
            "epoch": epoch,
            "capturedAtUs": 1_713_200_000_000_000,
            "lastCommandSeq": 9,
            "lastExecutedSeq": 8,
            "programSource": "cam-9",
            "previewSource": "cam-3",
            "state": state,
            "checksum": "sha256:" + hashlib.sha256(canon).hexdigest(),
        }
    ).encode()


# -- the shim against the conformance vectors -----------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name.split(".")[0])
def test_a_host_using_only_the_shim_replays_every_vector_exactly(
    scenario: pathlib.Path,
) -> None:
    expected = scenario.with_name(scenario.name.replace(".scenario.", ".expected."))
    lines = scenario.read_text("utf-8").splitlines()
    assert shim_run(lines) == expected.read_text("utf-8").splitlines()


def test_effect_lines_have_the_replay_tools_shape() -> None:
    scenario = [
        json.dumps(
            {
                "config": {
                    "label": "a",
                    "role": "follower",
                    "apiToken": "t0k",
                    "controlPlaneSecret": "s3c",
                    "seed": 3,
                }
            }
        ),
        json.dumps(
            {
                "at": 5,
                "request": {
                    "method": "POST",
                    "path": "/api/peer/force-leader",
                    "headers": {"X-Control-Plane-Secret": "s3c"},
                    "body": {"reason": "drill"},
                },
            }
        ),
    ]
    replayed = [json.loads(line) for line in run_scenario(scenario)]
    h = make(seed_or_entropy=3)
    body = b'{"reason": "drill"}'
    status, _, _, jsonl = h.request(
        1, "POST", "/api/peer/force-leader", [("X-Control-Plane-Secret", "s3c"), JSON], body, 5 * MS
    )
    assert status == 200
    assert [{"at": 5, **e} for e in effects(jsonl)] == [r for r in replayed if "effect" in r]
    assert effects(jsonl)[1] == {
        "effect": "BecomeLeader",
        "epoch": 1,
        "cause": "force",
        "reason": "drill",
    }


# -- requests and responses as plain values ------------------------------------------------


def test_response_is_plain_status_str_header_pairs_json_bytes_and_no_effects() -> None:
    h = make()
    status, headers, body, jsonl = h.request(1, "GET", "/api/peer/health", (), b"", 10 * MS)
    assert status == 200 and jsonl == ""
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers)
    assert ("content-type", "application/json") in headers
    assert ("content-length", str(len(body))) in headers
    assert json.loads(body)["uptimeMs"] == 10


def test_header_pairs_may_be_bytes_and_the_core_still_checks_them() -> None:
    h = make()
    status, headers, body, _ = h.request(
        1, "GET", "/api/sync/health", [(b"authorization", b"Bearer nope")], b"", 0
    )
    assert status == 401 and json.loads(body)["code"] == "unauthorized"
    assert ("www-authenticate", 'Bearer realm="peersync"') in headers


def test_grant_effects_come_in_core_order_floors_before_the_notice() -> None:
    h = make()
    status, grant, jsonl = acquire(h, 1, 0, b'{"owner": "rec", "ttlMs": 2000}')
    assert status == 200 and grant["fencingToken"] == 1
    assert [e["effect"] for e in effects(jsonl)] == ["FloorsRaised", "LockGranted"]
    assert effects(jsonl)[0] == {
        "effect": "FloorsRaised",
        "epoch": 0,
        "fencingToken": 1,
        "peerEpoch": 0,
    }
    assert effects(jsonl)[1]["expiresAtMs"] == 2000
    assert "lockId" not in jsonl and grant["lockId"] not in jsonl


def test_seeded_engine_draws_lock_ids_like_the_replay_tool() -> None:
    _, grant, _ = acquire(make(seed_or_entropy=42), 1, 0)
    assert grant["lockId"] == SeededEntropy(42)(16).hex()


def test_an_entropy_callable_is_used_for_lock_ids() -> None:
    _, grant, _ = acquire(make(seed_or_entropy=lambda n: b"\xab" * n), 1, 0)
    assert grant["lockId"] == "ab" * 16


def test_broken_entropy_is_a_500_and_no_grant() -> None:
    h = make(seed_or_entropy=lambda n: b"short")
    status, body, jsonl = acquire(h, 1, 0)
    assert (status, body["code"], jsonl) == (500, "internal", "")


# -- completions ------------------------------------------------------------------------


def test_get_state_is_pending_until_capture_done_answers_with_canonical_state() -> None:
    h = make()
    status, headers, body, jsonl = h.request(4, "GET", "/api/sync/state", [AUTH], b"", 0)
    assert (status, headers, body) == (PENDING, (), b"")
    assert effects(jsonl) == [{"effect": "CaptureSnapshot", "requestId": 4}]
    status, _, body, jsonl = h.capture_done(
        4, '{ "b": 1, "a": [true] }', 1_713_200_000_000_000, "cam-1", "cam-2", 7, 6, MS
    )
    snap = json.loads(body)
    assert status == 200 and jsonl == ""
    assert snap["state"] == {"a": [True], "b": 1}
    assert snap["checksum"] == "sha256:" + hashlib.sha256(b'{"a":[true],"b":1}').hexdigest()
    assert (snap["programSource"], snap["lastCommandSeq"], snap["lastExecutedSeq"]) == (
        "cam-1",
        7,
        6,
    )


def test_capture_with_state_that_is_not_an_object_is_refused_and_stays_pending() -> None:
    h = make()
    h.request(1, "GET", "/api/sync/state", [AUTH], b"", 0)
    with pytest.raises(LocalProtocolError, match="state_json"):
        h.capture_done(1, b"[1, 2]", 0, "", "", 0, 0, 0)
    status, _, body, _ = h.capture_failed(1, "disk on fire", 0)
    assert (status, json.loads(body)["code"]) == (500, "internal")


def test_a_completion_nobody_asked_for_is_host_misuse() -> None:
    h = make()
    with pytest.raises(LocalProtocolError):
        h.capture_done(9, "{}", 0, "", "", 0, 0, 0)
    with pytest.raises(LocalProtocolError):
        h.apply_done(9, True, 0)
    with pytest.raises(LocalProtocolError, match="no snapshot waiting"):
        h.snapshot_to_apply(9)


def test_apply_hands_over_envelope_and_canonical_state_and_answers_once_durable() -> None:
    h = make(role="leader")
    _, grant, _ = acquire(h, 1, 0)
    body = snapshot_body({"scene": "news", "n": 1}, epoch=5)
    status, _, _, jsonl = h.request(
        2,
        "PUT",
        "/api/sync/state",
        [AUTH, JSON, ("X-Reconcile-Lock-Id", grant["lockId"])],
        body,
        MS,
    )
    assert status == PENDING
    (effect,) = effects(jsonl)
    assert effect["effect"] == "ApplySnapshot" and effect["requestId"] == 2
    assert effect["snapshot"]["epoch"] == 5
    envelope, state = h.snapshot_to_apply(2)
    assert state == b'{"n":1,"scene":"news"}'
    assert json.loads(envelope)["previewSource"] == "cam-3"
    assert "state" not in json.loads(envelope)
    status, _, body, jsonl = h.apply_done(2, True, 2 * MS)
    assert json.loads(body) == {
        "applied": True,
        "epoch": 5,
        "role": "follower",
        "lastCommandSeq": 9,
    }
    assert [e["effect"] for e in effects(jsonl)] == ["FloorsRaised", "StepDown"]
    with pytest.raises(LocalProtocolError):
        h.snapshot_to_apply(2)  # answered: nothing waits any more


def test_a_failed_apply_is_500_apply_failed_and_the_lock_is_still_held() -> None:
    h = make()
    _, grant, _ = acquire(h, 1, 0)
    lock = ("X-Reconcile-Lock-Id", grant["lockId"])
    h.request(2, "PUT", "/api/sync/state", [AUTH, JSON, lock], snapshot_body({}, epoch=1), 0)
    status, _, body, _ = h.apply_done(2, False, 0, "disk full")
    assert (status, json.loads(body)["code"]) == (500, "apply_failed")
    status, _, body, _ = h.request(3, "GET", "/api/sync/reconcile-lock", [AUTH], b"", 0)
    assert json.loads(body)["held"] is True


# -- status, time and deadlines ----------------------------------------------------------


def test_status_report_fills_health_and_a_bad_report_changes_nothing() -> None:
    h = make()
    assert (
        h.status_report(
            '{"programSource": "cam-4", "lastCommandSeq": 12, '
            '"clockSync": {"mode": "ptp", "offsetNs": -3}}',
            MS,
        )
        == ""
    )
    for bad in (
        "not json",
        b"[1]",
        '{"color": "red"}',
        '{"lastCommandSeq": "x"}',
        '{"clockSync": {"mode": "sundial"}}',
    ):
        with pytest.raises(LocalProtocolError):
            h.status_report(bad, 2 * MS)
    _, _, body, _ = h.request(1, "GET", "/api/sync/health", [AUTH], b"", 3 * MS)
    health = json.loads(body)
    assert health["lastCommandSeq"] == 12
    assert health["clockSync"] == {"mode": "ptp", "offsetNs": -3, "jitterNs": 0}


def test_next_deadline_is_the_stall_instant_and_a_tick_there_reports_the_stall() -> None:
    h = make(stall_limit_ns=100 * MS)
    h.status_report("{}", 5 * MS)
    assert h.next_deadline() == 105 * MS + 1
    assert h.tick(105 * MS) == ""
    assert effects(h.tick(h.next_deadline())) == [{"effect": "HostStalled", "silentSinceMs": 5}]
    assert h.next_deadline() == NO_DEADLINE


def test_time_going_backwards_is_refused() -> None:
    h = make()
    h.tick(10 * MS)
    with pytest.raises(LocalProtocolError, match="backwards"):
        h.request(1, "GET", "/api/peer/health", (), b"", 9 * MS)


# -- creation --------------------------------------------------------------------------


def test_fresh_engine_takes_its_role_and_persisted_floors_come_back_follower() -> None:
    _, _, body, _ = make(role="leader").request(1, "GET", "/api/peer/health", (), b"", 0)
    assert (json.loads(body)["role"], json.loads(body)["epoch"]) == ("leader", 0)
    h = make(role="leader", epoch_floor=4, fencing_floor=40)
    _, _, body, _ = h.request(1, "GET", "/api/peer/health", (), b"", 0)
    assert (json.loads(body)["role"], json.loads(body)["epoch"]) == ("follower", 4)
    assert acquire(h, 2, 0)[1]["fencingToken"] == 41


def test_a_persisted_peer_epoch_floor_puts_a_forced_promotion_above_the_peer() -> None:
    h = make(epoch_floor=2, fencing_floor=0, peer_epoch_floor=9)
    status, _, body, jsonl = h.request(1, "POST", "/api/peer/force-leader", [CP], b"", 0)
    assert (status, json.loads(body)["epoch"]) == (200, 10)
    assert effects(jsonl)[0] == {
        "effect": "FloorsRaised",
        "epoch": 10,
        "fencingToken": 0,
        "peerEpoch": 9,
    }


def test_secrets_may_be_bytes_none_means_not_configured_and_no_auth_opens_bearer() -> None:
    h = make(api_token=None, control_plane_secret=None, no_auth=True)
    status, _, body, _ = h.request(1, "POST", "/api/peer/force-leader", [], b"", 0)
    assert (status, json.loads(body)["code"]) == (501, "not_configured")
    assert h.request(2, "GET", "/api/sync/health", [], b"", 0)[0] == 200
    h = make(api_token=b"t0k")
    assert h.request(1, "GET", "/api/sync/health", [AUTH], b"", 0)[0] == 200


@pytest.mark.parametrize(
    "override",
    [
        {"role": "boss"},
        {"seed_or_entropy": "not callable"},
        {"epoch_floor": -1, "fencing_floor": 3},
        {"label": ""},
        {"api_token": ""},
        {"now_ns": -5},
    ],
)
def test_bad_creation_arguments_are_host_misuse(override: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        make(**override)
