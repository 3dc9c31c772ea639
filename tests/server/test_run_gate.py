"""The run gate (``_gate.py``): its bookkeeping against a simple model, and
the threaded gate handing slots over in arrival order."""

from __future__ import annotations

import functools
import threading

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from srv_util import wait_for

from peersync_server._gate import RunGate, Turns


class TurnsModel(RuleBasedStateMachine):
    """Turns against a model: a set of holders and a first-come queue."""

    def __init__(self) -> None:
        super().__init__()
        self.slots = 0
        self.turns: Turns[int] | None = None
        self.holders: set[int] = set()
        self.queue: list[int] = []
        self.next_id = 0

    @precondition(lambda self: self.turns is None)
    @rule(slots=st.integers(min_value=1, max_value=4))
    def start(self, slots: int) -> None:
        self.slots = slots
        self.turns = Turns(slots)

    @precondition(lambda self: self.turns is not None)
    @rule()
    def ask(self) -> None:
        assert self.turns is not None
        who = self.next_id
        self.next_id += 1
        granted = self.turns.ask(who)
        expected = len(self.holders) < self.slots and not self.queue
        assert granted == expected
        if granted:
            self.holders.add(who)
        else:
            self.queue.append(who)

    @precondition(lambda self: bool(self.holders))
    @rule(data=st.data())
    def give_back(self, data: st.DataObject) -> None:
        assert self.turns is not None
        who = data.draw(st.sampled_from(sorted(self.holders)))
        self.holders.remove(who)
        woken = self.turns.give_back()
        if self.queue:
            assert woken == self.queue.pop(0)  # the longest waiter, nobody else
            self.holders.add(woken)
        else:
            assert woken is None

    @invariant()
    def matches_the_model(self) -> None:
        if self.turns is None:
            return
        assert len(self.holders) <= self.slots
        assert self.turns.free == self.slots - len(self.holders)
        assert list(self.turns.waiting) == self.queue
        assert not (self.queue and self.turns.free)  # nobody waits beside a free slot


TestTurns = TurnsModel.TestCase


def test_a_gate_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        RunGate(0)


def test_slots_pass_to_waiting_threads_in_arrival_order() -> None:
    gate = RunGate(1)
    order: list[int] = []
    gate.enter()  # the test thread holds the only slot

    def run(n: int) -> None:
        with gate.held():
            order.append(n)

    threads = []
    for n in range(5):
        thread = threading.Thread(target=run, args=(n,))
        thread.start()
        threads.append(thread)
        wait_for(functools.partial(lambda want: gate.waiting == want, n + 1))  # in this order
    assert order == []
    gate.leave()
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]
    gate.enter()  # every slot came back: no wait
    gate.leave()


def test_a_thread_that_takes_turns_queues_behind_those_already_waiting() -> None:
    gate = RunGate(1)
    events: list[str] = []
    gate.enter()

    def wait_then_run() -> None:
        with gate.held():
            events.append("waiter")

    waiter = threading.Thread(target=wait_then_run)
    waiter.start()
    wait_for(lambda: gate.waiting == 1)
    gate.take_turns()  # hands over, then waits for the slot to come back
    events.append("holder again")
    waiter.join(5)
    assert events == ["waiter", "holder again"]
    gate.take_turns()  # nobody waits: keeps the slot, does not block
    gate.leave()


def test_a_holder_waiting_elsewhere_lets_another_run() -> None:
    gate = RunGate(1)
    ran = threading.Event()
    gate.enter()
    with gate.released():
        thread = threading.Thread(target=lambda: _run_held(gate, ran))
        thread.start()
        assert ran.wait(5)
    thread.join(5)
    gate.leave()


def _run_held(gate: RunGate, ran: threading.Event) -> None:
    with gate.held():
        ran.set()


def test_two_slots_run_two_holders_at_once() -> None:
    gate = RunGate(2)
    inside = threading.Barrier(2, timeout=5)  # breaks unless both are in at once

    def run() -> None:
        with gate.held():
            inside.wait()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert not inside.broken
