"""A fake pair of engines that keep the contract's lock and snapshot rules
(3.4, 3.5), and a host that carries the reconciler's calls to them.

Used by the reconciler's unit and Hypothesis tests. It is a model, kept
small on purpose: one lock per engine, held while ``now < granted + ttl``,
not re-entrant; refresh and release only with the holder's id; a PUT of a
snapshot only under the caller's lock.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from peersync_proto._events import Tick
from peersync_proto._reconcile_events import (
    AbandonCall,
    Call,
    CallAnswered,
    CallFailed,
    Reconciled,
    ReconcileFailed,
    ReconcileOutput,
)
from peersync_proto._reconciler import Reconciler

MS = 1_000_000
LOCK = "/api/sync/reconcile-lock"


def reply(status: int, doc: dict[str, Any]) -> tuple[int, bytes]:
    return status, json.dumps(doc).encode()


@attrs.define
class FakeEngine:
    label: str
    epoch: int = 1
    seq: int = 0
    role: str = "leader"
    state: str = "{}"
    lock_id: str | None = None
    lock_owner: str = ""
    lock_expires: int = 0
    lock_ttl: int = 0
    fencing: int = 0
    minted: int = 0
    applied: list[tuple[int, bytes, str]] = attrs.Factory(list)
    served: list[tuple[int, str, str]] = attrs.Factory(list)

    def held(self, now: int) -> bool:
        return self.lock_id is not None and now < self.lock_expires

    def holder(self, now: int) -> str | None:
        return self.lock_id if self.held(now) else None

    def grant(self, now: int, owner: str, ttl_ms: int) -> str | None:
        if self.held(now):
            return None
        self.minted += 1
        self.fencing += 1
        self.lock_id = f"{self.label.encode().hex():0>8}{self.minted:024x}"
        self.lock_owner, self.lock_ttl = owner, ttl_ms * MS
        self.lock_expires = now + self.lock_ttl
        return self.lock_id

    def snapshot(self) -> bytes:
        # Odd spacing and a non-ASCII character: it must reach the loser as is.
        head = f'{{"formatVersion": 1,  "engineLabel": "{self.label}", "role": "{self.role}", '
        tail = f'"epoch": {self.epoch}, "lastCommandSeq": {self.seq}, "state": {self.state}, '
        return (head + tail + '"note": "caf\u00e9"}').encode()

    def health(self) -> bytes:
        return json.dumps(
            {
                "status": "ok",
                "uptimeMs": 1,
                "programSource": "cam-1",
                "lastCommandSeq": self.seq,
                "engineLabel": self.label,
                "epoch": self.epoch,
                "role": self.role,
            }
        ).encode()

    def serve(self, now: int, call: Call) -> tuple[int, bytes]:
        self.served.append((now, call.method, call.path))
        headers = dict(call.headers)
        if call.method == "GET" and call.path == "/api/peer/health":
            return 200, self.health()
        if call.method == "GET" and call.path == "/api/sync/state":
            return 200, self.snapshot()
        if call.method == "POST" and call.path == LOCK:
            doc = json.loads(call.body)
            lock_id = self.grant(now, doc["owner"], doc["ttlMs"])
            if lock_id is None:
                left = (self.lock_expires - now) // MS
                return reply(
                    409, {"code": "lock_held", "owner": self.lock_owner, "remainingMs": left}
                )
            grant = {"lockId": lock_id, "expiresMs": self.lock_ttl // MS, "owner": doc["owner"]}
            return reply(200, {**grant, "fencingToken": self.fencing})
        if call.path.startswith(LOCK + "/") and call.method in ("PUT", "DELETE"):
            if self.holder(now) != call.path.rsplit("/", 1)[1]:
                return reply(404, {"code": "lock_not_found"})
            if call.method == "DELETE":
                self.lock_id = None
                return reply(200, {"released": True})
            self.lock_expires = now + self.lock_ttl
            return reply(200, {"lockId": self.lock_id, "fencingToken": self.fencing})
        if call.method == "PUT" and call.path == "/api/sync/state":
            given = headers.get(b"x-reconcile-lock-id", b"").decode()
            if self.holder(now) != given:
                return reply(409, {"code": "lock_not_held"})
            snap = json.loads(call.body)
            if snap["epoch"] < self.epoch:
                return reply(409, {"code": "stale_snapshot"})
            self.applied.append((now, call.body, given))
            self.state = json.dumps(snap["state"])
            self.epoch = max(self.epoch, snap["epoch"])
            self.seq = snap["lastCommandSeq"]
            if snap["role"] == "leader" and self.role == "leader":
                self.role = "follower"
            doc = {"applied": True, "epoch": self.epoch, "role": self.role}
            return reply(200, {**doc, "lastCommandSeq": self.seq})
        return reply(404, {"code": "not_found"})


class Host:
    """Carries the reconciler's calls to the fake engines and back."""

    def __init__(self, rec: Reconciler, engines: dict[str, FakeEngine], now: int = 0) -> None:
        self.rec = rec
        self.engines = engines
        self.now = now
        self.pending: dict[int, Call] = {}
        self.log: list[tuple[int, ReconcileOutput]] = []

    def take(self, outputs: tuple[ReconcileOutput, ...]) -> tuple[ReconcileOutput, ...]:
        for o in outputs:
            self.log.append((self.now, o))
            if isinstance(o, Call):
                self.pending[o.call_id] = o
            elif isinstance(o, AbandonCall):
                self.pending.pop(o.call_id)
        return outputs

    def start(self) -> tuple[ReconcileOutput, ...]:
        return self.take(self.rec.start(self.now))

    def deliver(self, call_id: int, *, lose_answer: bool = False) -> tuple[ReconcileOutput, ...]:
        call = self.pending.pop(call_id)
        status, body = self.engines[call.target].serve(self.now, call)
        if lose_answer:
            event: CallAnswered | CallFailed = CallFailed(
                now=self.now, call_id=call_id, reason="reset"
            )
        else:
            event = CallAnswered(now=self.now, call_id=call_id, status=status, body=body)
        return self.take(self.rec.handle(event))

    def refuse(self, call_id: int) -> tuple[ReconcileOutput, ...]:
        self.pending.pop(call_id)
        return self.take(
            self.rec.handle(CallFailed(now=self.now, call_id=call_id, reason="refused"))
        )

    def tick(self, at: int | None = None) -> tuple[ReconcileOutput, ...]:
        if at is None:
            deadline = self.rec.next_deadline()
            assert deadline is not None
            at = max(self.now, deadline)
        self.now = at
        return self.take(self.rec.handle(Tick(now=at)))

    def run(
        self, *, latency: int = 1 * MS, max_steps: int = 10_000
    ) -> Reconciled | ReconcileFailed:
        """Deliver every call, oldest first, ``latency`` after the last step;
        tick when nothing is in flight. Returns the outcome."""
        for _ in range(max_steps):
            if self.rec.outcome is not None and not self.pending:
                return self.rec.outcome
            if self.pending:
                self.now += latency
                deadline = self.rec.next_deadline()
                if deadline is not None and deadline <= self.now:
                    self.tick(self.now)
                    continue
                self.deliver(min(self.pending))
            else:
                self.tick()
        raise AssertionError("the reconciler did not finish")

    def calls(self, purpose_path: str | None = None) -> list[Call]:
        return [
            o
            for _, o in self.log
            if isinstance(o, Call) and (purpose_path is None or o.path == purpose_path)
        ]


def pair(**kw: Any) -> dict[str, FakeEngine]:
    a = FakeEngine("a", **kw.get("a", {}))
    b = FakeEngine("b", **kw.get("b", {}))
    return {"a": a, "b": b}
