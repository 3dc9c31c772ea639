"""docs/examples/asyncio_server.py as a program: the over-the-wire behaviour is
checked by tests/conformance; here, what only a running process shows: the
listening line, the deadline timer firing on its own, the line budget, a clean
stop."""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "asyncio_server.py"


def test_the_asyncio_server_is_under_200_lines() -> None:
    assert len(EXAMPLE.read_text("utf-8").splitlines()) < 200


def test_the_loop_timer_reports_a_lock_expiry_with_no_request_and_sigint_stops_it(
    tmp_path: pathlib.Path,
) -> None:
    token = tmp_path / "api-token"
    token.write_text("t0k\n")  # a secret comes from a file (or the env), never from argv
    env = {**os.environ, "PEERSYNC_CONTROL_PLANE_SECRET": "s3c"}
    env.pop("PEERSYNC_API_TOKEN", None)
    argv = [sys.executable, str(EXAMPLE), "--label", "b", "--port", "0", "--api-token-file"]
    proc = subprocess.Popen(
        [*argv, str(token)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request(
            "POST",
            "/api/sync/reconcile-lock",
            body=b'{"ttlMs": 1000}',
            headers={"Authorization": "Bearer t0k", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        assert response.status == 200, response.read()
        grant = json.loads(response.read())
        conn.request("POST", "/api/peer/force-leader", headers={"X-Control-Plane-Secret": "s3c"})
        response = conn.getresponse()
        assert response.status == 200, response.read()  # the secret came from the env
        response.read()
        conn.close()
        time.sleep(1.4)  # no request after the grant: only the timer can wake the core
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    effects = [line for line in err.splitlines() if line.startswith("effect: ")]
    assert any(e.startswith("effect: LockGranted(") for e in effects), err
    assert sum(e.startswith("effect: LockExpired(") for e in effects) == 1, err
    assert not any("HostStalled" in e for e in effects), err  # the host heartbeats
    assert grant["lockId"] not in err  # effects never carry a lock id


def _env_without_secrets() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PEERSYNC_API_TOKEN", None)
    env.pop("PEERSYNC_CONTROL_PLANE_SECRET", None)
    return env


def test_without_a_token_or_no_auth_it_refuses_to_start_with_one_line_and_exit_2(
    tmp_path: pathlib.Path,
) -> None:
    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    for extra in ([], ["--api-token-file", str(empty)]):
        done = subprocess.run(
            [sys.executable, str(EXAMPLE), "--label", "a", "--port", "0", *extra],
            capture_output=True, text=True, timeout=30, env=_env_without_secrets(),
        )  # fmt: skip
        assert done.returncode == 2, done
        assert done.stdout == ""  # never listened
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert "error: no API token" in done.stderr and "--no-auth" in done.stderr


def test_no_auth_mode_starts_with_a_loud_warning_and_serves_without_a_token() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--label", "a", "--port", "0", "--no-auth"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env_without_secrets(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:"), line
        conn = http.client.HTTPConnection("127.0.0.1", int(line.rsplit(":", 1)[1]), timeout=5)
        conn.request("GET", "/api/sync/reconcile-lock")  # a bearer endpoint, no token
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["held"] is False
        conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "WARNING: NO-AUTH MODE" in err.splitlines()[0], err
