"""The engine machine against a plain model: roles, epochs, applies, floors."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from peersync_proto import (
    BecomeLeader,
    Cause,
    Floors,
    FloorsRaised,
    LocalProtocolError,
    Role,
    StepDown,
    Tick,
)
from tests.harness import MS, SECRET, Harness, make_snapshot

FORCE = "/api/peer/force-leader"
LOCK = "/api/sync/reconcile-lock"


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(role=Role.FOLLOWER)
        self.role = Role.FOLLOWER
        self.epoch = 0
        self.persisted = Floors(epoch=0, fencing_token=0)
        self.lock: tuple[str, int] | None = None  # id, expires_ns
        self.state: dict[str, int] = {}

    def persist(self, effects: list[object]) -> None:
        for e in effects:
            if isinstance(e, FloorsRaised):
                assert e.epoch >= self.persisted.epoch
                assert e.fencing_token >= self.persisted.fencing_token
                self.persisted = Floors(epoch=e.epoch, fencing_token=e.fencing_token)

    @rule(ms=st.sampled_from([0, 1, 500, 999, 1000, 1001, 5000]))
    def advance(self, ms: int) -> None:
        self.h.advance(ms)

    @rule(peer_epoch=st.integers(0, 50))
    def peer_seen(self, peer_epoch: int) -> None:
        self.h.engine._last_peer_epoch = max(self.h.engine._last_peer_epoch, peer_epoch)

    @rule(good=st.booleans())
    def force_leader(self, good: bool) -> None:
        ans = self.h.call(
            "POST", FORCE, headers={"X-Control-Plane-Secret": SECRET if good else "no"}
        )
        self.persist(ans.effects)
        if not good:
            assert ans.status == 401
        elif self.role is Role.LEADER:
            assert (ans.status, ans.code) == (409, "already_leader")
        else:
            want = max(self.epoch, self.h.engine.view().last_peer_epoch) + 1
            assert ans.status == 200 and ans.body["epoch"] == want
            assert ans.effects[-1] == BecomeLeader(epoch=want, cause=Cause.FORCE)
            self.role, self.epoch = Role.LEADER, want
        assert ans.body.get("epoch", self.epoch) <= self.persisted.epoch or ans.status != 200

    @rule(ttl=st.sampled_from([1000, 2000]))
    def acquire(self, ttl: int) -> None:
        ans = self.h.acquire(ttlMs=ttl)
        self.persist(ans.effects)
        if ans.status == 200:
            assert ans.body["fencingToken"] <= self.persisted.fencing_token
            self.lock = (ans.body["lockId"], self.h.now + ttl * MS)

    @rule(
        epoch=st.integers(0, 60), leader=st.booleans(), use_lock=st.booleans(), n=st.integers(0, 9)
    )
    def apply(self, epoch: int, leader: bool, use_lock: bool, n: int) -> None:
        lock_id = self.lock[0] if (use_lock and self.lock) else "0" * 32
        snap_role = Role.LEADER if leader else Role.FOLLOWER
        ans = self.h.apply(make_snapshot({"n": n}, role=snap_role, epoch=epoch), lock_id)
        self.persist(ans.effects)
        live = self.lock is not None and use_lock and self.h.now < self.lock[1]
        if not live:
            assert ans.code == "lock_not_held"
        elif epoch < self.epoch:
            assert ans.code == "stale_snapshot"
        else:
            assert ans.status == 200
            self.state = {"n": n}
            self.epoch = max(self.epoch, epoch)
            stepped = any(isinstance(e, StepDown) for e in ans.effects)
            assert stepped == (leader and self.role is Role.LEADER)
            if stepped:
                self.role = Role.FOLLOWER
        assert self.h.state == self.state

    @rule(force=st.booleans())
    def a_floor_write_that_fails_undoes_its_event(self, force: bool) -> None:
        """The host could not persist ``FloorsRaised``: it restores the
        checkpoint, and the grant or promotion never happened."""
        before = self.h.engine.view()
        checkpoint = self.h.engine.checkpoint()
        if force:
            ans = self.h.call("POST", FORCE, headers={"X-Control-Plane-Secret": SECRET})
        else:
            ans = self.h.acquire(ttlMs=1000)
        if any(isinstance(e, FloorsRaised) for e in ans.effects):
            self.h.engine.restore(checkpoint)
            assert self.h.engine.view() == before
        else:
            assert ans.status == 409  # nothing to persist: a refusal, which stands

    @rule()
    def backwards_time_changes_nothing(self) -> None:
        before = self.h.engine.view()
        try:
            self.h.engine.handle(Tick(now=self.h.now - 1))
        except LocalProtocolError:
            pass
        else:  # pragma: no cover - a failure path
            raise AssertionError("decreasing now was accepted")
        assert self.h.engine.view() == before

    @invariant()
    def matches_model(self) -> None:
        view = self.h.engine.view()
        assert (view.role, view.epoch) == (self.role, self.epoch)
        assert view.epoch <= self.persisted.epoch
        assert view.last_fencing_token <= self.persisted.fencing_token


TestEngineMachine = EngineMachine.TestCase
TestEngineMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
