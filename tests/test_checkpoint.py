"""Nothing that was not made durable is acknowledged: checkpoint and restore,
the host-kept checksum, and the persisted peer epoch."""

from __future__ import annotations

import json

import attrs
import pytest

from peersync_proto import (
    BecomeLeader,
    Engine,
    EngineConfig,
    Floors,
    FloorsRaised,
    LocalProtocolError,
    MonitorConfig,
    ProbeAnswered,
    Request,
    Role,
    SnapshotCaptured,
    Tick,
    canonical_json,
    encode_snapshot,
)
from peersync_proto._engine import _CHECKPOINTED
from tests.harness import MS, SECRET, CountingEntropy, Harness


def test_restore_undoes_a_grant_whose_floors_could_not_be_written() -> None:
    h = Harness()
    before = h.engine.view()
    checkpoint = h.engine.checkpoint()
    ans = h.acquire(owner="r")
    assert ans.status == 200 and isinstance(ans.effects[0], FloorsRaised)
    h.engine.restore(checkpoint)  # the host's write failed: it answers 500 instead
    assert h.engine.view() == before
    again = h.acquire(owner="r")
    assert again.body["fencingToken"] == 1 and again.body["lockId"] != ans.body["lockId"]


def test_restore_undoes_a_promotion() -> None:
    h = Harness()
    checkpoint = h.engine.checkpoint()
    ans = h.call("POST", "/api/peer/force-leader", headers={"X-Control-Plane-Secret": SECRET})
    assert any(isinstance(e, BecomeLeader) for e in ans.effects)
    h.engine.restore(checkpoint)
    assert (h.engine.role, h.engine.epoch) == (Role.FOLLOWER, 0)


def test_only_the_last_event_can_be_undone() -> None:
    h = Harness()
    old = h.engine.checkpoint()
    h.acquire()
    h.advance(1)
    with pytest.raises(LocalProtocolError):
        h.engine.restore(old)
    now = h.engine.checkpoint()
    h.engine.restore(now)  # nothing handled since: a no-op
    assert h.engine.view().lock is not None


def test_restore_brings_the_monitor_back_too() -> None:
    engine = Engine(
        EngineConfig(label="b", no_auth=True),
        now=0,
        entropy=CountingEntropy(),
        monitor=MonitorConfig(),
    )
    checkpoint = engine.checkpoint()
    engine.handle(Tick(now=0))
    assert engine.view().monitor != checkpoint.values[-1]
    engine.restore(checkpoint)
    assert engine.view().monitor == checkpoint.values[-1]


def test_a_host_kept_checksum_is_served_without_hashing_again() -> None:
    state = canonical_json({"big": "x"})
    h = Harness()
    out = h.engine.handle(
        Request(
            now=h.now,
            request_id=1,
            method="GET",
            target="/api/sync/state",
            headers=[("authorization", "Bearer t0k-secret")],
        )
    )
    assert out
    kept = "sha256:" + "a" * 64  # whatever the host kept is what is served
    resp = h.engine.handle(
        SnapshotCaptured(
            now=h.now,
            request_id=1,
            state=state,
            captured_at_us=0,
            program_source="",
            preview_source="",
            last_command_seq=0,
            last_executed_seq=0,
            checksum=kept,
        )
    )
    assert json.loads(resp[-1].body)["checksum"] == kept  # type: ignore[union-attr]
    with pytest.raises(LocalProtocolError):
        encode_snapshot(
            engine_label="a",
            role=Role.LEADER,
            epoch=0,
            captured_at_us=0,
            last_command_seq=0,
            last_executed_seq=0,
            program_source="",
            preview_source="",
            state=state,
            checksum="md5:00",
        )


def _health(epoch: int) -> bytes:
    return json.dumps(
        {
            "status": "ok",
            "uptimeMs": 1,
            "programSource": "",
            "lastCommandSeq": 0,
            "engineLabel": "a",
            "epoch": epoch,
            "role": "leader",
        }
    ).encode()


def test_the_peer_epoch_is_persisted_when_it_rises_and_restored_at_restart() -> None:
    engine = Engine(
        EngineConfig(label="b", no_auth=True),
        now=0,
        entropy=CountingEntropy(),
        monitor=MonitorConfig(),
    )
    engine.handle(Tick(now=0))
    out = engine.handle(ProbeAnswered(now=MS, probe_id=1, status=200, body=_health(9)))
    assert FloorsRaised(epoch=0, fencing_token=0, peer_epoch=9) in out
    engine.handle(Tick(now=200 * MS))
    same = engine.handle(ProbeAnswered(now=201 * MS, probe_id=2, status=200, body=_health(9)))
    assert not any(isinstance(o, FloorsRaised) for o in same)
    restarted = Engine(
        EngineConfig(label="b", no_auth=True, control_plane_secret=SECRET.encode()),
        now=0,
        entropy=CountingEntropy(),
        floors=Floors(epoch=0, fencing_token=0, peer_epoch=9),
    )
    out = restarted.handle(
        Request(
            now=0,
            request_id=1,
            method="POST",
            target="/api/peer/force-leader",
            headers=[("x-control-plane-secret", SECRET)],
        )
    )
    assert [o.epoch for o in out if isinstance(o, BecomeLeader)] == [10]


def test_floors_raised_carries_exactly_the_fields_a_host_hands_back_as_floors() -> None:
    """So a host may persist one and rebuild the other field by field."""
    raised = FloorsRaised(epoch=3, fencing_token=4, peer_epoch=5)
    assert Floors(**attrs.asdict(raised)) == Floors(epoch=3, fencing_token=4, peer_epoch=5)


def test_a_checkpoint_covers_every_attribute_an_event_can_change() -> None:
    """A new engine attribute must be checkpointed or declared constant here."""
    engine = Engine(EngineConfig(label="a", no_auth=True), now=0, entropy=CountingEntropy())
    constant = {"_config", "_entropy", "_started_at"}
    copied_apart = {"_lock", "_pending", "_monitor", "_serial"}
    assert set(vars(engine)) == set(_CHECKPOINTED) | constant | copied_apart
