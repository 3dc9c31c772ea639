"""The peer monitor against a plain reference model (Hypothesis).

The model counts consecutive failures, remembers whether the peer was ever
seen and what the largest epoch it reported was; the host side answers,
refuses, times out or stays silent at random delays, hands in random
answers (wrong label, stalled, non-200, junk) and, like an engine, applies
the monitor's ``Promote`` decisions or is stepped down by someone else.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from peersync_proto._errors import LocalProtocolError
from peersync_proto._events import Tick
from peersync_proto._monitor import FailoverPolicy, MonitorConfig, PeerMonitor, PeerState
from peersync_proto._peer_events import (
    AbandonProbe,
    LabelClash,
    MonitorOutput,
    NoLeader,
    OwnStanding,
    PeerDown,
    PeerUp,
    ProbeAnswered,
    ProbeFailed,
    ProbeFailure,
    Promote,
    SendProbe,
    SplitBrain,
)
from peersync_proto._values import Cause, Role
from peersync_proto._winner import Standing, pick_winner

MS = 1_000_000

answers = st.fixed_dictionaries(
    {
        "label": st.sampled_from(["a", "a", "a", "b"]),  # "b" is our own label: a clash
        "role": st.sampled_from(["leader", "follower"]),
        "epoch": st.integers(0, 12),
        "seq": st.integers(0, 3),
        "state": st.sampled_from(["ok", "ok", "ok", "stalled"]),
        "http": st.sampled_from([200, 200, 200, 200, 503]),
        "junk": st.sampled_from([False, False, False, True]),
    }
)


class MonitorMachine(RuleBasedStateMachine):
    @initialize(
        policy=st.sampled_from(FailoverPolicy),
        threshold=st.integers(1, 4),
        grace_periods=st.integers(1, 6),
        role=st.sampled_from(Role),
        epoch=st.integers(0, 10),
    )
    def configure(
        self, policy: FailoverPolicy, threshold: int, grace_periods: int, role: Role, epoch: int
    ) -> None:
        self.cfg = MonitorConfig(
            policy=policy,
            failure_threshold=threshold,
            startup_grace_ns=grace_periods * 200 * MS,
        )
        self.mon = PeerMonitor(self.cfg, now=0)
        self.own = OwnStanding(label="b", role=role, epoch=epoch, last_command_seq=1)
        # The reference model.
        self.now = 0
        self.outstanding: SendProbe | None = None
        self.next_send = 0
        self.last_id = 0
        self.count = 0
        self.seen = False
        self.down = False
        self.clash = False
        self.max_peer_epoch = 0
        self.abandoned: set[int] = set()
        self.last_report: str | None = None

    # -- the model --------------------------------------------------------

    def _expect_time(self, t: int) -> tuple[int | None, bool]:
        """What must happen at ``t`` before the input: (abandoned id, send?)."""
        abandoned = None
        if self.outstanding is not None and t >= self.outstanding.deadline:
            abandoned = self.outstanding.probe_id
        will_send = (self.outstanding is None or abandoned is not None) and t >= self.next_send
        return abandoned, will_send

    def _model_failure(self, refused: bool) -> bool:
        """Count a failure; return whether the peer became down now."""
        self.count += 1
        became = False
        if self.count >= self.cfg.failure_threshold and (
            self.seen or self.now >= self.cfg.startup_grace_ns
        ):
            became = not self.down
            self.down = True
        if refused and self.seen and not self.down:
            self.next_send = min(self.next_send, self.now + self.cfg.refused_retry_ns)
        return became

    def _feed(self, event: Any, report: dict[str, Any] | None) -> None:
        abandoned, will_send = self._expect_time(event.now)
        self.now = event.now
        out = list(self.mon.handle(event, own=self.own))
        became_down = False
        if abandoned is not None:
            assert out[0] == AbandonProbe(probe_id=abandoned)
            self.abandoned.add(abandoned)
            self.outstanding = None
            became_down |= self._model_failure(refused=False)
        sends = [o for o in out if isinstance(o, SendProbe)]
        if will_send:
            assert len(sends) == 1
            assert sends[0].probe_id == self.last_id + 1
            assert sends[0].deadline == self.now + self.cfg.probe_deadline_ns
            self.last_id += 1
            self.outstanding = sends[0]
            self.next_send = self.now + self.cfg.probe_period_ns
        else:
            assert sends == []
        if (
            report is not None
            and self.outstanding is not None
            and (report["probe_id"] == self.outstanding.probe_id)
        ):
            self.outstanding = None
            if report.get("health") is not None:
                h = report["health"]
                self.max_peer_epoch = max(self.max_peer_epoch, h["epoch"])
                self.clash = h["label"] == "b"
            if report["ok"]:
                was_up = self.seen and not self.down  # suspect is still up: no new PeerUp
                self.seen = True
                self.count = 0
                self.down = False
                assert self.mon.state is PeerState.UP
                assert (len([o for o in out if isinstance(o, PeerUp)]) == 1) == (not was_up)
            else:
                became_down |= self._model_failure(refused=report["refused"])
        self._check_outputs(out, became_down, report)

    def _check_outputs(
        self, out: list[MonitorOutput], became_down: bool, report: dict[str, Any] | None
    ) -> None:
        downs = [o for o in out if isinstance(o, PeerDown)]
        assert len(downs) == (1 if became_down else 0)
        for o in out:  # PeerUp and PeerDown alternate; the first may be either
            if isinstance(o, (PeerUp, PeerDown)):
                kind = "up" if isinstance(o, PeerUp) else "down"
                assert kind != self.last_report, f"two {kind} reports in a row"
                self.last_report = kind
        for d in downs:
            assert 1 <= len(d.evidence) <= self.cfg.failure_threshold
        promotes = [o for o in out if isinstance(o, Promote)]
        assert len(promotes) <= 1
        for p in promotes:
            assert self.cfg.policy is FailoverPolicy.AUTO
            assert not self.clash
            assert self.own.role is Role.FOLLOWER
            assert p.epoch == max(self.own.epoch, self.max_peer_epoch) + 1
            if p.cause is Cause.PEER_DOWN:
                assert self.down
            else:
                assert p.cause is Cause.ELECTED
                assert report is not None and report["ok"]
                h = report["health"]
                assert h["role"] == "follower"
                peer = Standing(label=h["label"], epoch=h["epoch"], last_command_seq=h["seq"])
                assert pick_winner(self.own.standing, peer).label == "b"
        if (
            self.cfg.policy is FailoverPolicy.AUTO
            and not self.clash
            and self.own.role is Role.FOLLOWER
            and became_down
        ):
            assert [p.cause for p in promotes] == [Cause.PEER_DOWN]
        for o in out:
            if isinstance(o, (SplitBrain, NoLeader)):
                assert not self.clash
            if isinstance(o, LabelClash):
                assert self.clash
        # The engine applies a promotion, as it must.
        for p in promotes:
            self.own = OwnStanding(
                label="b",
                role=Role.LEADER,
                epoch=p.epoch,
                last_command_seq=self.own.last_command_seq,
            )

    # -- rules --------------------------------------------------------------

    @rule()
    def wake_on_time(self) -> None:
        self._feed(Tick(now=max(self.now, self.mon.next_deadline())), None)

    @rule(dt=st.integers(0, 700 * MS))
    def wake_late(self, dt: int) -> None:
        self._feed(Tick(now=self.now + dt), None)

    @precondition(lambda self: self.outstanding is not None)
    @rule(dt=st.integers(0, 220 * MS), answer=answers)
    def answer(self, dt: int, answer: dict[str, Any]) -> None:
        assert self.outstanding is not None
        pid = self.outstanding.probe_id
        body = (
            b"<html>"
            if answer["junk"]
            else json.dumps(
                {
                    "status": answer["state"],
                    "uptimeMs": 5,
                    "programSource": "x",
                    "lastCommandSeq": answer["seq"],
                    "engineLabel": answer["label"],
                    "epoch": answer["epoch"],
                    "role": answer["role"],
                }
            ).encode()
        )
        parsed = answer["http"] == 200 and not answer["junk"]
        report = {
            "probe_id": pid,
            "ok": parsed and answer["state"] == "ok",
            "refused": False,
            "health": answer if parsed else None,
        }
        self._feed(
            ProbeAnswered(now=self.now + dt, probe_id=pid, status=answer["http"], body=body), report
        )

    @precondition(lambda self: self.outstanding is not None)
    @rule(dt=st.integers(0, 220 * MS), failure=st.sampled_from(ProbeFailure))
    def fail(self, dt: int, failure: ProbeFailure) -> None:
        assert self.outstanding is not None
        pid = self.outstanding.probe_id
        report = {"probe_id": pid, "ok": False, "refused": failure is ProbeFailure.REFUSED}
        self._feed(ProbeFailed(now=self.now + dt, probe_id=pid, failure=failure), report)

    @precondition(lambda self: bool(self.abandoned))
    @rule(data=st.data())
    def late_report_for_abandoned_probe(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(sorted(self.abandoned)))
        self._feed(ProbeFailed(now=self.now, probe_id=pid, failure=ProbeFailure.REFUSED), None)

    @rule(extra=st.integers(1, 3))
    def report_for_probe_never_sent(self, extra: int) -> None:
        before = self.mon.view()
        try:
            self.mon.handle(
                ProbeFailed(
                    now=self.now, probe_id=self.last_id + extra, failure=ProbeFailure.ERROR
                ),
                own=self.own,
            )
        except LocalProtocolError:
            pass
        else:
            raise AssertionError("a report for a probe never sent was accepted")
        assert self.mon.view() == before

    @rule(role=st.sampled_from(Role), bump=st.integers(0, 2))
    def engine_changes_role(self, role: Role, bump: int) -> None:
        # Force-leader from the control plane, or a snapshot stepped us down.
        self.own = OwnStanding(
            label="b",
            role=role,
            epoch=self.own.epoch + bump,
            last_command_seq=self.own.last_command_seq,
        )

    @invariant()
    def verdict_matches_the_model(self) -> None:
        view = self.mon.view()
        assert view.last_peer_epoch == self.max_peer_epoch
        assert (view.state is PeerState.DOWN) == self.down
        assert len(view.failures) == min(self.count, self.cfg.failure_threshold)
        if not self.seen:
            assert view.state in (PeerState.UNKNOWN, PeerState.DOWN)
        assert (view.outstanding_id if view.slot.value == "in_flight" else None) == (
            self.outstanding.probe_id if self.outstanding else None
        )


MonitorMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestMonitorMachine = MonitorMachine.TestCase
