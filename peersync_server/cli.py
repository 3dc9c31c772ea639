"""``peersync``: the ops command line, on the blocking client.

JSON on stdout (``state get`` writes the snapshot's bytes as served). Exit
status: 0 success, 1 the engine answered with an error (its body, code
included, as one JSON line on stderr), 2 a usage error, 3 no usable answer
(refused, deadline, hung up, malformed; one JSON line on stderr).

Commands are registered in :data:`COMMANDS`: a name, a help line, a function
that adds the command's arguments to its parser, and a function that runs it
with the parsed arguments and a :class:`Context` (which builds clients with
the resolved credentials). A new command is one more entry; see
``docs/client.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, TextIO

import attrs

from ._cli_parser import StrictParser, clean_secret, redact_url, url_problem
from ._client import DEFAULT_TIMEOUT_S, PeerSyncClient
from ._client_errors import (
    ConnectionClosed,
    ConnectionRefused,
    DeadlineExceeded,
    InvalidResponse,
    PeerSyncError,
    TransportError,
)

__all__ = ["COMMANDS", "Command", "Context", "UsageError", "main", "register_command"]

#: A 50 MB snapshot over a busy link needs far longer than a health probe.
STATE_TIMEOUT_S = 300.0
#: The peer monitor's own probe period (contract 4.2).
DEFAULT_WATCH_INTERVAL_MS = 200
DEFAULT_WATCH_PROBE_TIMEOUT_MS = 1000

EXIT_OK, EXIT_ERROR_ANSWER, EXIT_USAGE, EXIT_TRANSPORT = 0, 1, 2, 3


class UsageError(Exception):
    """A bad flag, URL or input file: exit status 2 with one line on stderr."""


@attrs.define(kw_only=True)
class Context:
    """What a command runs with: credentials, timeouts and the three streams."""

    api_token: str | None
    control_plane_secret: str | None
    timeout: float | None
    connect_timeout: float | None
    stdin: BinaryIO
    stdout: TextIO
    stderr: TextIO

    def client(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> PeerSyncClient:
        """A client for ``url``; ``timeout`` is this command's default deadline."""
        problem = url_problem(url, "URL")
        if problem is not None:
            raise UsageError(problem)
        options: dict[str, Any] = {"timeout": self.timeout or timeout}
        if self.connect_timeout is not None:
            options["connect_timeout"] = self.connect_timeout
        try:
            return PeerSyncClient(
                url,
                api_token=self.api_token,
                control_plane_secret=self.control_plane_secret,
                **options,
            )
        except ValueError as exc:  # its messages quote the URL: checked above, redacted anyway
            raise UsageError(str(exc).replace(repr(url), redact_url(url))) from None

    def emit(self, obj: Any) -> None:
        """One JSON value on one line of stdout, flushed (``watch`` is live)."""
        self.stdout.write(json.dumps(obj) + "\n")
        self.stdout.flush()


@attrs.frozen(kw_only=True)
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Context], int]


COMMANDS: list[Command] = []


def register_command(command: Command) -> Command:
    """Add ``command`` to ``peersync``; its name must be new."""
    if any(existing.name == command.name for existing in COMMANDS):
        raise ValueError(f"command {command.name!r} is already registered")
    COMMANDS.append(command)
    return command


# -- the parser -------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Options valid before and after the command name. On the sub-parsers
    they default to SUPPRESS so a value given before the command survives."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("credentials and timeouts")
    group.add_argument(
        "--api-token-file",
        metavar="FILE",
        default=default(None),
        help="file holding the bearer token (else env PEERSYNC_API_TOKEN)",
    )
    group.add_argument(
        "--control-plane-secret-file",
        metavar="FILE",
        default=default(None),
        help="file holding the force-leader secret (else env PEERSYNC_CONTROL_PLANE_SECRET)",
    )
    group.add_argument(
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        default=default(None),
        help=f"total deadline of each call (default {DEFAULT_TIMEOUT_S:g}; "
        f"{STATE_TIMEOUT_S:g} for state)",
    )
    group.add_argument(
        "--connect-timeout",
        type=positive_float,
        metavar="SECONDS",
        default=default(None),
        help="cap on the TCP connect within the deadline (default 2)",
    )


def add_leaf(subparsers: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A (sub)command parser carrying the common options; for nested commands."""
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help, description=help)
    _common(parser, top=False)
    return parser


# The converters never quote the text they were given (_cli_parser).


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number (not echoed)") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not an integer (not echoed)") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = StrictParser(  # its sub-parsers are StrictParsers too
        prog="peersync",
        description="Operate a peersync engine pair over its HTTP API.",
        epilog="exit status: 0 success, 1 error answer, 2 usage error, 3 no usable answer",
    )
    _common(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        leaf = add_leaf(subparsers, command.name, command.help)
        leaf.set_defaults(run=command.run)
        command.configure(leaf)
    return parser


# -- credentials -------------------------------------------------------------------


def _secret(path: str | None, env: str, flag: str) -> str | None:
    """The token of file ``path``, else of env ``env``, else None; one the
    client cannot send (``clean_secret``: not UTF-8, a control character
    inside, empty) is a usage error that echoes neither it nor the path
    (a token typed where its file goes)."""
    if path is None:
        value = os.environ.get(env)
        if value is None:
            return None
        raw = os.fsencode(value)  # the bytes as set, undecodable ones included
        source = f"env {env}"
    else:
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise UsageError(f"cannot read {flag}: {reason}") from None
        source = f"the file of {flag}"
    try:
        return clean_secret(raw).decode("utf-8")
    except ValueError as exc:
        raise UsageError(f"{source} {exc}") from None


# -- running -----------------------------------------------------------------------


def _fail(ctx: Context, obj: dict[str, Any], status: int) -> int:
    ctx.stderr.write(json.dumps(obj) + "\n")
    ctx.stderr.flush()
    return status


def transport_code(exc: TransportError) -> str:
    """A stable snake_case name for a transport failure (stderr, ``watch``)."""
    for cls, code in (
        (ConnectionRefused, "connection_refused"),
        (DeadlineExceeded, "deadline_exceeded"),
        (ConnectionClosed, "connection_closed"),
        (InvalidResponse, "invalid_response"),
    ):
        if isinstance(exc, cls):
            return code
    return "transport_error"


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: BinaryIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run ``peersync``; returns the exit status (the console script exits with it)."""
    parser = build_parser()
    err = stderr or sys.stderr
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    ctx = Context(
        api_token=None,
        control_plane_secret=None,
        timeout=args.timeout,
        connect_timeout=args.connect_timeout,
        stdin=stdin or sys.stdin.buffer,
        stdout=stdout or sys.stdout,
        stderr=err,
    )
    try:
        ctx.api_token = _secret(args.api_token_file, "PEERSYNC_API_TOKEN", "--api-token-file")
        ctx.control_plane_secret = _secret(
            args.control_plane_secret_file,
            "PEERSYNC_CONTROL_PLANE_SECRET",
            "--control-plane-secret-file",
        )
        run: Callable[[argparse.Namespace, Context], int] = args.run
        return run(args, ctx)
    except UsageError as exc:
        err.write(f"peersync: error: {exc}\n")
        return EXIT_USAGE
    except PeerSyncError as exc:
        return _fail(ctx, {"status": exc.status, **exc.body, "code": exc.code}, EXIT_ERROR_ANSWER)
    except TransportError as exc:
        return _fail(ctx, {"error": str(exc), "code": transport_code(exc)}, EXIT_TRANSPORT)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout went away (``peersync watch URL | head``): not our error.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the exit-time flush
        return EXIT_OK


# Importing the commands registers them (kept apart: one concern per module).
from . import _cli_commands as _cli_commands  # noqa: E402
from . import _cli_reconcile as _cli_reconcile  # noqa: E402

if __name__ == "__main__":
    # Run as ``python -m peersync_server.cli``: use the package's module, the
    # one the commands registered themselves in, not this ``__main__`` copy.
    from peersync_server.cli import main as _main

    sys.exit(_main())
