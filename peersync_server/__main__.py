"""``peersync-server`` (and ``python -m peersync_server``): run one engine.

Prints exactly one line ``listening on http://HOST:PORT`` on stdout when it
is ready (the real port when 0 was asked). A bad flag, a missing token, an
unreadable file, an unusable state directory or a port in use: one line on
stderr and exit status 2. SIGTERM or SIGINT: stop gracefully, exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import logging
import os
import select
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from peersync_proto import DEFAULT_MAX_SNAPSHOT_BYTES, Role

from ._cli_parser import StrictParser, clean_secret, url_problem
from ._connection import (
    DEFAULT_BODY_MIN_RATE,
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HEADER_FIELDS,
    DEFAULT_MAX_REQUESTS_PER_CONNECTION,
    DEFAULT_SEND_TIMEOUT_S,
    Limits,
)
from ._logging import configure_logging
from ._peer import peer_link
from ._server import (
    DEFAULT_HOST,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_IDLE_CONNECTIONS,
    DEFAULT_PORT,
    DEFAULT_SHUTDOWN_GRACE_S,
    PeerSyncServer,
    ServerConfig,
    ServerStartError,
)

__all__ = ["build_config", "main", "parse_args"]

PROG = "peersync-server"
TOKEN_ENV = "PEERSYNC_API_TOKEN"
SECRET_ENV = "PEERSYNC_CONTROL_PLANE_SECRET"
EXIT_USAGE = 2

_log = logging.getLogger("peersync.server")


class UsageError(Exception):
    """One clear line for the operator; exit status 2."""


class _Parser(StrictParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# The converters never quote the text they were given (_cli_parser).


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not an integer (not echoed)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number (not echoed)") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def _listen(text: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise argparse.ArgumentTypeError("expected HOST:PORT (not echoed)")
    return host.strip("[]"), int(port_text)


def _parser() -> _Parser:
    p = _Parser(prog=PROG, description="Run one peersync engine (HTTP/1.1 server).")
    p.add_argument("--label", required=True, choices=["a", "b"], help="this engine's label")
    p.add_argument(
        "--listen",
        type=_listen,
        default=(DEFAULT_HOST, DEFAULT_PORT),
        metavar="HOST:PORT",
        help=f"address to serve on (default {DEFAULT_HOST}:{DEFAULT_PORT}; port 0 = any free)",
    )
    p.add_argument(
        "--role",
        choices=["leader", "follower"],
        default="follower",
        help="initial role of a fresh engine (default follower)",
    )
    p.add_argument("--state-dir", metavar="DIR", help="default ./peersync-state-LABEL")
    p.add_argument("--api-token-file", metavar="FILE", help=f"or env {TOKEN_ENV}")
    p.add_argument("--control-plane-secret-file", metavar="FILE", help=f"or env {SECRET_ENV}")
    p.add_argument("--no-auth", action="store_true", help="demo mode: no bearer token")
    p.add_argument("--peer", metavar="URL", help="the peer engine's base URL (failover)")
    p.add_argument(
        "--peer-listen",
        type=_listen,
        metavar="HOST:PORT",
        help="a second address for the peer only: its probes go first (port 0 = any free)",
    )
    p.add_argument("--failover", choices=["auto", "manual"], default="auto")
    failover = p.add_argument_group("peer monitor (with --peer; docs/failover.md)")
    failover.add_argument(
        "--probe-interval-ms",
        type=_positive_int,
        default=200,
        metavar="MS",
        help="one health probe of the peer every MS (default 200, 5 Hz)",
    )
    failover.add_argument(
        "--probe-deadline-ms",
        type=_positive_int,
        default=150,
        metavar="MS",
        help="each probe's own deadline (default 150; at most the interval)",
    )
    failover.add_argument(
        "--failure-threshold",
        type=_positive_int,
        default=3,
        metavar="N",
        help="consecutive failed probes that make the peer down (default 3)",
    )
    failover.add_argument(
        "--peer-api-token-file",
        metavar="FILE",
        help="the peer's bearer token, when it differs from ours",
    )
    p.add_argument("--max-snapshot-bytes", type=_positive_int, default=DEFAULT_MAX_SNAPSHOT_BYTES)
    p.add_argument(
        "--max-connections",
        type=_positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        help="connections with a request in flight (one thread each); past it 503",
    )
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        default="INFO",
    )
    limits = p.add_argument_group("limits and deadlines")
    limits.add_argument(
        "--max-idle-connections", type=_positive_int, default=DEFAULT_MAX_IDLE_CONNECTIONS
    )
    limits.add_argument("--max-header-bytes", type=_positive_int, default=DEFAULT_MAX_HEADER_BYTES)
    limits.add_argument(
        "--max-header-fields", type=_positive_int, default=DEFAULT_MAX_HEADER_FIELDS
    )
    limits.add_argument(
        "--header-timeout", type=_positive_float, default=DEFAULT_HEADER_TIMEOUT_S, metavar="S"
    )
    limits.add_argument(
        "--body-timeout", type=_positive_float, default=DEFAULT_BODY_TIMEOUT_S, metavar="S"
    )
    limits.add_argument(
        "--body-min-rate", type=_positive_int, default=DEFAULT_BODY_MIN_RATE, metavar="BYTES/S"
    )
    limits.add_argument(
        "--send-timeout", type=_positive_float, default=DEFAULT_SEND_TIMEOUT_S, metavar="S"
    )
    limits.add_argument(
        "--idle-timeout", type=_positive_float, default=DEFAULT_IDLE_TIMEOUT_S, metavar="S"
    )
    limits.add_argument(
        "--max-requests-per-connection",
        type=_positive_int,
        default=DEFAULT_MAX_REQUESTS_PER_CONNECTION,
    )
    limits.add_argument(
        "--shutdown-grace", type=_positive_float, default=DEFAULT_SHUTDOWN_GRACE_S, metavar="S"
    )
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    args: argparse.Namespace = _parser().parse_args(argv)
    return args


def _read_secret(path: str | None, env: str, flag: str, what: str) -> bytes | None:
    """The token or secret of file ``path`` (else of env ``env``; an empty
    one there counts as none), if the ``peersync`` client could send it
    (``clean_secret``): else a usage error naming the source, echoing
    neither the value nor the path (a token typed where its file goes)."""
    if path is not None:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise UsageError(f"cannot read {what} file ({flag}): {reason}") from None
        source = f"{what} file ({flag})"
    else:
        from_env = os.environ.get(env, "")
        if not from_env.strip():
            return None
        raw = os.fsencode(from_env)  # the bytes as set, undecodable ones included
        source = f"{what} in env {env}"
    try:
        return clean_secret(raw)
    except ValueError as exc:
        raise UsageError(f"the {source} {exc}") from None


def build_config(args: argparse.Namespace) -> ServerConfig:
    token = _read_secret(args.api_token_file, TOKEN_ENV, "--api-token-file", "API token")
    secret = _read_secret(
        args.control_plane_secret_file,
        SECRET_ENV,
        "--control-plane-secret-file",
        "control-plane secret",
    )
    if token is None and not args.no_auth:
        raise UsageError(
            f"no API token: give --api-token-file FILE or set {TOKEN_ENV} (or --no-auth for a demo)"
        )
    peer_token = (
        _read_secret(args.peer_api_token_file, "", "--peer-api-token-file", "peer API token")
        if args.peer_api_token_file is not None
        else None
    )
    if args.probe_deadline_ms > args.probe_interval_ms:
        raise UsageError("--probe-deadline-ms must not exceed --probe-interval-ms")
    if args.peer is not None and (problem := url_problem(args.peer, "--peer")) is not None:
        raise UsageError(problem)
    host, port = args.listen
    return ServerConfig(
        label=args.label,
        host=host,
        port=port,
        role=Role(args.role),
        state_dir=Path(args.state_dir or f"peersync-state-{args.label}"),
        api_token=token,
        control_plane_secret=secret,
        no_auth=args.no_auth,
        peer_url=args.peer,
        peer_listen_host=args.peer_listen[0] if args.peer_listen else None,
        peer_listen_port=args.peer_listen[1] if args.peer_listen else 0,
        failover=args.failover,
        probe_interval_ms=args.probe_interval_ms,
        probe_deadline_ms=args.probe_deadline_ms,
        failure_threshold=args.failure_threshold,
        peer_api_token=peer_token,
        max_snapshot_bytes=args.max_snapshot_bytes,
        max_connections=args.max_connections,
        max_idle_connections=args.max_idle_connections,
        limits=Limits(
            max_header_bytes=args.max_header_bytes,
            max_header_fields=args.max_header_fields,
            header_timeout_s=args.header_timeout,
            body_timeout_s=args.body_timeout,
            body_min_rate=args.body_min_rate,
            send_timeout_s=args.send_timeout,
            idle_timeout_s=args.idle_timeout,
            max_requests_per_connection=args.max_requests_per_connection,
        ),
        shutdown_grace_s=args.shutdown_grace,
    )


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        config = build_config(args)
    except UsageError as exc:
        return _fail(str(exc))
    configure_logging(fmt=args.log_format, level=args.log_level)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        _log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    # Any thread may receive SIGTERM; Python runs the handler only when the
    # main thread next runs bytecode. A blocked lock wait is not woken, so the
    # main thread waits in select() on the signal wake-up fd instead.
    wake_r, wake_w = socket.socketpair()
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # ops: dump thread stacks
    server = PeerSyncServer(config, peer_monitor=peer_link)
    try:
        server.start()
    except ServerStartError as exc:
        return _fail(str(exc))
    if config.no_auth:  # after binding: the real address, port 0 included
        _log.warning(
            "NO-AUTH MODE: the bearer endpoints are open to anyone who can reach %s",
            server.url,
        )
    if not server.wait_ready():
        _log.warning("the snapshot decoder did not start in time; continuing")
    print(f"listening on {server.url}", flush=True)
    try:
        while not stop.is_set():
            select.select([wake_r], [], [])
            with contextlib.suppress(BlockingIOError):
                wake_r.recv(4096)
    finally:
        server.stop()
        signal.set_wakeup_fd(-1)
        wake_r.close()
        wake_w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
