"""The one place in the shell that reads time, and the ticker thread.

:class:`Clock` is the only reader of ``time.monotonic_ns`` (and of the wall
clock, for ``capturedAtUs``). Every event handed to the core is stamped with a
fresh :meth:`Clock.now` read under the engine lock, so the values the core sees
never decrease. :meth:`Clock.at_least` is the aioquic clamp: the ticker never
hands the core a ``now`` earlier than the deadline it is serving, and every
later reading is at least that value, so the clamp cannot make time go back.

:class:`Ticker` sleeps until the core's next deadline, wakes early when the
deadline moves (:meth:`Ticker.deadline_changed`), and never polls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Clock", "Ticker"]


class Clock:
    """Monotonic nanoseconds that never go back, even after a clamp."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def now(self) -> int:
        """A fresh monotonic reading in integer nanoseconds."""
        with self._lock:
            value = max(time.monotonic_ns(), self._last)
            self._last = value
            return value

    def at_least(self, floor: int) -> int:
        """A fresh reading, clamped to be no earlier than ``floor``."""
        with self._lock:
            value = max(time.monotonic_ns(), self._last, floor)
            self._last = value
            return value

    def raw(self) -> int:
        """The monotonic clock without the clamp (for sleeping and timing)."""
        return time.monotonic_ns()

    @staticmethod
    def wall_us() -> int:
        """Wall-clock microseconds since the Unix epoch (for ``capturedAtUs``)."""
        return time.time_ns() // 1_000

    @staticmethod
    def seconds() -> float:
        """Monotonic seconds, for socket deadlines in the connection code."""
        return time.monotonic()


class Ticker:
    """One thread that wakes the core exactly at its next deadline.

    ``deadline`` reads the core's current next deadline (ns or ``None``);
    ``fire(deadline)`` hands the core a ``Tick`` for it (the caller clamps
    ``now`` with :meth:`Clock.at_least`). After every core call the owner
    reports the new deadline with :meth:`deadline_changed`; the ticker wakes
    only if it moved earlier than the one it sleeps on.
    """

    def __init__(
        self,
        clock: Clock,
        deadline: Callable[[], int | None],
        fire: Callable[[int], None],
        *,
        name: str = "peersync-ticker",
    ) -> None:
        self._clock = clock
        self._deadline = deadline
        self._fire = fire
        self._cond = threading.Condition()
        self._sleeping_until: int | None = None
        self._stopped = False
        self._wakeups = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def wakeups(self) -> int:
        """How many times the thread woke (for tests: no polling)."""
        return self._wakeups

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def deadline_changed(self, deadline: int | None) -> None:
        """Wake the thread if ``deadline`` is earlier than what it sleeps on."""
        if deadline is None:
            return
        with self._cond:
            current = self._sleeping_until
            if current is None or deadline < current:
                self._sleeping_until = deadline
                self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                due = self._deadline()
                self._sleeping_until = due
                if due is None:
                    self._cond.wait()
                    self._wakeups += 1
                    continue
                remaining = due - self._clock.raw()
                if remaining > 0:
                    # Round up to the next microsecond so a wake-up is never
                    # a hair early; a slightly late one is clamped anyway.
                    self._cond.wait((remaining + 999) / 1e9)
                    self._wakeups += 1
                    continue
            self._fire(due)
