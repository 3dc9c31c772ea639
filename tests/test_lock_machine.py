"""The lock against a plain reference model (Hypothesis RuleBasedStateMachine).

Two engines get the same operations; one is ticked at every time step, the
other never: their answers must be identical (results do not depend on how
finely time was ticked), and both must match the model.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from peersync_proto import LockExpired, Tick
from tests.harness import MS, Harness, make_snapshot

LOCK = "/api/sync/reconcile-lock"
TTLS = st.sampled_from([1000, 1001, 2500, 30000, 300000])


class Model:
    """The contract's lock in a dozen lines."""

    def __init__(self) -> None:
        self.holder: tuple[str, int, int, int] | None = None  # id, token, ttl_ms, expires_ns
        self.last_token = 0

    def live(self, now: int) -> tuple[str, int, int, int] | None:
        if self.holder is not None and now < self.holder[3]:
            return self.holder
        return None


class LockMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ticked = Harness()
        self.silent = Harness()
        self.model = Model()
        self.ids: list[str] = []  # every id ever granted
        self.released: list[str] = []
        self.expired_reports = 0

    @property
    def now(self) -> int:
        return self.ticked.now

    def both(self, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
        a = self.ticked.call(method, path, **kw)
        b = self.silent.call(method, path, **kw)
        assert (a.status, a.body) == (b.status, b.body)
        self.expired_reports += sum(isinstance(e, LockExpired) for e in a.effects)
        return a.status, a.body

    @rule(
        dt=st.one_of(
            st.sampled_from(
                [0, 1, 999 * MS, 1000 * MS - 1, 1000 * MS, 1000 * MS + 1, 30000 * MS, 10**12 * MS]
            ),
            st.integers(0, 400_000 * MS),
        )
    )
    def advance(self, dt: int) -> None:
        self.ticked.now += dt
        outputs = self.ticked.engine.handle(Tick(now=self.ticked.now))
        self.expired_reports += sum(isinstance(e, LockExpired) for e in outputs)
        self.silent.now = self.ticked.now  # the silent engine sees no tick at all

    @rule(ttl=TTLS, owner=st.sampled_from(["a", "b", "anonymous"]))
    def acquire(self, ttl: int, owner: str) -> None:
        status, body = self.both("POST", LOCK, body={"owner": owner, "ttlMs": ttl})
        live = self.model.live(self.now)
        if live is None:
            assert status == 200
            assert body["fencingToken"] == self.model.last_token + 1
            assert body["lockId"] not in self.ids
            self.model.last_token += 1
            self.model.holder = (body["lockId"], body["fencingToken"], ttl, self.now + ttl * MS)
            self.ids.append(body["lockId"])
        else:
            assert (status, body["code"], body["fencingToken"]) == (409, "lock_held", live[1])
            assert body["remainingMs"] * MS >= live[3] - self.now > (body["remainingMs"] - 1) * MS

    def pick(self, data: st.DataObject) -> str:
        choices = ["f" * 32, "not-an-id", *self.ids, *self.released]
        return data.draw(st.sampled_from(choices))

    @rule(data=st.data(), ttl=st.one_of(st.none(), TTLS))
    def refresh(self, data: st.DataObject, ttl: int | None) -> None:
        lock_id = self.pick(data)
        status, body = self.both(
            "PUT", f"{LOCK}/{lock_id}", body=None if ttl is None else {"ttlMs": ttl}
        )
        live = self.model.live(self.now)
        if live is not None and live[0] == lock_id:
            new_ttl = live[2] if ttl is None else ttl
            assert status == 200 and body["lockId"] == lock_id and body["expiresMs"] == new_ttl
            self.model.holder = (lock_id, live[1], new_ttl, self.now + new_ttl * MS)
        else:
            assert (status, body["code"]) == (404, "lock_not_found")

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        lock_id = self.pick(data)
        status, body = self.both("DELETE", f"{LOCK}/{lock_id}")
        live = self.model.live(self.now)
        if live is not None and live[0] == lock_id:
            assert (status, body) == (200, {"released": True})
            self.model.holder = None
            self.released.append(lock_id)
        else:
            assert (status, body["code"]) == (404, "lock_not_found")

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def apply(self, data: st.DataObject) -> None:
        lock_id = self.pick(data)
        status, _ = self.both(
            "PUT",
            "/api/sync/state",
            raw=make_snapshot(epoch=0),
            headers={"X-Reconcile-Lock-Id": lock_id},
        )
        live = self.model.live(self.now)
        assert (status == 200) == (live is not None and live[0] == lock_id)

    @invariant()
    def status_matches_model_and_hides_the_id(self) -> None:
        _, body = self.both("GET", LOCK)
        live = self.model.live(self.now)
        if live is None:
            assert body == {"held": False, "lastFencingToken": self.model.last_token}
        else:
            assert body["held"] and body["fencingToken"] == live[1] and body["ttlMs"] == live[2]
            assert live[0] not in str(body)
        assert self.ticked.engine.view().lock == self.silent.engine.view().lock

    @invariant()
    def each_grant_expires_at_most_once(self) -> None:
        assert self.expired_reports <= len(self.ids)


TestLockMachine = LockMachine.TestCase
TestLockMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
