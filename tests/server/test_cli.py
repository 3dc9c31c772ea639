"""``peersync-server`` as ops run it: a real process, stopped by its PID."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from srv_util import (
    PYTHON,
    SECRET,
    SECRET_ENV,
    TOKEN,
    TOKEN_ENV,
    ServerProcess,
    free_port,
    make_state,
    read_until_close,
    server_process,
    snapshot_body,
)


def _files(tmp_path: Path) -> tuple[Path, Path]:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    return token, secret


def _base_args(tmp_path: Path, *extra: str) -> list[str]:
    token, secret = _files(tmp_path)
    return [
        "--label", "a", "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "state"),
        "--api-token-file", str(token), "--control-plane-secret-file", str(secret), *extra,
    ]  # fmt: skip


def _run_to_exit(
    args: list[str], tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    proc = ServerProcess(args, cwd=tmp_path, env=env)
    try:
        out, err = proc.proc.communicate(timeout=20)
    finally:
        proc.close()
    return proc.proc.returncode, out.decode(), err.decode()


def _get(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_prints_one_listening_line_with_the_real_port_and_serves(tmp_path: Path) -> None:
    with server_process(_base_args(tmp_path), cwd=tmp_path) as proc:
        port = proc.wait_listening()
        assert port != 0
        assert proc.url == f"http://127.0.0.1:{port}"
        status, body = _get(port, "/api/peer/health")
        assert status == 200 and body["engineLabel"] == "a"
        code, out, _err = proc.terminate()
    assert code == 0
    assert out == ""  # the listening line was the only one


def test_sigint_also_stops_with_status_0(tmp_path: Path) -> None:
    with server_process(_base_args(tmp_path), cwd=tmp_path) as proc:
        proc.wait_listening()
        proc.signal(signal.SIGINT)
        proc.proc.wait(15)
        assert proc.proc.returncode == 0


def test_missing_token_without_no_auth_refuses_with_status_2(tmp_path: Path) -> None:
    code, out, err = _run_to_exit(["--label", "a", "--listen", "127.0.0.1:0"], tmp_path)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "no API token" in err and TOKEN_ENV in err


def test_token_from_the_environment_is_accepted(tmp_path: Path) -> None:
    args = ["--label", "b", "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "s")]
    with server_process(args, cwd=tmp_path, env={TOKEN_ENV: TOKEN}) as proc:
        port = proc.wait_listening()
        status, _ = _get(port, "/api/sync/health", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
        assert proc.terminate()[0] == 0


def test_no_auth_mode_warns_loudly(tmp_path: Path) -> None:
    args = [
        "--label",
        "a",
        "--listen",
        "127.0.0.1:0",
        "--no-auth",
        "--state-dir",
        str(tmp_path / "s"),
    ]
    with server_process(args, cwd=tmp_path) as proc:
        port = proc.wait_listening()
        assert _get(port, "/api/sync/health")[0] == 200
        code, _, err = proc.terminate()
    assert code == 0
    assert "NO-AUTH MODE" in err
    assert f"anyone who can reach http://127.0.0.1:{port}" in err  # the real port, not 0


@pytest.mark.parametrize(
    "extra",
    [
        ["--bogus"],
        ["--max-connections", "zero"],
        ["--listen", "nohostport"],
        ["--role", "boss"],
    ],
)
def test_bad_flag_is_one_line_and_status_2(tmp_path: Path, extra: list[str]) -> None:
    code, out, err = _run_to_exit(_base_args(tmp_path, *extra), tmp_path)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("peersync-server: error: ")


def test_bad_label_is_refused(tmp_path: Path) -> None:
    args = _base_args(tmp_path)
    args[1] = "c"
    code, _, err = _run_to_exit(args, tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_unreadable_token_file_is_one_line_and_status_2(tmp_path: Path) -> None:
    args = ["--label", "a", "--api-token-file", str(tmp_path / "missing")]
    code, _, err = _run_to_exit(args, tmp_path)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "cannot read API token file" in err


def test_port_in_use_is_one_line_and_status_2(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        args = _base_args(tmp_path)
        args[3] = f"127.0.0.1:{port}"
        code, out, err = _run_to_exit(args, tmp_path)
    finally:
        holder.close()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err


def test_a_peer_address_in_use_or_malformed_is_one_line_and_status_2(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        code, out, err = _run_to_exit(
            [*_base_args(tmp_path), "--peer-listen", f"127.0.0.1:{port}"], tmp_path
        )
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1
    assert f"cannot listen on 127.0.0.1:{port} (--peer-listen)" in err
    code, out, err = _run_to_exit([*_base_args(tmp_path), "--peer-listen", "nope"], tmp_path)
    assert (code, out) == (2, "")
    assert "--peer-listen" in err and "nope" not in err


def test_the_peer_address_is_served_and_logged(tmp_path: Path) -> None:
    peer_port = free_port()
    args = [*_base_args(tmp_path), "--peer-listen", f"127.0.0.1:{peer_port}"]
    with server_process(args, cwd=tmp_path) as proc:
        port = proc.wait_listening()
        assert port != peer_port
        conn = http.client.HTTPConnection("127.0.0.1", peer_port, timeout=5)
        conn.request("GET", "/api/peer/health")
        assert conn.getresponse().status == 200
        conn.close()
        code, _, err = proc.terminate()
    assert code == 0
    assert f"serving its peer on http://127.0.0.1:{peer_port}" in err


def test_a_start_that_could_not_listen_leaves_the_engine_fresh(tmp_path: Path) -> None:
    """``--role`` applies to a fresh engine; a first start that failed (port
    in use) must not have made the state dir look used."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        args = _base_args(tmp_path, "--role", "leader")
        args[3] = f"127.0.0.1:{holder.getsockname()[1]}"
        assert _run_to_exit(args, tmp_path)[0] == 2
    finally:
        holder.close()
    with server_process(_base_args(tmp_path, "--role", "leader"), cwd=tmp_path) as proc:
        status, body = _get(proc.wait_listening(), "/api/peer/health")
        assert status == 200 and body["role"] == "leader", body
        assert proc.terminate()[0] == 0


def test_unusable_state_dir_is_one_line_and_status_2(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file, not a directory")
    code, _, err = _run_to_exit(_base_args(tmp_path), tmp_path)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "state directory" in err


def test_default_state_dir_is_per_label_in_the_working_directory(tmp_path: Path) -> None:
    token, _ = _files(tmp_path)
    args = ["--label", "b", "--listen", "127.0.0.1:0", "--api-token-file", str(token)]
    with server_process(args, cwd=tmp_path) as proc:
        proc.wait_listening()
        assert proc.terminate()[0] == 0
    assert (tmp_path / "peersync-state-b" / "engine.json").is_file()


def test_help_lists_every_flag() -> None:
    out = subprocess.run(
        [PYTHON, "-m", "peersync_server", "--help"], capture_output=True, check=True
    ).stdout.decode()
    for flag in (
        "--label", "--listen", "--role", "--state-dir", "--api-token-file",
        "--control-plane-secret-file", "--no-auth", "--peer", "--failover",
        "--max-snapshot-bytes", "--max-connections", "--log-format", "--log-level",
        "--max-header-bytes", "--max-header-fields", "--header-timeout", "--body-timeout",
        "--send-timeout", "--idle-timeout", "--max-requests-per-connection",
        "--max-idle-connections",
    ):  # fmt: skip
        assert flag in out


def _start_upload(port: int, body: bytes, sent: int) -> socket.socket:
    auth = f"Bearer {TOKEN}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/api/sync/reconcile-lock", headers={"Authorization": auth})
    grant = json.loads(conn.getresponse().read())
    conn.close()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        f"PUT /api/sync/state HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
        f"X-Reconcile-Lock-Id: {grant['lockId']}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[:sent])
    return sock


def _state_after_restart(args: list[str], tmp_path: Path) -> object:
    with server_process(args, cwd=tmp_path) as proc:
        port = proc.wait_listening()
        status, snap = _get(port, "/api/sync/state", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
        assert proc.terminate()[0] == 0
    return snap["state"]


def test_sigterm_lets_an_in_flight_upload_finish_then_exits_0(tmp_path: Path) -> None:
    args = _base_args(tmp_path)
    new_state = make_state(4_000_000, tag=1)
    body = snapshot_body(new_state, epoch=2)
    with server_process(args, cwd=tmp_path) as proc:
        sock = _start_upload(proc.wait_listening(), body, len(body) // 2)
        time.sleep(0.2)
        proc.signal(signal.SIGTERM)
        time.sleep(0.3)  # the server is draining; the upload goes on
        sock.sendall(body[len(body) // 2 :])
        answer = read_until_close(sock, 10)
        sock.close()
        proc.proc.wait(15)
        assert proc.proc.returncode == 0
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b"connection: close" in answer.lower()
    assert _state_after_restart(args, tmp_path) == new_state


def test_sigterm_during_a_stalled_upload_exits_0_and_nothing_is_torn(tmp_path: Path) -> None:
    args = [*_base_args(tmp_path), "--shutdown-grace", "0.5"]
    body = snapshot_body(make_state(4_000_000, tag=1), epoch=2)
    with server_process(args, cwd=tmp_path) as proc:
        sock = _start_upload(proc.wait_listening(), body, len(body) // 2)
        time.sleep(0.2)
        started = time.monotonic()
        proc.signal(signal.SIGTERM)  # and the rest of the body never comes
        proc.proc.wait(15)
        sock.close()
        assert proc.proc.returncode == 0
        assert time.monotonic() - started < 5
    assert _state_after_restart(args, tmp_path) == {}


LEAKED = "SECRETVALUE-9f2c"


@pytest.mark.parametrize(
    "extra",
    [
        ["--api-token", LEAKED],  # once a prefix of --api-token-file: "cannot read ... SECRET"
        [f"--api-token={LEAKED}"],
        ["--control-plane-secret", LEAKED],
        ["--peer-api-token", LEAKED],
    ],
)
def test_a_secret_given_to_an_unknown_flag_is_never_echoed(
    tmp_path: Path, extra: list[str]
) -> None:
    args = ["--label", "a", "--listen", "127.0.0.1:0", "--no-auth", *extra]
    code, out, err = _run_to_exit(args, tmp_path)
    assert code == 2
    assert out == ""
    flag = extra[0].partition("=")[0]
    assert err.startswith(f"peersync-server: error: unrecognized option {flag} ")
    assert len(err.strip().splitlines()) == 1
    assert LEAKED not in out + err


def test_an_abbreviated_flag_is_refused_and_nothing_starts(tmp_path: Path) -> None:
    args = ["--label", "a", "--listen", "127.0.0.1:0", "--no-auth", "--max-idle", "5"]
    code, out, err = _run_to_exit(args, tmp_path)
    assert (code, out) == (2, "")
    assert "unrecognized option --max-idle" in err
    assert not (tmp_path / "peersync-state-a").exists()


SPACED = "Zq7secret Value-9f2c"  # argparse takes a word with a space for a positional


def _assert_one_line_not_echoed(code: int, out: str, err: str, *secrets: str) -> None:
    assert (code, out) == (2, ""), err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("peersync-server: error: ")
    for secret in secrets:
        for part in secret.split():
            assert part not in err, err


@pytest.mark.parametrize(
    "args",
    [
        [f"--api-token={SPACED}", "--label", "a"],  # before every known flag
        ["--label", "a", f"--api-token={SPACED}"],
        ["--label", "a", f"--control-plane-secret={SPACED}", "--no-auth"],
    ],
)
def test_an_unknown_flag_whose_value_has_a_space_is_refused_by_name(
    tmp_path: Path, args: list[str]
) -> None:
    code, out, err = _run_to_exit([*args, "--listen", "127.0.0.1:0"], tmp_path)
    _assert_one_line_not_echoed(code, out, err, SPACED)
    flag = next(arg for arg in args if "=" in arg).partition("=")[0]
    assert f"unrecognized option {flag} " in err


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--label", LEAKED], "argument --label: invalid choice (not echoed); choose from a, b"),
        (["--role", LEAKED], "argument --role: invalid choice (not echoed); choose from leader"),
        (["--log-level", LEAKED], "argument --log-level: invalid choice (not echoed); choose"),
        (["--failover", LEAKED], "argument --failover: invalid choice (not echoed)"),
        (["--max-connections", LEAKED], "argument --max-connections: not an integer"),
        (["--header-timeout", LEAKED], "argument --header-timeout: not a number"),
        (["--listen", LEAKED], "argument --listen: expected HOST:PORT"),
        ([f"--no-auth={LEAKED}"], "argument --no-auth: takes no value"),
        ([LEAKED], "unrecognized arguments: 1 word (not echoed)"),
    ],
)
def test_a_bad_value_is_named_by_its_flag_and_never_echoed(
    tmp_path: Path, extra: list[str], named: str
) -> None:
    args = ["--listen", "127.0.0.1:0", "--no-auth", *extra]
    if "--label" not in extra:
        args += ["--label", "a"]
    code, out, err = _run_to_exit(args, tmp_path)
    _assert_one_line_not_echoed(code, out, err, LEAKED)
    assert named in err


PEER_SECRET = "PEERPW-77e1"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"http://u:{PEER_SECRET}@127.0.0.1:1", "must not carry credentials"),  # ran, and logged it
        (f"https://u:{PEER_SECRET}@h", "must not carry credentials"),  # the error echoed it
        (f"http://{PEER_SECRET}@127.0.0.1:1", "must not carry credentials"),
        (f"http://u:{PEER_SECRET}@127.0.0.1:bad", "must not carry credentials"),
        (f"http://u:{PEER_SECRET}@[::1", "must not carry credentials"),
        (f"http://127.0.0.1:1/?token={PEER_SECRET}", "must not carry a query or a fragment"),
        (f"http://127.0.0.1:1/#{PEER_SECRET}", "must not carry a query or a fragment"),
    ],
)
def test_a_peer_url_with_credentials_a_query_or_a_fragment_is_refused_unechoed(
    tmp_path: Path, url: str, problem: str
) -> None:
    args = ["--label", "a", "--listen", "127.0.0.1:0", "--no-auth", "--peer", url]
    code, out, err = _run_to_exit(args, tmp_path)
    _assert_one_line_not_echoed(code, out, err, PEER_SECRET)
    assert f"--peer {problem}" in err
    assert not (tmp_path / "peersync-state-a").exists()  # refused before anything started


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:bad", "--peer is not a valid URL (bad host or port): "),  # a traceback
        ("ftp://127.0.0.1:1", "--peer must be an http://HOST[:PORT] URL, got 'ftp://127.0.0.1:1'"),
        ("http://", "--peer must be an http://HOST[:PORT] URL"),
    ],
)
def test_a_bad_peer_url_is_one_line_and_status_2(tmp_path: Path, url: str, shown: str) -> None:
    args = ["--label", "a", "--listen", "127.0.0.1:0", "--no-auth", "--peer", url]
    code, out, err = _run_to_exit(args, tmp_path)
    _assert_one_line_not_echoed(code, out, err)
    assert shown in err


TOKEN_SECRET = "TOKSECRET-31d7"
#: What ``peersync`` (and ``PeerSyncClient``) cannot send: the server used to
#: start with it, and every call then got 401.
UNSENDABLE = [
    pytest.param(f"{TOKEN_SECRET}\nsecond-line".encode(), "has a control character", id="newline"),
    pytest.param(f"{TOKEN_SECRET}\tx".encode(), "has a control character", id="tab"),
    pytest.param(f"{TOKEN_SECRET}\rx".encode(), "has a control character", id="cr"),
    pytest.param(f"{TOKEN_SECRET}\x7f".encode(), "has a control character", id="del"),
    pytest.param(f"{TOKEN_SECRET}\x00x".encode(), "has a control character", id="nul"),
    pytest.param(TOKEN_SECRET.encode() + b"\xff\xfe", "is not UTF-8 text", id="not-utf8"),
]


@pytest.mark.parametrize(("token", "problem"), UNSENDABLE)
@pytest.mark.parametrize(
    ("flag", "what"),
    [
        ("--api-token-file", "API token"),
        ("--control-plane-secret-file", "control-plane secret"),
        ("--peer-api-token-file", "peer API token"),
    ],
)
def test_a_token_file_the_client_cannot_send_is_refused_at_start(
    tmp_path: Path, token: bytes, problem: str, flag: str, what: str
) -> None:
    path = tmp_path / "bad-token"
    path.write_bytes(token + b"\n")
    good, _ = _files(tmp_path)
    args = ["--label", "a", "--listen", "127.0.0.1:0", "--api-token-file", str(good)]
    args += ["--peer", "http://127.0.0.1:9"] if flag == "--peer-api-token-file" else []
    code, out, err = _run_to_exit([*args, flag, str(path)], tmp_path)
    _assert_one_line_not_echoed(code, out, err, TOKEN_SECRET, "second-line")
    assert f"the {what} file ({flag}) {problem}" in err
    assert not (tmp_path / "peersync-state-a").exists()


@pytest.mark.parametrize(
    ("token", "problem"),
    [p for p in UNSENDABLE if p.id != "nul"],  # no NUL in an env value
)
@pytest.mark.parametrize(
    ("env", "what"), [(TOKEN_ENV, "API token"), (SECRET_ENV, "control-plane secret")]
)
def test_a_token_in_the_environment_the_client_cannot_send_is_refused_at_start(
    tmp_path: Path, token: bytes, problem: str, env: str, what: str
) -> None:
    value = token.decode("utf-8", "surrogateescape")  # the child gets these very bytes
    extra = {TOKEN_ENV: "t0k-env-ok", env: value}
    args = ["--label", "a", "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "s")]
    code, out, err = _run_to_exit(args, tmp_path, env=extra)
    _assert_one_line_not_echoed(code, out, err, TOKEN_SECRET, "second-line")
    assert f"the {what} in env {env} {problem}" in err


def test_a_token_file_path_is_not_echoed(tmp_path: Path) -> None:
    """A token typed where its file goes: "cannot read", without the word."""
    args = ["--label", "a", "--listen", "127.0.0.1:0", "--api-token-file", TOKEN_SECRET]
    code, out, err = _run_to_exit(args, tmp_path)
    _assert_one_line_not_echoed(code, out, err, TOKEN_SECRET)
    assert "cannot read API token file (--api-token-file): No such file" in err


def test_a_token_with_a_space_and_non_ascii_text_starts_and_peersync_can_use_it(
    tmp_path: Path,
) -> None:
    """The rule is the client's: inner spaces and UTF-8 letters are fine."""
    token = "café crème-42"
    path = tmp_path / "token"
    path.write_text(f"  {token}\r\n", encoding="utf-8")
    args = ["--label", "a", "--listen", "127.0.0.1:0", "--api-token-file", str(path)]
    with server_process(args, cwd=tmp_path) as proc:
        proc.wait_listening()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PEERSYNC_")}
        for env, extra in (({TOKEN_ENV: token}, []), ({}, ["--api-token-file", str(path)])):
            result = subprocess.run(
                [PYTHON, "-m", "peersync_server.cli", "lock", "status", proc.url, *extra],
                capture_output=True,
                env={**clean, **env},
                timeout=30,
            )
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout)["held"] is False
        assert proc.terminate()[0] == 0
