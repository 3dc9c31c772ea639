"""The durable standalone host: atomic, monotonic, refuses what it cannot trust."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from peersync_proto import state_checksum
from peersync_proto._config import Floors
from peersync_proto._outputs import BecomeLeader, FloorsRaised, LockGranted, StepDown
from peersync_proto._values import Cause, DecodedSnapshot, Role
from peersync_server._clock import Clock
from peersync_server._host import HostStateError, StandaloneHost, atomic_write


def _snapshot(state: bytes, *, epoch: int = 3, seq: int = 10) -> DecodedSnapshot:
    return DecodedSnapshot(
        format_version=1,
        engine_label="b",
        role=Role.LEADER,
        epoch=epoch,
        captured_at_us=1,
        last_command_seq=seq,
        last_executed_seq=seq - 1,
        program_source="cam-1",
        preview_source="cam-2",
        state=state,
        checksum="sha256:" + hashlib.sha256(state).hexdigest(),
    )


class _Reports:
    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []
        self.lock = threading.Lock()

    def __call__(self, **fields: object) -> None:
        with self.lock:
            self.calls.append(fields)


def _started(path: Path | None, label: str = "a") -> tuple[StandaloneHost, Floors | None, _Reports]:
    host = StandaloneHost(path, heartbeat_interval_s=0.02)
    floors = host.open(label)
    reports = _Reports()
    host.start(reports, Clock())
    return host, floors, reports


def test_fresh_state_dir_is_fresh_once_then_a_restart(tmp_path: Path) -> None:
    host, floors, _ = _started(tmp_path)
    assert floors is None
    host.close()
    again = StandaloneHost(tmp_path)
    assert again.open("a") == Floors(epoch=0, fencing_token=0)
    again.close()


def test_applied_snapshot_and_floors_survive_a_restart(tmp_path: Path) -> None:
    host, _, _ = _started(tmp_path)
    host.apply(_snapshot(b'{"k":1}', epoch=7))
    host.on_effects(1, [FloorsRaised(epoch=7, fencing_token=42)])
    host.close()
    again = StandaloneHost(tmp_path)
    assert again.open("a") == Floors(epoch=7, fencing_token=42)
    again.start(_Reports(), Clock())
    captured = again.capture()
    assert captured.state == b'{"k":1}'
    assert captured.program_source == "cam-1"
    assert captured.last_command_seq == 10
    again.close()


def test_floors_never_go_down(tmp_path: Path) -> None:
    host, _, _ = _started(tmp_path)
    host.on_effects(2, [FloorsRaised(epoch=9, fencing_token=50)])
    host.on_effects(1, [FloorsRaised(epoch=3, fencing_token=4)])  # a late, older batch
    host.apply(_snapshot(b"{}", epoch=1))
    assert host.floors == Floors(epoch=9, fencing_token=50)
    host.close()
    again = StandaloneHost(tmp_path)
    assert again.open("a") == Floors(epoch=9, fencing_token=50)
    again.close()


def test_apply_raises_epoch_floor_to_the_snapshots(tmp_path: Path) -> None:
    host, _, _ = _started(tmp_path)
    host.apply(_snapshot(b"{}", epoch=12))
    assert host.floors.epoch == 12
    host.close()


def test_role_follows_the_latest_batch_not_the_latest_writer(tmp_path: Path) -> None:
    host, _, _ = _started(tmp_path)
    host.on_effects(5, [StepDown(epoch=4, cause=Cause.SNAPSHOT)])
    host.on_effects(4, [BecomeLeader(epoch=4, cause=Cause.FORCE)])  # older, arrives late
    assert host.role == "follower"
    host.close()


def test_apply_reports_the_new_status_to_the_core(tmp_path: Path) -> None:
    host, _, reports = _started(tmp_path)
    host.apply(_snapshot(b'{"x":true}', seq=33))
    assert {"program_source": "cam-1", "last_command_seq": 33, "last_executed_seq": 32} in (
        reports.calls
    )
    host.close()


def test_host_loop_sends_heartbeats(tmp_path: Path) -> None:
    host, _, reports = _started(tmp_path)
    threading.Event().wait(0.2)
    host.close()
    heartbeats = [c for c in reports.calls if c == {}]
    assert len(heartbeats) >= 4


def test_old_state_file_is_removed_after_a_new_apply(tmp_path: Path) -> None:
    host, _, _ = _started(tmp_path)
    host.apply(_snapshot(b'{"v":1}'))
    host.apply(_snapshot(b'{"v":2}'))
    host.close()
    files = sorted(p.name for p in tmp_path.glob("state-*.json"))
    digest = hashlib.sha256(b'{"v":2}').hexdigest()
    assert files == [f"state-{digest}.json"]


def test_leftover_temp_and_orphan_files_are_collected_at_open(tmp_path: Path) -> None:
    host, _, _ = _started(tmp_path)
    host.close()
    (tmp_path / ".engine.json.1.2.tmp").write_bytes(b"torn")
    orphan = tmp_path / ("state-" + "0" * 64 + ".json")
    orphan.write_bytes(b"{}")
    again = StandaloneHost(tmp_path)
    again.open("a")
    again.close()
    assert not orphan.exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_state_dir_of_the_other_engine_is_refused(tmp_path: Path) -> None:
    host, _, _ = _started(tmp_path, label="a")
    host.close()
    with pytest.raises(HostStateError, match="belongs to engine 'a'"):
        StandaloneHost(tmp_path).open("b")


def test_state_dir_in_use_by_another_server_is_refused(tmp_path: Path) -> None:
    first = StandaloneHost(tmp_path)
    first.open("a")
    try:
        with pytest.raises(HostStateError, match="in use"):
            StandaloneHost(tmp_path).open("a")
    finally:
        first.close()


def test_corrupt_engine_document_is_refused(tmp_path: Path) -> None:
    host, _, _ = _started(tmp_path)
    host.close()
    (tmp_path / "engine.json").write_bytes(b'{"formatVersion": 1, "epoch": -1}')
    with pytest.raises(HostStateError, match="not a peersync engine document"):
        StandaloneHost(tmp_path).open("a")


def test_state_file_that_does_not_match_its_checksum_is_refused(tmp_path: Path) -> None:
    host, _, _ = _started(tmp_path)
    host.apply(_snapshot(b'{"v":1}'))
    host.close()
    meta = json.loads((tmp_path / "engine.json").read_bytes())
    (tmp_path / meta["stateFile"]).write_bytes(b'{"v":2}')
    with pytest.raises(HostStateError, match="does not match"):
        StandaloneHost(tmp_path).open("a")


def test_memory_host_keeps_state_without_a_directory() -> None:
    host, floors, _ = _started(None)
    assert floors is None
    host.apply(_snapshot(b'{"m":1}', epoch=2))
    host.on_effects(1, [LockGranted(owner="x", fencing_token=1, ttl_ms=1000, expires_at=1)])
    assert host.capture().state == b'{"m":1}'
    assert host.floors.epoch == 2
    host.close()


def test_peer_epoch_floor_survives_a_restart_and_never_goes_down(tmp_path: Path) -> None:
    host, _, _ = _started(tmp_path)
    host.on_effects(1, [FloorsRaised(epoch=2, fencing_token=0, peer_epoch=11)])
    host.on_effects(2, [FloorsRaised(epoch=2, fencing_token=0, peer_epoch=5)])  # older news
    host.close()
    again = StandaloneHost(tmp_path)
    assert again.open("a") == Floors(epoch=2, fencing_token=0, peer_epoch=11)
    again.close()


def test_a_document_written_before_the_peer_epoch_was_kept_still_opens(tmp_path: Path) -> None:
    host, _, _ = _started(tmp_path)
    host.on_effects(1, [FloorsRaised(epoch=4, fencing_token=3)])
    host.close()
    meta = tmp_path / "engine.json"
    doc = json.loads(meta.read_text())
    del doc["peerEpoch"]
    meta.write_text(json.dumps(doc))
    again = StandaloneHost(tmp_path)
    assert again.open("a") == Floors(epoch=4, fencing_token=3, peer_epoch=0)
    again.close()


def test_capture_hands_over_the_checksum_named_by_the_state_file(tmp_path: Path) -> None:
    host, _, _ = _started(tmp_path)
    assert host.capture().checksum == state_checksum(b"{}")
    host.apply(_snapshot(b'{"k":[1,2]}'))
    captured = host.capture()
    assert captured.checksum == state_checksum(captured.state) == state_checksum(b'{"k":[1,2]}')
    host.close()


def test_failed_atomic_write_removes_its_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "dir" / "x.json"
    target.parent.mkdir()
    (target.parent / "x.json").mkdir()  # os.replace over a directory fails
    with pytest.raises(OSError):
        atomic_write(target, b"data")
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]
