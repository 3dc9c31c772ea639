"""The commands of ``peersync``, one :class:`Command` each (registered on import)."""

from __future__ import annotations

import argparse
import datetime
import time

from ._client_errors import PeerSyncError, TransportError
from ._client_values import LockGrant, LockStatus, ReleaseResult, to_wire
from .cli import (
    DEFAULT_WATCH_INTERVAL_MS,
    DEFAULT_WATCH_PROBE_TIMEOUT_MS,
    EXIT_ERROR_ANSWER,
    EXIT_OK,
    STATE_TIMEOUT_S,
    Command,
    Context,
    UsageError,
    add_leaf,
    nonnegative_int,
    register_command,
    transport_code,
)

__all__: list[str] = []


def _url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL", help="the engine, e.g. http://127.0.0.1:8470")


def _lock_id(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--lock-id",
        required=required,
        metavar="ID",
        help="the lockId of the grant (a capability: keep it out of shared logs)",
    )


def _ttl(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ttl-ms", type=int, metavar="N", help="lock TTL, 1000..300000 ms")


# -- health, sync-health, force-leader --------------------------------------------


def _run_health(args: argparse.Namespace, ctx: Context) -> int:
    ctx.emit(to_wire(ctx.client(args.url).peer_health()))
    return EXIT_OK


def _run_sync_health(args: argparse.Namespace, ctx: Context) -> int:
    ctx.emit(to_wire(ctx.client(args.url).sync_health()))
    return EXIT_OK


def _configure_force_leader(parser: argparse.ArgumentParser) -> None:
    _url(parser)
    parser.add_argument("--reason", metavar="R", help="why, for the engine's log (<= 256 chars)")


def _run_force_leader(args: argparse.Namespace, ctx: Context) -> int:
    ctx.emit(to_wire(ctx.client(args.url).force_leader(reason=args.reason)))
    return EXIT_OK


# -- lock ----------------------------------------------------------------------------


def _configure_lock(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    acquire = add_leaf(actions, "acquire", "take the reconcile lock (never retried)")
    _url(acquire)
    acquire.add_argument("--owner", metavar="O", help="who holds it, 1..128 chars")
    _ttl(acquire)
    refresh = add_leaf(actions, "refresh", "extend a held lock")
    _url(refresh)
    _lock_id(refresh)
    _ttl(refresh)
    release = add_leaf(actions, "release", "free a held lock")
    _url(release)
    _lock_id(release)
    status = add_leaf(actions, "status", "who holds the lock (never shows its id)")
    _url(status)


def _run_lock(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client(args.url)
    result: LockGrant | ReleaseResult | LockStatus
    if args.action == "acquire":
        result = client.acquire_lock(owner=args.owner, ttl_ms=args.ttl_ms)
    elif args.action == "refresh":
        result = client.refresh_lock(args.lock_id, ttl_ms=args.ttl_ms)
    elif args.action == "release":
        result = client.release_lock(args.lock_id)
    else:
        result = client.lock_status()
    ctx.emit(to_wire(result))
    return EXIT_OK


# -- state ---------------------------------------------------------------------------


def _configure_state(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    get = add_leaf(actions, "get", "write the engine's snapshot, as served, to stdout")
    _url(get)
    apply = add_leaf(actions, "apply", "apply the snapshot on stdin (hold the lock first)")
    _url(apply)
    _lock_id(apply)


def _run_state(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client(args.url, timeout=STATE_TIMEOUT_S)
    if args.action == "get":
        body = client.get_state_bytes()
        ctx.stdout.flush()
        out = getattr(ctx.stdout, "buffer", None)
        if out is not None:
            out.write(body)
            out.flush()
        else:
            ctx.stdout.write(body.decode("utf-8"))
            ctx.stdout.flush()
        return EXIT_OK
    if ctx.stdin.isatty():
        raise UsageError(
            "state apply reads the snapshot from stdin: peersync state apply ... < FILE"
        )
    body = ctx.stdin.read()
    if not body.strip():
        raise UsageError("no snapshot on stdin")
    ctx.emit(to_wire(client.apply_state(body, args.lock_id)))
    return EXIT_OK


# -- watch ---------------------------------------------------------------------------


def _configure_watch(parser: argparse.ArgumentParser) -> None:
    _url(parser)
    parser.add_argument(
        "--count",
        type=nonnegative_int,
        default=0,
        metavar="N",
        help="stop after N probes (0: never)",
    )
    parser.add_argument(
        "--interval-ms",
        type=nonnegative_int,
        default=DEFAULT_WATCH_INTERVAL_MS,
        metavar="MS",
        help=f"probe period (default {DEFAULT_WATCH_INTERVAL_MS}, the peer monitor's)",
    )
    parser.add_argument(
        "--probe-timeout-ms",
        type=nonnegative_int,
        default=DEFAULT_WATCH_PROBE_TIMEOUT_MS,
        metavar="MS",
        help=f"deadline of each probe (default {DEFAULT_WATCH_PROBE_TIMEOUT_MS})",
    )
    parser.add_argument(
        "--format", choices=("json", "text"), default="json", help="line format (default json)"
    )


def _run_watch(args: argparse.Namespace, ctx: Context) -> int:
    """One line per probe, on a fixed schedule; exit 1 if any probe failed."""
    client = ctx.client(args.url)
    timeout = max(args.probe_timeout_ms, 1) / 1000
    failed = 0
    probes = 0
    next_at = time.monotonic()
    while args.count == 0 or probes < args.count:
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        next_at = max(next_at + args.interval_ms / 1000, time.monotonic())
        stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        started = time.monotonic()
        line: dict[str, object] = {"at": stamp}
        try:
            health = client.peer_health(timeout=timeout)
        except (PeerSyncError, TransportError) as exc:
            failed += 1
            code = exc.code if isinstance(exc, PeerSyncError) else transport_code(exc)
            line.update(ok=False, code=code)
        else:
            line.update(
                ok=health.status.value == "ok",
                status=health.status.value,
                role=health.role.value,
                epoch=health.epoch,
                programSource=health.program_source,
                engineLabel=health.engine_label,
            )
            failed += health.status.value != "ok"
        line["rttMs"] = round((time.monotonic() - started) * 1000, 3)
        probes += 1
        if args.format == "json":
            ctx.emit(line)
        else:
            ctx.stdout.write(_text_line(line) + "\n")
            ctx.stdout.flush()
    return EXIT_ERROR_ANSWER if failed else EXIT_OK


def _text_line(line: dict[str, object]) -> str:
    stamp = str(line["at"])[11:23]
    if "role" not in line:
        return f"{stamp}  {'DOWN':<8}  {line['code']}  {line['rttMs']:.1f} ms"
    return (
        f"{stamp}  {line['role']!s:<8}  epoch {line['epoch']}  {line['programSource']}"
        f"  {line['status']}  {line['rttMs']:.1f} ms"
    )


for _command in (
    Command(name="health", help="peer health (open endpoint)", configure=_url, run=_run_health),
    Command(
        name="sync-health", help="clock sync and sequences", configure=_url, run=_run_sync_health
    ),
    Command(
        name="force-leader",
        help="make the engine leader (control-plane secret; never retried)",
        configure=_configure_force_leader,
        run=_run_force_leader,
    ),
    Command(name="lock", help="the reconcile lock", configure=_configure_lock, run=_run_lock),
    Command(name="state", help="state snapshots", configure=_configure_state, run=_run_state),
    Command(
        name="watch",
        help="probe peer health live: role, epoch, program source, round trip",
        configure=_configure_watch,
        run=_run_watch,
    ),
):
    register_command(_command)
