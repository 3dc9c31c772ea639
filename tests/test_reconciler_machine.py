"""The reconciler against a fake pair that keeps the contract's lock rules,
with rivals holding locks, calls refused or answered into the void, answers
in any order and time jumps past the TTL (Hypothesis).

Checked on every output, against the engines' own truth at that instant:
a PUT of a snapshot goes out only while both locks are held by this
reconciler, with the loser's id; the second lock is asked for only while the
first is held; a lock found lost stops the round before any PUT; releases
go second-then-first. At the end: every lock it learnt it held was released,
it made at most ``max_attempts`` rounds, and a ``Reconciled`` means the
loser holds the winner's bytes.
"""

from __future__ import annotations

import json

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from peersync_proto._reconcile_config import ReconcilerConfig
from peersync_proto._reconcile_events import (
    Call,
    CallAnswered,
    CallFailed,
    Reconciled,
    ReconcileOutput,
)
from peersync_proto._reconciler import Reconciler
from peersync_proto._winner import Standing, pick_winner
from tests.test_reconciler_fakes import LOCK, MS, Host, pair

STATE = "/api/sync/state"


class ReconcilerMachine(RuleBasedStateMachine):
    @initialize(
        ttl_ms=st.sampled_from([1_000, 1_000, 2_000, 3_000]),
        attempts=st.integers(1, 4),
        epochs=st.tuples(st.integers(0, 3), st.integers(0, 3)),
        seqs=st.tuples(st.integers(0, 2), st.integers(0, 2)),
        seed=st.integers(0, 2**32 - 1),
        rival=st.sampled_from([None, None, "a", "b"]),
        rival_ttl_ms=st.integers(100, 2_000),
    )
    def setup(
        self,
        ttl_ms: int,
        attempts: int,
        epochs: tuple[int, int],
        seqs: tuple[int, int],
        seed: int,
        rival: str | None,
        rival_ttl_ms: int,
    ) -> None:
        engines = pair(
            a={"epoch": epochs[0], "seq": seqs[0], "state": '{"src": "a"}'},
            b={"epoch": epochs[1], "seq": seqs[1], "state": '{"src": "b"}'},
        )
        if rival is not None:
            engines[rival].grant(0, "rival", rival_ttl_ms)
        self.counter = seed

        def entropy(n: int) -> bytes:
            self.counter = (self.counter * 6364136223846793005 + 1) % 2**64
            return self.counter.to_bytes(8, "big")[:n]

        self.cfg = ReconcilerConfig(
            ttl_ms=ttl_ms,
            max_attempts=attempts,
            call_timeout_ns=3_000 * MS,
            transfer_timeout_ns=4_000 * MS,
            backoff_base_ns=50 * MS,
        )
        self.h = Host(Reconciler(self.cfg, entropy=entropy), engines)
        self.ids: dict[str, tuple[str, int]] = {}  # lock id -> (label, round) it learnt
        self.lost_answers: set[str] = set()  # ids granted whose answer never reached it
        self.lost_in_round: set[int] = set()  # rounds where a refresh said 404
        self.healths: dict[int, dict[str, Standing]] = {}
        self.served_snapshot: dict[int, bytes] = {}
        self.delivered_releases: set[str] = set()
        self._check(self.h.start())

    # -- helpers -------------------------------------------------------------

    @property
    def round(self) -> int:
        return self.h.rec.view().attempts

    def _check(self, outputs: tuple[ReconcileOutput, ...]) -> None:
        now, engines = self.h.now, self.h.engines
        mine = {lid for lid in self.ids}
        for o in outputs:
            if not isinstance(o, Call):
                continue
            if o.method == "POST" and o.path == LOCK and o.target == "b":
                # The second lock only while the first is held by us.
                assert engines["a"].holder(now) in mine
                assert self.ids[engines["a"].holder(now)][1] == self.round  # type: ignore[index]
            if o.method == "PUT" and o.path == STATE:
                headers = dict(o.headers)
                lock_id = headers[b"x-reconcile-lock-id"].decode()
                assert engines[o.target].holder(now) == lock_id
                assert lock_id in mine and self.ids[lock_id] == (o.target, self.round)
                other = "a" if o.target == "b" else "b"
                assert engines[other].holder(now) in mine
                assert self.round not in self.lost_in_round
                # The loser is the contract's loser on the answers read under the locks.
                seen = self.healths[self.round]
                assert pick_winner(seen["a"], seen["b"]).label == other
                assert o.body == self.served_snapshot[self.round]
            if o.method == "DELETE":
                lock_id = o.path.rsplit("/", 1)[1]
                label, rnd = self.ids[lock_id]
                assert label == o.target
                if label == "a":  # b, if we held it this round, went first
                    b_ids = [i for i, (lb, r) in self.ids.items() if lb == "b" and r == rnd]
                    released = [
                        c.path.rsplit("/", 1)[1] for c in self.h.calls() if c.method == "DELETE"
                    ]
                    assert all(i in released for i in b_ids)

    def _deliver(self, call_id: int, lose: bool) -> None:
        h = self.h
        call = h.pending.pop(call_id)
        status, body = h.engines[call.target].serve(h.now, call)
        if call.method == "DELETE":
            self.delivered_releases.add(call.path.rsplit("/", 1)[1])
        if call.method == "POST" and call.path == LOCK and status == 200:
            lock_id = json.loads(body)["lockId"]
            if lose:
                self.lost_answers.add(lock_id)
            else:
                self.ids[lock_id] = (call.target, self.round)
        if not lose and call.path.startswith(LOCK + "/") and call.method == "PUT" and status == 404:
            lock_id = call.path.rsplit("/", 1)[1]
            self.lost_in_round.add(self.ids[lock_id][1])
        if not lose and call.path == "/api/peer/health":
            doc = json.loads(body)
            self.healths.setdefault(self.round, {})[call.target] = Standing(
                label=doc["engineLabel"], epoch=doc["epoch"], last_command_seq=doc["lastCommandSeq"]
            )
        if not lose and call.method == "GET" and call.path == STATE:
            self.served_snapshot[self.round] = body
        event: CallAnswered | CallFailed
        if lose:
            event = CallFailed(now=h.now, call_id=call_id, reason="reset")
        else:
            event = CallAnswered(now=h.now, call_id=call_id, status=status, body=body)
        self._check(h.take(h.rec.handle(event)))

    # -- rules --------------------------------------------------------------

    @precondition(lambda self: bool(self.h.pending))
    @rule(
        data=st.data(),
        fate=st.sampled_from(["answer"] * 8 + ["answer_lost", "refused"]),
    )
    def carry_a_call(self, data: st.DataObject, fate: str) -> None:
        # Mostly the oldest call first, as a real host would; sometimes any.
        pending = sorted(self.h.pending)
        call_id = data.draw(st.sampled_from([pending[0]] * 3 + pending))
        if fate == "refused":
            self._check(self.h.refuse(call_id))
        else:
            self._deliver(call_id, lose=fate == "answer_lost")

    @rule(
        dt=st.sampled_from([0, 1, 10, 50, 200, 400, 700, 1_100, 1_500, 2_200, 3_500]).map(
            lambda ms: ms * MS
        )
    )
    def time_passes(self, dt: int) -> None:
        self._check(self.h.tick(self.h.now + dt))

    @precondition(lambda self: self.h.rec.next_deadline() is not None)
    @rule()
    def wake_on_time(self) -> None:
        # A refresh or the end of a back-off, or else a call's deadline.
        self._check(self.h.tick())

    @rule(label=st.sampled_from(["a", "b"]), ttl_ms=st.integers(100, 3_000))
    def rival_grabs_a_free_lock(self, label: str, ttl_ms: int) -> None:
        self.h.engines[label].grant(self.h.now, "rival", ttl_ms)

    @rule(label=st.sampled_from(["a", "b"]), epoch=st.integers(0, 2), seq=st.integers(0, 3))
    def engine_moves_on(self, label: str, epoch: int, seq: int) -> None:
        e = self.h.engines[label]
        e.epoch, e.seq = e.epoch + epoch, e.seq + seq

    def teardown(self) -> None:
        if not hasattr(self, "h"):
            return
        h = self.h
        for e in h.engines.values():  # rivals go away; the network heals
            if e.lock_owner == "rival":
                e.lock_id = None
        for _ in range(500):
            if h.rec.outcome is not None and not h.pending:
                break
            if h.pending:
                h.now += 1 * MS
                deadline = h.rec.next_deadline()
                if deadline is not None and deadline <= h.now:
                    self._check(h.tick(h.now))
                else:
                    self._deliver(min(h.pending), False)
            else:
                self._check(h.tick())
        outcome = h.rec.outcome
        assert outcome is not None, "did not finish"
        released = {c.path.rsplit("/", 1)[1] for c in h.calls() if c.method == "DELETE"}
        assert set(self.ids) <= released, "a lock it knew it held was never released"
        acquires_a = [c for c in h.calls(LOCK) if c.target == "a"]
        assert len(acquires_a) <= self.cfg.max_attempts
        # What an engine still holds for us is a grant whose answer was lost,
        # or a lock whose release never arrived; its TTL frees it.
        for e in h.engines.values():
            holder = e.holder(h.now)
            assert holder is None or holder in self.lost_answers or holder in released
            assert holder not in self.delivered_releases
        if isinstance(outcome, Reconciled):
            loser = h.engines[outcome.loser]
            rnd = self.round
            assert loser.applied and loser.applied[-1][1] == self.served_snapshot[rnd]
            assert outcome.winner == pick_winner(*self.healths[rnd].values()).label


ReconcilerMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=50, deadline=None
)
TestReconcilerMachine = ReconcilerMachine.TestCase
