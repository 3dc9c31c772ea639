"""``peersync reconcile URL_A URL_B``: one reconciler run, as a control plane would.

Engine ``a`` is at URL_A and ``b`` at URL_B (the contract's labels: locks are
taken on ``a`` first). Each step is printed as one JSON line on stdout as it
happens (``{"step": ..., "target": ..., "detail": ...}``), then the outcome
(``{"outcome": "reconciled", "winner": ..., "loser": ..., "epoch": ...,
"seq": ...}`` or ``{"outcome": "failed", "reason": ..., "detail": ...}``).
Exit 0 when reconciled, 1 when it failed (the reason also on stderr as
``{"error": ..., "code": <reason>}``), 2 on a usage error. No lock id is ever
printed.
"""

from __future__ import annotations

import argparse
import json
import os

from peersync_proto import (
    DEFAULT_LOCK_TTL_MS,
    LocalProtocolError,
    Reconciled,
    ReconcilerConfig,
)
from peersync_proto._reconcile_config import DEFAULT_MAX_ATTEMPTS, DEFAULT_RECONCILE_OWNER
from peersync_proto._reconcile_events import ReconcileOutput

from ._reconcile_runner import Endpoint, describe, run_reconcile
from .cli import EXIT_ERROR_ANSWER, EXIT_OK, Command, Context, UsageError, register_command

__all__: list[str] = []


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url_a", metavar="URL_A", help="engine a, e.g. http://127.0.0.1:8470")
    parser.add_argument("url_b", metavar="URL_B", help="engine b")
    parser.add_argument(
        "--owner",
        default=DEFAULT_RECONCILE_OWNER,
        help=f"lock owner shown by lock status (default {DEFAULT_RECONCILE_OWNER})",
    )
    parser.add_argument(
        "--ttl-ms",
        type=int,
        default=DEFAULT_LOCK_TTL_MS,
        metavar="N",
        help=f"lock TTL, refreshed every third (default {DEFAULT_LOCK_TTL_MS})",
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=DEFAULT_MAX_ATTEMPTS,
        metavar="N",
        help=f"acquire rounds before giving up busy (default {DEFAULT_MAX_ATTEMPTS})",
    )


def _run(args: argparse.Namespace, ctx: Context) -> int:
    try:
        config = ReconcilerConfig(
            engines=("a", "b"),
            owner=args.owner,
            ttl_ms=args.ttl_ms,
            max_attempts=args.max_attempts,
        )
    except LocalProtocolError as exc:
        raise UsageError(str(exc)) from None
    token = None if ctx.api_token is None else ctx.api_token.encode("utf-8")
    engines = {
        "a": Endpoint(url=args.url_a, api_token=token),
        "b": Endpoint(url=args.url_b, api_token=token),
    }
    for endpoint in engines.values():
        try:
            endpoint.address()
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def on_output(output: ReconcileOutput) -> None:
        shown = describe(output)
        if shown is not None:
            ctx.emit(shown)

    outcome = run_reconcile(engines, config=config, entropy=os.urandom, on_output=on_output)
    if isinstance(outcome, Reconciled):
        return EXIT_OK
    ctx.stderr.write(json.dumps({"error": outcome.detail, "code": outcome.reason}) + "\n")
    ctx.stderr.flush()
    return EXIT_ERROR_ANSWER


register_command(
    Command(
        name="reconcile",
        help="heal a split brain: copy the winner's state onto the loser under both locks",
        configure=_configure,
        run=_run,
    )
)
