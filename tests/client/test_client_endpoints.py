"""Every endpoint and error code of the contract, our client against a stdlib http.server."""

from __future__ import annotations

import json
import socket

import pytest
from fake_servers import SECRET, TOKEN, RawServer, StdlibEngine, answer, checksum

from peersync_proto import ClockMode, ClockSync, Role
from peersync_server.client import (
    AlreadyLeader,
    ApplyResult,
    BodyTooLarge,
    ForceLeaderResult,
    HealthStatus,
    InternalError,
    InvalidJson,
    InvalidRequest,
    InvalidResponse,
    InvalidSnapshot,
    LockGrant,
    LockHeld,
    LockNotFound,
    LockNotHeld,
    LockStatus,
    MethodNotAllowed,
    NotConfigured,
    NotFound,
    PeerSyncClient,
    PeerSyncClientError,
    PeerSyncError,
    ReleaseResult,
    ServiceUnavailable,
    StaleSnapshot,
    Unauthorized,
    UnsupportedMediaType,
    to_wire,
)


@pytest.fixture
def client(stdlib_engine: StdlibEngine):
    with PeerSyncClient(
        stdlib_engine.url, api_token=TOKEN, control_plane_secret=SECRET, timeout=5
    ) as client:
        yield client


def test_peer_health_is_typed(client: PeerSyncClient) -> None:
    health = client.peer_health()
    assert health.status is HealthStatus.OK
    assert health.role is Role.FOLLOWER
    assert (health.engine_label, health.epoch, health.program_source) == ("a", 17, "cam-1")
    assert health.last_command_seq == 1729
    assert health.uptime_ms >= 0


def test_sync_health_is_typed(client: PeerSyncClient) -> None:
    health = client.sync_health()
    assert health.clock_sync == ClockSync(mode=ClockMode.PTP, offset_ns=1234, jitter_ns=500)
    assert health.last_executed_seq == 1728
    assert health.last_executed_err == ""
    assert health.last_pong_sent_us == 1713200000000000


def test_force_leader_then_already_leader_with_epoch(
    client: PeerSyncClient, stdlib_engine: StdlibEngine
) -> None:
    result = client.force_leader(reason="operator on shift")
    assert result == ForceLeaderResult(
        status="leader", engine_label="a", epoch=18, previous_role=Role.FOLLOWER
    )
    assert json.loads(stdlib_engine.model.seen[-1][3]) == {"reason": "operator on shift"}
    with pytest.raises(AlreadyLeader) as caught:
        client.force_leader()
    assert (caught.value.status, caught.value.code, caught.value.epoch) == (
        409,
        "already_leader",
        18,
    )


def test_force_leader_with_too_long_reason_is_invalid_request(client: PeerSyncClient) -> None:
    with pytest.raises(InvalidRequest) as caught:
        client.force_leader(reason="x" * 300)
    assert caught.value.status == 400
    assert "reason" in caught.value.message


def test_force_leader_with_wrong_secret_is_unauthorized(stdlib_engine: StdlibEngine) -> None:
    with (
        PeerSyncClient(stdlib_engine.url, control_plane_secret="nope") as client,
        pytest.raises(Unauthorized),
    ):
        client.force_leader()


def test_force_leader_never_sends_the_bearer_token(stdlib_engine: StdlibEngine) -> None:
    """The bearer token does not count for force-leader (contract 2): not even sent."""
    with PeerSyncClient(stdlib_engine.url, api_token=SECRET) as client, pytest.raises(Unauthorized):
        client.force_leader()
    headers = stdlib_engine.model.seen[-1][2]
    assert "authorization" not in headers
    assert "x-control-plane-secret" not in headers


def test_force_leader_without_configured_secret_is_not_configured(
    client: PeerSyncClient, stdlib_engine: StdlibEngine
) -> None:
    stdlib_engine.model.secret = None
    with pytest.raises(NotConfigured) as caught:
        client.force_leader()
    assert caught.value.status == 501


def test_secrets_go_only_where_the_contract_wants_them(
    client: PeerSyncClient, stdlib_engine: StdlibEngine
) -> None:
    client.peer_health()
    client.sync_health()
    client.force_leader()
    (_, _, open_headers, _), (_, _, bearer_headers, _), (_, _, cp_headers, _) = (
        stdlib_engine.model.seen
    )
    assert "authorization" not in open_headers and "x-control-plane-secret" not in open_headers
    assert bearer_headers["authorization"] == f"Bearer {TOKEN}"
    assert "x-control-plane-secret" not in bearer_headers
    assert cp_headers["x-control-plane-secret"] == SECRET and "authorization" not in cp_headers


@pytest.mark.parametrize("token", [None, "wrong"])
@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.sync_health(),
        lambda c: c.get_state(),
        lambda c: c.get_state_bytes(),
        lambda c: c.apply_state(b"{}", "ab" * 16),
        lambda c: c.acquire_lock(),
        lambda c: c.refresh_lock("ab" * 16),
        lambda c: c.release_lock("ab" * 16),
        lambda c: c.lock_status(),
    ],
)
def test_bearer_endpoints_without_the_token_are_unauthorized(
    stdlib_engine: StdlibEngine, token, call
) -> None:
    with (
        PeerSyncClient(stdlib_engine.url, api_token=token) as client,
        pytest.raises(Unauthorized) as caught,
    ):
        call(client)
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")


def test_lock_lifecycle(client: PeerSyncClient) -> None:
    assert client.lock_status() == LockStatus(held=False, last_fencing_token=41)
    grant = client.acquire_lock(owner="reconciler-b", ttl_ms=5000)
    assert isinstance(grant, LockGrant)
    assert (grant.owner, grant.expires_ms, grant.fencing_token) == ("reconciler-b", 5000, 42)
    assert len(grant.lock_id) == 32
    status = client.lock_status()
    assert status.held and status.owner == "reconciler-b" and status.fencing_token == 42
    assert status.ttl_ms == 5000 and 0 < (status.remaining_ms or 0) <= 5000
    refreshed = client.refresh_lock(grant.lock_id, ttl_ms=9000)
    assert (refreshed.lock_id, refreshed.expires_ms, refreshed.fencing_token) == (
        grant.lock_id,
        9000,
        42,
    )
    assert client.release_lock(grant.lock_id) == ReleaseResult(released=True)
    assert client.lock_status() == LockStatus(held=False, last_fencing_token=42)


def test_acquire_with_defaults_sends_no_body(
    client: PeerSyncClient, stdlib_engine: StdlibEngine
) -> None:
    grant = client.acquire_lock()
    assert (grant.owner, grant.expires_ms) == ("anonymous", 30000)
    method, path, headers, body = stdlib_engine.model.seen[-1]
    assert (method, path, body, headers["content-length"]) == (
        "POST",
        "/api/sync/reconcile-lock",
        b"",
        "0",
    )


def test_lock_held_carries_owner_remaining_and_fencing(client: PeerSyncClient) -> None:
    client.acquire_lock(owner="first")
    with pytest.raises(LockHeld) as caught:
        client.acquire_lock(owner="first")  # not re-entrant
    error = caught.value
    assert (error.status, error.code, error.owner, error.fencing_token) == (
        409,
        "lock_held",
        "first",
        42,
    )
    assert 0 < (error.remaining_ms or 0) <= 30000


@pytest.mark.parametrize("ttl", [999, 300001])
def test_ttl_out_of_range_is_invalid_request(client: PeerSyncClient, ttl: int) -> None:
    with pytest.raises(InvalidRequest):
        client.acquire_lock(ttl_ms=ttl)
    grant = client.acquire_lock()
    with pytest.raises(InvalidRequest):
        client.refresh_lock(grant.lock_id, ttl_ms=ttl)


@pytest.mark.parametrize("lock_id", ["ab" * 16, "not-a-lock", "../../peer/health", "x/y?z"])
def test_refresh_and_release_of_unknown_id_are_lock_not_found(
    client: PeerSyncClient, stdlib_engine: StdlibEngine, lock_id: str
) -> None:
    client.acquire_lock()
    with pytest.raises(LockNotFound):
        client.refresh_lock(lock_id)
    with pytest.raises(LockNotFound) as caught:
        client.release_lock(lock_id)
    assert caught.value.status == 404
    # The id travels as one path segment, whatever it contains.
    assert stdlib_engine.model.seen[-1][1].startswith("/api/sync/reconcile-lock/")
    assert stdlib_engine.model.seen[-1][1].count("/") == 4


def test_get_state_parses_once_and_keeps_the_raw_body(
    client: PeerSyncClient, stdlib_engine: StdlibEngine
) -> None:
    snap = client.get_state()
    assert snap.body == json.dumps(stdlib_engine.model.snapshot()).encode()
    assert snap.state == {"scene": "opening", "layers": [1, 2, 3]}
    assert (snap.epoch, snap.role, snap.engine_label, snap.format_version) == (
        17,
        Role.FOLLOWER,
        "a",
        1,
    )
    assert snap.checksum == checksum(snap.state)
    assert "bytes>" in repr(snap)  # the body is never dumped into a repr
    assert client.get_state_bytes() == snap.body


def test_apply_state_under_lock_sends_the_bytes_unchanged(
    client: PeerSyncClient, stdlib_engine: StdlibEngine
) -> None:
    state = {"scene": "news", "layers": []}
    document = {**stdlib_engine.model.snapshot(), "state": state, "checksum": checksum(state)}
    document.update(epoch=20, role="leader")
    body = json.dumps(document, indent=1).encode()
    grant = client.acquire_lock(owner="b")
    result = client.apply_state(body, grant.lock_id)
    assert result == ApplyResult(applied=True, epoch=20, role=Role.FOLLOWER, last_command_seq=1729)
    method, _, headers, sent = stdlib_engine.model.seen[-1]
    assert (method, sent, headers["x-reconcile-lock-id"]) == ("PUT", body, grant.lock_id)
    assert headers["content-type"] == "application/json"
    assert stdlib_engine.model.state == state


def test_apply_errors_are_typed(client: PeerSyncClient, stdlib_engine: StdlibEngine) -> None:
    body = client.get_state_bytes()
    with pytest.raises(LockNotHeld):
        client.apply_state(body, "ab" * 16)
    grant = client.acquire_lock()
    with pytest.raises(InvalidJson):
        client.apply_state(b"{not json", grant.lock_id)
    bad = json.loads(body)
    bad["checksum"] = "sha256:" + "0" * 64
    with pytest.raises(InvalidSnapshot):
        client.apply_state(json.dumps(bad).encode(), grant.lock_id)
    bad = json.loads(body)
    bad["epoch"] = 3
    with pytest.raises(StaleSnapshot) as caught:
        client.apply_state(json.dumps(bad).encode(), grant.lock_id)
    assert (caught.value.status, caught.value.code) == (409, "stale_snapshot")


def test_apply_refuses_a_lock_id_that_cannot_be_a_header(client: PeerSyncClient) -> None:
    with pytest.raises(ValueError):
        client.apply_state(b"{}", "ab\r\nX-Evil: 1")


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_request", InvalidRequest),
        (400, "invalid_json", InvalidJson),
        (400, "invalid_snapshot", InvalidSnapshot),
        (401, "unauthorized", Unauthorized),
        (404, "not_found", NotFound),
        (404, "lock_not_found", LockNotFound),
        (405, "method_not_allowed", MethodNotAllowed),
        (409, "already_leader", AlreadyLeader),
        (409, "lock_held", LockHeld),
        (409, "lock_not_held", LockNotHeld),
        (409, "stale_snapshot", StaleSnapshot),
        (413, "body_too_large", BodyTooLarge),
        (415, "unsupported_media_type", UnsupportedMediaType),
        (500, "internal", InternalError),
        (501, "not_configured", NotConfigured),
        (418, "some_future_code", PeerSyncError),
    ],
)
def test_every_error_code_maps_to_its_exception(
    client: PeerSyncClient, stdlib_engine: StdlibEngine, status: int, code: str, cls: type
) -> None:
    body = {"error": "a sentence", "code": code, "extra": 1}
    stdlib_engine.model.fail_next_with = (status, json.dumps(body).encode(), {})
    with pytest.raises(cls) as caught:
        client.peer_health()
    error = caught.value
    assert type(error) is cls
    assert isinstance(error, PeerSyncClientError)
    assert (error.status, error.code, dict(error.body), error.message) == (
        status,
        code,
        body,
        "a sentence",
    )
    assert code in str(error)


def test_base_url_pointing_elsewhere_gives_not_found(stdlib_engine: StdlibEngine) -> None:
    with (
        PeerSyncClient(stdlib_engine.url + "/nowhere", api_token=TOKEN) as client,
        pytest.raises(NotFound) as caught,
    ):
        client.lock_status()
    assert (caught.value.status, caught.value.code) == (404, "not_found")


def test_error_answer_without_contract_body_has_empty_code(
    client: PeerSyncClient, stdlib_engine: StdlibEngine
) -> None:
    stdlib_engine.model.fail_next_with = (502, b"<html>bad gateway</html>", {})
    with pytest.raises(PeerSyncError) as caught:
        client.peer_health()
    assert (type(caught.value), caught.value.status, caught.value.code) == (PeerSyncError, 502, "")


def test_503_is_service_unavailable_with_retry_after(
    client: PeerSyncClient, stdlib_engine: StdlibEngine
) -> None:
    body = json.dumps({"error": "busy", "code": "unavailable"}).encode()
    stdlib_engine.model.fail_next_with = (503, body, {"Retry-After": "2"})
    with pytest.raises(ServiceUnavailable) as caught:
        client.peer_health()
    assert caught.value.retry_after == 2


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"status": "ok"}).encode(),
        json.dumps({"status": "fine", "uptimeMs": 1}).encode(),
        json.dumps(
            {
                "status": "ok",
                "uptimeMs": True,
                "programSource": "",
                "lastCommandSeq": 0,
                "engineLabel": "a",
                "epoch": 0,
                "role": "leader",
            }
        ).encode(),
        json.dumps(
            {
                "status": "ok",
                "uptimeMs": 2**63,
                "programSource": "",
                "lastCommandSeq": 0,
                "engineLabel": "a",
                "epoch": 0,
                "role": "leader",
            }
        ).encode(),
        json.dumps(
            {
                "status": "ok",
                "uptimeMs": 1,
                "programSource": "",
                "lastCommandSeq": 0,
                "engineLabel": "a",
                "epoch": 0,
                "role": "boss",
            }
        ).encode(),
    ],
    ids=["not-json", "array", "missing", "bad-enum", "bool-as-int", "over-int64", "bad-role"],
)
def test_malformed_success_answer_is_invalid_response(
    client: PeerSyncClient, stdlib_engine: StdlibEngine, body: bytes
) -> None:
    stdlib_engine.model.fail_next_with = (200, body, {})
    with pytest.raises(InvalidResponse):
        client.peer_health()


def test_lock_status_missing_fields_for_its_held_value_is_invalid(raw_server) -> None:
    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        while server.read(conn):
            conn.sendall(answer(200, {"held": True, "owner": "x"}))

    server = raw_server(serve)
    with (
        PeerSyncClient(server.url, api_token=TOKEN) as client,
        pytest.raises(InvalidResponse, match="held"),
    ):
        client.lock_status()


def test_sync_health_with_bad_clock_sync_is_invalid(
    client: PeerSyncClient, stdlib_engine: StdlibEngine
) -> None:
    good = client.sync_health()
    doc = to_wire(good)
    doc["clockSync"] = {"mode": "gps", "offsetNs": 0, "jitterNs": 0}
    stdlib_engine.model.fail_next_with = (200, json.dumps(doc).encode(), {})
    with pytest.raises(InvalidResponse, match=r"clockSync\.mode"):
        client.sync_health()
    doc["clockSync"] = "ptp"
    stdlib_engine.model.fail_next_with = (200, json.dumps(doc).encode(), {})
    with pytest.raises(InvalidResponse, match="clockSync"):
        client.sync_health()


def test_to_wire_gives_the_contract_shape_back(client: PeerSyncClient) -> None:
    assert set(to_wire(client.peer_health())) == {
        "status",
        "uptimeMs",
        "programSource",
        "lastCommandSeq",
        "engineLabel",
        "epoch",
        "role",
    }
    assert to_wire(client.lock_status()) == {"held": False, "lastFencingToken": 41}
    grant = client.acquire_lock(owner="o")
    assert to_wire(grant)["lockId"] == grant.lock_id
    assert grant.lock_id not in repr(grant)
    assert set(to_wire(client.get_state())) == {
        "formatVersion",
        "engineLabel",
        "role",
        "epoch",
        "capturedAtUs",
        "lastCommandSeq",
        "lastExecutedSeq",
        "programSource",
        "previewSource",
        "checksum",
    }
