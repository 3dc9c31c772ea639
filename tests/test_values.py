"""Construction-time validation of the core's values, and restarts."""

from __future__ import annotations

import json
import pickle

import pytest

from peersync_proto import (
    ClockSync,
    DecodedSnapshot,
    EngineConfig,
    Floors,
    HostStalled,
    HostStatus,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    Role,
    Tick,
)
from peersync_proto.replay import run_scenario
from tests.harness import MS, Harness


@pytest.mark.parametrize("label", ["", "x" * 33, "é", 5])
def test_engine_label_must_be_short_ascii(label: object) -> None:
    with pytest.raises(LocalProtocolError):
        EngineConfig(label=label)  # type: ignore[arg-type]


@pytest.mark.parametrize("secret", [b"", "text"])
def test_secrets_must_be_non_empty_bytes(secret: object) -> None:
    with pytest.raises(LocalProtocolError):
        EngineConfig(label="a", api_token=secret)  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [0, -1, 1.5])
def test_limits_must_be_positive_ints(limit: object) -> None:
    with pytest.raises(LocalProtocolError):
        EngineConfig(label="a", stall_limit_ns=limit)  # type: ignore[arg-type]


@pytest.mark.parametrize("floors", [{"epoch": -1}, {"fencing_token": 2**63}, {"epoch": True}])
def test_floors_must_be_non_negative_int64(floors: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError):
        Floors(**floors)  # type: ignore[arg-type]


@pytest.mark.parametrize("now", [-1, 2**63, 1.0, True])
def test_now_must_be_a_non_negative_int64(now: object) -> None:
    with pytest.raises(LocalProtocolError):
        Tick(now=now)  # type: ignore[arg-type]


def test_request_headers_accept_str_or_bytes_and_lowercase_names() -> None:
    req = Request(
        now=0, request_id=1, method="GET", target="/", headers=[(b"X-A", "v "), ("X-B", b"w")]
    )
    assert req.headers == ((b"x-a", b"v"), (b"x-b", b"w"))


def test_clock_sync_and_snapshot_fields_are_validated() -> None:
    with pytest.raises(TypeError):
        ClockSync(offset_ns=2**63)
    with pytest.raises(TypeError):
        DecodedSnapshot(
            format_version=1,
            engine_label="a",
            role=Role.LEADER,
            epoch=-1,
            captured_at_us=0,
            last_command_seq=0,
            last_executed_seq=0,
            program_source="",
            preview_source="",
            state=b"{}",
            checksum="",
        )


def test_remote_protocol_errors_survive_pickling_for_worker_processes() -> None:
    err = RemoteProtocolError(
        "bad",
        status=400,
        code="invalid_snapshot",
        extra={"field": "epoch"},
        headers=((b"a", b"b"),),
    )
    back = pickle.loads(pickle.dumps(err))
    assert (back.message, back.status, back.code, dict(back.extra), back.headers) == (
        "bad",
        400,
        "invalid_snapshot",
        {"field": "epoch"},
        ((b"a", b"b"),),
    )
    assert "invalid_snapshot" in repr(back)


def test_restarted_engine_comes_back_follower_with_its_floors() -> None:
    h = Harness(role=Role.LEADER, floors=Floors(epoch=17, fencing_token=41))
    health = h.call("GET", "/api/peer/health").body
    assert (health["role"], health["epoch"]) == ("follower", 17)
    assert h.acquire().body["fencingToken"] == 42


def test_fresh_engine_takes_the_configured_role() -> None:
    assert Harness(role=Role.LEADER).engine.role is Role.LEADER


def test_fencing_tokens_never_wrap() -> None:
    h = Harness(floors=Floors(epoch=0, fencing_token=2**63 - 1))
    ans = h.acquire()
    assert (ans.status, ans.code) == (409, "lock_exhausted")


def test_stall_is_reported_once_per_silence_and_next_deadline_follows_it() -> None:
    h = Harness(stall_limit_ns=500 * MS)
    start = h.now
    assert h.engine.next_deadline() == start + 500 * MS + 1
    assert h.advance(500) == []
    assert h.advance(0.000001) == [HostStalled(silent_since=start)]
    assert h.engine.next_deadline() is None
    assert h.advance(1000) == []
    h.engine.handle(HostStatus(now=h.now))
    assert h.engine.next_deadline() == h.now + 500 * MS + 1


def test_replay_extensions_blank_lines_explicit_content_type_and_unknown_status_field() -> None:
    config = '{"config": {"label": "a", "noAuth": true}}'
    out = run_scenario(
        [
            config,
            "",
            '{"at": 0, "request": {"method": "POST",'
            ' "path": "/api/sync/reconcile-lock",'
            ' "headers": {"Content-Type": "application/json; charset=utf-8"},'
            ' "body": {"owner": "o"}}}',
            '{"at": 0, "hostStatus": {"bogus": 1}}',
        ]
    )
    assert json.loads(out[-2])["status"] == 200
    assert "refused" in out[-1] and "bogus" in out[-1]


@pytest.mark.parametrize("rid", [-1, "1", 1.0])
def test_request_ids_are_non_negative_ints(rid: object) -> None:
    with pytest.raises(LocalProtocolError):
        Request(now=0, request_id=rid, method="GET", target="/")  # type: ignore[arg-type]


def test_a_capture_with_executed_above_command_seq_is_host_misuse() -> None:
    from peersync_proto import SnapshotCaptured

    with pytest.raises(LocalProtocolError):
        SnapshotCaptured(
            now=0,
            request_id=1,
            state=b"{}",
            captured_at_us=0,
            program_source="",
            preview_source="",
            last_command_seq=5,
            last_executed_seq=6,
        )
