"""Reconciler rules (contract 4.3), one test per rule, against a fake pair."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest

from peersync_proto._errors import LocalProtocolError
from peersync_proto._events import Tick
from peersync_proto._reconcile_config import (
    DEFAULT_BACKOFF_BASE_NS,
    DEFAULT_CALL_TIMEOUT_NS,
    ReconcilerConfig,
)
from peersync_proto._reconcile_events import (
    AbandonCall,
    Call,
    CallAnswered,
    CallFailed,
    Reconciled,
    ReconcileFailed,
    ReconcileStep,
)
from peersync_proto._reconcile_table import RECONCILE_TRANSITIONS, ReconcileInput, ReconcileState
from peersync_proto._reconciler import Reconciler
from tests.test_reconciler_fakes import LOCK, MS, FakeEngine, Host, pair

ZERO = lambda n: bytes(n)  # noqa: E731 - jitter at its minimum
MAX = lambda n: b"\xff" * n  # noqa: E731 - jitter at its maximum
STATE = "/api/sync/state"
HEALTH = "/api/peer/health"


def host(fakes: dict[str, FakeEngine] | None = None, entropy: Any = ZERO, **cfg: Any) -> Host:
    return Host(Reconciler(ReconcilerConfig(**cfg), entropy=entropy), fakes or pair())


def steps(h: Host) -> list[tuple[str, str]]:
    return [(o.method, f"{o.target} {o.path}") for o in h.calls()]


def split_brain() -> dict[str, FakeEngine]:
    # b is the winner: higher epoch. a's seq is higher but epoch decides.
    return pair(
        a={"epoch": 5, "seq": 90, "state": '{"src": "a"}'},
        b={"epoch": 6, "seq": 10, "state": '{"src": "b"}'},
    )


# -- the happy path ----------------------------------------------------------


def test_the_contract_steps_in_order_winner_onto_loser() -> None:
    engines = split_brain()
    h = host(engines)
    h.start()
    outcome = h.run()
    assert outcome == Reconciled(winner="b", loser="a", epoch=6, seq=10)
    paths = steps(h)
    assert paths[:6] == [
        ("POST", f"a {LOCK}"),
        ("POST", f"b {LOCK}"),
        ("GET", f"a {HEALTH}"),
        ("GET", f"b {HEALTH}"),
        ("GET", f"b {STATE}"),
        ("PUT", f"a {STATE}"),
    ]
    assert [m for m, _ in paths[6:]] == ["DELETE", "DELETE"]
    assert [p.split()[0] for _, p in paths[6:]] == ["b", "a"]  # reverse order
    assert not engines["a"].held(h.now) and not engines["b"].held(h.now)


def test_the_loser_gets_the_winners_snapshot_bytes_as_they_came() -> None:
    engines = split_brain()
    sent = engines["b"].snapshot()
    h = host(engines)
    h.start()
    h.run()
    [(_, body, lock_id)] = engines["a"].applied
    assert body == sent
    put = h.calls(STATE)[-1]
    assert put.method == "PUT" and put.body == sent
    assert dict(put.headers)[b"x-reconcile-lock-id"] == lock_id.encode()
    assert dict(put.headers)[b"content-type"] == b"application/json"
    assert engines["a"].state == '{"src": "b"}'
    assert engines["a"].role == "follower"  # a leader's snapshot over a leader


def test_acquire_names_owner_and_ttl_in_its_body() -> None:
    h = host(owner="control-plane-1", ttl_ms=5_000)
    [step, call] = h.start()
    assert isinstance(step, ReconcileStep) and step.step == "acquiring_first"
    assert isinstance(call, Call)
    assert (call.target, call.method, call.path) == ("a", "POST", LOCK)
    assert json.loads(call.body) == {"owner": "control-plane-1", "ttlMs": 5_000}


@pytest.mark.parametrize(
    ("a", "b", "winner"),
    [
        ({"epoch": 7, "seq": 1}, {"epoch": 6, "seq": 9}, "a"),
        ({"epoch": 6, "seq": 1}, {"epoch": 6, "seq": 9}, "b"),
        ({"epoch": 6, "seq": 9}, {"epoch": 6, "seq": 9}, "a"),
    ],
)
def test_the_winner_is_recomputed_under_the_locks_by_the_contract_rule(
    a: dict[str, int], b: dict[str, int], winner: str
) -> None:
    h = host(pair(a=a, b=b))
    h.start()
    outcome = h.run()
    assert isinstance(outcome, Reconciled)
    assert (outcome.winner, outcome.loser) == (winner, "b" if winner == "a" else "a")
    assert h.calls(STATE)[0].target == winner


def test_equal_engines_still_get_the_apply() -> None:
    engines = pair(a={"epoch": 3, "role": "follower"}, b={"epoch": 3, "role": "leader"})
    engines["a"].state = engines["b"].state = '{"same": 1}'
    h = host(engines)
    h.start()
    assert isinstance(h.run(), Reconciled)
    assert len(engines["b"].applied) == 1  # a wins the label tie; b gets a's snapshot


def test_labels_other_than_a_and_b_lock_in_ascending_order() -> None:
    engines = {"x": FakeEngine("x", epoch=1), "y": FakeEngine("y", epoch=2)}
    h = host(engines, engines=("x", "y"))
    h.start()
    assert h.run() == Reconciled(winner="y", loser="x", epoch=2, seq=0)
    assert [c.target for c in h.calls(LOCK)] == ["x", "y"]


def test_every_step_is_noticed_for_the_logs_without_lock_ids() -> None:
    engines = split_brain()
    h = host(engines)
    h.start()
    h.run()
    notices = [o for _, o in h.log if isinstance(o, ReconcileStep)]
    assert [n.step for n in notices] == [
        "acquiring_first",
        "acquiring_second",
        "reading_first",
        "reading_second",
        "fetching",
        "applying",
        "releasing_second",
        "releasing_first",
        "succeeded",
    ]
    ids = [c.path.rsplit("/", 1)[1] for c in h.calls() if c.method == "DELETE"]
    for n in notices:
        assert not any(i in repr(n) for i in ids)


def test_a_call_repr_masks_the_lock_id() -> None:
    call = Call(
        call_id=1,
        target="a",
        method="DELETE",
        path=f"{LOCK}/{'ab' * 16}",
        headers=((b"x-reconcile-lock-id", b"ab" * 16),),
    )
    assert "ab" * 16 not in repr(call)
    assert "<lock id>" in repr(call)


# -- contention and back-off -----------------------------------------------


def test_a_held_first_lock_means_back_off_with_jitter_and_retry() -> None:
    engines = split_brain()
    engines["a"].grant(0, "rival", 1_000)
    h = host(engines, entropy=MAX)
    h.start()
    h.deliver(1)
    assert h.rec.state is ReconcileState.BACKING_OFF
    wait = h.rec.next_deadline()
    assert wait is not None
    # [d/2, d] with d = base for the first round; MAX entropy is just below d.
    assert DEFAULT_BACKOFF_BASE_NS * 0.99 < wait - h.now <= DEFAULT_BACKOFF_BASE_NS
    engines["a"].lock_id = None  # the rival is done
    assert isinstance(h.run(), Reconciled)
    assert [c.target for c in h.calls(LOCK)] == ["a", "a", "b"]


def test_back_off_doubles_per_round_from_the_minimum_of_the_jitter() -> None:
    engines = split_brain()
    engines["a"].grant(0, "rival", 300_000)
    h = host(engines, entropy=ZERO, max_attempts=4)
    h.start()
    waits = []
    while h.rec.outcome is None:
        h.deliver(min(h.pending))
        if h.rec.state is ReconcileState.BACKING_OFF:
            waits.append(h.rec.next_deadline() - h.now)  # type: ignore[operator]
            h.tick()
    assert waits == [50 * MS, 100 * MS, 200 * MS]
    assert h.rec.outcome == ReconcileFailed(reason="busy", detail="lock on a held after 4 attempts")


def test_back_off_never_exceeds_the_cap() -> None:
    engines = split_brain()
    engines["a"].grant(0, "rival", 300_000)
    h = host(engines, entropy=MAX, max_attempts=9, backoff_cap_ns=300 * MS)
    h.start()
    h.run()
    gaps = [b[0] - a[0] for a, b in zip(h.log, h.log[1:], strict=False) if isinstance(b[1], Call)]
    assert max(gaps) <= 300 * MS + 1 * MS


def test_a_held_second_lock_releases_the_first_then_retries() -> None:
    engines = split_brain()
    engines["b"].grant(0, "rival", 1_000)
    h = host(engines)
    h.start()
    h.deliver(1)  # a granted
    h.deliver(2)  # b: 409
    [release] = [c for c in h.pending.values()]
    assert (release.method, release.target) == ("DELETE", "a")
    h.deliver(release.call_id)
    assert not engines["a"].held(h.now)
    assert h.rec.state is ReconcileState.BACKING_OFF
    engines["b"].lock_id = None
    assert isinstance(h.run(), Reconciled)


def test_budget_spent_on_the_second_lock_fails_after_releasing_the_first() -> None:
    engines = split_brain()
    engines["b"].grant(0, "rival", 300_000)
    h = host(engines, max_attempts=2)
    h.start()
    outcome = h.run()
    assert outcome == ReconcileFailed(reason="busy", detail="lock on b held after 2 attempts")
    assert [c.method for c in h.calls() if c.target == "a"] == ["POST", "DELETE"] * 2
    assert not engines["a"].held(h.now)
    assert engines["b"].lock_owner == "rival"


# -- errors --------------------------------------------------------------------


def test_a_failed_first_acquire_fails_with_nothing_held() -> None:
    h = host()
    h.start()
    h.refuse(1)
    assert h.rec.outcome == ReconcileFailed(
        reason="call_failed", detail="acquire on a failed: refused"
    )
    assert h.rec.next_deadline() is None


def test_a_failed_second_acquire_releases_the_first_and_fails() -> None:
    engines = split_brain()
    h = host(engines)
    h.start()
    h.deliver(1)
    h.refuse(2)
    outcome = h.run()
    assert outcome == ReconcileFailed(reason="call_failed", detail="acquire on b failed: refused")
    assert not engines["a"].held(h.now)


@pytest.mark.parametrize("body", [b"{}", b'{"lockId": "ABC", "fencingToken": 1}', b"[]", b"\xff"])
def test_a_grant_that_is_not_one_fails_the_run(body: bytes) -> None:
    h = host()
    h.start()
    h.pending.pop(1)
    h.take(h.rec.handle(CallAnswered(now=1, call_id=1, status=200, body=body)))
    assert isinstance(h.rec.outcome, ReconcileFailed)
    assert h.rec.outcome.reason == "bad_answer"


def test_a_grant_with_a_bad_fencing_token_fails_the_run() -> None:
    h = host()
    h.start()
    body = json.dumps({"lockId": "a" * 32, "fencingToken": -1}).encode()
    h.take(h.rec.handle(CallAnswered(now=1, call_id=1, status=200, body=body)))
    assert h.rec.outcome == ReconcileFailed(reason="bad_answer", detail="acquire on a answered 200")


def test_an_unexpected_acquire_status_fails_the_run() -> None:
    h = host()
    h.start()
    h.take(h.rec.handle(CallAnswered(now=1, call_id=1, status=401, body=b"{}")))
    assert h.rec.outcome == ReconcileFailed(reason="bad_answer", detail="acquire on a answered 401")


def _to_reading(engines: dict[str, FakeEngine]) -> Host:
    h = host(engines)
    h.start()
    h.deliver(1)
    h.deliver(2)
    assert h.rec.state is ReconcileState.READING_FIRST
    return h


def test_an_engine_reporting_another_label_fails_the_run_and_releases_both() -> None:
    engines = split_brain()
    engines["b"].label = "a"  # misconfigured: b's URL answers as "a"
    h = _to_reading(engines)
    outcome = h.run()
    assert outcome == ReconcileFailed(reason="label_mismatch", detail="engine b reports label 'a'")
    assert [c.method for c in h.calls()[-2:]] == ["DELETE", "DELETE"]
    assert h.calls(STATE) == []


def test_an_unparsable_health_fails_the_run() -> None:
    h = _to_reading(split_brain())
    call = h.pending.pop(3)
    h.take(h.rec.handle(CallAnswered(now=h.now, call_id=call.call_id, status=200, body=b"{")))
    assert h.run().reason == "bad_answer"  # type: ignore[union-attr]


@pytest.mark.parametrize("status", [500, 401])
def test_a_failed_snapshot_fetch_fails_without_any_put(status: int) -> None:
    h = _to_reading(split_brain())
    h.deliver(3)
    h.deliver(4)
    fetch = h.pending.pop(5)
    assert fetch.path == STATE and fetch.method == "GET"
    h.take(h.rec.handle(CallAnswered(now=h.now, call_id=5, status=status, body=b"{}")))
    outcome = h.run()
    assert outcome == ReconcileFailed(reason="bad_answer", detail=f"fetch on b answered {status}")
    assert [c.method for c in h.calls(STATE)] == ["GET"]


def test_a_refused_apply_is_reported_and_both_locks_released() -> None:
    engines = pair(a={"epoch": 9}, b={"epoch": 9})
    h = _to_reading(engines)
    for _ in range(3):
        h.deliver(min(h.pending))
    engines["b"].epoch = 10  # b moved on meanwhile: the snapshot is stale there
    outcome = h.run()
    assert outcome == ReconcileFailed(reason="apply_refused", detail="apply on b answered 409")
    assert not engines["a"].held(h.now) and not engines["b"].held(h.now)


def test_a_failed_apply_call_is_a_call_failure() -> None:
    h = _to_reading(split_brain())
    for _ in range(3):
        h.deliver(min(h.pending))
    h.refuse(6)
    assert h.run().reason == "call_failed"  # type: ignore[union-attr]


def test_an_apply_result_that_does_not_parse_reports_the_winners_standing() -> None:
    h = _to_reading(split_brain())
    for _ in range(3):
        h.deliver(min(h.pending))
    h.pending.pop(6)
    h.take(h.rec.handle(CallAnswered(now=h.now, call_id=6, status=200, body=b"ok")))
    assert h.run() == Reconciled(winner="b", loser="a", epoch=6, seq=10)


def test_an_apply_result_with_wrong_types_reports_the_winners_standing() -> None:
    h = _to_reading(split_brain())
    for _ in range(3):
        h.deliver(min(h.pending))
    h.pending.pop(6)
    body = b'{"epoch": "7", "lastCommandSeq": 1}'
    h.take(h.rec.handle(CallAnswered(now=h.now, call_id=6, status=200, body=body)))
    assert h.run() == Reconciled(winner="b", loser="a", epoch=6, seq=10)


def test_a_release_without_an_answer_is_sent_once_more() -> None:
    engines = split_brain()
    h = _to_reading(engines)
    for _ in range(4):
        h.deliver(min(h.pending))
    first_try = h.pending[min(h.pending)]
    assert (first_try.method, first_try.target) == ("DELETE", "b")
    out = h.refuse(first_try.call_id)
    [again] = [o for o in out if isinstance(o, Call)]
    assert (again.method, again.path) == ("DELETE", first_try.path)
    h.deliver(again.call_id)
    assert not engines["b"].held(h.now)
    assert isinstance(h.run(), Reconciled)


def test_a_release_failing_twice_is_left_to_the_ttl_and_the_run_finishes() -> None:
    engines = split_brain()
    h = _to_reading(engines)
    for _ in range(4):
        h.deliver(min(h.pending))
    h.refuse(min(h.pending))
    h.refuse(min(h.pending))
    assert isinstance(h.run(), Reconciled)
    assert [c.target for c in h.calls() if c.method == "DELETE"] == ["b", "b", "a"]
    assert engines["b"].held(h.now) and not engines["a"].held(h.now)


def test_a_release_answered_404_is_not_sent_again() -> None:
    engines = split_brain()
    h = _to_reading(engines)
    for _ in range(4):
        h.deliver(min(h.pending))
    engines["b"].lock_id = None  # already gone: 404
    assert isinstance(h.run(), Reconciled)
    assert [c.target for c in h.calls() if c.method == "DELETE"] == ["b", "a"]


# -- locks: refresh, loss ------------------------------------------------------


def test_held_locks_are_refreshed_every_third_of_the_ttl() -> None:
    engines = split_brain()
    h = host(engines, ttl_ms=3_000)
    h.start()
    h.deliver(1)
    h.deliver(2)
    assert h.rec.next_deadline() == 1_000 * MS  # the first refresh, before any call timeout
    h.now = 1_000 * MS
    out = h.tick(h.now)
    refreshes = [o for o in out if isinstance(o, Call) and o.method == "PUT"]
    assert [r.target for r in refreshes] == ["a", "b"]
    assert all(r.path.startswith(LOCK + "/") and r.body == b"" for r in refreshes)
    for r in refreshes:
        h.deliver(r.call_id)
    assert engines["a"].lock_expires == 4_000 * MS
    view = h.rec.view()
    assert [lk.refresh_at for lk in view.locks] == [2_000 * MS, 2_000 * MS]


def test_a_lost_lock_aborts_before_the_put_and_releases_both_in_reverse() -> None:
    engines = split_brain()
    h = host(engines, ttl_ms=3_000)
    h.start()
    h.deliver(1)
    h.deliver(2)
    h.deliver(3)  # health a
    engines["a"].lock_id = None  # a's lock vanished (say, expired on a slow clock)
    h.now = 1_000 * MS
    h.tick(h.now)
    for refresh in [c for c in h.pending.values() if c.method == "PUT"]:
        h.deliver(refresh.call_id)
    assert any(isinstance(o, ReconcileStep) and o.step == "lock_lost" for _, o in h.log)
    outcome = h.run()
    assert outcome == ReconcileFailed(reason="lock_lost", detail="lock on a lost before the apply")
    assert h.calls(STATE) == []
    releases = [c.target for c in h.calls() if c.method == "DELETE"]
    assert releases == ["b", "a"]


def test_a_lock_run_out_by_our_own_clock_aborts_before_the_put() -> None:
    engines = split_brain()
    h = host(engines, ttl_ms=1_000, call_timeout_ns=5_000 * MS)
    h.start()
    for _ in range(4):
        h.deliver(min(h.pending))
    fetch = h.pending.pop(min(h.pending))
    assert fetch.path == STATE
    # The snapshot takes longer than the TTL and the host never ticked.
    late = 1_500 * MS
    out = h.take(
        h.rec.handle(
            CallAnswered(now=late, call_id=fetch.call_id, status=200, body=engines["b"].snapshot())
        )
    )
    h.now = late
    assert not [o for o in out if isinstance(o, Call) and o.path == STATE]
    assert h.run().reason == "lock_lost"  # type: ignore[union-attr]


def test_a_lost_first_lock_while_acquiring_the_second_aborts() -> None:
    engines = split_brain()
    h = host(engines, ttl_ms=3_000)
    h.start()
    h.deliver(1)
    acquire_b = h.pending.pop(2)
    h.now = 1_000 * MS
    h.tick(h.now)
    engines["a"].lock_id = None
    [refresh] = h.pending.values()
    h.deliver(refresh.call_id)  # 404
    status, body = engines["b"].serve(h.now, acquire_b)
    h.take(h.rec.handle(CallAnswered(now=h.now, call_id=2, status=status, body=body)))
    outcome = h.run()
    assert outcome == ReconcileFailed(reason="lock_lost", detail="lock on a lost")
    assert [c.target for c in h.calls() if c.method == "DELETE"] == ["b", "a"]
    assert not engines["b"].held(h.now)


def test_a_lock_lost_while_the_put_is_in_flight_leaves_the_put_to_decide() -> None:
    engines = split_brain()
    h = host(engines, ttl_ms=3_000)
    h.start()
    for _ in range(5):
        h.deliver(min(h.pending))
    put = h.pending.pop(min(h.pending))
    assert put.method == "PUT" and put.path == STATE
    status, body = engines["a"].serve(h.now, put)  # applied under a's lock
    engines["b"].lock_id = None
    h.now = 1_000 * MS
    h.tick(h.now)
    for refresh in [c for c in h.pending.values() if c.method == "PUT"]:
        h.deliver(refresh.call_id)
    h.take(h.rec.handle(CallAnswered(now=h.now, call_id=put.call_id, status=status, body=body)))
    assert isinstance(h.run(), Reconciled)


def test_a_failed_refresh_is_retried_sooner() -> None:
    h = host(ttl_ms=3_000)
    h.start()
    h.deliver(1)
    h.now = 1_000 * MS
    h.tick(h.now)
    [refresh] = [c for c in h.pending.values() if c.method == "PUT"]
    h.refuse(refresh.call_id)
    lock = h.rec.view().locks[0]
    assert lock.refresh_at == 1_500 * MS and not lock.lost


def test_a_refresh_answered_after_its_lock_was_released_is_ignored() -> None:
    engines = split_brain()
    engines["b"].grant(0, "rival", 300_000)
    h = host(engines, ttl_ms=3_000)
    h.start()
    h.deliver(1)
    h.now = 1_000 * MS
    h.tick(h.now)
    [refresh] = [c for c in h.pending.values() if c.method == "PUT"]
    h.deliver(2)  # b busy: release a
    h.deliver(min(c for c in h.pending if c != refresh.call_id))
    assert h.rec.state is ReconcileState.BACKING_OFF
    h.tick()  # a new round starts: locks forgotten
    before = h.rec.view().locks
    h.deliver(refresh.call_id)
    assert h.rec.view().locks == before


# -- timeouts and host misuse ---------------------------------------------------


def test_a_call_past_its_deadline_is_abandoned_and_counts_as_failed() -> None:
    h = host()
    h.start()
    assert h.rec.next_deadline() == DEFAULT_CALL_TIMEOUT_NS
    out = h.tick()
    assert out[0] == AbandonCall(call_id=1)
    assert h.rec.outcome == ReconcileFailed(
        reason="call_failed", detail="acquire on a failed: timed out"
    )
    late = CallAnswered(now=h.now + 1, call_id=1, status=200, body=b"{}")
    assert h.rec.handle(late) == ()


def test_snapshot_calls_get_the_transfer_timeout() -> None:
    h = _to_reading(split_brain())
    h.deliver(3)
    h.deliver(4)
    [fetch] = [c for c in h.pending.values() if c.path == STATE]
    pending = [p for p in h.rec.view().calls if p.call_id == fetch.call_id]
    assert pending[0].deadline == h.now + h.rec.config.transfer_timeout_ns


def test_an_answer_for_a_call_never_made_is_host_misuse_and_changes_nothing() -> None:
    h = host()
    h.start()
    before = h.rec.view()
    with pytest.raises(LocalProtocolError, match="not awaiting"):
        h.rec.handle(CallFailed(now=1, call_id=7))
    h.deliver(1)
    with pytest.raises(LocalProtocolError, match="not awaiting"):
        h.rec.handle(CallFailed(now=h.now, call_id=1))  # answered already
    assert before.state is ReconcileState.ACQUIRING_FIRST


def test_time_going_backwards_is_refused() -> None:
    h = host()
    h.now = 10
    h.start()
    with pytest.raises(LocalProtocolError, match="backwards"):
        h.rec.handle(Tick(now=9))


def test_starting_twice_is_refused() -> None:
    h = host()
    h.start()
    with pytest.raises(LocalProtocolError, match="no move from acquiring_first on start"):
        h.rec.start(0)


def test_entropy_of_the_wrong_size_is_host_misuse_and_changes_nothing() -> None:
    engines = split_brain()
    engines["a"].grant(0, "rival", 1_000)
    h = host(engines, entropy=lambda n: b"\x00")
    h.start()
    before = h.rec.view()
    with pytest.raises(LocalProtocolError, match="entropy"):
        h.deliver(1)
    assert h.rec.view() == before


def test_an_idle_reconciler_needs_no_wake_up() -> None:
    rec = Reconciler(ReconcilerConfig(), entropy=ZERO)
    assert rec.next_deadline() is None
    assert rec.state is ReconcileState.IDLE and rec.outcome is None


@pytest.mark.parametrize(
    "kw",
    [
        {"engines": ("b", "a")},
        {"engines": ("a", "a")},
        {"engines": ("a",)},
        {"engines": ("", "b")},
        {"owner": ""},
        {"owner": "x" * 129},
        {"ttl_ms": 999},
        {"ttl_ms": 300_001},
        {"max_attempts": 0},
        {"call_timeout_ns": -1},
    ],
)
def test_config_refuses_bad_values(kw: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        ReconcilerConfig(**kw)


def test_the_table_has_no_way_out_of_a_finished_run() -> None:
    finals = {ReconcileState.SUCCEEDED, ReconcileState.FAILED}
    assert not [k for k in RECONCILE_TRANSITIONS if k[0] in finals]
    # Every state but the finals has a way forward, and only IDLE takes START.
    assert {s for s, _ in RECONCILE_TRANSITIONS} == set(ReconcileState) - finals
    assert [s for s, i in RECONCILE_TRANSITIONS if i is ReconcileInput.START] == [
        ReconcileState.IDLE
    ]
    # No state both holds a lock and can go straight to a final state.
    holding = {
        ReconcileState.ACQUIRING_SECOND,
        ReconcileState.READING_FIRST,
        ReconcileState.READING_SECOND,
        ReconcileState.FETCHING,
        ReconcileState.APPLYING,
        ReconcileState.RELEASING_SECOND,
    }
    for (state, _), target in RECONCILE_TRANSITIONS.items():
        if state in holding:
            assert target not in finals | {ReconcileState.BACKING_OFF}


def test_reconciler_events_refuse_bad_values_from_the_host() -> None:
    with pytest.raises(LocalProtocolError, match="now"):
        CallAnswered(now=-1, call_id=1, status=200, body=b"")
    with pytest.raises(LocalProtocolError, match="call_id"):
        CallFailed(now=0, call_id=1.5)  # type: ignore[arg-type]


def test_every_move_missing_from_the_table_is_an_error_not_a_no_op() -> None:
    rec = Reconciler(ReconcilerConfig(), entropy=ZERO)
    view = rec.view()
    for state in ReconcileState:
        for what in ReconcileInput:
            if (state, what) in RECONCILE_TRANSITIONS:
                continue
            with pytest.raises(LocalProtocolError, match="no move"):
                rec._move(attrs.evolve(view, state=state), what, [])
