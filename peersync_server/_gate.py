"""The run gate: how many worker threads run request code at once.

CPython runs one thread's Python code at a time and hands the GIL over in
turns of ``sys.getswitchinterval()`` (5 ms). With 64 workers busy on CPU
work (a client pipelining a thousand cheap requests on each of 64
connections), every thread that wants the GIL back, the accept loop
included, waits behind all of them: about 64 x 5 ms for each blocking call it
returns from. Measured: the accept loop took 300 ms and more to answer a peer
probe, past the peer's 150 ms deadline (found by a tester).

So a worker runs request code only while it holds one of a few slots, hands
its slot to the longest waiter between two requests, and lets go of it
whenever it waits on a client, the decoder or a keep window. A thread
waiting for a slot waits on a lock, outside the GIL; the accept loop never
takes a slot, so it competes with at most ``slots`` runnable workers.
Throughput is unchanged: on CPython only one of them runs at a time anyway.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["DEFAULT_RUN_SLOTS", "RunGate", "Turns"]

T = TypeVar("T")

#: Worker threads that may run request code at once. Two, not one: a slot
#: holder may block where the gate does not see it (an fsync before a 200,
#: the engine lock held by such a holder, a full log pipe).
DEFAULT_RUN_SLOTS = 2


class Turns(Generic[T]):
    """The run gate's bookkeeping, without threads or locks: free slots and
    the queue of waiters (``T`` is whatever wakes one)."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("a run gate needs at least one slot")
        self.free = slots
        self.waiting: collections.deque[T] = collections.deque()

    def ask(self, waiter: T) -> bool:
        """``True``: a slot is the asker's now; ``False``: ``waiter`` is queued
        (behind every earlier one, even if a slot is free: no barging)."""
        if self.free and not self.waiting:
            self.free -= 1
            return True
        self.waiting.append(waiter)
        return False

    def give_back(self) -> T | None:
        """A holder gives its slot back: to the longest waiter, returned so
        the caller wakes it, else to the free pool (``None``)."""
        if self.waiting:
            return self.waiting.popleft()
        self.free += 1
        return None


class RunGate:
    """A FIFO semaphore over :class:`Turns`: ``enter`` waits for a slot,
    ``leave`` hands it straight to the longest waiter."""

    def __init__(self, slots: int = DEFAULT_RUN_SLOTS) -> None:
        self._lock = threading.Lock()
        self._turns: Turns[threading.Lock] = Turns(slots)

    @property
    def waiting(self) -> int:
        """Threads waiting for a slot (a snapshot, for tests and stats)."""
        return len(self._turns.waiting)

    def enter(self) -> None:
        baton = threading.Lock()
        baton.acquire()
        with self._lock:
            if self._turns.ask(baton):
                return
        baton.acquire()  # released by ``leave``: the slot is ours

    def leave(self) -> None:
        with self._lock:
            baton = self._turns.give_back()
        if baton is not None:
            baton.release()

    def take_turns(self) -> None:
        """Between two requests: let the longest waiter run first, if any."""
        if self._turns.waiting:
            self.leave()
            self.enter()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Around a wait while holding a slot: others run meanwhile."""
        self.leave()
        try:
            yield
        finally:
            self.enter()
