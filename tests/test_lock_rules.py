"""Contract 3.5 and safety rules 1-4: the reconcile lock, rule by rule."""

from __future__ import annotations

import re

from peersync_proto import Floors, FloorsRaised, LockExpired, LockGranted, LockReleased
from tests.harness import MS, Harness

LOCK = "/api/sync/reconcile-lock"


def test_grant_has_a_128_bit_lowercase_hex_id_and_the_contract_fields() -> None:
    h = Harness()
    ans = h.acquire(owner="b", ttlMs=30000)
    assert ans.status == 200
    assert re.fullmatch(r"[0-9a-f]{32}", ans.body["lockId"])
    assert ans.body == {
        "lockId": ans.body["lockId"],
        "expiresMs": 30000,
        "fencingToken": 1,
        "owner": "b",
    }
    assert [type(e) for e in ans.effects] == [FloorsRaised, LockGranted]


def test_lock_is_held_until_exactly_t_plus_ttl_without_ticks() -> None:
    h = Harness()
    h.acquire(owner="x", ttlMs=1000)
    h.now += 1000 * MS - 1  # no tick delivered in between
    assert h.acquire(owner="y").code == "lock_held"
    h.now += 1
    ans = h.acquire(owner="y")
    assert ans.status == 200 and ans.body["fencingToken"] == 2
    assert [type(e) for e in ans.effects] == [LockExpired, FloorsRaised, LockGranted]


def test_lock_expiry_is_reported_once_by_tick_at_the_deadline() -> None:
    h = Harness(stall_limit_ns=3600_000 * MS)
    h.acquire(ttlMs=1000)
    deadline = h.now + 1000 * MS
    assert h.engine.next_deadline() == deadline
    h.now = deadline - 1
    assert [e for e in h.advance(0) if isinstance(e, LockExpired)] == []
    assert [type(e) for e in h.advance(1e-6)] == [LockExpired]
    assert h.advance(10) == []
    assert h.engine.next_deadline() == h.engine.view().started_at + 3600_000 * MS + 1


def test_held_lock_is_409_with_owner_remaining_and_token_even_for_the_same_owner() -> None:
    h = Harness()
    h.acquire(owner="b", ttlMs=10000)
    h.advance(2500.5)
    ans = h.acquire(owner="b")
    assert (ans.status, ans.code) == (409, "lock_held")
    assert (ans.body["owner"], ans.body["remainingMs"], ans.body["fencingToken"]) == ("b", 7500, 1)
    assert "lockId" not in ans.body


def test_ttl_and_owner_bounds_are_400_invalid_request_naming_the_field() -> None:
    h = Harness()
    for body, field in [
        ({"ttlMs": 999}, "ttlMs"),
        ({"ttlMs": 300001}, "ttlMs"),
        ({"ttlMs": 1.5e3}, "ttlMs"),
        ({"ttlMs": True}, "ttlMs"),
        ({"ttlMs": "30000"}, "ttlMs"),
        ({"owner": ""}, "owner"),
        ({"owner": "x" * 129}, "owner"),
        ({"owner": 7}, "owner"),
        ({"owner": None}, "owner"),
    ]:
        ans = h.acquire(**body)
        assert (ans.status, ans.code) == (400, "invalid_request"), body
        assert field in ans.body["error"] and ans.body["field"] == field
    assert h.engine.view().last_fencing_token == 0
    assert h.acquire(owner="x" * 128, ttlMs=1000).status == 200
    assert h.call("DELETE", f"{LOCK}/{h.call('GET', LOCK).body and ''}").status == 404


def test_ttl_bounds_are_inclusive() -> None:
    for ttl in (1000, 300000):
        assert Harness().acquire(ttlMs=ttl).body["expiresMs"] == ttl


def test_refresh_resets_expiry_to_now_plus_ttl_and_never_accumulates() -> None:
    h = Harness()
    lock = h.acquire(ttlMs=10000).body["lockId"]
    h.advance(4000)
    for _ in range(3):
        ans = h.call("PUT", f"{LOCK}/{lock}")
        assert ans.status == 200 and ans.body["lockId"] == lock and ans.body["fencingToken"] == 1
    assert h.call("GET", LOCK).body["remainingMs"] == 10000
    h.advance(10000)
    assert h.call("GET", LOCK).body == {"held": False, "lastFencingToken": 1}


def test_refresh_with_ttl_changes_the_lock_ttl() -> None:
    h = Harness()
    lock = h.acquire(ttlMs=10000).body["lockId"]
    assert h.call("PUT", f"{LOCK}/{lock}", body={"ttlMs": 2000}).body["expiresMs"] == 2000
    h.advance(1000)
    assert h.call("PUT", f"{LOCK}/{lock}").body["expiresMs"] == 2000
    assert h.call("GET", LOCK).body["ttlMs"] == 2000
    bad = h.call("PUT", f"{LOCK}/{lock}", body={"ttlMs": 5})
    assert (bad.status, bad.code) == (400, "invalid_request")
    assert h.call("GET", LOCK).body["remainingMs"] == 2000


def test_refresh_never_revives_an_expired_lock() -> None:
    h = Harness()
    lock = h.acquire(ttlMs=1000).body["lockId"]
    h.now += 1000 * MS  # exactly at expiry, no tick
    ans = h.call("PUT", f"{LOCK}/{lock}")
    assert (ans.status, ans.code) == (404, "lock_not_found")
    assert h.call("GET", LOCK).body["held"] is False


def test_stale_id_never_touches_a_newer_holder() -> None:
    h = Harness()
    old = h.acquire(ttlMs=1000).body["lockId"]
    h.advance(1000)
    new = h.acquire(ttlMs=5000).body["lockId"]
    assert old != new
    assert h.call("PUT", f"{LOCK}/{old}").code == "lock_not_found"
    assert h.call("DELETE", f"{LOCK}/{old}").code == "lock_not_found"
    status = h.call("GET", LOCK).body
    assert status["held"] and status["fencingToken"] == 2 and status["remainingMs"] == 5000


def test_forged_and_malformed_ids_are_404() -> None:
    h = Harness()
    lock = h.acquire().body["lockId"]
    for forged in ["0" * 32, lock.upper(), lock[:-1], lock + "0", "%00", "..", "é" * 32]:
        assert h.call("PUT", f"{LOCK}/{forged}").code == "lock_not_found"
        assert h.call("DELETE", f"{LOCK}/{forged}").code == "lock_not_found"
    assert h.call("GET", LOCK).body["held"] is True


def test_release_frees_the_lock_once_and_a_retry_is_404() -> None:
    h = Harness()
    lock = h.acquire(owner="r").body["lockId"]
    ans = h.call("DELETE", f"{LOCK}/{lock}")
    assert (ans.status, ans.body) == (200, {"released": True})
    assert ans.effects == [LockReleased(owner="r", fencing_token=1)]
    assert h.call("DELETE", f"{LOCK}/{lock}").code == "lock_not_found"
    assert h.acquire().status == 200


def test_status_never_shows_a_lock_id() -> None:
    h = Harness()
    assert h.call("GET", LOCK).body == {"held": False, "lastFencingToken": 0}
    lock = h.acquire(owner="b", ttlMs=30000).body["lockId"]
    h.advance(18000)
    body = h.call("GET", LOCK).body
    assert body == {
        "held": True,
        "owner": "b",
        "remainingMs": 12000,
        "ttlMs": 30000,
        "fencingToken": 1,
    }
    assert lock not in str(body)


def test_fencing_tokens_strictly_increase_and_restart_above_the_floor() -> None:
    h = Harness(floors=Floors(epoch=3, fencing_token=41))
    tokens = []
    for _ in range(5):
        ans = h.acquire(ttlMs=1000)
        tokens.append(ans.body["fencingToken"])
        h.call("DELETE", f"{LOCK}/{ans.body['lockId']}")
    assert tokens == [42, 43, 44, 45, 46]
    assert h.call("GET", LOCK).body["lastFencingToken"] == 46


def test_lock_ids_never_repeat_even_with_a_stuck_entropy_source() -> None:
    h = Harness()
    h.engine._entropy = lambda n: b"\x07" * n  # a broken host source
    first = h.acquire(ttlMs=1000)
    h.call("DELETE", f"{LOCK}/{first.body['lockId']}")
    second = h.acquire(ttlMs=1000)
    assert (second.status, second.code) == (500, "internal")
    assert h.call("GET", LOCK).body == {"held": False, "lastFencingToken": 1}


def test_entropy_that_fails_or_returns_short_bytes_is_500_and_no_grant() -> None:
    for source in (lambda n: b"\x01" * (n - 1), lambda n: (_ for _ in ()).throw(OSError("no"))):
        h = Harness()
        h.engine._entropy = source
        assert h.acquire().code == "internal"
        assert h.engine.view().lock is None and h.engine.view().last_fencing_token == 0


def test_an_apply_needs_the_live_lock_at_that_instant() -> None:
    from tests.harness import make_snapshot

    h = Harness()
    lock = h.acquire(ttlMs=1000).body["lockId"]
    h.now += 1000 * MS
    assert h.apply(make_snapshot(), lock).code == "lock_not_held"
    assert h.state == {}
