"""``peersync`` as a real subprocess against real loopback servers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_servers import HEALTH, SECRET, TOKEN, RawServer, StdlibEngine, answer, checksum


def peersync(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PEERSYNC_")}
    return subprocess.run(
        [sys.executable, "-m", "peersync_server.cli", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env={**clean, **(env or {})},
        timeout=30,
    )


@pytest.fixture
def token_file(tmp_path: Path) -> str:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return str(path)


@pytest.fixture
def secret_file(tmp_path: Path) -> str:
    path = tmp_path / "secret"
    path.write_text(SECRET)
    return str(path)


def out(result: subprocess.CompletedProcess[bytes]):
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def test_health_prints_the_contract_shape(stdlib_engine: StdlibEngine) -> None:
    body = out(peersync("health", stdlib_engine.url))
    assert body["role"] == "follower" and body["epoch"] == 17 and body["status"] == "ok"
    assert set(body) == set(HEALTH)


def test_sync_health_with_token_file(stdlib_engine: StdlibEngine, token_file: str) -> None:
    body = out(peersync("sync-health", stdlib_engine.url, "--api-token-file", token_file))
    assert body["clockSync"] == {"mode": "ptp", "offsetNs": 1234, "jitterNs": 500}


def test_common_options_work_before_the_command(
    stdlib_engine: StdlibEngine, token_file: str
) -> None:
    body = out(
        peersync("--api-token-file", token_file, "--timeout", "3", "sync-health", stdlib_engine.url)
    )
    assert body["lastCommandSeq"] == 1729


def test_token_from_environment(stdlib_engine: StdlibEngine) -> None:
    result = peersync("lock", "status", stdlib_engine.url, env={"PEERSYNC_API_TOKEN": TOKEN})
    assert out(result) == {"held": False, "lastFencingToken": 41}


def test_token_file_wins_over_environment(stdlib_engine: StdlibEngine, token_file: str) -> None:
    result = peersync(
        "lock",
        "status",
        stdlib_engine.url,
        "--api-token-file",
        token_file,
        env={"PEERSYNC_API_TOKEN": "wrong"},
    )
    assert out(result)["held"] is False


def test_error_answer_exits_1_with_its_code_on_stderr(stdlib_engine: StdlibEngine) -> None:
    result = peersync("sync-health", stdlib_engine.url, env={"PEERSYNC_API_TOKEN": "zq-bad-zq"})
    assert result.returncode == 1
    assert result.stdout == b""
    error = json.loads(result.stderr)
    assert (error["status"], error["code"]) == (401, "unauthorized")
    assert "zq-bad-zq" not in result.stderr.decode()


def test_force_leader_with_reason_then_already_leader(
    stdlib_engine: StdlibEngine, secret_file: str
) -> None:
    args = ("force-leader", stdlib_engine.url, "--control-plane-secret-file", secret_file)
    body = out(peersync(*args, "--reason", "drill"))
    assert body == {"status": "leader", "engineLabel": "a", "epoch": 18, "previousRole": "follower"}
    assert json.loads(stdlib_engine.model.seen[-1][3]) == {"reason": "drill"}
    again = peersync(*args)
    assert again.returncode == 1
    assert json.loads(again.stderr) == {
        "status": 409,
        "error": "already leader",
        "code": "already_leader",
        "epoch": 18,
    }


def test_force_leader_secret_from_environment(stdlib_engine: StdlibEngine) -> None:
    result = peersync(
        "force-leader", stdlib_engine.url, env={"PEERSYNC_CONTROL_PLANE_SECRET": SECRET}
    )
    assert out(result)["status"] == "leader"


def test_lock_acquire_refresh_release_status(stdlib_engine: StdlibEngine) -> None:
    env = {"PEERSYNC_API_TOKEN": TOKEN}
    url = stdlib_engine.url
    grant = out(peersync("lock", "acquire", url, "--owner", "ops", "--ttl-ms", "5000", env=env))
    assert (grant["owner"], grant["expiresMs"], grant["fencingToken"]) == ("ops", 5000, 42)
    held = peersync("lock", "acquire", url, env=env)
    assert held.returncode == 1 and json.loads(held.stderr)["code"] == "lock_held"
    status = out(peersync("lock", "status", url, env=env))
    assert status["held"] is True and "lockId" not in status
    lock = grant["lockId"]
    refreshed = out(
        peersync("lock", "refresh", url, "--lock-id", lock, "--ttl-ms", "7000", env=env)
    )
    assert (refreshed["lockId"], refreshed["expiresMs"]) == (lock, 7000)
    assert out(peersync("lock", "release", url, "--lock-id", lock, env=env)) == {"released": True}
    gone = peersync("lock", "release", url, "--lock-id", lock, env=env)
    assert gone.returncode == 1 and json.loads(gone.stderr)["code"] == "lock_not_found"


def test_state_get_then_apply_round_trip(stdlib_engine: StdlibEngine, tmp_path: Path) -> None:
    env = {"PEERSYNC_API_TOKEN": TOKEN}
    url = stdlib_engine.url
    got = peersync("state", "get", url, env=env)
    assert got.returncode == 0
    assert got.stdout == json.dumps(stdlib_engine.model.snapshot()).encode()
    snap = json.loads(got.stdout)
    state = {"scene": "replaced"}
    snap.update(state=state, checksum=checksum(state), epoch=30)
    data = json.dumps(snap).encode()
    refused = peersync("state", "apply", url, "--lock-id", "ab" * 16, stdin=data, env=env)
    assert refused.returncode == 1 and json.loads(refused.stderr)["code"] == "lock_not_held"
    lock = out(peersync("lock", "acquire", url, env=env))["lockId"]
    applied = out(peersync("state", "apply", url, "--lock-id", lock, stdin=data, env=env))
    assert applied == {"applied": True, "epoch": 30, "role": "follower", "lastCommandSeq": 1729}
    assert stdlib_engine.model.state == state
    assert stdlib_engine.model.seen[-1][3] == data


def test_state_apply_with_empty_stdin_is_a_usage_error(stdlib_engine: StdlibEngine) -> None:
    result = peersync("state", "apply", stdlib_engine.url, "--lock-id", "x", stdin=b"")
    assert result.returncode == 2
    assert b"stdin" in result.stderr


def test_watch_prints_a_line_per_probe(stdlib_engine: StdlibEngine) -> None:
    result = peersync("watch", stdlib_engine.url, "--count", "3", "--interval-ms", "50")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 0
    assert len(lines) == 3
    for line in lines:
        assert (line["role"], line["epoch"], line["programSource"], line["ok"]) == (
            "follower",
            17,
            "cam-1",
            True,
        )
        assert 0 < line["rttMs"] < 1000


def test_watch_text_format(stdlib_engine: StdlibEngine) -> None:
    result = peersync(
        "watch", stdlib_engine.url, "--count", "2", "--interval-ms", "0", "--format", "text"
    )
    lines = result.stdout.decode().splitlines()
    assert result.returncode == 0 and len(lines) == 2
    assert "follower" in lines[0] and "epoch 17" in lines[0] and "cam-1" in lines[0]
    assert lines[0].endswith(" ms")


def test_watch_reports_failed_probes_and_exits_1(raw_server) -> None:
    """A stalled engine and a missed deadline are each a failed line."""

    def serve(server: RawServer, conn: socket.socket, index: int) -> None:
        while server.read(conn):
            if len(server.requests) > 1:
                time.sleep(1)  # the second probe is never answered in time
                return
            conn.sendall(answer(200, {**HEALTH, "status": "stalled"}))

    server = raw_server(serve)
    result = peersync(
        "watch", server.url, "--count", "2", "--interval-ms", "0", "--probe-timeout-ms", "200"
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1
    assert (lines[0]["ok"], lines[0]["status"]) == (False, "stalled")
    assert (lines[1]["ok"], lines[1]["code"]) == (False, "deadline_exceeded")
    assert 190 <= lines[1]["rttMs"] < 600


def test_no_usable_answer_exits_3() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    result = peersync("health", f"http://127.0.0.1:{port}")
    assert result.returncode == 3
    assert json.loads(result.stderr)["code"] == "connection_refused"


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("frobnicate", "http://127.0.0.1:1"),
        ("health",),
        ("health", "not-a-url"),
        ("health", "https://127.0.0.1:1"),
        ("lock", "refresh", "http://127.0.0.1:1"),  # --lock-id missing
        ("lock", "acquire", "http://127.0.0.1:1", "--ttl-ms", "soon"),
        ("watch", "http://127.0.0.1:1", "--count", "-1"),
        ("health", "http://127.0.0.1:1", "--timeout", "0"),
        ("health", "http://127.0.0.1:1", "--api-token-file", "/nonexistent/token"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    result = peersync(*args)
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr


def test_empty_token_file_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    result = peersync("health", "http://127.0.0.1:1", "--api-token-file", str(empty))
    assert result.returncode == 2 and b"empty" in result.stderr


def test_help_exits_0() -> None:
    result = peersync("--help")
    assert result.returncode == 0
    for name in (b"health", b"sync-health", b"force-leader", b"lock", b"state", b"watch"):
        assert name in result.stdout


@pytest.mark.skipif(
    shutil.which("peersync", path=os.path.dirname(sys.executable)) is None,
    reason="console script not installed",
)
def test_console_script_is_installed(stdlib_engine: StdlibEngine) -> None:
    script = os.path.join(os.path.dirname(sys.executable), "peersync")
    result = subprocess.run([script, "health", stdlib_engine.url], capture_output=True, timeout=30)
    assert result.returncode == 0
    assert json.loads(result.stdout)["engineLabel"] == "a"


LEAKED = "SECRETVALUE-9f2c"


@pytest.mark.parametrize(
    "args",
    [
        ("--api-token", LEAKED, "health", "{url}"),  # before the command
        ("health", "{url}", "--api-token", LEAKED),  # after it
        ("lock", "status", "{url}", "--api-token-f", LEAKED),  # a prefix of the real flag
        ("lock", "status", "{url}", f"--api-token={LEAKED}"),
        ("lock", "--control-plane-secret", LEAKED, "status", "{url}"),
        ("state", "get", "{url}", "--api-token-file=x", "--api-tok", LEAKED),
        ("reconcile", "{url}", "{url}", "--api-token", LEAKED),
    ],
)
def test_an_unknown_option_is_refused_by_name_without_echoing_its_value(
    stdlib_engine: StdlibEngine, args: tuple[str, ...]
) -> None:
    result = peersync(*(arg.format(url=stdlib_engine.url) for arg in args))
    assert result.returncode == 2
    assert result.stdout == b""
    assert b"unrecognized option --" in result.stderr
    assert LEAKED.encode() not in result.stdout + result.stderr
    assert stdlib_engine.model.seen == []  # nothing was sent


def test_an_abbreviated_option_is_refused_and_nothing_is_done(
    stdlib_engine: StdlibEngine, token_file: str
) -> None:
    for args in (
        ("lock", "acquire", stdlib_engine.url, "--api-token-file", token_file, "--own", "ops"),
        ("--api-token-file", token_file, "--time", "3", "lock", "acquire", stdlib_engine.url),
    ):
        result = peersync(*args)
        assert result.returncode == 2, result.stderr
        assert b"unrecognized option --" in result.stderr
    assert stdlib_engine.model.seen == [] and not stdlib_engine.model.lock_held()


def test_an_option_of_another_command_is_refused_by_name() -> None:
    result = peersync("health", "http://127.0.0.1:1", "--lock-id", LEAKED)
    assert result.returncode == 2
    assert b"unrecognized option --lock-id" in result.stderr
    assert LEAKED.encode() not in result.stderr


def test_leftover_words_are_counted_not_echoed() -> None:
    result = peersync("health", "http://127.0.0.1:1", LEAKED)
    assert result.returncode == 2
    assert b"unrecognized arguments: 1 word (not echoed)" in result.stderr
    assert LEAKED.encode() not in result.stderr


SPACED = "Zq7secret Value-9f2c"  # argparse takes a word with a space for a positional


def _refused_unechoed(result: subprocess.CompletedProcess[bytes], *secrets: str) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stdout == b""
    err = result.stderr.decode()
    for secret in secrets:
        for part in secret.split():
            assert part not in err, err
    return err


@pytest.mark.parametrize(
    "args",
    [
        (f"--api-token={SPACED}", "health", "{url}"),  # was "invalid choice: '--api-token=...'"
        ("health", "{url}", f"--api-token={SPACED}"),
        ("lock", f"--control-plane-secret={SPACED}", "status", "{url}"),
        ("reconcile", f"--api-token={SPACED}", "{url}", "{url}"),
    ],
)
def test_an_unknown_option_with_a_space_in_its_value_is_refused_by_name(
    stdlib_engine: StdlibEngine, args: tuple[str, ...]
) -> None:
    result = peersync(*(arg.format(url=stdlib_engine.url) for arg in args))
    err = _refused_unechoed(result, SPACED)
    flag = next(arg for arg in args if "=" in arg).partition("=")[0]
    assert f"unrecognized option {flag} (options are never abbreviated)" in err
    assert stdlib_engine.model.seen == []


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ((LEAKED, "health", "{url}"), "argument COMMAND: invalid choice (not echoed); choose from"),
        ((SPACED, "health", "{url}"), "argument COMMAND: invalid choice (not echoed); choose from"),
        (("lock", LEAKED, "{url}"), "argument ACTION: invalid choice (not echoed); choose from"),
        (("watch", "{url}", "--format", LEAKED), "argument --format: invalid choice"),
        (("watch", "{url}", "--count", LEAKED), "argument --count: not an integer"),
        (("lock", "acquire", "{url}", "--ttl-ms", LEAKED), "argument --ttl-ms: invalid int value"),
        (("reconcile", "{url}", "{url}", "--ttl-ms", LEAKED), "argument --ttl-ms: invalid int"),
        (("health", "{url}", "--timeout", LEAKED), "argument --timeout: not a number"),
        (("health", "{url}", f"--help={LEAKED}"), "argument -h/--help: takes no value"),
        (("health", "{url}", f"-h{LEAKED}"), "argument -h: takes no value"),
        (("health", "{url}", f"-x{LEAKED}"), "unrecognized option -x "),
        (("health", "{url}", f"--api token {LEAKED}"), "unrecognized arguments: 1 word"),
    ],
)
def test_a_bad_word_is_named_by_its_argument_and_never_echoed(
    stdlib_engine: StdlibEngine, args: tuple[str, ...], named: str
) -> None:
    result = peersync(*(arg.format(url=stdlib_engine.url) for arg in args))
    err = _refused_unechoed(result, LEAKED, SPACED)
    assert named.replace("-h/--help", "--help") in err, err
    if "COMMAND" in named:
        assert "health, sync-health, force-leader, lock, state, watch" in err
    assert stdlib_engine.model.seen == []


URL_SECRET = "URLPW-5b0e"


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("health", f"https://u:{URL_SECRET}@h"), "URL must not carry credentials"),  # echoed
        (("health", f"http://u:{URL_SECRET}@127.0.0.1:bad"), "URL must not carry credentials"),
        (("health", f"http://u:{URL_SECRET}@[::1"), "URL must not carry credentials"),
        (("health", f"http://u:{URL_SECRET}@127.0.0.1:1"), "URL must not carry credentials"),
        (("health", f"http://127.0.0.1:1/?t={URL_SECRET}"), "URL must not carry a query"),
        (("reconcile", "{url}", f"http://u:{URL_SECRET}@h"), "URL must not carry credentials"),
        (("health", "http://127.0.0.1:bad"), "URL is not a valid URL (bad host or port)"),
    ],
)
def test_a_url_with_credentials_is_refused_without_echoing_them(
    stdlib_engine: StdlibEngine, args: tuple[str, ...], problem: str
) -> None:
    result = peersync(*(arg.format(url=stdlib_engine.url) for arg in args))
    err = _refused_unechoed(result, URL_SECRET)
    assert err.startswith(f"peersync: error: {problem}") and len(err.splitlines()) == 1, err
    assert stdlib_engine.model.seen == []


def test_a_token_file_path_is_not_echoed() -> None:
    """A token typed where its file goes: "cannot read", without the word."""
    result = peersync("health", "http://127.0.0.1:1", "--api-token-file", LEAKED)
    err = _refused_unechoed(result, LEAKED)
    assert err == "peersync: error: cannot read --api-token-file: No such file or directory\n"


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        (f"{LEAKED}\nsecond-line".encode(), "has a control character inside"),
        (f"{LEAKED}\tx".encode(), "has a control character inside"),
        (LEAKED.encode() + b"\xff", "is not UTF-8 text"),  # said "unreadable", or quoted a byte
    ],
)
def test_a_token_peersync_cannot_send_is_a_usage_error_naming_why(
    stdlib_engine: StdlibEngine, tmp_path: Path, token: bytes, problem: str
) -> None:
    path = tmp_path / "token"
    path.write_bytes(token)
    from_file = peersync("sync-health", stdlib_engine.url, "--api-token-file", str(path))
    err = _refused_unechoed(from_file, LEAKED, "second-line")
    assert err.startswith(f"peersync: error: the file of --api-token-file {problem}"), err
    assert len(err.splitlines()) == 1
    value = token.decode("utf-8", "surrogateescape")  # the child gets these very bytes
    from_env = peersync("sync-health", stdlib_engine.url, env={"PEERSYNC_API_TOKEN": value})
    err = _refused_unechoed(from_env, LEAKED, "second-line")
    assert err.startswith(f"peersync: error: env PEERSYNC_API_TOKEN {problem}"), err
    assert stdlib_engine.model.seen == []
