"""Every endpoint, status and error code of contract sections 2 and 3."""

from __future__ import annotations

import json

import pytest

from peersync_proto import (
    ApplySnapshot,
    BecomeLeader,
    CaptureSnapshot,
    Cause,
    ClockMode,
    ClockSync,
    FloorsRaised,
    HostStatus,
    LocalProtocolError,
    Request,
    Role,
    StepDown,
    decode_snapshot,
)
from tests.harness import MS, SECRET, TOKEN, Harness, make_snapshot

BEARER_ENDPOINTS = [
    ("GET", "/api/sync/health"),
    ("GET", "/api/sync/state"),
    ("PUT", "/api/sync/state"),
    ("POST", "/api/sync/reconcile-lock"),
    ("PUT", "/api/sync/reconcile-lock/" + "0" * 32),
    ("DELETE", "/api/sync/reconcile-lock/" + "0" * 32),
    ("GET", "/api/sync/reconcile-lock"),
]


# -- general rules -----------------------------------------------------------


@pytest.mark.parametrize("method,path", [*BEARER_ENDPOINTS, ("GET", "/api/peer/health")])
def test_every_response_is_a_json_object_with_the_contract_headers(method: str, path: str) -> None:
    h = Harness()
    ans = h.call(method, path)
    assert ans.headers[b"content-type"] == b"application/json"
    assert ans.headers[b"cache-control"] == b"no-store"
    assert isinstance(ans.body, dict)
    out = h.engine.handle(Request(now=h.now, request_id=99, method=method, target=path))
    body = out[-1].body  # type: ignore[union-attr]
    assert out[-1].headers[2] == (b"content-length", str(len(body)).encode())  # type: ignore[union-attr]


def test_unknown_path_is_404_not_found() -> None:
    for path in ["/", "/api", "/api/peer/health/", "/api/sync/reconcile-lock/a/b", "/nope"]:
        ans = Harness().call("GET", path)
        assert (ans.status, ans.code) == (404, "not_found"), path
        assert set(ans.body) == {"error", "code"}


@pytest.mark.parametrize(
    "method,path,allow",
    [
        ("POST", "/api/peer/health", b"GET"),
        ("GET", "/api/peer/force-leader", b"POST"),
        ("DELETE", "/api/sync/state", b"GET, PUT"),
        ("PUT", "/api/sync/reconcile-lock", b"GET, POST"),
        ("GET", "/api/sync/reconcile-lock/abc", b"DELETE, PUT"),
        ("HEAD", "/api/sync/health", b"GET"),
    ],
)
def test_wrong_method_is_405_with_allow(method: str, path: str, allow: bytes) -> None:
    ans = Harness().call(method, path)
    assert (ans.status, ans.code) == (405, "method_not_allowed")
    assert ans.headers[b"allow"] == allow


def test_query_string_is_ignored_for_routing() -> None:
    assert Harness().call("GET", "/api/peer/health?x=1").status == 200


@pytest.mark.parametrize("method,path", BEARER_ENDPOINTS)
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN.upper()}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN * 500}",
        TOKEN,
    ],
)
def test_bearer_endpoints_refuse_bad_tokens_with_www_authenticate(
    method: str, path: str, authorization: str | None
) -> None:
    h = Harness()
    headers = {} if authorization is None else {"Authorization": authorization}
    ans = h.call(method, path, auth=False, headers=headers)
    assert (ans.status, ans.code) == (401, "unauthorized")
    assert ans.headers[b"www-authenticate"] == b'Bearer realm="peersync"'
    assert TOKEN not in json.dumps(ans.body)


def test_bearer_scheme_is_case_insensitive_but_token_is_exact() -> None:
    h = Harness()
    ans = h.call(
        "GET", "/api/sync/health", auth=False, headers={"authorization": f"bEaReR {TOKEN}"}
    )
    assert ans.status == 200


def test_two_authorization_headers_are_refused() -> None:
    h = Harness()
    ans = h.call("GET", "/api/sync/health", headers={"authorization": "Bearer other"})
    assert ans.status == 401


def test_engine_without_token_refuses_bearer_endpoints() -> None:
    h = Harness(token=None)
    ans = h.call("GET", "/api/sync/health", auth=False)
    assert (ans.status, ans.code) == (401, "unauthorized")
    assert (
        Harness(token=None, no_auth=True).call("GET", "/api/sync/health", auth=False).status == 200
    )


def test_api_token_does_not_open_force_leader() -> None:
    h = Harness()
    ans = h.call("POST", "/api/peer/force-leader", headers={"X-Control-Plane-Secret": TOKEN})
    assert (ans.status, ans.code) == (401, "unauthorized")
    ans = h.call("POST", "/api/peer/force-leader")
    assert (ans.status, ans.code) == (401, "unauthorized")
    assert h.engine.role is Role.FOLLOWER


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/json; charset=latin-1",
        "application/xml",
        "application/json5",
    ],
)
def test_body_without_json_content_type_is_415(content_type: str | None) -> None:
    h = Harness()
    ans = h.call("POST", "/api/sync/reconcile-lock", body={"owner": "x"}, content_type=content_type)
    assert (ans.status, ans.code) == (415, "unsupported_media_type")
    assert h.engine.view().lock is None


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        'application/json;charset="UTF-8"',
    ],
)
def test_json_content_type_variants_are_accepted(content_type: str) -> None:
    ans = Harness().call(
        "POST", "/api/sync/reconcile-lock", body={"owner": "x"}, content_type=content_type
    )
    assert ans.status == 200


def test_empty_body_means_defaults() -> None:
    ans = Harness().call("POST", "/api/sync/reconcile-lock", content_type=None)
    assert ans.status == 200
    assert ans.body["owner"] == "anonymous"
    assert ans.body["expiresMs"] == 30000


def test_small_bodies_over_16_kib_are_413() -> None:
    h = Harness()
    raw = json.dumps({"owner": "x", "pad": "y" * 16400}).encode()
    ans = h.call("POST", "/api/sync/reconcile-lock", raw=raw)
    assert (ans.status, ans.code) == (413, "body_too_large")
    assert h.engine.view().lock is None
    ok = json.dumps({"owner": "x", "pad": "y" * (16384 - 30)}).encode()
    assert len(ok) <= 16384
    assert h.call("POST", "/api/sync/reconcile-lock", raw=ok).status == 200


def test_snapshot_body_limit_is_the_configured_one() -> None:
    h = Harness(max_snapshot_bytes=1000)
    lock = h.acquire().body["lockId"]
    ans = h.apply(make_snapshot({"x": "y" * 2000}), lock)
    assert (ans.status, ans.code) == (413, "body_too_large")
    assert h.apply(make_snapshot({"x": "y" * 20}), lock).status == 200


@pytest.mark.parametrize(
    "raw", [b"{", b"[]", b"nul", b'{"a":1}x', b"\xff\xfe{\x00}\x00", b'{"a":NaN}']
)
def test_invalid_json_bodies_are_400_and_change_nothing(raw: bytes) -> None:
    h = Harness()
    before = h.engine.view()
    for method, path in [("POST", "/api/sync/reconcile-lock"), ("POST", "/api/peer/force-leader")]:
        hdrs = {"X-Control-Plane-Secret": SECRET}
        ans = h.call(method, path, raw=raw, headers=hdrs)
        assert (ans.status, ans.code) == (400, "invalid_json")
    assert h.engine.view() == before


# -- 3.1 peer health ----------------------------------------------------------


def test_peer_health_answers_zero_values_before_any_report() -> None:
    h = Harness(label="b", role=Role.LEADER)
    ans = h.call("GET", "/api/peer/health", auth=False)
    assert ans.status == 200
    assert ans.body == {
        "status": "ok",
        "uptimeMs": 0,
        "programSource": "",
        "lastCommandSeq": 0,
        "engineLabel": "b",
        "epoch": 0,
        "role": "leader",
    }


def test_peer_health_reports_host_status_and_uptime() -> None:
    h = Harness()
    h.engine.handle(HostStatus(now=h.now, program_source="cam-1", last_command_seq=1729))
    h.advance(1234.9)
    h.engine.handle(HostStatus(now=h.now))
    body = h.call("GET", "/api/peer/health", auth=False).body
    assert (body["programSource"], body["lastCommandSeq"], body["uptimeMs"]) == (
        "cam-1",
        1729,
        1234,
    )


def test_peer_health_is_open_and_ignores_bad_auth_and_bodies() -> None:
    h = Harness()
    ans = h.call(
        "GET",
        "/api/peer/health",
        auth=False,
        raw=b"\xff junk",
        content_type="text/plain",
        headers={"Authorization": "Bearer wrong"},
    )
    assert ans.status == 200


def test_peer_health_says_stalled_after_the_stall_limit_of_host_silence() -> None:
    h = Harness()
    h.engine.handle(HostStatus(now=h.now))
    h.advance(500)
    assert h.call("GET", "/api/peer/health").body["status"] == "ok"  # exactly the limit: not longer
    h.advance(0.000001)
    ans = h.call("GET", "/api/peer/health")
    assert (ans.status, ans.body["status"]) == (200, "stalled")
    h.engine.handle(HostStatus(now=h.now))  # a heartbeat revives it
    assert h.call("GET", "/api/peer/health").body["status"] == "ok"


def test_wrong_typed_status_reports_are_host_misuse_and_health_still_answers() -> None:
    h = Harness()
    for bad in [
        {"program_source": 5},
        {"last_command_seq": -1},
        {"last_command_seq": True},
        {"late_commands": 2**63},
        {"clock_sync": "ptp"},
    ]:
        with pytest.raises(LocalProtocolError):
            HostStatus(now=h.now, **bad)
    assert h.call("GET", "/api/peer/health").status == 200


# -- 3.2 force leader --------------------------------------------------------


def test_force_leader_without_configured_secret_is_501_before_auth() -> None:
    h = Harness(secret=None)
    ans = h.call("POST", "/api/peer/force-leader", raw=b"not json")
    assert (ans.status, ans.code) == (501, "not_configured")


def test_force_leader_checks_secret_before_body_before_role() -> None:
    h = Harness(role=Role.LEADER)
    ans = h.call(
        "POST", "/api/peer/force-leader", raw=b"not json", headers={"X-Control-Plane-Secret": "x"}
    )
    assert ans.status == 401 and b"www-authenticate" not in ans.headers
    ans = h.call(
        "POST",
        "/api/peer/force-leader",
        raw=b"not json",
        headers={"X-Control-Plane-Secret": SECRET},
    )
    assert (ans.status, ans.code) == (400, "invalid_json")
    ans = h.call(
        "POST",
        "/api/peer/force-leader",
        body={"reason": 5},
        headers={"X-Control-Plane-Secret": SECRET},
    )
    assert (ans.status, ans.code) == (400, "invalid_request")
    assert "reason" in ans.body["error"]
    ans = h.call("POST", "/api/peer/force-leader", headers={"X-Control-Plane-Secret": SECRET})
    assert (ans.status, ans.code, ans.body["epoch"]) == (409, "already_leader", 0)


def test_force_leader_reason_over_256_chars_is_invalid() -> None:
    h = Harness()
    hdr = {"X-Control-Plane-Secret": SECRET}
    assert (
        h.call("POST", "/api/peer/force-leader", body={"reason": "r" * 257}, headers=hdr).status
        == 400
    )
    assert h.engine.role is Role.FOLLOWER
    assert (
        h.call("POST", "/api/peer/force-leader", body={"reason": "r" * 256}, headers=hdr).status
        == 200
    )


def test_force_leader_promotes_with_epoch_above_own_and_peer() -> None:
    h = Harness(label="b", floors=None)
    h.engine._last_peer_epoch = 17  # what the peer monitor saw
    ans = h.call(
        "POST",
        "/api/peer/force-leader",
        body={"reason": "drill"},
        headers={"X-Control-Plane-Secret": SECRET},
    )
    assert ans.status == 200
    assert ans.body == {
        "status": "leader",
        "engineLabel": "b",
        "epoch": 18,
        "previousRole": "follower",
    }
    assert ans.effects == [
        FloorsRaised(epoch=18, fencing_token=0, peer_epoch=17),
        BecomeLeader(epoch=18, cause=Cause.FORCE, reason="drill"),
    ]
    assert h.engine.role is Role.LEADER


# -- 3.3 sync health ---------------------------------------------------------


def test_sync_health_has_the_contract_shape() -> None:
    h = Harness()
    h.engine.handle(
        HostStatus(
            now=h.now,
            last_command_seq=1729,
            last_executed_seq=1728,
            last_executed_err="",
            late_commands=2,
            clock_sync=ClockSync(mode=ClockMode.PTP, offset_ns=1234, jitter_ns=500),
            last_pong_sent_us=1713200000000000,
        )
    )
    h.advance(12345)
    ans = h.call("GET", "/api/sync/health")
    assert ans.body == {
        "clockSync": {"mode": "ptp", "offsetNs": 1234, "jitterNs": 500},
        "lastCommandSeq": 1729,
        "lastExecutedSeq": 1728,
        "lastExecutedErr": "",
        "lateCommands": 2,
        "uptimeMs": 12345,
        "lastPongSentUs": 1713200000000000,
    }


def test_sync_health_defaults_to_unknown_clock() -> None:
    body = Harness().call("GET", "/api/sync/health").body
    assert body["clockSync"] == {"mode": "unknown", "offsetNs": 0, "jitterNs": 0}


# -- 3.4 snapshots -------------------------------------------------------------


def test_get_state_asks_the_host_to_capture_and_answers_its_instant() -> None:
    h = Harness(label="a", role=Role.LEADER)
    h.state = {"scene": {"name": "news"}, "z": [1, 2]}
    h.engine.handle(
        HostStatus(now=h.now, program_source="cam-1", last_command_seq=7, last_executed_seq=6)
    )
    ans = h.call("GET", "/api/sync/state")
    assert ans.status == 200
    assert [type(e) for e in ans.effects] == [CaptureSnapshot]
    body = ans.body
    assert (body["engineLabel"], body["role"], body["epoch"], body["lastCommandSeq"]) == (
        "a",
        "leader",
        0,
        7,
    )
    assert body["state"] == h.state and body["formatVersion"] == 1
    snap = decode_snapshot(json.dumps(body).encode())  # its checksum verifies
    assert snap.program_source == "cam-1"


def test_apply_checks_lock_before_json_before_validity_before_staleness() -> None:
    h = Harness()
    h.engine._epoch = 10
    garbage = b"{not json"
    assert h.apply(garbage, None).code == "lock_not_held"
    lock = h.acquire().body["lockId"]
    assert h.apply(garbage, "f" * 32).code == "lock_not_held"
    assert h.apply(garbage, lock).code == "invalid_json"
    bad = json.loads(make_snapshot(epoch=3))
    bad["checksum"] = "sha256:" + "0" * 64
    ans = h.apply(json.dumps(bad).encode(), lock)
    assert (ans.status, ans.code) == (400, "invalid_snapshot") and "checksum" in ans.body["error"]
    ans = h.apply(make_snapshot(epoch=3), lock)
    assert (ans.status, ans.code, ans.body["epoch"]) == (409, "stale_snapshot", 10)
    assert h.state == {} and h.engine.epoch == 10


def test_apply_from_a_leader_onto_a_leader_steps_down_and_takes_the_higher_epoch() -> None:
    h = Harness(role=Role.LEADER)
    lock = h.acquire().body["lockId"]
    ans = h.apply(make_snapshot({"won": True}, epoch=7, seq=1729), lock)
    assert ans.status == 200
    assert ans.body == {"applied": True, "epoch": 7, "role": "follower", "lastCommandSeq": 1729}
    kinds = [type(e) for e in ans.effects]
    assert kinds == [ApplySnapshot, FloorsRaised, StepDown]
    assert ans.effects[2] == StepDown(epoch=7, cause=Cause.SNAPSHOT)
    assert h.state == {"won": True}
    health = h.call("GET", "/api/peer/health").body
    assert (health["role"], health["epoch"], health["lastCommandSeq"]) == ("follower", 7, 1729)


def test_apply_from_a_follower_keeps_a_leader_leading() -> None:
    h = Harness(role=Role.LEADER)
    lock = h.acquire().body["lockId"]
    ans = h.apply(make_snapshot(role=Role.FOLLOWER, epoch=0), lock)
    assert ans.body["role"] == "leader" and h.engine.role is Role.LEADER


def test_failed_apply_is_500_keeps_state_and_lock() -> None:
    h = Harness(fail_apply=True)
    h.state = {"old": 1}
    lock = h.acquire().body["lockId"]
    ans = h.apply(make_snapshot(epoch=9), lock)
    assert (ans.status, ans.code) == (500, "apply_failed")
    assert h.state == {"old": 1} and h.engine.epoch == 0
    assert h.engine.view().lock is not None
    assert h.call("PUT", f"/api/sync/reconcile-lock/{lock}").status == 200


def test_one_apply_at_a_time() -> None:
    h = Harness()
    lock = h.acquire().body["lockId"]
    hdrs = [
        ("authorization", f"Bearer {TOKEN}"),
        ("content-type", "application/json"),
        ("x-reconcile-lock-id", lock),
    ]
    first = h.engine.handle(
        Request(
            now=h.now,
            request_id=50,
            method="PUT",
            target="/api/sync/state",
            headers=hdrs,
            body=make_snapshot(),
        )
    )
    assert isinstance(first[0], ApplySnapshot)
    second = h.engine.handle(
        Request(
            now=h.now,
            request_id=51,
            method="PUT",
            target="/api/sync/state",
            headers=hdrs,
            body=make_snapshot(),
        )
    )
    assert second[0].status == 409 and b"apply_in_progress" in second[0].body  # type: ignore[union-attr]


def test_predecoded_snapshot_is_used_without_parsing_the_body() -> None:
    h = Harness()
    lock = h.acquire().body["lockId"]
    snap = decode_snapshot(make_snapshot({"pre": 1}))
    hdrs = [
        ("authorization", f"Bearer {TOKEN}"),
        ("content-type", "application/json"),
        ("x-reconcile-lock-id", lock),
    ]
    out = h.engine.handle(
        Request(
            now=h.now,
            request_id=70,
            method="PUT",
            target="/api/sync/state",
            headers=hdrs,
            body=b"",
            predecoded=snap,
        )
    )
    assert out == (ApplySnapshot(request_id=70, snapshot=snap),)


def test_predecoded_error_is_answered_after_the_lock_check() -> None:
    from peersync_proto import RemoteProtocolError

    h = Harness()
    err = RemoteProtocolError("bad", status=400, code="invalid_json")
    base = [("authorization", f"Bearer {TOKEN}"), ("content-type", "application/json")]
    out = h.engine.handle(
        Request(
            now=h.now,
            request_id=1,
            method="PUT",
            target="/api/sync/state",
            headers=base,
            predecoded=err,
        )
    )
    assert b"lock_not_held" in out[0].body  # type: ignore[union-attr]
    lock = h.acquire().body["lockId"]
    out = h.engine.handle(
        Request(
            now=h.now,
            request_id=2,
            method="PUT",
            target="/api/sync/state",
            headers=[*base, ("x-reconcile-lock-id", lock)],
            predecoded=err,
        )
    )
    assert out[0].status == 400 and b"invalid_json" in out[0].body  # type: ignore[union-attr]
    noct = h.engine.handle(
        Request(
            now=h.now,
            request_id=3,
            method="PUT",
            target="/api/sync/state",
            headers=base[:1],
            predecoded=err,
        )
    )
    assert noct[0].status == 415  # type: ignore[union-attr]


def test_completions_for_unknown_requests_are_host_misuse() -> None:
    from peersync_proto import SnapshotApplied, SnapshotCaptureFailed

    h = Harness()
    with pytest.raises(LocalProtocolError):
        h.engine.handle(SnapshotApplied(now=h.now, request_id=5))
    out = h.engine.handle(
        Request(
            now=h.now,
            request_id=5,
            method="GET",
            target="/api/sync/state",
            headers=[("authorization", f"Bearer {TOKEN}")],
        )
    )
    with pytest.raises(LocalProtocolError):  # a capture is pending, not an apply
        h.engine.handle(SnapshotApplied(now=h.now, request_id=5))
    with pytest.raises(LocalProtocolError):  # the id is in use
        h.engine.handle(Request(now=h.now, request_id=5, method="GET", target="/api/peer/health"))
    assert out == (CaptureSnapshot(request_id=5),)
    failed = h.engine.handle(SnapshotCaptureFailed(now=h.now, request_id=5, reason="boom"))
    assert failed[0].status == 500 and b'"internal"' in failed[0].body  # type: ignore[union-attr]
    assert h.engine.view().pending == ()


def test_time_going_backwards_is_refused_and_changes_nothing() -> None:
    h = Harness()
    h.acquire(ttlMs=1000)
    before = h.engine.view()
    with pytest.raises(LocalProtocolError):
        h.engine.handle(HostStatus(now=h.now - 1, program_source="x"))
    assert h.engine.view() == before
    h.advance(2000 * MS / MS)
    assert h.engine.view().lock is None
