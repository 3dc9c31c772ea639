"""Inputs and outputs of the reconciler (contract 4.3).

The reconciler asks its host to make HTTP calls (:class:`Call`); the host
performs each one against the engine it names (adding the bearer token) and
answers with :class:`CallAnswered` or :class:`CallFailed`. Time passes with
the engine's :class:`~peersync_proto.Tick`. Outcomes are effects:
:class:`Reconciled` or :class:`ReconcileFailed`, preceded by one
:class:`ReconcileStep` notice per step for the logs.

No notice or outcome carries a lock id. A :class:`Call` must (the lock id is
the capability the engine checks), so its ``repr`` masks it: log notices,
not calls.
"""

from __future__ import annotations

import attrs

from ._errors import LocalProtocolError
from ._values import INT64_MAX

__all__ = [
    "AbandonCall",
    "Call",
    "CallAnswered",
    "CallFailed",
    "ReconcileFailed",
    "ReconcileOutput",
    "ReconcileStep",
    "Reconciled",
]

LOCK_PATH = "/api/sync/reconcile-lock/"


def _u64(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or not 0 <= value <= INT64_MAX:
        raise LocalProtocolError(
            f"{attribute.name} must be a non-negative 64-bit int, got {value!r}"
        )


def _mask_path(path: str) -> str:
    return repr(LOCK_PATH + "<lock id>" if path.startswith(LOCK_PATH) else path)


def _mask_headers(headers: tuple[tuple[bytes, bytes], ...]) -> str:
    return repr(tuple(name for name, _ in headers))


@attrs.frozen(kw_only=True, slots=True)
class Call:
    """Make this HTTP call on engine ``target`` (a label; the host knows its
    URL) and answer with ``CallAnswered``/``CallFailed`` for ``call_id``.
    ``headers`` are extra headers to send as given; ``body`` is sent as is."""

    call_id: int
    target: str
    method: str
    path: str = attrs.field(repr=_mask_path)
    headers: tuple[tuple[bytes, bytes], ...] = attrs.field(default=(), repr=_mask_headers)
    body: bytes = attrs.field(default=b"", repr=lambda b: f"<{len(b)} bytes>")


@attrs.frozen(kw_only=True, slots=True)
class AbandonCall:
    """Call ``call_id`` ran past its deadline: drop its connection. Any later
    answer for it is ignored."""

    call_id: int


@attrs.frozen(kw_only=True, slots=True)
class CallAnswered:
    """The engine answered call ``call_id`` with ``status`` and ``body``."""

    now: int = attrs.field(validator=_u64)
    call_id: int = attrs.field(validator=_u64)
    status: int = attrs.field(validator=_u64)
    body: bytes = attrs.field(converter=bytes, repr=lambda b: f"<{len(b)} bytes>")


@attrs.frozen(kw_only=True, slots=True)
class CallFailed:
    """Call ``call_id`` got no HTTP answer (refused, reset, timed out)."""

    now: int = attrs.field(validator=_u64)
    call_id: int = attrs.field(validator=_u64)
    reason: str = ""


@attrs.frozen(kw_only=True, slots=True)
class ReconcileStep:
    """A notice for the logs: the reconciler entered ``step`` (a
    ``ReconcileState`` value), or ``lock_lost`` when a refresh found a lock
    gone; ``target`` is the engine concerned."""

    step: str
    target: str | None
    detail: str


@attrs.frozen(kw_only=True, slots=True)
class Reconciled:
    """The loser now holds the winner's snapshot; ``epoch`` and ``seq`` are
    the loser's epoch and last command sequence after the apply."""

    winner: str
    loser: str
    epoch: int
    seq: int


@attrs.frozen(kw_only=True, slots=True)
class ReconcileFailed:
    """Nothing was applied, or the apply was refused. ``reason`` is a stable
    code (``busy``, ``lock_lost``, ``call_failed``, ``bad_answer``,
    ``label_mismatch``, ``apply_refused``); ``detail`` a sentence."""

    reason: str
    detail: str


ReconcileOutput = Call | AbandonCall | ReconcileStep | Reconciled | ReconcileFailed
