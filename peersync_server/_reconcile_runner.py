"""Runs one :class:`peersync_proto.Reconciler` against two real engines.

The machine says what to do (``Call``, ``AbandonCall``) and what happened
(``ReconcileStep`` notices, then ``Reconciled`` or ``ReconcileFailed``); this
module does it: each ``Call`` goes out on its own fresh connection in its own
thread (so a lock refresh never queues behind a 50 MB snapshot), each answer
comes back to the machine stamped with a fresh monotonic ``now``, and the
machine is woken at its ``next_deadline()`` for refreshes, back-offs and
deadlines. Everything runs on the caller's thread but the calls themselves.

Used by the server when its engine sees a split brain and wins it
(``peersync_server._peer``), and by ``peersync reconcile URL_A URL_B``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping

import attrs
import h11

from peersync_proto import (
    DEFAULT_MAX_SNAPSHOT_BYTES,
    AbandonCall,
    Call,
    CallAnswered,
    CallFailed,
    Entropy,
    Reconciled,
    ReconcileFailed,
    Reconciler,
    ReconcilerConfig,
    ReconcileStep,
    Tick,
)
from peersync_proto._reconcile_events import ReconcileOutput

from ._client_errors import TransportError
from ._client_http import HttpConnection

__all__ = ["DEFAULT_RUN_LIMIT_S", "Endpoint", "ReconcileRun", "describe", "run_reconcile"]

_log = logging.getLogger("peersync.reconcile")

#: No reconciliation may keep its host busy longer than this, whatever the
#: machine's own deadlines (60 s transfers, back-offs) add up to.
DEFAULT_RUN_LIMIT_S = 180.0
_CONNECT_TIMEOUT_S = 2.0
_USER_AGENT = b"peersync-reconciler/0.1"
#: Small answers (locks, health) are far below this; snapshots get the
#: snapshot limit plus the envelope.
_SMALL_LIMIT = 1024 * 1024
_STATE_LIMIT = DEFAULT_MAX_SNAPSHOT_BYTES + 1024 * 1024
_NS = 1_000_000_000


@attrs.frozen(kw_only=True, slots=True)
class Endpoint:
    """One engine as the reconciler reaches it: base URL and bearer token."""

    url: str
    api_token: bytes | None = attrs.field(default=None, repr=False)

    def address(self) -> tuple[str, int, str]:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"engine URL must be http://HOST:PORT, got {self.url!r}")
        return parts.hostname, parts.port or 80, parts.path.rstrip("/")


@attrs.frozen(kw_only=True, slots=True)
class _Answer:
    call_id: int
    status: int | None
    body: bytes = b""
    reason: str = ""


def describe(output: ReconcileOutput) -> dict[str, object] | None:
    """A loggable dict for a notice or an outcome (never a lock id); ``None``
    for calls, which carry lock ids."""
    if isinstance(output, ReconcileStep):
        return {"step": output.step, "target": output.target, "detail": output.detail}
    if isinstance(output, Reconciled):
        return {
            "outcome": "reconciled",
            "winner": output.winner,
            "loser": output.loser,
            "epoch": output.epoch,
            "seq": output.seq,
        }
    if isinstance(output, ReconcileFailed):
        return {"outcome": "failed", "reason": output.reason, "detail": output.detail}
    return None


class ReconcileRun:
    """One reconciliation between ``engines`` (label -> :class:`Endpoint`).

    ``on_output`` sees every output of the machine in order (calls included:
    log :func:`describe` of them, never the call itself).
    """

    def __init__(
        self,
        engines: Mapping[str, Endpoint],
        *,
        config: ReconcilerConfig,
        entropy: Entropy,
        on_output: Callable[[ReconcileOutput], None] = lambda _o: None,
        run_limit_s: float = DEFAULT_RUN_LIMIT_S,
    ) -> None:
        missing = set(config.engines) - set(engines)
        if missing:
            raise ValueError(f"no URL for engine(s) {sorted(missing)}")
        self._engines = {label: engines[label] for label in config.engines}
        for endpoint in self._engines.values():
            endpoint.address()  # validates the URL now
        self._machine = Reconciler(config, entropy=entropy)
        self._on_output = on_output
        self._run_limit_s = run_limit_s
        self._answers: queue.SimpleQueue[_Answer] = queue.SimpleQueue()
        self._last_now = 0
        self._threads: list[threading.Thread] = []

    def _now(self) -> int:
        self._last_now = max(self._last_now, time.monotonic_ns())
        return self._last_now

    def run(self) -> Reconciled | ReconcileFailed:
        """Run to the outcome (or the run limit); returns it."""
        machine = self._machine
        give_up = time.monotonic() + self._run_limit_s
        self._act(machine.start(self._now()))
        while machine.outcome is None:
            left = give_up - time.monotonic()
            if left <= 0:
                failed = ReconcileFailed(
                    reason="call_failed",
                    detail=f"the run passed its {self._run_limit_s:.0f} s limit",
                )
                self._on_output(failed)
                return failed
            due = machine.next_deadline()
            wait = left if due is None else min(left, max(0.0, (due - self._now()) / _NS))
            try:
                answer: _Answer | None = self._answers.get(timeout=wait)
            except queue.Empty:
                answer = None
            now = self._now()
            if answer is None:
                if due is None or now < due:
                    continue
                self._act(machine.handle(Tick(now=max(now, due))))
            elif answer.status is None:
                self._act(
                    machine.handle(
                        CallFailed(now=now, call_id=answer.call_id, reason=answer.reason)
                    )
                )
            else:
                self._act(
                    machine.handle(
                        CallAnswered(
                            now=now, call_id=answer.call_id, status=answer.status, body=answer.body
                        )
                    )
                )
        return machine.outcome

    def _act(self, outputs: tuple[ReconcileOutput, ...]) -> None:
        for output in outputs:
            self._on_output(output)
            if isinstance(output, Call):
                thread = threading.Thread(
                    target=self._perform, args=(output,), name="reconcile-call", daemon=True
                )
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
                thread.start()
            elif isinstance(output, AbandonCall):
                # The call's own deadline (the same one) ends its connection;
                # its answer, if any, is ignored by the machine.
                _log.debug("call %d abandoned", output.call_id)

    def _perform(self, call: Call) -> None:
        endpoint = self._engines[call.target]
        host, port, prefix = endpoint.address()
        config = self._machine.config
        transfer = call.path == "/api/sync/state"
        budget_ns = config.transfer_timeout_ns if transfer else config.call_timeout_ns
        headers = [
            (b"host", f"{host}:{port}".encode("idna")),
            (b"user-agent", _USER_AGENT),
            (b"accept", b"application/json"),
        ]
        if endpoint.api_token is not None:
            headers.append((b"authorization", b"Bearer " + endpoint.api_token))
        if call.body or call.method != "GET":
            headers.append((b"content-length", str(len(call.body)).encode()))
        headers.extend(call.headers)
        request = h11.Request(method=call.method, target=prefix + call.path, headers=headers)
        conn = HttpConnection(host, port, connect_timeout=_CONNECT_TIMEOUT_S)
        try:
            answer = conn.exchange(
                request,
                call.body or None,
                deadline=time.monotonic() + budget_ns / _NS,
                limit=_STATE_LIMIT if transfer else _SMALL_LIMIT,
            )
        except TransportError as exc:
            self._answers.put(_Answer(call_id=call.call_id, status=None, reason=str(exc)))
        except Exception as exc:  # any failure is the call's, never the runner's
            self._answers.put(
                _Answer(call_id=call.call_id, status=None, reason=f"{type(exc).__name__}: {exc}")
            )
        else:
            self._answers.put(_Answer(call_id=call.call_id, status=answer.status, body=answer.body))
        finally:
            conn.close()


def run_reconcile(
    engines: Mapping[str, Endpoint],
    *,
    config: ReconcilerConfig,
    entropy: Entropy,
    on_output: Callable[[ReconcileOutput], None] = lambda _o: None,
    run_limit_s: float = DEFAULT_RUN_LIMIT_S,
) -> Reconciled | ReconcileFailed:
    """One reconciliation, start to outcome, on this thread."""
    run = ReconcileRun(
        engines, config=config, entropy=entropy, on_output=on_output, run_limit_s=run_limit_s
    )
    return run.run()
