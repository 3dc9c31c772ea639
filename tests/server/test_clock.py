"""The shell's one clock and the ticker thread (no polling, aioquic clamp)."""

from __future__ import annotations

import threading
import time

from peersync_server._clock import Clock, Ticker


def test_clock_never_goes_back_after_a_clamp() -> None:
    clock = Clock()
    ahead = clock.now() + 50_000_000  # 50 ms in the future
    assert clock.at_least(ahead) == ahead
    assert clock.now() >= ahead  # a later plain reading is not earlier


def test_clock_readings_never_decrease_across_threads() -> None:
    clock = Clock()
    seen: list[list[int]] = [[] for _ in range(4)]

    def read(out: list[int]) -> None:
        for _ in range(2000):
            out.append(clock.now())

    threads = [threading.Thread(target=read, args=(s,)) for s in seen]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for series in seen:
        assert series == sorted(series)


class _Core:
    """A deadline source like the engine's, recording the ticks it got."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.deadline: int | None = None
        self.fired: list[tuple[int, int]] = []  # (deadline, now handed in)
        self.event = threading.Event()

    def next_deadline(self) -> int | None:
        with self.lock:
            return self.deadline

    def fire(self, due: int) -> None:
        now = self.clock.at_least(due)
        with self.lock:
            self.fired.append((due, now))
            if self.deadline is not None and now >= self.deadline:
                self.deadline = None
        self.event.set()


def test_ticker_never_hands_a_now_before_the_deadline() -> None:
    clock = Clock()
    core = _Core(clock)
    ticker = Ticker(clock, core.next_deadline, core.fire)
    ticker.start()
    try:
        for delay_ms in (1, 5, 20):
            core.event.clear()
            due = clock.raw() + delay_ms * 1_000_000
            with core.lock:
                core.deadline = due
            ticker.deadline_changed(due)
            assert core.event.wait(2)
            deadline, now = core.fired[-1]
            assert deadline == due
            assert now >= due
    finally:
        ticker.stop()


def test_ticker_wakes_early_when_the_deadline_moves_earlier() -> None:
    clock = Clock()
    core = _Core(clock)
    ticker = Ticker(clock, core.next_deadline, core.fire)
    with core.lock:
        core.deadline = clock.raw() + 60_000_000_000  # a minute away
    ticker.start()
    try:
        time.sleep(0.05)
        soon = clock.raw() + 10_000_000
        with core.lock:
            core.deadline = soon
        started = time.monotonic()
        ticker.deadline_changed(soon)
        assert core.event.wait(2)
        assert time.monotonic() - started < 0.5
        assert core.fired[-1][0] == soon
    finally:
        ticker.stop()


def test_ticker_does_not_poll_without_a_deadline() -> None:
    clock = Clock()
    core = _Core(clock)
    ticker = Ticker(clock, core.next_deadline, core.fire)
    ticker.start()
    try:
        time.sleep(0.3)
        assert ticker.wakeups == 0
        assert core.fired == []
    finally:
        ticker.stop()


def test_ticker_sleeps_through_a_later_deadline_without_waking() -> None:
    clock = Clock()
    core = _Core(clock)
    ticker = Ticker(clock, core.next_deadline, core.fire)
    with core.lock:
        core.deadline = clock.raw() + 60_000_000_000
    ticker.start()
    try:
        time.sleep(0.05)
        ticker.deadline_changed(clock.raw() + 120_000_000_000)  # later: no wake
        time.sleep(0.2)
        assert ticker.wakeups == 0
    finally:
        ticker.stop()
