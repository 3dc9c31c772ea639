"""Logs: one line per request, text or JSON, never a secret or a lock id."""

from __future__ import annotations

import http.client
import json
import logging
from pathlib import Path

import pytest
from srv_util import SECRET, TOKEN, server_process, snapshot_body

from peersync_server._logging import JsonFormatter, log_request, safe_path


def test_safe_path_redacts_the_lock_id() -> None:
    lock_id = "0123456789abcdef0123456789abcdef"
    assert safe_path(f"/api/sync/reconcile-lock/{lock_id}") == "/api/sync/reconcile-lock/<redacted>"
    assert safe_path("/api/sync/reconcile-lock") == "/api/sync/reconcile-lock"


def test_safe_path_redacts_a_lock_id_anywhere() -> None:
    """A mistyped path (a 404) may carry a live lock id anywhere: anything
    shaped like one (32 hex digits or more, either case, percent-encoded
    digits too) is redacted wherever it stands."""
    lock_id = "0123456789abcdef0123456789abcdef"
    encoded = "".join(f"%{ord(ch):02X}" for ch in lock_id)
    cases = {
        f"/api/sync/reconcile-lock{lock_id}": "/api/sync/reconcile-lock<redacted>",
        f"/api/sync//reconcile-lock/{lock_id}": "/api/sync//reconcile-lock/<redacted>",
        f"/api/sync/state/{lock_id}": "/api/sync/state/<redacted>",
        f"/{lock_id}/x/{lock_id.upper()}": "/<redacted>/x/<redacted>",
        f"/x-{lock_id}{lock_id}y": "/x-<redacted>y",
        f"/api/sync/state/{encoded}": "/api/sync/state/<redacted>",
        f"/api/sync/state/{lock_id[:16]}%{lock_id[16:]}": (
            f"/api/sync/state/{lock_id[:16]}%{lock_id[16:]}"  # two halves: not an id
        ),
        f"/api/sync/state?{lock_id}": "/api/sync/state?<redacted>",
        "/api/sync/state": "/api/sync/state",
    }
    for target, logged in cases.items():
        assert safe_path(target) == logged, target


def test_safe_path_drops_the_query_string() -> None:
    assert safe_path("/api/peer/health?token=abc") == "/api/peer/health?<redacted>"


def test_safe_path_escapes_control_characters() -> None:
    escaped = safe_path("/a\x1b[31m\nfake line\\\x7f\u00e9")
    assert "\n" not in escaped and "\x1b" not in escaped and "\x7f" not in escaped
    assert escaped == "/a\\x1b[31m\\x0afake\\x20line\\\\\\x7f\\xe9"


def test_safe_path_hides_absolute_form_credentials() -> None:
    assert safe_path("http://user:pw@host/x") == "<redacted>"
    assert safe_path(b"*") == "<redacted>"


def test_access_line_as_json_has_the_fields() -> None:
    record = logging.LogRecord("peersync.server.access", logging.INFO, __file__, 1, "", (), None)
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, rec: logging.LogRecord) -> None:
            captured.append(rec)

    logger = logging.getLogger("test.access.json")
    logger.setLevel(logging.INFO)
    logger.addHandler(Keep())
    log_request(
        logger, method="PUT", target="/api/sync/reconcile-lock/abc", status=200, ms=1.5, nbytes=99
    )
    line = JsonFormatter().format(captured[0])
    obj = json.loads(line)
    assert obj["method"] == "PUT" and obj["path"] == "/api/sync/reconcile-lock/<redacted>"
    assert (obj["status"], obj["bytes"], obj["ms"]) == (200, 99, 1.5)
    assert "\n" not in line
    assert record.name  # formatter handles plain records too
    assert json.loads(JsonFormatter().format(record))["message"] == ""


def test_json_log_time_is_utc_with_milliseconds() -> None:
    record = logging.LogRecord("peersync.failover", logging.INFO, __file__, 1, "m", (), None)
    record.created = 1_764_835_400.1239  # 2025-12-04T08:03:20.123 UTC
    assert json.loads(JsonFormatter().format(record))["time"] == "2025-12-04T08:03:20.123Z"


def _exercise(port: int) -> list[str]:
    """Every endpoint, good and bad credentials; returns the lock ids seen."""
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(
        method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> dict[str, object]:
        conn.request(method, path, body=body, headers=headers or {})
        return json.loads(conn.getresponse().read())  # type: ignore[no-any-return]

    call("GET", "/api/peer/health")
    call("GET", "/api/sync/health", headers={"Authorization": "Bearer wrong-token-7d1e"})
    call("POST", "/api/peer/force-leader", headers={"X-Control-Plane-Secret": "wrong-secret-55e0"})
    call(
        "POST",
        "/api/peer/force-leader",
        b'{"reason":"log test"}',
        {"X-Control-Plane-Secret": SECRET, "Content-Type": "application/json"},
    )
    grant = call("POST", "/api/sync/reconcile-lock", b'{"owner":"logger"}', auth)
    lock_id = str(grant["lockId"])
    call("GET", "/api/sync/reconcile-lock", headers=auth)
    call("PUT", f"/api/sync/reconcile-lock/{lock_id}", b'{"ttlMs":5000}', auth)
    call(
        "PUT",
        "/api/sync/state",
        snapshot_body({"k": 1}, epoch=9),
        {**auth, "X-Reconcile-Lock-Id": lock_id},
    )
    call("GET", "/api/sync/state", headers=auth)
    call("DELETE", f"/api/sync/reconcile-lock/{lock_id}", headers=auth)
    call("DELETE", f"/api/sync/reconcile-lock/{lock_id}", headers=auth)
    call("PUT", f"/api/sync/reconcile-lock/{lock_id}?x={lock_id}", b"{}", auth)
    conn.close()
    return [lock_id]


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("level", ["debug", "info", "warning"])
def test_no_secret_or_lock_id_in_any_log_line(tmp_path: Path, fmt: str, level: str) -> None:
    (tmp_path / "token").write_text(TOKEN)
    (tmp_path / "secret").write_text(SECRET)
    args = [
        "--label", "a", "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "s"),
        "--api-token-file", str(tmp_path / "token"),
        "--control-plane-secret-file", str(tmp_path / "secret"),
        "--log-format", fmt, "--log-level", level,
    ]  # fmt: skip
    with server_process(args, cwd=tmp_path) as proc:
        port = proc.wait_listening()
        lock_ids = _exercise(port)
        code, _, err = proc.terminate()
    assert code == 0
    forbidden = [TOKEN, SECRET, "wrong-token-7d1e", "wrong-secret-55e0", *lock_ids]
    for word in forbidden:
        assert word not in err, (word, err)
    lines = [line for line in err.splitlines() if line.strip()]
    if fmt == "json":
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                pytest.fail(f"not a JSON log line: {line!r}\n{err}")
        access = [r for r in records if r["logger"] == "peersync.server.access"]
    else:
        access = [line for line in lines if " peersync.server.access " in line]
    if level == "warning":
        assert access == []
    else:
        assert len(access) == 12, err  # one line per request
        if fmt == "json":
            assert {"method", "path", "status", "ms", "bytes"} <= set(access[0])
            assert any(r["path"] == "/api/sync/reconcile-lock/<redacted>" for r in access)
        # Role changes say their cause as the contract spells it, not a Python enum.
        assert "role leader at epoch 1 (cause force)" in err, err
        assert "Cause." not in err


def _mistyped(lock_id: str) -> list[str]:
    """Paths that are not routes but carry the lock id: each a 404."""
    encoded = "".join(f"%{ord(ch):02x}" for ch in lock_id)
    return [
        f"/api/sync/reconcile-lock{lock_id}",
        f"/api/sync//reconcile-lock/{lock_id}",
        f"/api/sync/state/{lock_id}",
        f"/api/sync/reconcile-lock/{lock_id}/extra",
        f"/api/sync/reconcile-lock/x/{lock_id}",
        f"/{lock_id}",
        f"/api/sync/state/{lock_id.upper()}",
        f"/api/sync/state/{encoded}",
        f"/api/sync/state/{lock_id}?lock={lock_id}",
    ]


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("level", ["debug", "info"])
def test_a_live_lock_id_in_a_mistyped_path_is_not_logged(
    tmp_path: Path, fmt: str, level: str
) -> None:
    """Found by a tester: the access line of a 404 such as
    ``/api/sync/reconcile-lock<id>`` (no slash) carried the live lock id."""
    (tmp_path / "token").write_text(TOKEN)
    args = [
        "--label", "a", "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "s"),
        "--api-token-file", str(tmp_path / "token"),
        "--log-format", fmt, "--log-level", level,
    ]  # fmt: skip
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    with server_process(args, cwd=tmp_path) as proc:
        port = proc.wait_listening()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/api/sync/reconcile-lock", b'{"owner":"typo"}', auth)
        grant = json.loads(conn.getresponse().read())
        lock_id = str(grant["lockId"])
        statuses = []
        for path in _mistyped(lock_id):
            for method in ("GET", "PUT", "DELETE"):
                conn.request(method, path, b"{}" if method == "PUT" else None, auth)
                response = conn.getresponse()
                response.read()
                statuses.append(response.status)
        conn.request("GET", "/api/sync/reconcile-lock", headers=auth)
        held = json.loads(conn.getresponse().read())
        conn.close()
        code, _, err = proc.terminate()
    assert code == 0
    assert set(statuses) == {404}, statuses
    assert held["held"] is True  # the lock was live all along
    encoded = "".join(f"%{ord(ch):02x}" for ch in lock_id)
    for word in (lock_id, lock_id.upper(), encoded, lock_id[:16], lock_id[16:]):
        assert word not in err, (word, err)
    lines = [line for line in err.splitlines() if "peersync.server.access" in line]
    assert len(lines) == 2 + 3 * len(_mistyped(lock_id)), err
    assert sum("<redacted>" in line for line in lines) == 3 * len(_mistyped(lock_id)), err
