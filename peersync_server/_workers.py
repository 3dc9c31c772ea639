"""The worker threads: started on demand up to a cap, reused, never started
by the accept loop itself.

``Thread.start()`` waits until the new thread runs, and a new thread runs
only once it gets the GIL: with the server busy that wait took the accept
loop up to 24 ms a thread, 208 ms for a burst of 64 connections, and a peer
probe that came in the middle waited for all of it (measured while 70
clients pipelined requests). So a job is queued at once, and a spawner
thread starts a new worker when no idle one can take it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

__all__ = ["WorkerPool"]

_log = logging.getLogger("peersync.server")

Job = Callable[[], None]

#: How long the spawner waits before trying again when a thread cannot start.
_RETRY_START_S = 0.1
#: The most :meth:`WorkerPool.stop` waits for the spawner and the workers.
_STOP_S = 2.0


class WorkerPool:
    """Runs each submitted job on a worker thread: an idle one, else a new
    one while fewer than ``cap`` exist, else the first that comes free."""

    def __init__(self, cap: int, *, name: str = "peersync-conn") -> None:
        self._cap = cap
        self._name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._wanted = threading.Condition(self._lock)
        self._idle = 0  # threads free for a job not yet claimed
        self._pending = 0  # threads asked of the spawner, not started yet
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._spawner = threading.Thread(target=self._spawn, name=f"{name}-spawner", daemon=True)
        self._spawner.start()

    @property
    def size(self) -> int:
        """Worker threads started so far."""
        with self._lock:
            return len(self._threads)

    def submit(self, job: Job) -> None:
        """Queue ``job``; never waits."""
        with self._lock:
            if self._idle:
                self._idle -= 1  # an idle worker will take it
            elif len(self._threads) + self._pending < self._cap:
                self._pending += 1  # a new one will
                self._wanted.notify()
        self._jobs.put(job)

    def _spawn(self) -> None:
        with self._lock:
            while True:
                while not self._pending and not self._stopping:
                    self._wanted.wait()
                if self._stopping:
                    return
                thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                # Counted before it runs: it may take its job and finish it
                # before ``start`` returns here.
                self._threads.append(thread)
                self._pending -= 1
                self._lock.release()
                try:
                    thread.start()  # waits for the GIL: here, not in the accept loop
                except RuntimeError as exc:  # can't start new thread (a pids limit)
                    _log.error("cannot start a worker thread: %s; retrying", exc)
                    time.sleep(_RETRY_START_S)
                    with self._lock:
                        self._threads.remove(thread)
                        self._pending += 1  # the queued job is not forgotten
                finally:
                    self._lock.acquire()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:
                _log.exception("worker job failed")
            with self._lock:
                self._idle += 1

    def stop(self) -> None:
        """End the workers (each after its job) and the spawner."""
        with self._lock:
            self._stopping = True
            self._wanted.notify()
        deadline = time.monotonic() + _STOP_S
        self._spawner.join(timeout=_STOP_S)
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        for thread in threads:  # one deadline for all of them
            if thread.ident is not None:  # started (one being started has not)
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
