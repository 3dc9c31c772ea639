"""The engine with its peer monitor: failover decisions reach the role machine."""

from __future__ import annotations

import json

import pytest

from peersync_proto import (
    BecomeLeader,
    Cause,
    Engine,
    EngineConfig,
    LocalProtocolError,
    MonitorConfig,
    PeerDown,
    ProbeAnswered,
    ProbeFailed,
    ProbeFailure,
    Role,
    SendProbe,
    Tick,
)
from tests.harness import MS, SECRET, CountingEntropy

GRACE = 2000 * MS


def make(role: Role = Role.FOLLOWER, label: str = "b", **monitor: object) -> Engine:
    return Engine(
        EngineConfig(label=label, role=role, control_plane_secret=SECRET.encode(), no_auth=True),
        now=0,
        entropy=CountingEntropy(),
        monitor=MonitorConfig(**monitor),  # type: ignore[arg-type]
    )


def health(label: str, role: str, epoch: int, seq: int = 0) -> bytes:
    return json.dumps(
        {
            "status": "ok",
            "uptimeMs": 1,
            "programSource": "",
            "lastCommandSeq": seq,
            "engineLabel": label,
            "epoch": epoch,
            "role": role,
        }
    ).encode()


def probes(outputs: tuple[object, ...]) -> list[SendProbe]:
    return [o for o in outputs if isinstance(o, SendProbe)]


def test_engine_asks_for_the_first_probe_at_once_and_then_every_period() -> None:
    engine = make()
    assert engine.next_deadline() == 0
    first = probes(engine.handle(Tick(now=0)))
    assert [p.probe_id for p in first] == [1]
    engine.handle(ProbeAnswered(now=1 * MS, probe_id=1, status=200, body=health("a", "leader", 3)))
    assert engine.next_deadline() == 200 * MS
    assert [p.probe_id for p in probes(engine.handle(Tick(now=200 * MS)))] == [2]


def test_follower_promotes_when_its_leader_is_refused_three_times_and_outranks_it() -> None:
    engine = make()
    engine.handle(Tick(now=0))
    engine.handle(ProbeAnswered(now=MS, probe_id=1, status=200, body=health("a", "leader", 7)))
    now, probe_id, promoted = 200 * MS, 1, []
    for _ in range(10):
        out = engine.handle(Tick(now=now))
        for p in probes(out):
            probe_id = p.probe_id
            out += engine.handle(
                ProbeFailed(now=now, probe_id=probe_id, failure=ProbeFailure.REFUSED)
            )
        promoted += [o for o in out if isinstance(o, BecomeLeader)]
        if promoted:
            break
        now = engine.next_deadline() or now
    assert promoted == [BecomeLeader(epoch=8, cause=Cause.PEER_DOWN)]
    assert engine.role is Role.LEADER and engine.epoch == 8
    # The monitor repeats its decision on the next failure; a leader ignores it.
    later = engine.next_deadline() or now
    again = list(engine.handle(Tick(now=later)))
    for p in probes(tuple(again)):
        again += engine.handle(
            ProbeFailed(now=later, probe_id=p.probe_id, failure=ProbeFailure.REFUSED)
        )
    assert not [o for o in again if isinstance(o, BecomeLeader)] and engine.epoch == 8
    assert now - 200 * MS <= 200 * MS  # refusals are retried fast: well under 3 periods


def test_manual_policy_reports_peer_down_but_never_promotes() -> None:
    from peersync_proto import FailoverPolicy

    engine = make(policy=FailoverPolicy.MANUAL)
    reports: list[object] = []
    now = GRACE
    for _ in range(20):
        out = engine.handle(Tick(now=now))
        for p in probes(out):
            out += engine.handle(
                ProbeFailed(now=now, probe_id=p.probe_id, failure=ProbeFailure.REFUSED)
            )
        reports += out
        now = engine.next_deadline() or now + MS
    assert any(isinstance(r, PeerDown) for r in reports)
    assert not any(isinstance(r, BecomeLeader) for r in reports)
    assert engine.role is Role.FOLLOWER


def test_force_leader_outranks_the_epoch_the_monitor_saw() -> None:
    from peersync_proto import Request

    engine = make()
    engine.handle(Tick(now=0))
    engine.handle(ProbeAnswered(now=MS, probe_id=1, status=200, body=health("a", "leader", 41)))
    out = engine.handle(
        Request(
            now=2 * MS,
            request_id=1,
            method="POST",
            target="/api/peer/force-leader",
            headers=[("x-control-plane-secret", SECRET)],
        )
    )
    assert [o for o in out if isinstance(o, BecomeLeader)] == [
        BecomeLeader(epoch=42, cause=Cause.FORCE)
    ]


def test_two_followers_elect_the_contract_winner() -> None:
    engine = make(label="a")  # lower label wins a full tie
    engine.handle(Tick(now=0))
    out = engine.handle(
        ProbeAnswered(now=MS, probe_id=1, status=200, body=health("b", "follower", 0))
    )
    assert [o for o in out if isinstance(o, BecomeLeader)] == [
        BecomeLeader(epoch=1, cause=Cause.ELECTED)
    ]
    loser = make(label="b")
    loser.handle(Tick(now=0))
    out = loser.handle(
        ProbeAnswered(now=MS, probe_id=1, status=200, body=health("a", "follower", 0))
    )
    assert not [o for o in out if isinstance(o, BecomeLeader)] and loser.role is Role.FOLLOWER


def test_probe_reports_without_a_monitor_or_for_unsent_probes_are_host_misuse() -> None:
    bare = Engine(EngineConfig(label="a"), now=0, entropy=CountingEntropy())
    with pytest.raises(LocalProtocolError):
        bare.handle(ProbeFailed(now=0, probe_id=1, failure=ProbeFailure.REFUSED))
    engine = make()
    before = engine.view()
    with pytest.raises(LocalProtocolError):
        engine.handle(ProbeFailed(now=5, probe_id=9, failure=ProbeFailure.REFUSED))
    assert engine.view() == before


def test_a_leader_never_promotes_again_on_peer_down() -> None:
    engine = make(role=Role.LEADER)
    now, out_all = GRACE, []
    for _ in range(20):
        out = engine.handle(Tick(now=now))
        for p in probes(out):
            out += engine.handle(
                ProbeFailed(now=now, probe_id=p.probe_id, failure=ProbeFailure.TIMEOUT)
            )
        out_all += out
        now = engine.next_deadline() or now + MS
    assert not any(isinstance(o, BecomeLeader) for o in out_all)
    assert engine.epoch == 0
