# Invariant: for any sequence of requests (acquire, refresh, release, status,
# health, force-leader, get state, apply), host status reports, ticks, time
# steps, and apply completions that arrive later, succeed or fail (and bogus
# completions nobody asked for), every answer of the core equals the answer of
# a plain reference model, the core's view matches the model after each step,
# fencing tokens and epochs never go back, each grant expires at most once,
# and a lock id never appears in any output but its own grant or refresh.
"""Random event sequences against the core and a reference model."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.core_rig import (
    ACQUIRE,
    BEARER,
    CP,
    FORCE,
    GET_STATE,
    HEALTH,
    JSON_CT,
    LOCK_PATH,
    MS,
    PUT_STATE,
    START_NS,
    STATUS,
    body_of,
    check_response_shape,
    make_engine,
    snapshot_obj,
)
from peersync_proto import (
    ApplySnapshot,
    CaptureSnapshot,
    FloorsRaised,
    HostStatus,
    LocalProtocolError,
    LockExpired,
    Output,
    Request,
    Response,
    Role,
    SnapshotApplied,
    SnapshotApplyFailed,
    SnapshotCaptured,
    Tick,
    canonical_json,
)

STALL_NS = 500 * MS
GOOD_TTLS = (1000, 1500, 5000)
BAD_TTLS = (999, 300_001)

#: Which lock id a call names: 0 the latest grant, n the n-th before it, -1 never granted.
PICKS = st.sampled_from([0, 0, 0, 1, 2, -1])
_PARAMS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "advance": st.tuples(st.sampled_from([0, 1, 10, 250, 499, 501, 999, 1000, 1001, 2500])),
    "acquire": st.tuples(
        st.sampled_from(GOOD_TTLS * 3 + BAD_TTLS), st.sampled_from(["b", "c", "recon-\u00e9"])
    ),
    "apply": st.tuples(PICKS, st.integers(-1, 2), st.booleans()),
    "complete": st.tuples(st.booleans()),
    "grant_apply": st.tuples(st.integers(-1, 2), st.booleans()),
    "refresh": st.tuples(PICKS, st.sampled_from((None, *GOOD_TTLS, *BAD_TTLS))),
    "release": st.tuples(PICKS),
    "host_status": st.tuples(st.integers(0, 10**6)),
}
#: Weighted by repetition: grants, applies and completions are what the
#: interesting interleavings are made of.
_KINDS = (
    ["advance"] * 3
    + ["acquire"] * 3
    + ["apply"] * 3
    + ["complete"] * 3
    + ["grant_apply"] * 2
    + [
        "refresh",
        "release",
        "status",
        "health",
        "host_status",
        "force",
        "get_state",
        "bogus",
        "tick",
    ]
)


@st.composite
def _op(draw: st.DrawFn) -> tuple[Any, ...]:
    kind = draw(st.sampled_from(_KINDS))
    params = draw(_PARAMS.get(kind, st.just(())))
    return (kind, *params)


ops = _op()


class Model:
    def __init__(self) -> None:
        self.now = START_NS
        self.role = Role.FOLLOWER
        self.epoch = 0
        self.last_token = 0
        self.lock: dict[str, Any] | None = None
        self.ids: list[str] = []
        self.pending: dict[str, Any] | None = None
        self.seq = 0
        self.last_report = START_NS

    def live(self) -> dict[str, Any] | None:
        if self.lock is not None and self.now < self.lock["expires"]:
            return self.lock
        return None

    def remaining_ms(self, lock: dict[str, Any]) -> int:
        return int(-((self.now - lock["expires"]) // MS))


class Runner:
    def __init__(self) -> None:
        self.engine = make_engine()
        self.model = Model()
        self.rid = 0
        self.state = canonical_json({"scene": "start"})
        self.expired_tokens: set[int] = set()
        self.max_floor = (0, 0)

    # -- plumbing --------------------------------------------------------------
    def feed(self, event: Any) -> tuple[Output, ...]:
        outputs = self.engine.handle(event)
        live = self.model.live()
        for out in outputs:
            if isinstance(out, FloorsRaised):
                floor = (out.epoch, out.fencing_token)
                assert floor[0] >= self.max_floor[0] and floor[1] >= self.max_floor[1], floor
                self.max_floor = floor
            if isinstance(out, LockExpired):
                assert out.fencing_token not in self.expired_tokens, "expired twice"
                assert out.expired_at <= event.now
                self.expired_tokens.add(out.fencing_token)
            if not isinstance(out, Response):
                for lock_id in self.model.ids:
                    assert lock_id not in repr(out), f"lock id in {out!r}"
        del live
        return outputs

    def request(
        self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
    ) -> tuple[int, tuple[Output, ...]]:
        self.rid += 1
        ev = Request(
            now=self.model.now,
            request_id=self.rid,
            method=method,
            target=target,
            headers=headers,
            body=body,
        )
        return self.rid, self.feed(ev)

    def answer(self, outputs: tuple[Output, ...], rid: int) -> tuple[int, dict[str, Any]]:
        resp = [o for o in outputs if isinstance(o, Response)]
        assert len(resp) == 1 and resp[0].request_id == rid, outputs
        body = check_response_shape(resp[0])
        text = resp[0].body.decode()
        for lock_id in self.model.ids:
            if lock_id in text:
                assert body.get("lockId") == lock_id, "a lock id leaked"
        return resp[0].status, body

    def pick(self, index: int) -> str:
        if index < 0 or not self.model.ids:
            return "0123456789abcdef" * 2 if index < 0 else "nope"
        return self.model.ids[-1 - index % len(self.model.ids)]

    # -- ops ---------------------------------------------------------------------
    def step(self, op: tuple[Any, ...]) -> None:
        getattr(self, "op_" + op[0])(*op[1:])
        self.check_view()

    def op_advance(self, ms: int) -> None:
        self.model.now += ms * MS

    def op_tick(self) -> None:
        self.feed(Tick(now=self.model.now))

    def op_acquire(self, ttl: int, owner: str) -> None:
        m = self.model
        rid, outs = self.request(
            *ACQUIRE, [BEARER, JSON_CT], body_of({"owner": owner, "ttlMs": ttl})
        )
        status, body = self.answer(outs, rid)
        live = m.live()
        if ttl in BAD_TTLS:
            assert (status, body["code"], body["field"]) == (400, "invalid_request", "ttlMs")
        elif live is not None:
            assert (status, body["code"]) == (409, "lock_held")
            assert body["owner"] == live["owner"] and body["fencingToken"] == live["token"]
            assert body["remainingMs"] == m.remaining_ms(live)
        else:
            assert status == 200, body
            m.last_token += 1
            assert body["fencingToken"] == m.last_token and body["expiresMs"] == ttl
            assert body["owner"] == owner and len(body["lockId"]) == 32
            assert body["lockId"] not in m.ids
            m.lock = {
                "id": body["lockId"],
                "owner": owner,
                "ttl": ttl,
                "expires": m.now + ttl * MS,
                "token": m.last_token,
            }
            m.ids.append(body["lockId"])

    def op_refresh(self, index: int, ttl: int | None) -> None:
        m = self.model
        lock_id = self.pick(index)
        body_in = b"" if ttl is None else body_of({"ttlMs": ttl})
        hdrs = [BEARER, JSON_CT] if body_in else [BEARER]
        rid, outs = self.request("PUT", LOCK_PATH + lock_id, hdrs, body_in)
        status, body = self.answer(outs, rid)
        live = m.live()
        if ttl in BAD_TTLS:
            assert (status, body["code"]) == (400, "invalid_request")
        elif live is not None and live["id"] == lock_id:
            assert status == 200 and body["lockId"] == lock_id
            assert body["fencingToken"] == live["token"]
            live["ttl"] = live["ttl"] if ttl is None else ttl
            live["expires"] = m.now + live["ttl"] * MS
            assert body["expiresMs"] == live["ttl"]
        else:
            assert (status, body["code"]) == (404, "lock_not_found"), body

    def op_release(self, index: int) -> None:
        m = self.model
        lock_id = self.pick(index)
        rid, outs = self.request("DELETE", LOCK_PATH + lock_id, [BEARER])
        status, body = self.answer(outs, rid)
        live = m.live()
        if live is not None and live["id"] == lock_id:
            assert (status, body) == (200, {"released": True})
            m.lock = None
        else:
            assert (status, body["code"]) == (404, "lock_not_found"), body

    def op_status(self) -> None:
        m = self.model
        rid, outs = self.request(*STATUS, [BEARER])
        status, body = self.answer(outs, rid)
        live = m.live()
        assert status == 200
        if live is None:
            assert body == {"held": False, "lastFencingToken": m.last_token}
        else:
            assert body == {
                "held": True,
                "owner": live["owner"],
                "ttlMs": live["ttl"],
                "remainingMs": m.remaining_ms(live),
                "fencingToken": live["token"],
            }

    def op_health(self) -> None:
        m = self.model
        rid, outs = self.request(*HEALTH, [])
        status, body = self.answer(outs, rid)
        assert status == 200
        assert body["status"] == ("stalled" if m.now - m.last_report > STALL_NS else "ok")
        assert (body["epoch"], body["role"], body["lastCommandSeq"]) == (
            m.epoch,
            m.role.value,
            m.seq,
        )
        assert body["uptimeMs"] == (m.now - START_NS) // MS

    def op_host_status(self, seq: int) -> None:
        self.feed(HostStatus(now=self.model.now, last_command_seq=seq, last_executed_seq=seq))
        self.model.seq = seq
        self.model.last_report = self.model.now

    def op_force(self) -> None:
        m = self.model
        rid, outs = self.request(*FORCE, [CP])
        status, body = self.answer(outs, rid)
        if m.role is Role.LEADER:
            assert (status, body["code"], body["epoch"]) == (409, "already_leader", m.epoch)
        else:
            m.epoch += 1
            assert status == 200 and body["epoch"] == m.epoch and body["previousRole"] == "follower"
            m.role = Role.LEADER

    def op_get_state(self) -> None:
        m = self.model
        rid, outs = self.request(*GET_STATE, [BEARER])
        (cap,) = [o for o in outs if isinstance(o, CaptureSnapshot)]
        outs = self.feed(
            SnapshotCaptured(
                now=m.now,
                request_id=cap.request_id,
                state=self.state,
                captured_at_us=7,
                program_source="p",
                preview_source="q",
                last_command_seq=m.seq,
                last_executed_seq=m.seq,
            )
        )
        status, body = self.answer(outs, rid)
        assert status == 200 and body["epoch"] == m.epoch and body["role"] == m.role.value
        assert canonical_json(body["state"]) == self.state

    def op_apply(self, index: int, epoch_offset: int, leader: bool) -> None:
        m = self.model
        lock_id = self.pick(index)
        snap_epoch = max(0, m.epoch + epoch_offset)
        seq = self.rid + 1000
        snap = snapshot_obj(
            {"scene": seq}, epoch=snap_epoch, seq=seq, role="leader" if leader else "follower"
        )
        hdrs = [BEARER, JSON_CT, (b"x-reconcile-lock-id", lock_id.encode())]
        rid, outs = self.request(*PUT_STATE, hdrs, body_of(snap))
        live = m.live()
        if live is None or live["id"] != lock_id:
            assert self.answer(outs, rid)[1]["code"] == "lock_not_held"
        elif snap_epoch < m.epoch:
            assert self.answer(outs, rid)[1]["code"] == "stale_snapshot"
        elif m.pending is not None:
            assert self.answer(outs, rid)[1]["code"] == "apply_in_progress"
        else:
            (eff,) = [o for o in outs if isinstance(o, ApplySnapshot)]
            assert not [o for o in outs if isinstance(o, Response)]
            assert eff.snapshot.state == canonical_json({"scene": seq})
            m.pending = {
                "rid": rid,
                "epoch": snap_epoch,
                "leader": leader,
                "seq": seq,
                "state": eff.snapshot.state,
            }

    def op_grant_apply(self, epoch_offset: int, leader: bool) -> None:
        self.op_acquire(5000, "b")
        self.op_apply(0, epoch_offset, leader)

    def op_complete(self, ok: bool) -> None:
        m = self.model
        p = m.pending
        if p is None:
            return
        m.pending = None
        event: Any = (
            SnapshotApplied(now=m.now, request_id=p["rid"])
            if ok
            else SnapshotApplyFailed(now=m.now, request_id=p["rid"], reason="disk")
        )
        status, body = self.answer(self.feed(event), p["rid"])
        if not ok:
            assert (status, body["code"]) == (500, "apply_failed")
            return
        m.epoch = max(m.epoch, p["epoch"])
        if p["leader"] and m.role is Role.LEADER:
            m.role = Role.FOLLOWER
        m.seq = p["seq"]
        self.state = p["state"]
        assert body == {
            "applied": True,
            "epoch": m.epoch,
            "role": m.role.value,
            "lastCommandSeq": p["seq"],
        }

    def op_bogus(self) -> None:
        before = self.engine.view()
        rid = (self.model.pending or {}).get("rid", 0) + 10_000
        for event in (
            SnapshotApplied(now=self.model.now, request_id=rid),
            SnapshotCaptured(
                now=self.model.now,
                request_id=rid,
                state=b"{}",
                captured_at_us=0,
                program_source="",
                preview_source="",
                last_command_seq=0,
                last_executed_seq=0,
            ),
            Tick(now=before.now - 1),
        ):
            with pytest.raises(LocalProtocolError):
                self.engine.handle(event)
            assert self.engine.view() == before

    def check_view(self) -> None:
        m = self.model
        view = self.engine.view()
        assert (view.role, view.epoch, view.last_fencing_token) == (m.role, m.epoch, m.last_token)
        live = m.live() if view.now == m.now else None
        if view.now == m.now:
            if live is None:
                assert view.lock is None
            else:
                assert view.lock is not None
                assert (view.lock.owner, view.lock.fencing_token, view.lock.ttl_ms) == (
                    live["owner"],
                    live["token"],
                    live["ttl"],
                )
                assert view.lock.expires_at == live["expires"]
        assert [kind for _, kind in view.pending] == (["apply"] if m.pending else [])


def run_sequence(seq: list[tuple[Any, ...]]) -> None:
    runner = Runner()
    for op in seq:
        runner.step(op)
    json.dumps(runner.model.ids)


SEQUENCES = st.lists(ops, min_size=5, max_size=80)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(seq=SEQUENCES)
def test_core_matches_the_reference_model_over_random_event_sequences(
    seq: list[tuple[Any, ...]],
) -> None:
    run_sequence(seq)
