"""Bugs the simulation found, pinned as plain unit tests of the core."""

from __future__ import annotations

import json

from peersync_proto import (
    MonitorConfig,
    OwnStanding,
    PeerMonitor,
    ProbeAnswered,
    Role,
    SendProbe,
    SplitBrain,
    Tick,
)

MS = 1_000_000


def _health(label: str, role: str, epoch: int, seq: int = 0) -> bytes:
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


def _probe(mon: PeerMonitor, now: int, own: OwnStanding, body: bytes) -> list[object]:
    [probe] = [o for o in mon.handle(Tick(now=now), own=own) if isinstance(o, SendProbe)]
    return list(
        mon.handle(
            ProbeAnswered(now=now + MS, probe_id=probe.probe_id, status=200, body=body), own=own
        )
    )


def test_the_loser_re_promoted_between_two_probes_is_a_new_split_brain_for_the_winner() -> None:
    # Seed 615: b (leader, epoch 1) sees a leader at epoch 0 and reconciles; a
    # steps down and is then forced leader at epoch 2, all between two of b's
    # probes. b must report the new split brain: its winner is now a.
    b = OwnStanding(label="b", role=Role.LEADER, epoch=1, last_command_seq=0)
    mon = PeerMonitor(MonitorConfig(), now=0)
    first = _probe(mon, 0, b, _health("a", "leader", 0))
    assert [o.winner for o in first if isinstance(o, SplitBrain)] == ["b"]
    again = _probe(mon, 200 * MS, b, _health("a", "leader", 2))
    assert [o.winner for o in again if isinstance(o, SplitBrain)] == ["a"]


def test_a_split_brain_re_entered_by_our_own_promotion_is_reported_again() -> None:
    # The same story seen from a: a's own epoch went from 0 to 2 while b
    # still leads at epoch 1. a now wins, so a must hear of it to reconcile.
    mon = PeerMonitor(MonitorConfig(), now=0)
    before = OwnStanding(label="a", role=Role.LEADER, epoch=0, last_command_seq=0)
    assert [
        o.winner
        for o in _probe(mon, 0, before, _health("b", "leader", 1))
        if isinstance(o, SplitBrain)
    ] == ["b"]
    after = OwnStanding(label="a", role=Role.LEADER, epoch=2, last_command_seq=0)
    assert [
        o.winner
        for o in _probe(mon, 200 * MS, after, _health("b", "leader", 1))
        if isinstance(o, SplitBrain)
    ] == ["a"]


def test_a_lasting_split_brain_is_still_reported_once() -> None:
    b = OwnStanding(label="b", role=Role.LEADER, epoch=1, last_command_seq=0)
    mon = PeerMonitor(MonitorConfig(), now=0)
    reports = [
        o
        for i in range(4)
        for o in _probe(mon, i * 200 * MS, b, _health("a", "leader", 0))
        if isinstance(o, SplitBrain)
    ]
    assert len(reports) == 1


def test_a_split_brain_whose_winner_changes_by_sequence_is_reported_again() -> None:
    # Seed 15546: both lead and run commands. b first saw a win (equal
    # sequences, lower label); a, probing later, saw b win. Each had reported
    # once, naming the other: nobody reconciled. A changed winner is news.
    mon = PeerMonitor(MonitorConfig(), now=0)
    early = OwnStanding(label="b", role=Role.LEADER, epoch=0, last_command_seq=0)
    first = _probe(mon, 0, early, _health("a", "leader", 0, seq=0))
    assert [o.winner for o in first if isinstance(o, SplitBrain)] == ["a"]
    later = OwnStanding(label="b", role=Role.LEADER, epoch=0, last_command_seq=5)
    again = _probe(mon, 200 * MS, later, _health("a", "leader", 0, seq=3))
    assert [o.winner for o in again if isinstance(o, SplitBrain)] == ["b"]
    # Sequences moving without changing the winner are not news.
    quiet = OwnStanding(label="b", role=Role.LEADER, epoch=0, last_command_seq=9)
    assert not [
        o
        for o in _probe(mon, 400 * MS, quiet, _health("a", "leader", 0, seq=4))
        if isinstance(o, SplitBrain)
    ]
