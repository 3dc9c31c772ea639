"""``peersync reconcile URL_A URL_B``: one reconciler run, as a control plane would.

The two URLs may come in either order: each engine is first asked its label
(``GET /api/peer/health``, open), and the locks are then taken in label order
(``a`` first, contract 4.3), so two operators who give the URLs in opposite
orders still contend for the same first lock and cannot hold one lock each.
Each step is printed as one JSON line on stdout as it happens (``{"step": ...,
"target": ..., "detail": ...}``, the first two ``identified``), then the
outcome (``{"outcome": "reconciled", "winner": ..., "loser": ..., "epoch":
..., "seq": ...}`` or ``{"outcome": "failed", "reason": ..., "detail":
...}``). Exit 0 when reconciled, 1 when it failed (the reason also on stderr
as ``{"error": ..., "code": <reason>}``), 2 on a usage error. No lock id is
ever printed.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable

import attrs

from peersync_proto import (
    DEFAULT_LOCK_TTL_MS,
    LocalProtocolError,
    Reconciled,
    ReconcileFailed,
    ReconcilerConfig,
    ReconcileStep,
)
from peersync_proto._reconcile_config import (
    DEFAULT_CALL_TIMEOUT_NS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RECONCILE_OWNER,
)
from peersync_proto._reconcile_events import ReconcileOutput

from ._client_errors import InvalidResponse, PeerSyncError, TransportError
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


def _identify(
    urls: tuple[str, str], ctx: Context, on_output: Callable[[ReconcileOutput], None]
) -> dict[str, str] | ReconcileFailed:
    """Label -> URL, from each engine's own peer health (open: no token
    needed). The machine checks the labels again under both locks."""
    labels: dict[str, str] = {}
    for name, url in zip(("URL_A", "URL_B"), urls, strict=True):
        try:
            with ctx.client(url, timeout=DEFAULT_CALL_TIMEOUT_NS / 1e9) as client:
                label = client.peer_health().engine_label
        except (PeerSyncError, InvalidResponse) as exc:  # an error answer, or not peer health
            return ReconcileFailed(reason="bad_answer", detail=f"health of {name}: {exc}")
        except TransportError as exc:  # no answer
            return ReconcileFailed(reason="call_failed", detail=f"health of {name} failed: {exc}")
        if not label:
            return ReconcileFailed(reason="bad_answer", detail=f"{name} reports an empty label")
        if label in labels:
            detail = f"URL_A and URL_B both report label {label!r}"
            return ReconcileFailed(reason="label_mismatch", detail=detail)
        labels[label] = url
        on_output(ReconcileStep(step="identified", target=label, detail=f"{name} {url}"))
    return labels


def _run(args: argparse.Namespace, ctx: Context) -> int:
    try:
        config = ReconcilerConfig(
            owner=args.owner,
            ttl_ms=args.ttl_ms,
            max_attempts=args.max_attempts,
        )
    except LocalProtocolError as exc:
        raise UsageError(str(exc)) from None
    token = None if ctx.api_token is None else ctx.api_token.encode("utf-8")
    for url in (args.url_a, args.url_b):
        ctx.client(url).close()  # a bad URL is a usage error before any call

    def on_output(output: ReconcileOutput) -> None:
        shown = describe(output)
        if shown is not None:
            ctx.emit(shown)

    found = _identify((args.url_a, args.url_b), ctx, on_output)
    if isinstance(found, ReconcileFailed):  # no lock was asked for
        on_output(
            ReconcileStep(step="failed", target=None, detail=f"{found.reason}: {found.detail}")
        )
        on_output(found)
        outcome: Reconciled | ReconcileFailed = found
    else:
        first, second = sorted(found)  # the lock order: by label, whatever the URL order
        engines = {label: Endpoint(url=url, api_token=token) for label, url in found.items()}
        config = attrs.evolve(config, engines=(first, second))
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
