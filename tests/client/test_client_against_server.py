"""Our client against the real threaded server, over loopback: every endpoint and
every error code the client can provoke, keep-alive against the server's idle
timeout, and the accept loop's 503."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_servers import checksum

from peersync_proto import ClockMode, Role
from peersync_server._connection import Limits
from peersync_server._server import PeerSyncServer, ServerConfig
from peersync_server.client import (
    AlreadyLeader,
    ApplyResult,
    BodyTooLarge,
    ForceLeaderResult,
    HealthStatus,
    InvalidJson,
    InvalidRequest,
    InvalidSnapshot,
    LockHeld,
    LockNotFound,
    LockNotHeld,
    LockStatus,
    NotConfigured,
    NotFound,
    PeerSyncClient,
    ReleaseResult,
    ServiceUnavailable,
    StaleSnapshot,
    Unauthorized,
)

TOKEN = "t0k-client-over-wire-7e1d"
SECRET = "s3c-client-over-wire-c09a"

Factory = Callable[..., PeerSyncServer]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Factory]:
    servers: list[PeerSyncServer] = []

    def make(**overrides: Any) -> PeerSyncServer:
        fields: dict[str, Any] = {
            "label": "a",
            "port": 0,
            "state_dir": tmp_path / f"state-{len(servers)}",
            "api_token": TOKEN.encode(),
            "control_plane_secret": SECRET.encode(),
        }
        fields.update(overrides)
        server = PeerSyncServer(ServerConfig(**fields))
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: Factory) -> PeerSyncServer:
    return make_server()


@pytest.fixture
def client(server: PeerSyncServer) -> Iterator[PeerSyncClient]:
    with PeerSyncClient(server.url, api_token=TOKEN, control_plane_secret=SECRET) as client:
        yield client


def _snapshot_like(client: PeerSyncClient, state: Any, **changes: Any) -> bytes:
    document = json.loads(client.get_state_bytes())
    document.update(state=state, checksum=checksum(state), **changes)
    return json.dumps(document).encode()


def test_peer_health_and_sync_health_are_typed(client: PeerSyncClient) -> None:
    health = client.peer_health()
    assert (health.engine_label, health.role) == ("a", Role.FOLLOWER)
    assert health.status in (HealthStatus.OK, HealthStatus.STALLED)
    assert health.uptime_ms >= 0 and health.epoch >= 0
    sync = client.sync_health()
    assert isinstance(sync.clock_sync.mode, ClockMode)
    assert sync.last_executed_seq <= sync.last_command_seq


def test_force_leader_promotes_then_already_leader(client: PeerSyncClient) -> None:
    before = client.peer_health().epoch
    result = client.force_leader(reason="over the wire")
    assert result == ForceLeaderResult(
        status="leader", engine_label="a", epoch=before + 1, previous_role=Role.FOLLOWER
    )
    assert client.peer_health().role is Role.LEADER
    with pytest.raises(AlreadyLeader) as caught:
        client.force_leader()
    assert (caught.value.status, caught.value.epoch) == (409, before + 1)


def test_force_leader_errors(make_server: Factory) -> None:
    server = make_server()
    with (
        PeerSyncClient(server.url, control_plane_secret="not-it") as wrong,
        pytest.raises(Unauthorized),
    ):
        wrong.force_leader()
    with PeerSyncClient(server.url, api_token=SECRET) as bearer_only, pytest.raises(Unauthorized):
        bearer_only.force_leader()
    with (
        PeerSyncClient(server.url, control_plane_secret=SECRET) as right,
        pytest.raises(InvalidRequest) as caught,
    ):
        right.force_leader(reason="r" * 257)
    assert caught.value.code == "invalid_request"
    unconfigured = make_server(control_plane_secret=None)
    with (
        PeerSyncClient(unconfigured.url, control_plane_secret=SECRET) as client,
        pytest.raises(NotConfigured) as caught_501,
    ):
        client.force_leader()
    assert caught_501.value.status == 501


@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_every_bearer_endpoint_refuses_a_missing_or_wrong_token(
    server: PeerSyncServer, token: str | None
) -> None:
    calls: list[Callable[[PeerSyncClient], object]] = [
        lambda c: c.sync_health(),
        lambda c: c.get_state(),
        lambda c: c.apply_state(b"{}", "ab" * 16),
        lambda c: c.acquire_lock(),
        lambda c: c.refresh_lock("ab" * 16),
        lambda c: c.release_lock("ab" * 16),
        lambda c: c.lock_status(),
    ]
    with PeerSyncClient(server.url, api_token=token) as client:
        for call in calls:
            with pytest.raises(Unauthorized) as caught:
                call(client)
            assert (caught.value.status, caught.value.code) == (401, "unauthorized")


def test_lock_lifecycle_over_the_wire(client: PeerSyncClient) -> None:
    first = client.lock_status()
    assert first.held is False and first.last_fencing_token is not None
    grant = client.acquire_lock()
    assert (grant.owner, grant.expires_ms) == ("anonymous", 30000)
    assert grant.fencing_token == first.last_fencing_token + 1
    assert len(grant.lock_id) == 32 and int(grant.lock_id, 16) >= 0
    with pytest.raises(LockHeld) as caught:
        client.acquire_lock(owner="anonymous")
    held = caught.value
    assert (held.owner, held.fencing_token) == ("anonymous", grant.fencing_token)
    assert 0 < (held.remaining_ms or 0) <= 30000
    status = client.lock_status()
    assert (status.held, status.owner, status.ttl_ms, status.fencing_token) == (
        True,
        "anonymous",
        30000,
        grant.fencing_token,
    )
    refreshed = client.refresh_lock(grant.lock_id, ttl_ms=5000)
    assert (refreshed.lock_id, refreshed.expires_ms, refreshed.fencing_token) == (
        grant.lock_id,
        5000,
        grant.fencing_token,
    )
    assert client.lock_status().ttl_ms == 5000
    assert client.release_lock(grant.lock_id) == ReleaseResult(released=True)
    with pytest.raises(LockNotFound):
        client.release_lock(grant.lock_id)
    with pytest.raises(LockNotFound):
        client.refresh_lock(grant.lock_id)
    assert client.lock_status() == LockStatus(held=False, last_fencing_token=grant.fencing_token)


@pytest.mark.parametrize("lock_id", ["ab" * 16, "short", "../health", "ZZ" * 16])
def test_refresh_and_release_of_an_unknown_or_malformed_id_is_lock_not_found(
    client: PeerSyncClient, lock_id: str
) -> None:
    client.acquire_lock(owner="holder")
    with pytest.raises(LockNotFound):
        client.refresh_lock(lock_id)
    with pytest.raises(LockNotFound):
        client.release_lock(lock_id)
    assert client.lock_status().owner == "holder"


@pytest.mark.parametrize(
    "kwargs", [{"ttl_ms": 999}, {"ttl_ms": 300001}, {"owner": ""}, {"owner": "o" * 129}]
)
def test_acquire_with_out_of_range_fields_is_invalid_request(
    client: PeerSyncClient, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequest):
        client.acquire_lock(**kwargs)
    assert client.lock_status().held is False


def test_refresh_with_bad_ttl_is_invalid_request(client: PeerSyncClient) -> None:
    grant = client.acquire_lock()
    with pytest.raises(InvalidRequest):
        client.refresh_lock(grant.lock_id, ttl_ms=10)
    assert client.lock_status().ttl_ms == 30000


def test_get_state_envelope_matches_its_body(client: PeerSyncClient) -> None:
    snap = client.get_state()
    assert json.loads(snap.body)["state"] == snap.state
    assert snap.checksum == checksum(snap.state)
    assert (snap.format_version, snap.engine_label) == (1, "a")
    assert snap.last_executed_seq <= snap.last_command_seq


def test_apply_state_round_trip_and_its_errors(client: PeerSyncClient) -> None:
    epoch = client.peer_health().epoch
    state = {"scene": "news", "layers": [1, 2], "live": True}
    body = _snapshot_like(client, state, epoch=epoch + 5, role="follower")
    with pytest.raises(LockNotHeld):
        client.apply_state(body, "ab" * 16)
    grant = client.acquire_lock(owner="reconciler")
    with pytest.raises(LockNotHeld):
        client.apply_state(body, "cd" * 16)
    with pytest.raises(InvalidJson):
        client.apply_state(b"{not json", grant.lock_id)
    bad = json.loads(body)
    bad["checksum"] = "sha256:" + "0" * 64
    with pytest.raises(InvalidSnapshot):
        client.apply_state(json.dumps(bad).encode(), grant.lock_id)
    result = client.apply_state(body, grant.lock_id)
    assert result.applied and result.epoch == epoch + 5 and result.role is Role.FOLLOWER
    assert client.get_state().state == state
    stale = _snapshot_like(client, {"old": 1}, epoch=epoch)
    with pytest.raises(StaleSnapshot) as caught:
        client.apply_state(stale, grant.lock_id)
    assert caught.value.status == 409
    assert client.get_state().state == state


def test_leader_snapshot_steps_a_leader_down(client: PeerSyncClient) -> None:
    forced = client.force_leader()
    body = _snapshot_like(client, {"k": 1}, epoch=forced.epoch + 1, role="leader")
    grant = client.acquire_lock()
    result = client.apply_state(body, grant.lock_id)
    assert result == ApplyResult(
        applied=True,
        epoch=forced.epoch + 1,
        role=Role.FOLLOWER,
        last_command_seq=result.last_command_seq,
    )
    assert client.peer_health().role is Role.FOLLOWER


def test_snapshot_over_the_limit_is_body_too_large(make_server: Factory) -> None:
    server = make_server(max_snapshot_bytes=64 * 1024)
    with PeerSyncClient(server.url, api_token=TOKEN) as client:
        grant = client.acquire_lock()
        with pytest.raises(BodyTooLarge) as caught:
            client.apply_state(b" " * (1 << 20), grant.lock_id)
        assert caught.value.status == 413
        assert client.lock_status().held is True


def test_base_url_elsewhere_is_not_found(server: PeerSyncServer) -> None:
    with (
        PeerSyncClient(server.url + "/nowhere", api_token=TOKEN) as client,
        pytest.raises(NotFound),
    ):
        client.lock_status()


def test_calls_share_one_kept_alive_connection(
    server: PeerSyncServer, client: PeerSyncClient
) -> None:
    for _ in range(20):
        client.peer_health()
        client.lock_status()
    assert server.connection_count == 1


def test_client_outlives_the_servers_idle_timeout(make_server: Factory) -> None:
    """The server closes idle keep-alive connections; GET and POST still go through."""
    server = make_server(limits=Limits(idle_timeout_s=0.1))
    calls = ("peer_health", "acquire_lock", "lock_status", "force_leader")
    sockets = []
    with PeerSyncClient(server.url, api_token=TOKEN, control_plane_secret=SECRET) as client:
        for name in calls:
            time.sleep(0.25)
            getattr(client, name)()
            sockets.append(client._http._sock)  # the one place a test looks inside
    # each call found the previous connection closed by the server and opened its own
    assert len({id(sock) for sock in sockets}) == len(calls)


def test_accept_loop_503_is_service_unavailable(make_server: Factory) -> None:
    server = make_server(max_connections=1)
    busy = socket.create_connection(("127.0.0.1", server.port))
    try:
        busy.sendall(  # an upload whose body stalls holds the only worker
            f"PUT /api/sync/state HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{".encode()
        )
        time.sleep(0.1)
        # Peer health is answered past the cap (contract 5.5); the rest gets 503.
        with PeerSyncClient(server.url, api_token=TOKEN) as client:
            assert client.peer_health().engine_label == "a"
            with pytest.raises(ServiceUnavailable) as caught:
                client.sync_health()
        assert caught.value.status == 503
        assert caught.value.retry_after is not None and caught.value.retry_after >= 0
    finally:
        busy.close()


def test_peersync_cli_against_a_server_process(tmp_path: Path) -> None:
    """The two console tools together: ``peersync-server`` and ``peersync``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERSYNC_")}
    env["PEERSYNC_API_TOKEN"] = TOKEN
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "peersync_server",
            "--label",
            "b",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            str(tmp_path / "state"),
            "--role",
            "leader",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().decode().strip()
        assert line.startswith("listening on http://127.0.0.1:"), line
        url = line.removeprefix("listening on ")

        def peersync(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(
                [sys.executable, "-m", "peersync_server.cli", *args],
                input=stdin,
                capture_output=True,
                env=env,
                timeout=30,
            )

        health = json.loads(peersync("health", url).stdout)
        assert (health["engineLabel"], health["role"]) == ("b", "leader")
        watch = peersync("watch", url, "--count", "3", "--interval-ms", "20")
        assert watch.returncode == 0
        assert [json.loads(x)["role"] for x in watch.stdout.splitlines()] == ["leader"] * 3
        grant = json.loads(peersync("lock", "acquire", url, "--owner", "ops").stdout)
        held = peersync("lock", "acquire", url)
        assert held.returncode == 1 and json.loads(held.stderr)["code"] == "lock_held"
        snapshot = peersync("state", "get", url)
        assert snapshot.returncode == 0 and json.loads(snapshot.stdout)["engineLabel"] == "b"
        applied = peersync(
            "state", "apply", url, "--lock-id", grant["lockId"], stdin=snapshot.stdout
        )
        assert json.loads(applied.stdout)["applied"] is True, applied.stderr
        released = peersync("lock", "release", url, "--lock-id", grant["lockId"])
        assert json.loads(released.stdout) == {"released": True}
        no_secret = peersync("force-leader", url)
        assert no_secret.returncode == 1
        assert json.loads(no_secret.stderr)["code"] == "not_configured"
    finally:
        server.terminate()
        server.wait(timeout=15)
