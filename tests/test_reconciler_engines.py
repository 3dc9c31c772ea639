"""The reconciler against two real engine cores (no fakes): the contract's
lock and snapshot rules as the engine enforces them."""

from __future__ import annotations

import json
from typing import Any

from peersync_proto._canonical import canonical_json
from peersync_proto._config import EngineConfig, Floors
from peersync_proto._engine import Engine
from peersync_proto._events import (
    HostStatus,
    Request,
    SnapshotApplied,
    SnapshotCaptured,
    Tick,
)
from peersync_proto._outputs import ApplySnapshot, CaptureSnapshot, Output, Response, StepDown
from peersync_proto._reconcile_config import ReconcilerConfig
from peersync_proto._reconcile_events import (
    Call,
    CallAnswered,
    Reconciled,
    ReconcileFailed,
    ReconcileOutput,
)
from peersync_proto._reconciler import Reconciler
from peersync_proto._values import Cause, Role

MS = 1_000_000
TOKEN = b"t0k-reconcile"


class Counter:
    """Distinct lock ids, reproducibly."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, size: int) -> bytes:
        self.n += 1
        return self.n.to_bytes(size, "big")


class RealEngine:
    """An engine core with a trivial in-memory host."""

    def __init__(self, label: str, *, epoch: int, seq: int, state: dict[str, Any]) -> None:
        self.engine = Engine(
            EngineConfig(label=label, role=Role.FOLLOWER, api_token=TOKEN),
            now=0,
            entropy=Counter(),
            floors=Floors(epoch=epoch),
        )
        self.state = state
        self.rid = 0
        self.effects: list[Output] = []
        self.engine.handle(HostStatus(now=0, last_command_seq=seq, program_source=f"cam-{label}"))

    def force_leader(self) -> None:
        # Promote through the engine's own role machine, as force-leader does.
        self.engine.promote(Cause.FORCE, [])

    def serve(self, now: int, call: Call) -> tuple[int, bytes]:
        self.rid += 1
        headers = [(b"authorization", b"Bearer " + TOKEN), *call.headers]
        pending = list(
            self.engine.handle(
                Request(
                    now=now,
                    request_id=self.rid,
                    method=call.method,
                    target=call.path,
                    headers=headers,
                    body=call.body,
                )
            )
        )
        while pending:
            out = pending.pop(0)
            self.effects.append(out)
            if isinstance(out, Response):
                return out.status, out.body
            if isinstance(out, CaptureSnapshot):
                host = self.engine.view().host
                pending += self.engine.handle(
                    SnapshotCaptured(
                        now=now,
                        request_id=out.request_id,
                        state=canonical_json(self.state),
                        captured_at_us=1_700_000_000_000_000,
                        program_source=host.program_source,
                        preview_source="cam-0",
                        last_command_seq=host.last_command_seq,
                        last_executed_seq=host.last_executed_seq,
                    )
                )
            elif isinstance(out, ApplySnapshot):
                self.state = json.loads(out.snapshot.state)
                pending += self.engine.handle(SnapshotApplied(now=now, request_id=out.request_id))
        raise AssertionError("no response")

    def lock_owner(self, now: int) -> str | None:
        status, body = self.serve(
            now, Call(call_id=0, target="", method="GET", path="/api/sync/reconcile-lock")
        )
        assert status == 200
        doc = json.loads(body)
        return str(doc["owner"]) if doc["held"] else None


def split_brain() -> dict[str, RealEngine]:
    a = RealEngine("a", epoch=7, seq=40, state={"scene": "news", "from": "a"})
    b = RealEngine("b", epoch=8, seq=12, state={"scene": "sport", "from": "b"})
    for e in (a, b):
        e.force_leader()  # both leader: a split brain (a at 8, b at 9)
    return {"a": a, "b": b}


def drive(
    recs: list[Reconciler], engines: dict[str, RealEngine], *, order: str = "interleaved"
) -> list[tuple[int, int, ReconcileOutput]]:
    """Run reconcilers against the engines, one call each in turn, 1 ms apart."""
    now = 0
    pending: dict[int, list[Call]] = {i: [] for i in range(len(recs))}
    log: list[tuple[int, int, ReconcileOutput]] = []

    def take(i: int, outs: tuple[ReconcileOutput, ...]) -> None:
        for o in outs:
            log.append((now, i, o))
            if isinstance(o, Call):
                pending[i].append(o)
            if isinstance(o, Call) and o.method == "PUT" and o.path == "/api/sync/state":
                # Contract 4.3: the PUT goes out only under both locks, ours.
                owners = {e.lock_owner(now) for e in engines.values()}
                assert owners == {recs[i].config.owner}, owners

    for i, rec in enumerate(recs):
        take(i, rec.start(now))
    for _ in range(2_000):
        if all(r.outcome is not None for r in recs) and not any(pending.values()):
            return log
        now += 1 * MS
        for i, rec in enumerate(recs):
            deadline = rec.next_deadline()
            if pending[i]:
                call = pending[i].pop(0)
                status, body = engines[call.target].serve(now, call)
                take(
                    i,
                    rec.handle(
                        CallAnswered(now=now, call_id=call.call_id, status=status, body=body)
                    ),
                )
            elif deadline is not None and deadline <= now:
                take(i, rec.handle(Tick(now=now)))
    raise AssertionError("reconcilers did not finish")


def test_a_split_brain_between_two_real_engines_heals_to_one_leader_and_equal_state() -> None:
    engines = split_brain()
    rec = Reconciler(ReconcilerConfig(owner="test"), entropy=bytes)
    drive([rec], engines)
    assert rec.outcome == Reconciled(winner="b", loser="a", epoch=9, seq=12)
    a, b = engines["a"], engines["b"]
    assert a.state == b.state == {"scene": "sport", "from": "b"}
    assert a.engine.role is Role.FOLLOWER and b.engine.role is Role.LEADER
    assert a.engine.epoch == b.engine.epoch == 9
    assert any(isinstance(e, StepDown) for e in a.effects)
    # Released, not expired: asked well within the 30 s TTL.
    assert a.lock_owner(100 * MS) is None and b.lock_owner(100 * MS) is None


def test_two_reconcilers_racing_never_both_hold_and_both_end() -> None:
    engines = split_brain()
    first = Reconciler(ReconcilerConfig(owner="one"), entropy=bytes)
    second = Reconciler(ReconcilerConfig(owner="two"), entropy=lambda n: b"\xff" * n)
    log = drive([first, second], engines)
    # Every PUT the engines accepted came from a reconciler holding both locks:
    # the engine itself refuses any other (409 lock_not_held), so count applies.
    applies = [e for eng in engines.values() for e in eng.effects if isinstance(e, ApplySnapshot)]
    outcomes = [first.outcome, second.outcome]
    assert sum(isinstance(o, Reconciled) for o in outcomes) == len(applies)
    assert len(applies) >= 1
    for o in outcomes:
        assert isinstance(o, (Reconciled, ReconcileFailed))
        if isinstance(o, ReconcileFailed):
            assert o.reason == "busy"
    assert engines["a"].state == engines["b"].state
    assert [eng.engine.role for eng in engines.values()].count(Role.LEADER) == 1
    # Both ran to the end; the PUTs (checked in drive) each went out under
    # both locks held by the reconciler that sent it.
    puts = [i for _, i, o in log if isinstance(o, Call) and o.method == "PUT" and "state" in o.path]
    assert sorted(puts) == sorted(set(puts))
    # They did race: the later one met a held lock and backed off at least once.
    assert any(r.view().attempts > 1 for r in (first, second))
