"""Peer monitor rules (contract 4.2), one test per rule."""

from __future__ import annotations

import json
import random
from typing import Any

import attrs
import pytest

from peersync_proto._errors import LocalProtocolError
from peersync_proto._events import Tick
from peersync_proto._monitor import (
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_PROBE_DEADLINE_NS,
    DEFAULT_PROBE_PERIOD_NS,
    DEFAULT_REFUSED_RETRY_NS,
    DEFAULT_STARTUP_GRACE_NS,
    PROBE_TRANSITIONS,
    TRANSITIONS,
    FailoverPolicy,
    MonitorConfig,
    PeerMonitor,
    PeerState,
    ProbeInput,
    ProbeSlot,
    Relation,
    Verdict,
    _move,
    _slot,
)
from peersync_proto._peer_events import (
    AbandonProbe,
    FailureKind,
    LabelClash,
    MonitorOutput,
    NoLeader,
    OwnStanding,
    PeerChanged,
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

MS = 1_000_000
PERIOD = DEFAULT_PROBE_PERIOD_NS
FOLLOWER_B = OwnStanding(label="b", role=Role.FOLLOWER, epoch=3, last_command_seq=10)
LEADER_B = attrs.evolve(FOLLOWER_B, role=Role.LEADER)


def health(
    *, label: str = "a", role: str = "leader", epoch: int = 3, seq: int = 10, state: str = "ok"
) -> bytes:
    return json.dumps(
        {
            "status": state,
            "uptimeMs": 1,
            "programSource": "cam-1",
            "lastCommandSeq": seq,
            "engineLabel": label,
            "epoch": epoch,
            "role": role,
        }
    ).encode()


class Drive:
    """A monitor plus the host's side: it sends each probe it is told to and
    reports what the test says."""

    def __init__(
        self,
        *,
        own: OwnStanding = FOLLOWER_B,
        start: int = 0,
        **config: Any,
    ) -> None:
        self.own = own
        self.mon = PeerMonitor(MonitorConfig(**config), now=start)
        self.now = start
        self.sent: list[SendProbe] = []

    def _feed(self, event: Any) -> list[MonitorOutput]:
        self.now = event.now
        out = list(self.mon.handle(event, own=self.own))
        self.sent += [o for o in out if isinstance(o, SendProbe)]
        return out

    def tick(self, at: int | None = None) -> list[MonitorOutput]:
        return self._feed(Tick(now=self.mon.next_deadline() if at is None else at))

    def probe(self) -> SendProbe:
        """Advance to the next probe send; return it."""
        before = len(self.sent)
        while len(self.sent) == before:
            self.tick()
        return self.sent[-1]

    def answer(self, after: int = 1 * MS, status: int = 200, **kw: Any) -> list[MonitorOutput]:
        p = self.probe()
        body = kw.pop("body", None)
        return self._feed(
            ProbeAnswered(
                now=self.now + after,
                probe_id=p.probe_id,
                status=status,
                body=health(**kw) if body is None else body,
            )
        )

    def fail(self, failure: ProbeFailure, after: int = 1 * MS) -> list[MonitorOutput]:
        p = self.probe()
        return self._feed(ProbeFailed(now=self.now + after, probe_id=p.probe_id, failure=failure))

    def miss(self) -> list[MonitorOutput]:
        self.probe()
        return self.tick()  # the next deadline is the outstanding probe's


def of(kind: type | tuple[type, ...], outs: list[MonitorOutput]) -> list[Any]:
    return [o for o in outs if isinstance(o, kind)]


# -- probing -----------------------------------------------------------------


def test_first_probe_goes_out_at_start_with_its_own_deadline() -> None:
    d = Drive(start=5 * MS)
    assert d.mon.next_deadline() == 5 * MS
    assert d.tick() == [SendProbe(probe_id=1, deadline=5 * MS + DEFAULT_PROBE_DEADLINE_NS)]


def test_probes_go_out_once_per_period_and_never_early() -> None:
    d = Drive()
    d.answer()
    assert d.tick(at=PERIOD - 1) == []
    assert of(SendProbe, d.tick(at=PERIOD)) == [SendProbe(probe_id=2, deadline=PERIOD + 150 * MS)]


def test_next_deadline_is_the_outstanding_deadline_then_the_next_send() -> None:
    d = Drive()
    d.tick()
    assert d.mon.next_deadline() == DEFAULT_PROBE_DEADLINE_NS
    d._feed(ProbeFailed(now=2 * MS, probe_id=1, failure=ProbeFailure.TIMEOUT))
    assert d.mon.next_deadline() == PERIOD


def test_a_late_host_sends_once_and_keeps_cadence_from_then() -> None:
    d = Drive()
    d.answer()
    out = d.tick(at=10 * PERIOD + 7)
    assert len(of(SendProbe, out)) == 1
    assert d.mon.view().next_probe_at == 11 * PERIOD + 7


def test_missed_deadline_counts_a_failure_and_abandons_that_probe() -> None:
    d = Drive()
    p = d.probe()
    out = d.tick()
    assert d.now == p.deadline
    assert out == [AbandonProbe(probe_id=p.probe_id)]
    assert d.mon.view().failures == (FailureKind.MISSED_DEADLINE,)
    assert d.mon.view().slot is ProbeSlot.IDLE


def test_late_answer_for_an_abandoned_probe_is_ignored() -> None:
    d = Drive()
    d.answer()
    p = d.probe()
    d.tick()  # miss
    before = d.mon.view()
    late = ProbeAnswered(now=p.deadline + 10 * MS, probe_id=p.probe_id, status=200, body=health())
    assert d._feed(late) == []
    assert d.mon.view() == attrs.evolve(before, now=late.now)


def test_a_report_arriving_after_the_deadline_counts_as_a_miss_not_an_answer() -> None:
    d = Drive()
    p = d.probe()
    out = d._feed(ProbeAnswered(now=p.deadline, probe_id=p.probe_id, status=200, body=health()))
    assert out == [AbandonProbe(probe_id=p.probe_id)]
    assert d.mon.state is PeerState.UNKNOWN
    assert d.mon.view().failures == (FailureKind.MISSED_DEADLINE,)


def test_a_second_report_for_the_same_probe_is_ignored() -> None:
    d = Drive()
    d.answer()
    before = d.mon.view()
    again = ProbeFailed(now=d.now, probe_id=1, failure=ProbeFailure.REFUSED)
    assert d._feed(again) == []
    assert d.mon.view() == before


@pytest.mark.parametrize("probe_id", [0, 2, 99])
def test_a_report_for_a_probe_never_sent_is_host_misuse_and_changes_nothing(
    probe_id: int,
) -> None:
    d = Drive()
    d.tick()
    before = d.mon.view()
    with pytest.raises(LocalProtocolError, match="never sent"):
        d.mon.handle(ProbeFailed(now=1, probe_id=probe_id, failure=ProbeFailure.ERROR), own=d.own)
    assert d.mon.view() == before


def test_now_going_backwards_is_refused_and_changes_nothing() -> None:
    d = Drive(start=100)
    d.tick()
    before = d.mon.view()
    with pytest.raises(LocalProtocolError, match="backwards"):
        d.mon.handle(Tick(now=99), own=d.own)
    assert d.mon.view() == before


# -- down and up ---------------------------------------------------------------

FAILURES = {
    "missed_deadline": (lambda d: d.miss(), FailureKind.MISSED_DEADLINE),
    "refused": (lambda d: d.fail(ProbeFailure.REFUSED), FailureKind.REFUSED),
    "timeout": (lambda d: d.fail(ProbeFailure.TIMEOUT), FailureKind.TIMEOUT),
    "error": (lambda d: d.fail(ProbeFailure.ERROR), FailureKind.ERROR),
    "non_200": (lambda d: d.answer(status=503), FailureKind.BAD_STATUS),
    "unparsable": (lambda d: d.answer(body=b"<html>"), FailureKind.UNPARSABLE),
    "stalled": (lambda d: d.answer(state="stalled"), FailureKind.STALLED),
}


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_peer_is_down_exactly_when_consecutive_failures_reach_the_threshold(name: str) -> None:
    act, kind = FAILURES[name]
    d = Drive(own=LEADER_B)
    d.answer(role="follower")
    for _ in range(DEFAULT_FAILURE_THRESHOLD - 1):
        assert of(PeerDown, act(d)) == []
        assert d.mon.state is PeerState.SUSPECT
    out = act(d)
    assert d.mon.state is PeerState.DOWN
    [down] = of(PeerDown, out)
    assert down.evidence == (kind,) * DEFAULT_FAILURE_THRESHOLD


def test_a_success_resets_the_run_of_failures() -> None:
    d = Drive(own=LEADER_B)
    d.answer(role="follower")
    d.miss()
    d.miss()
    d.answer(role="follower")
    d.miss()
    d.miss()
    assert d.mon.state is PeerState.SUSPECT
    assert d.mon.view().failures == (FailureKind.MISSED_DEADLINE,) * 2


def test_mixed_evidence_counts_together_and_is_reported_in_order() -> None:
    d = Drive(own=LEADER_B)
    d.answer(role="follower")
    d.fail(ProbeFailure.TIMEOUT)
    first = d.now
    d.answer(status=500)
    [down] = of(PeerDown, d.miss())
    assert down.evidence == (
        FailureKind.TIMEOUT,
        FailureKind.BAD_STATUS,
        FailureKind.MISSED_DEADLINE,
    )
    assert down.since == first


def test_peer_down_is_reported_once_per_episode() -> None:
    d = Drive(own=LEADER_B)
    d.answer(role="follower")
    downs = [o for _ in range(8) for o in of(PeerDown, d.miss())]
    assert len(downs) == 1
    assert len(d.mon.view().failures) == DEFAULT_FAILURE_THRESHOLD  # bounded


def test_one_success_brings_a_down_peer_up_and_up_is_reported_once() -> None:
    d = Drive(own=LEADER_B)
    for _ in range(3):
        d.miss()
    d.tick(at=DEFAULT_STARTUP_GRACE_NS)
    for _ in range(3):
        d.miss()
    assert d.mon.state is PeerState.DOWN
    ups = of(PeerUp, d.answer(role="follower"))
    assert d.mon.state is PeerState.UP
    assert [u.health.engine_label for u in ups] == ["a"]
    assert of(PeerUp, d.answer(role="follower")) == []


def test_stalled_peer_is_up_again_when_it_says_ok_without_a_second_peer_up() -> None:
    d = Drive(own=LEADER_B)
    assert len(of(PeerUp, d.answer(role="follower"))) == 1
    d.answer(role="follower", state="stalled")
    assert d.mon.state is PeerState.SUSPECT
    assert of(PeerUp, d.answer(role="follower")) == []  # it was never reported down
    assert d.mon.state is PeerState.UP


def test_peer_up_is_reported_only_on_first_contact_and_after_peer_down() -> None:
    d = Drive(own=LEADER_B)
    reports: list[str] = []

    def note(outs: list[MonitorOutput]) -> None:
        reports.extend(
            "up" if isinstance(o, PeerUp) else "down" for o in of((PeerUp, PeerDown), outs)
        )

    note(d.answer(role="follower"))  # first contact
    for failures in (d.miss, lambda: d.fail(ProbeFailure.REFUSED), lambda: d.answer(status=503)):
        note(failures())  # one failure: suspect, below the threshold
        assert d.mon.state is PeerState.SUSPECT
        note(d.answer(role="follower"))
    for _ in range(DEFAULT_FAILURE_THRESHOLD - 1):
        note(d.fail(ProbeFailure.TIMEOUT))
    note(d.answer(role="follower"))  # one short of the threshold: still never down
    assert reports == ["up"]
    for _ in range(DEFAULT_FAILURE_THRESHOLD):
        note(d.miss())
    assert d.mon.state is PeerState.DOWN
    note(d.answer(role="follower"))
    note(d.answer(role="follower"))
    assert reports == ["up", "down", "up"]


# -- fast confirmation of a crash ---------------------------------------------


def test_a_refusal_from_a_live_peer_hastens_the_next_probe() -> None:
    d = Drive()
    d.answer()
    out = d.fail(ProbeFailure.REFUSED)
    assert out == []
    assert d.mon.next_deadline() == d.now + DEFAULT_REFUSED_RETRY_NS


def test_a_killed_leader_is_replaced_one_period_plus_two_retries_after_the_crash() -> None:
    d = Drive()
    d.answer()
    crash = d.now + 20 * MS
    promoted_at = None
    while promoted_at is None:
        out = d.fail(ProbeFailure.REFUSED, after=200_000)  # RST on loopback
        if of(Promote, out):
            promoted_at = d.now
    assert promoted_at - crash <= PERIOD + 2 * DEFAULT_REFUSED_RETRY_NS
    assert len(d.sent) == 1 + DEFAULT_FAILURE_THRESHOLD


def test_a_timeout_never_hastens_the_next_probe() -> None:
    d = Drive()
    d.answer()
    p = d.probe()
    d._feed(ProbeFailed(now=p.deadline - 1, probe_id=p.probe_id, failure=ProbeFailure.TIMEOUT))
    assert d.mon.next_deadline() == p.deadline - DEFAULT_PROBE_DEADLINE_NS + PERIOD
    d.miss()
    assert d.mon.next_deadline() == d.sent[-1].deadline - DEFAULT_PROBE_DEADLINE_NS + PERIOD


def test_slow_probes_never_cause_a_takeover_while_answers_keep_arriving() -> None:
    d = Drive()
    for _ in range(50):
        d.miss()
        d.miss()
        out = d.answer(after=DEFAULT_PROBE_DEADLINE_NS - 1)
        assert of(Promote, out) == []
    assert d.mon.state is PeerState.UP


def test_refusals_from_a_peer_never_seen_do_not_hasten_probes() -> None:
    d = Drive()
    d.fail(ProbeFailure.REFUSED)
    assert d.mon.next_deadline() == PERIOD


def test_refusals_from_a_down_peer_do_not_hasten_probes() -> None:
    d = Drive(own=LEADER_B)
    d.answer(role="follower")
    for _ in range(3):
        d.fail(ProbeFailure.REFUSED)
    assert d.mon.state is PeerState.DOWN
    d.fail(ProbeFailure.REFUSED)
    assert d.mon.next_deadline() == d.sent[-1].deadline - DEFAULT_PROBE_DEADLINE_NS + PERIOD


# -- a peer never seen -------------------------------------------------------


def test_a_peer_never_seen_is_not_declared_down_before_the_startup_grace() -> None:
    d = Drive()
    while d.now < DEFAULT_STARTUP_GRACE_NS - PERIOD:
        out = d.fail(ProbeFailure.REFUSED)
        assert of(PeerDown, out) == [] and of(Promote, out) == []
    assert d.mon.state is PeerState.UNKNOWN
    while d.mon.state is not PeerState.DOWN:
        out = d.fail(ProbeFailure.REFUSED)
    assert d.now >= DEFAULT_STARTUP_GRACE_NS
    assert of(Promote, out) == [Promote(cause=Cause.PEER_DOWN, epoch=4)]


def test_a_peer_seen_once_gets_no_grace() -> None:
    d = Drive(startup_grace_ns=10 * PERIOD)
    d.answer()
    for _ in range(3):
        out = d.miss()
    assert d.now < 10 * PERIOD
    assert d.mon.state is PeerState.DOWN and of(Promote, out)


# -- decisions -------------------------------------------------------------------


def test_follower_promotes_when_its_leader_goes_down_with_the_epoch_rule() -> None:
    d = Drive()  # own epoch 3
    d.answer(epoch=8)
    d.answer(epoch=5)  # a peer's epoch seen before still counts
    outs = [o for _ in range(3) for o in d.miss()]
    assert of(Promote, outs) == [Promote(cause=Cause.PEER_DOWN, epoch=9)]


def test_own_epoch_above_the_peers_sets_the_promotion_epoch() -> None:
    d = Drive(own=attrs.evolve(FOLLOWER_B, epoch=20))
    d.answer(epoch=8)
    outs = [o for _ in range(3) for o in d.miss()]
    assert of(Promote, outs) == [Promote(cause=Cause.PEER_DOWN, epoch=21)]


def test_a_follower_still_follower_after_a_promote_is_told_again_each_probe() -> None:
    d = Drive()
    d.answer()
    for _ in range(3):
        d.miss()
    assert of(Promote, d.miss()) == [Promote(cause=Cause.PEER_DOWN, epoch=4)]


def test_a_leader_never_promotes_when_its_peer_goes_down() -> None:
    d = Drive(own=LEADER_B)
    d.answer(role="follower")
    outs = [o for _ in range(6) for o in d.miss()]
    assert of(Promote, outs) == [] and of(PeerDown, outs)


def test_manual_policy_reports_but_never_promotes() -> None:
    d = Drive(policy=FailoverPolicy.MANUAL)
    outs = d.answer(role="follower") + [o for _ in range(4) for o in d.miss()]
    assert of(NoLeader, outs) and of(PeerDown, outs)
    assert of(Promote, outs) == []


def test_both_follower_the_contract_winner_is_elected_and_the_loser_waits() -> None:
    # b has the higher seq: b wins over a.
    d = Drive()
    out = d.answer(role="follower", seq=9)
    assert of(NoLeader, out) == [
        NoLeader(own=FOLLOWER_B.standing, peer=d.mon.view().peer.standing, winner="b")  # type: ignore[union-attr]
    ]
    assert of(Promote, out) == [Promote(cause=Cause.ELECTED, epoch=4)]
    # a would lose to b on the same two answers: it only reports.
    a = Drive(own=OwnStanding(label="a", role=Role.FOLLOWER, epoch=3, last_command_seq=9))
    out = a.answer(role="follower", label="b", seq=10)
    assert [n.winner for n in of(NoLeader, out)] == ["b"]
    assert of(Promote, out) == []


def test_no_leader_is_reported_once_per_episode() -> None:
    d = Drive(own=attrs.evolve(FOLLOWER_B, label="z"))  # z loses the label tie
    outs = [o for _ in range(4) for o in d.answer(role="follower")]
    assert len(of(NoLeader, outs)) == 1
    assert of(Promote, outs) == []


def test_split_brain_is_reported_once_per_episode_naming_the_winner() -> None:
    d = Drive(own=attrs.evolve(LEADER_B, epoch=9))
    outs = [o for _ in range(3) for o in d.answer(role="leader", epoch=7)]
    assert [x.winner for x in of(SplitBrain, outs)] == ["b"]
    assert d.mon.view().relation is Relation.SPLIT_BRAIN
    assert of(Promote, outs) == []
    # It heals (a steps down); then splits again: a new episode.
    d.answer(role="follower", epoch=9)
    assert of(SplitBrain, d.answer(role="leader", epoch=10)) != []


def test_a_new_episode_starts_after_the_peer_was_down() -> None:
    d = Drive(own=LEADER_B)
    assert of(SplitBrain, d.answer(role="leader"))
    for _ in range(3):
        d.miss()
    assert d.mon.view().relation is Relation.NONE
    assert of(SplitBrain, d.answer(role="leader"))


# -- label clash -------------------------------------------------------------


def test_label_clash_is_reported_once_and_blocks_failover_while_it_lasts() -> None:
    d = Drive()
    outs = d.answer(label="b", role="follower") + d.answer(label="b", role="follower")
    assert of(LabelClash, outs) == [LabelClash(label="b")]
    assert of(NoLeader, outs) == [] and of(Promote, outs) == []
    outs = [o for _ in range(5) for o in d.miss()]
    assert d.mon.state is PeerState.DOWN
    assert of(Promote, outs) == []


def test_a_clash_ends_with_an_answer_under_another_label() -> None:
    d = Drive()
    d.answer(label="b")
    d.answer(label="a")
    assert d.mon.view().clash is False
    outs = [o for _ in range(3) for o in d.miss()]
    assert of(Promote, outs) != []
    assert of(LabelClash, d.answer(label="b")) == [LabelClash(label="b")]


# -- peer changes and the epoch floor --------------------------------------------


def test_peer_changes_of_role_or_epoch_are_reported_and_nothing_else() -> None:
    d = Drive()
    assert of(PeerChanged, d.answer(role="leader", epoch=3)) == []
    assert of(PeerChanged, d.answer(role="leader", epoch=3, seq=99)) == []
    assert of(PeerChanged, d.answer(role="follower", epoch=3)) == [
        PeerChanged(role=Role.FOLLOWER, epoch=3, previous_role=Role.LEADER, previous_epoch=3)
    ]
    assert of(PeerChanged, d.answer(role="follower", epoch=5)) == [
        PeerChanged(role=Role.FOLLOWER, epoch=5, previous_role=Role.FOLLOWER, previous_epoch=3)
    ]


def test_last_peer_epoch_is_the_largest_ever_seen_stalled_answers_included() -> None:
    d = Drive()
    d.answer(epoch=4)
    d.answer(epoch=11, state="stalled")
    d.answer(epoch=2)  # a peer restarted from scratch
    assert d.mon.last_peer_epoch == 11


def test_last_peer_epoch_starts_at_the_floor_handed_in() -> None:
    mon = PeerMonitor(MonitorConfig(), now=0, last_peer_epoch=40)
    assert mon.last_peer_epoch == 40
    assert mon.config == MonitorConfig()
    assert mon.state is PeerState.UNKNOWN


# -- configuration and the tables ---------------------------------------------


def test_config_defaults_are_the_contracts() -> None:
    c = MonitorConfig()
    assert (c.probe_period_ns, c.probe_deadline_ns, c.failure_threshold) == (
        200 * MS,
        150 * MS,
        3,
    )
    assert c.policy is FailoverPolicy.AUTO


@pytest.mark.parametrize(
    "kw",
    [
        {"probe_deadline_ns": PERIOD + 1},
        {"refused_retry_ns": PERIOD + 1},
        {"failure_threshold": 0},
        {"probe_period_ns": 1.5},
        {"policy": "auto"},
    ],
)
def test_config_refuses_inconsistent_values(kw: dict[str, Any]) -> None:
    with pytest.raises((LocalProtocolError, TypeError)):
        MonitorConfig(**kw)


@pytest.mark.parametrize("kw", [{"now": -1}, {"now": 0, "last_peer_epoch": -1}])
def test_monitor_refuses_bad_start_values(kw: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        PeerMonitor(MonitorConfig(), **kw)


def test_the_verdict_table_covers_every_move_but_a_failure_below_threshold_when_down() -> None:
    missing = {(s, v) for s in PeerState for v in Verdict} - set(TRANSITIONS)
    assert missing == {(PeerState.DOWN, Verdict.FAILURE)}
    with pytest.raises(LocalProtocolError, match="no move from down on failure"):
        _move(PeerState.DOWN, Verdict.FAILURE)


def test_the_probe_slot_allows_one_probe_at_a_time() -> None:
    assert (ProbeSlot.IN_FLIGHT, ProbeInput.SEND) not in PROBE_TRANSITIONS
    view = PeerMonitor(MonitorConfig(), now=0).view()
    with pytest.raises(LocalProtocolError, match="probe-slot"):
        _slot(view, ProbeInput.REPORT)


def test_monitor_events_refuse_bad_values_from_the_host() -> None:
    with pytest.raises(LocalProtocolError, match="now"):
        ProbeFailed(now=-1, probe_id=1, failure=ProbeFailure.ERROR)
    with pytest.raises(TypeError):
        ProbeFailed(now=0, probe_id=1, failure="refused")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="epoch"):
        OwnStanding(label="b", role=Role.LEADER, epoch=-1, last_command_seq=0)


def test_answers_jittered_up_to_just_under_the_deadline_never_cause_a_takeover() -> None:
    rng = random.Random(20)
    d = Drive()
    for _ in range(2_000):
        out = d.answer(after=rng.randrange(0, DEFAULT_PROBE_DEADLINE_NS))
        assert of(PeerDown, out) == [] and of(Promote, out) == []
    assert d.mon.state is PeerState.UP


def test_a_crash_at_any_phase_of_the_period_is_detected_within_300_ms() -> None:
    worst = 0
    for phase_ms in range(0, 200, 7):
        d = Drive()
        d.answer()
        crash = d.sent[-1].deadline - DEFAULT_PROBE_DEADLINE_NS + phase_ms * MS
        while True:
            p = d.probe()
            if d.now < crash:  # still alive: it answers
                d._feed(
                    ProbeAnswered(now=d.now + MS, probe_id=p.probe_id, status=200, body=health())
                )
                continue
            out = d._feed(
                ProbeFailed(now=d.now + MS, probe_id=p.probe_id, failure=ProbeFailure.REFUSED)
            )
            if of(Promote, out):
                break
        worst = max(worst, d.now - crash)
    # one period + two 50 ms retries + 1 ms per refusal on loopback
    assert worst <= PERIOD + 2 * DEFAULT_REFUSED_RETRY_NS + 3 * MS
