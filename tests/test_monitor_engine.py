"""The peer monitor probing a real engine core's peer-health endpoint."""

from __future__ import annotations

from peersync_proto._config import EngineConfig, Floors
from peersync_proto._engine import Engine
from peersync_proto._events import HostStatus, Request, Tick
from peersync_proto._monitor import MonitorConfig, PeerMonitor, PeerState
from peersync_proto._outputs import Response
from peersync_proto._peer_events import (
    MonitorOutput,
    OwnStanding,
    PeerDown,
    PeerUp,
    ProbeAnswered,
    Promote,
    SendProbe,
    SplitBrain,
)
from peersync_proto._values import Cause, Role

MS = 1_000_000


class Pair:
    """Engine ``a`` (a real core, leader at epoch 8) watched by ``b``'s monitor."""

    def __init__(self) -> None:
        self.a = Engine(
            EngineConfig(label="a", role=Role.FOLLOWER, no_auth=True),
            now=0,
            entropy=bytes,
            floors=Floors(epoch=7),
        )
        self.a.promote(Cause.FORCE, [])
        self.mon = PeerMonitor(MonitorConfig(), now=0)
        self.own = OwnStanding(label="b", role=Role.FOLLOWER, epoch=3, last_command_seq=0)
        self.now = 0
        self.rid = 0
        self.a_frozen = False
        self.log: list[tuple[int, MonitorOutput]] = []

    def step(self) -> None:
        """Advance to the monitor's next deadline; a's host heartbeats every
        50 ms unless frozen; each probe is answered 1 ms after it is sent."""
        target = self.mon.next_deadline()
        while self.now < target:
            self.now = min(target, self.now + 50 * MS)
            if not self.a_frozen:
                self.a.handle(HostStatus(now=self.now))
            else:
                self.a.handle(Tick(now=self.now))
        for out in self.mon.handle(Tick(now=self.now), own=self.own):
            self.record(out)
            if isinstance(out, SendProbe):
                self.rid += 1
                [resp] = self.a.handle(
                    Request(
                        now=self.now + 1 * MS,
                        request_id=self.rid,
                        method="GET",
                        target="/api/peer/health",
                    )
                )
                assert isinstance(resp, Response) and resp.status == 200
                answer = ProbeAnswered(
                    now=self.now + 1 * MS, probe_id=out.probe_id, status=200, body=resp.body
                )
                self.now += 1 * MS
                for o in self.mon.handle(answer, own=self.own):
                    self.record(o)

    def record(self, out: MonitorOutput) -> None:
        self.log.append((self.now, out))
        if isinstance(out, Promote):  # the engine applies it
            self.own = OwnStanding(label="b", role=Role.LEADER, epoch=out.epoch, last_command_seq=0)

    def run_until(self, t: int) -> None:
        while self.now < t:
            self.step()

    def of(self, kind: type) -> list[tuple[int, MonitorOutput]]:
        return [(t, o) for t, o in self.log if isinstance(o, kind)]


def test_a_live_engine_stays_up_and_no_one_is_promoted() -> None:
    p = Pair()
    p.run_until(3_000 * MS)
    assert p.mon.state is PeerState.UP
    assert len(p.of(PeerUp)) == 1 and p.of(Promote) == [] and p.of(PeerDown) == []
    assert p.mon.last_peer_epoch == 8


def test_a_frozen_engine_is_stalled_then_down_and_the_follower_takes_over() -> None:
    p = Pair()
    p.run_until(1_000 * MS)
    frozen_at = p.now
    p.a_frozen = True
    p.run_until(frozen_at + 2_000 * MS)
    [(down_at, down)] = p.of(PeerDown)
    assert isinstance(down, PeerDown) and set(down.evidence) == {down.evidence[0]}
    assert down.evidence[0].value == "stalled"
    # Stall limit (500 ms) plus three probes: well within 1.3 s.
    assert 500 * MS < down_at - frozen_at <= 1_300 * MS
    [(_, promote)] = p.of(Promote)
    assert promote == Promote(cause=Cause.PEER_DOWN, epoch=9)  # max(3, 8) + 1
    # a thaws still believing it leads: both leader, and b (epoch 9) wins.
    p.a_frozen = False
    p.run_until(p.now + 1_000 * MS)
    [(_, split)] = p.of(SplitBrain)
    assert isinstance(split, SplitBrain) and split.winner == "b"
