"""``cli.main`` called in-process (so coverage sees it); the subprocess tests are
in test_client_cli.py."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_servers import TOKEN, StdlibEngine

from peersync_server import cli


class _Stdin(io.BytesIO):
    def __init__(self, data: bytes, *, tty: bool = False) -> None:
        super().__init__(data)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def run(*args: str, stdin: bytes = b"", tty: bool = False) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(list(args), stdin=_Stdin(stdin, tty=tty), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEERSYNC_API_TOKEN", TOKEN)
    monkeypatch.delenv("PEERSYNC_CONTROL_PLANE_SECRET", raising=False)


def test_every_command_in_process(stdlib_engine: StdlibEngine) -> None:
    url = stdlib_engine.url
    assert json.loads(run("health", url)[1])["engineLabel"] == "a"
    assert json.loads(run("sync-health", url)[1])["lateCommands"] == 0
    grant = json.loads(run("lock", "acquire", url, "--owner", "me")[1])
    lock = grant["lockId"]
    assert json.loads(run("lock", "refresh", url, "--lock-id", lock)[1])["lockId"] == lock
    assert json.loads(run("lock", "status", url)[1])["owner"] == "me"
    status, snapshot, _ = run("state", "get", url)  # StringIO: no .buffer, decoded text
    assert status == 0 and json.loads(snapshot)["epoch"] == 17
    applied = run("state", "apply", url, "--lock-id", lock, stdin=snapshot.encode())
    assert json.loads(applied[1])["applied"] is True
    assert json.loads(run("lock", "release", url, "--lock-id", lock)[1]) == {"released": True}


def test_force_leader_without_secret_is_an_error_answer(stdlib_engine: StdlibEngine) -> None:
    status, out, err = run("force-leader", stdlib_engine.url, "--reason", "x")
    assert (status, out) == (1, "")
    assert json.loads(err)["code"] == "unauthorized"


def test_state_apply_from_a_terminal_is_a_usage_error(stdlib_engine: StdlibEngine) -> None:
    status, _, err = run("state", "apply", stdlib_engine.url, "--lock-id", "x", tty=True)
    assert status == 2 and "stdin" in err


def test_watch_text_lines_for_up_and_down(stdlib_engine: StdlibEngine) -> None:
    status, out, _ = run("watch", stdlib_engine.url, "--count", "1", "--format", "text")
    assert status == 0 and "follower" in out
    stdlib_engine.close()
    status, out, _ = run(
        "watch", stdlib_engine.url, "--count", "2", "--interval-ms", "10", "--format", "text"
    )
    lines = out.splitlines()
    assert status == 1 and len(lines) == 2
    assert all("DOWN" in line and "connection_refused" in line for line in lines)


def test_bad_numbers_and_files_are_usage_errors(tmp_path: Path) -> None:
    assert run("health", "http://127.0.0.1:1", "--timeout", "soon")[0] == 2
    assert run("watch", "http://127.0.0.1:1", "--count", "many")[0] == 2
    unreadable = tmp_path / "dir"
    unreadable.mkdir()
    status, _, err = run(
        "health", "http://127.0.0.1:1", "--control-plane-secret-file", str(unreadable)
    )
    assert status == 2 and "--control-plane-secret-file" in err


def test_connect_timeout_option_is_passed_on(stdlib_engine: StdlibEngine) -> None:
    status, out, _ = run("--connect-timeout", "0.5", "health", stdlib_engine.url)
    assert status == 0 and json.loads(out)["role"] == "follower"


def test_transport_codes_are_stable() -> None:
    from peersync_server.client import (
        ConnectionClosed,
        ConnectionRefused,
        DeadlineExceeded,
        InvalidResponse,
        TransportError,
    )

    assert [
        cli.transport_code(e("x"))
        for e in (
            ConnectionRefused,
            DeadlineExceeded,
            ConnectionClosed,
            InvalidResponse,
            TransportError,
        )
    ] == [
        "connection_refused",
        "deadline_exceeded",
        "connection_closed",
        "invalid_response",
        "transport_error",
    ]


def test_registering_a_name_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        cli.register_command(cli.COMMANDS[0])


def test_no_parser_of_peersync_abbreviates_options() -> None:
    def walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from walk(sub)

    parsers = list(walk(cli.build_parser()))
    assert len(parsers) > len(cli.COMMANDS)  # the nested lock and state actions too
    assert all(not parser.allow_abbrev for parser in parsers)


@pytest.mark.parametrize(
    "token",
    [
        "t0k-abc",
        "a b",
        "café crème",
        "x\u0085y",
        "ab\ncd",
        "a\rb",  # edge whitespace is stripped by both command lines, not refused
        "ab\tcd",
        "a\x7f",
        "\x00x",
        "x\x1fy",
    ],
)
def test_both_command_lines_refuse_exactly_the_tokens_the_client_cannot_send(token: str) -> None:
    """``peersync-server`` refuses at start what ``peersync`` (through
    ``PeerSyncClient``) could never send: the two rules must not drift."""
    from peersync_server._cli_parser import clean_secret
    from peersync_server.client import PeerSyncClient

    try:
        PeerSyncClient("http://127.0.0.1:1", api_token=token).close()
    except ValueError:
        client_sends = False
    else:
        client_sends = True
    try:
        assert clean_secret(token.encode()) == token.encode()
    except ValueError as exc:
        accepted = False
        assert token not in str(exc)
    else:
        accepted = True
    assert accepted == client_sends
