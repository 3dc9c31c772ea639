"""An engine program's own host plugged into the server (the EngineHost protocol)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from srv_util import TOKEN, snapshot_body

from peersync_proto import (
    DecodedSnapshot,
    Effect,
    Floors,
    FloorsRaised,
    LockExpired,
    LockGranted,
)
from peersync_server import CapturedState, PeerSyncServer, ServerConfig, StatusReporter
from peersync_server._clock import Clock

AUTH = {"Authorization": f"Bearer {TOKEN}"}


class ProgramHost:
    """A minimal in-memory host whose loop a test can freeze, and whose
    capture and apply a test can make fail."""

    def __init__(self, floors: Floors | None = None) -> None:
        self.floors = floors
        self.state = b'{"program":"start"}'
        self.effects: list[Effect] = []
        self.frozen = threading.Event()
        self.fail_capture = False
        self.fail_apply = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def open(self, label: str) -> Floors | None:
        return self.floors

    def start(self, report: StatusReporter, clock: Clock) -> None:
        self._clock = clock
        report(program_source="cam-7", last_command_seq=70, last_executed_seq=69)

        def loop() -> None:
            while not self._stop.wait(0.05):
                if not self.frozen.is_set():
                    report()

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def capture(self) -> CapturedState:
        if self.fail_capture:
            raise OSError("the engine's store is gone")
        return CapturedState(
            state=self.state,
            captured_at_us=self._clock.wall_us(),
            program_source="cam-7",
            preview_source="cam-8",
            last_command_seq=70,
            last_executed_seq=69,
        )

    def apply(self, snapshot: DecodedSnapshot) -> None:
        if self.fail_apply:
            raise OSError("disk full")
        self.state = snapshot.state

    def on_effects(self, seq: int, effects: Sequence[Effect]) -> None:
        self.effects.extend(effects)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


@pytest.fixture
def plugged() -> Any:
    host = ProgramHost()
    server = PeerSyncServer(ServerConfig(label="b", port=0, api_token=TOKEN.encode()), host=host)
    server.start()
    yield server, host
    server.stop()


def _call(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_health_reports_what_the_plugged_host_reported(plugged: Any) -> None:
    server, _ = plugged
    status, health = _call(server.port, "GET", "/api/peer/health")
    assert status == 200
    assert (health["programSource"], health["lastCommandSeq"]) == ("cam-7", 70)


def test_frozen_host_loop_shows_as_stalled_and_recovers(plugged: Any) -> None:
    server, host = plugged
    host.frozen.set()
    time.sleep(0.8)  # past the 500 ms stall limit
    status, health = _call(server.port, "GET", "/api/peer/health")
    assert (status, health["status"]) == (200, "stalled")
    host.frozen.clear()
    time.sleep(0.2)
    assert _call(server.port, "GET", "/api/peer/health")[1]["status"] == "ok"


def test_get_state_serves_the_hosts_bytes(plugged: Any) -> None:
    server, _ = plugged
    status, snap = _call(server.port, "GET", "/api/sync/state", headers=AUTH)
    assert status == 200
    assert snap["state"] == {"program": "start"} and snap["previewSource"] == "cam-8"


def test_capture_failure_is_500_and_the_server_keeps_running(plugged: Any) -> None:
    server, host = plugged
    host.fail_capture = True
    status, body = _call(server.port, "GET", "/api/sync/state", headers=AUTH)
    assert (status, body["code"]) == (500, "internal")
    host.fail_capture = False
    assert _call(server.port, "GET", "/api/sync/state", headers=AUTH)[0] == 200


def test_apply_failure_is_500_and_keeps_the_old_state(plugged: Any) -> None:
    server, host = plugged
    _, grant = _call(server.port, "POST", "/api/sync/reconcile-lock", headers=AUTH)
    host.fail_apply = True
    headers = {**AUTH, "Content-Type": "application/json", "X-Reconcile-Lock-Id": grant["lockId"]}
    status, _ = _call(server.port, "PUT", "/api/sync/state", snapshot_body({"new": 1}), headers)
    assert status == 500
    assert _call(server.port, "GET", "/api/sync/state", headers=AUTH)[1]["state"] == {
        "program": "start"
    }


def test_floors_reach_the_host_before_the_grant_is_answered(plugged: Any) -> None:
    server, host = plugged
    _, grant = _call(server.port, "POST", "/api/sync/reconcile-lock", headers=AUTH)
    raised = [e for e in host.effects if isinstance(e, FloorsRaised)]
    assert raised and raised[-1].fencing_token >= grant["fencingToken"]
    assert any(isinstance(e, LockGranted) for e in host.effects)


def test_ticker_reports_lock_expiry_without_any_request(plugged: Any) -> None:
    server, host = plugged
    _call(
        server.port,
        "POST",
        "/api/sync/reconcile-lock",
        b'{"ttlMs":1000}',
        {**AUTH, "Content-Type": "application/json"},
    )
    deadline = time.monotonic() + 3
    while not any(isinstance(e, LockExpired) for e in host.effects) and time.monotonic() < deadline:
        time.sleep(0.05)
    expired = [e for e in host.effects if isinstance(e, LockExpired)]
    assert len(expired) == 1


def test_restart_over_persisted_floors_comes_back_follower() -> None:
    host = ProgramHost(floors=Floors(epoch=9, fencing_token=30))
    server = PeerSyncServer(
        ServerConfig(label="b", port=0, role="leader", api_token=b"t"), host=host
    )
    server.start()
    try:
        _, health = _call(server.port, "GET", "/api/peer/health")
        assert (health["role"], health["epoch"]) == ("follower", 9)
    finally:
        server.stop()
