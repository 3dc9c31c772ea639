"""The worker pool (``_workers.py``): on demand up to the cap, reused,
queued past it, stopped whole."""

from __future__ import annotations

import functools
import threading
import time

from srv_util import wait_for

from peersync_server._workers import WorkerPool


def test_jobs_run_at_once_up_to_the_cap_and_queue_past_it() -> None:
    pool = WorkerPool(3)
    release = threading.Event()
    running: list[int] = []
    lock = threading.Lock()

    def job(n: int) -> None:
        with lock:
            running.append(n)
        release.wait(5)

    try:
        for n in range(5):
            pool.submit(functools.partial(job, n))
        wait_for(lambda: len(running) == 3)
        time.sleep(0.1)  # the other two would have started by now if they could
        assert len(running) == 3 and pool.size == 3
        release.set()
        wait_for(lambda: len(running) == 5)  # queued jobs run once workers free up
        assert pool.size == 3
    finally:
        release.set()
        pool.stop()


def seen(names: set[int], done: threading.Event) -> None:
    names.add(threading.get_ident())
    done.set()


def test_an_idle_worker_is_reused() -> None:
    pool = WorkerPool(8)
    names: set[int] = set()
    done = threading.Event()
    try:
        for _ in range(20):
            done.clear()
            pool.submit(functools.partial(seen, names, done))
            assert done.wait(5)
            time.sleep(0.005)  # the worker goes back to waiting
        assert pool.size < 8 and len(names) == pool.size
    finally:
        pool.stop()


def meet(barrier: threading.Barrier) -> None:
    barrier.wait()


def test_stop_ends_every_worker_and_the_spawner() -> None:
    before = {t.ident for t in threading.enumerate()}
    pool = WorkerPool(4)
    gate = threading.Barrier(5, timeout=5)
    for _ in range(4):
        pool.submit(functools.partial(meet, gate))
    gate.wait()
    pool.stop()
    wait_for(lambda: {t.ident for t in threading.enumerate()} <= before)


def test_a_failing_job_does_not_kill_its_worker() -> None:
    pool = WorkerPool(1)
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("job failed")

    try:
        pool.submit(boom)
        pool.submit(done.set)
        assert done.wait(5)
        assert pool.size == 1
    finally:
        pool.stop()
