"""Every endpoint over the wire: http.client and curl against the real server."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from srv_util import AUTH, SECRET, ServerFactory, canonical, make_state, snapshot_body

from peersync_server._server import PeerSyncServer

JSON = {"Content-Type": "application/json"}


class Wire:
    """A keep-alive http.client connection that checks the contract's headers."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], http.client.HTTPResponse]:
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        all_headers = dict(headers or {})
        if raw is not None and "Content-Type" not in all_headers:
            all_headers.update(JSON)
        self.conn.request(method, path, body=raw, headers=all_headers)
        response = self.conn.getresponse()
        data = response.read()
        assert response.getheader("Content-Type") == "application/json"
        assert response.getheader("Cache-Control") == "no-store"
        assert int(response.getheader("Content-Length", "-1")) == len(data)
        obj = json.loads(data)
        assert isinstance(obj, dict)
        return response.status, obj, response

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def wire(server: PeerSyncServer) -> Wire:
    w = Wire(server.port)
    yield w  # type: ignore[misc]
    w.close()


def _lock(wire: Wire, owner: str = "rec") -> dict[str, Any]:
    status, grant, _ = wire.call("POST", "/api/sync/reconcile-lock", {"owner": owner}, AUTH)
    assert status == 200, grant
    return grant


def test_peer_health_is_open_and_ok(wire: Wire) -> None:
    status, body, _ = wire.call("GET", "/api/peer/health")
    assert status == 200
    assert body["status"] == "ok"
    assert body["engineLabel"] == "a"
    assert body["role"] == "follower"
    assert body["epoch"] == 0


def test_peer_health_stays_ok_while_the_host_beats(wire: Wire) -> None:
    deadline = time.monotonic() + 1.2  # > twice the 500 ms stall limit
    while time.monotonic() < deadline:
        status, body, _ = wire.call("GET", "/api/peer/health")
        assert (status, body["status"]) == (200, "ok")
        time.sleep(0.1)


def test_sync_health_needs_the_bearer_token(wire: Wire) -> None:
    status, body, response = wire.call("GET", "/api/sync/health")
    assert (status, body["code"]) == (401, "unauthorized")
    assert response.getheader("WWW-Authenticate") == 'Bearer realm="peersync"'
    status, body, _ = wire.call("GET", "/api/sync/health", headers=AUTH)
    assert status == 200
    assert body["clockSync"]["mode"] == "unknown"


def test_force_leader_needs_the_secret_then_promotes_once(wire: Wire) -> None:
    status, body, _ = wire.call("POST", "/api/peer/force-leader", headers=AUTH)
    assert (status, body["code"]) == (401, "unauthorized")
    secret = {"X-Control-Plane-Secret": SECRET}
    status, body, _ = wire.call("POST", "/api/peer/force-leader", {"reason": "t"}, secret)
    assert status == 200
    assert body == {"status": "leader", "engineLabel": "a", "epoch": 1, "previousRole": "follower"}
    status, body, _ = wire.call("POST", "/api/peer/force-leader", headers=secret)
    assert (status, body["code"], body["epoch"]) == (409, "already_leader", 1)


def test_force_leader_without_a_configured_secret_is_501(make_server: ServerFactory) -> None:
    server = make_server(control_plane_secret=None)
    wire = Wire(server.port)
    status, body, _ = wire.call(
        "POST", "/api/peer/force-leader", headers={"X-Control-Plane-Secret": "x"}
    )
    assert (status, body["code"]) == (501, "not_configured")
    wire.close()


def test_lock_acquire_refresh_status_release(wire: Wire) -> None:
    grant = _lock(wire, "b")
    assert len(grant["lockId"]) == 32 and grant["owner"] == "b"
    status, body, _ = wire.call("POST", "/api/sync/reconcile-lock", {"owner": "c"}, AUTH)
    assert (status, body["code"]) == (409, "lock_held")
    path = f"/api/sync/reconcile-lock/{grant['lockId']}"
    status, body, _ = wire.call("PUT", path, {"ttlMs": 5000}, AUTH)
    assert status == 200 and body["lockId"] == grant["lockId"] and body["expiresMs"] == 5000
    status, body, _ = wire.call("GET", "/api/sync/reconcile-lock", headers=AUTH)
    assert status == 200 and body["held"] is True and "lockId" not in body
    status, body, _ = wire.call("DELETE", path, headers=AUTH)
    assert (status, body) == (200, {"released": True})
    status, body, _ = wire.call("DELETE", path, headers=AUTH)
    assert (status, body["code"]) == (404, "lock_not_found")
    status, body, _ = wire.call("GET", "/api/sync/reconcile-lock", headers=AUTH)
    assert body == {"held": False, "lastFencingToken": grant["fencingToken"]}


def test_snapshot_put_then_get_round_trips(wire: Wire) -> None:
    state = {"scene": "news", "layers": [1, 2, 3], "title": "caf\u00e9"}
    grant = _lock(wire)
    status, body, _ = wire.call(
        "PUT",
        "/api/sync/state",
        snapshot_body(state, epoch=4, seq=9),
        {**AUTH, **JSON, "X-Reconcile-Lock-Id": grant["lockId"]},
    )
    assert status == 200
    assert body == {"applied": True, "epoch": 4, "role": "follower", "lastCommandSeq": 9}
    status, snap, _ = wire.call("GET", "/api/sync/state", headers=AUTH)
    assert status == 200
    assert snap["state"] == state
    assert snap["epoch"] == 4 and snap["engineLabel"] == "a"
    assert snap["programSource"] == "cam-9" and snap["lastCommandSeq"] == 9
    status, health, _ = wire.call("GET", "/api/peer/health")
    assert health["programSource"] == "cam-9" and health["epoch"] == 4


def test_snapshot_put_error_codes(wire: Wire) -> None:
    good = snapshot_body({"k": 1}, epoch=2)
    status, body, _ = wire.call("PUT", "/api/sync/state", good, {**AUTH, **JSON})
    assert (status, body["code"]) == (409, "lock_not_held")
    lock = {**AUTH, **JSON, "X-Reconcile-Lock-Id": _lock(wire)["lockId"]}
    status, body, _ = wire.call("PUT", "/api/sync/state", b"{not json", lock)
    assert (status, body["code"]) == (400, "invalid_json")
    bad = good.replace(b'"sha256:', b'"sha256:0')
    status, body, _ = wire.call("PUT", "/api/sync/state", bad, lock)
    assert (status, body["code"]) == (400, "invalid_snapshot")
    status, body, _ = wire.call(
        "PUT", "/api/sync/state", good, {**lock, "Content-Type": "text/plain"}
    )
    assert (status, body["code"]) == (415, "unsupported_media_type")
    status, body, _ = wire.call("PUT", "/api/sync/state", good, lock)
    assert status == 200
    older = snapshot_body({"k": 0}, epoch=1)
    status, body, _ = wire.call("PUT", "/api/sync/state", older, lock)
    assert (status, body["code"]) == (409, "stale_snapshot")


def test_unknown_path_and_wrong_method(wire: Wire) -> None:
    status, body, _ = wire.call("GET", "/api/nope")
    assert (status, body["code"]) == (404, "not_found")
    status, body, response = wire.call("DELETE", "/api/sync/state", headers=AUTH)
    assert (status, body["code"]) == (405, "method_not_allowed")
    assert response.getheader("Allow") == "GET, PUT"


def test_restart_keeps_state_floors_and_comes_back_follower(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    state_dir = tmp_path / "durable"
    first = make_server(state_dir=state_dir, role="leader")
    wire = Wire(first.port)
    status, health, _ = wire.call("GET", "/api/peer/health")
    assert health["role"] == "leader"
    grant = _lock(wire)
    lock = {**AUTH, **JSON, "X-Reconcile-Lock-Id": grant["lockId"]}
    status, _, _ = wire.call(
        "PUT", "/api/sync/state", snapshot_body({"z": 26}, epoch=6, role="follower"), lock
    )
    assert status == 200
    wire.close()
    first.stop()
    second = make_server(state_dir=state_dir, role="leader")
    wire = Wire(second.port)
    status, health, _ = wire.call("GET", "/api/peer/health")
    assert health["role"] == "follower" and health["epoch"] == 6
    status, snap, _ = wire.call("GET", "/api/sync/state", headers=AUTH)
    assert snap["state"] == {"z": 26}
    assert _lock(wire)["fencingToken"] > grant["fencingToken"]
    wire.close()


def _curl(*args: str) -> tuple[int, dict[str, Any]]:
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-w", "\n%{http_code}", *args],
        capture_output=True,
        check=True,
    )
    text, _, code = out.stdout.decode().rpartition("\n")
    return int(code), json.loads(text)


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@needs_curl
def test_curl_health_lock_and_state(server: PeerSyncServer, tmp_path: Path) -> None:
    base = server.url
    token = f"Authorization: {AUTH['Authorization']}"
    code, body = _curl(f"{base}/api/peer/health")
    assert code == 200 and body["status"] == "ok"
    code, body = _curl(f"{base}/api/sync/health")
    assert code == 401 and body["code"] == "unauthorized"
    code, grant = _curl(
        "-X", "POST", "-H", token, "-H", "Content-Type: application/json",
        "--data", '{"owner":"curl"}', f"{base}/api/sync/reconcile-lock",
    )  # fmt: skip
    assert code == 200 and grant["owner"] == "curl"
    state = make_state(2_000_000)  # > 1 MiB: curl sends Expect: 100-continue
    snap = tmp_path / "snap.json"
    snap.write_bytes(snapshot_body(state, epoch=3))
    code, body = _curl(
        "-X", "PUT", "-H", token, "-H", "Content-Type: application/json",
        "-H", f"X-Reconcile-Lock-Id: {grant['lockId']}",
        "--data-binary", f"@{snap}", f"{base}/api/sync/state",
    )  # fmt: skip
    assert code == 200 and body["applied"] is True
    out = tmp_path / "got.json"
    subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-H", token, "-o", str(out), f"{base}/api/sync/state"],
        check=True,
    )
    got = json.loads(out.read_bytes())
    assert canonical(got["state"]) == canonical(state)
    code, body = _curl(
        "-X", "DELETE", "-H", token, f"{base}/api/sync/reconcile-lock/{grant['lockId']}"
    )
    assert code == 200 and body == {"released": True}
