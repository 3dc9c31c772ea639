"""Load: idle floods, slowloris, a trickled upload and connection churn.

Against a real server process, in parallel: idle connections (100; 500 with
``PEERSYNC_LONG=1``), slowloris heads (10; 50) trickling a byte a second and
coming back when cut off, and a 50 MB ``PUT /api/sync/state`` trickled at
10 KB/s, while a peer polls health at 5 Hz on a fresh connection each time
(as the peer monitor does). Every probe answers 200, the p99 stays under a
generous bound (the issue's target is 50 ms; the measured figure is printed
and recorded in docs/reliability.md), and the server's threads and memory
stay bounded.

Then short connections to peer health (5,000; 100,000): memory and thread
count after warm-up stay flat (within 10%).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from pathlib import Path

from hostile_util import LONG, TOKEN, Server, percentile, scaled, server

HEALTH = b"GET /api/peer/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
#: The issue's target is 50 ms; the assertion leaves room for a CI machine
#: shared with other jobs (the figure itself is printed and recorded).
P99_BOUND_S = 0.2
MAX_CONNECTIONS = 64


def _probe(port: int) -> tuple[float, int]:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(HEALTH)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    elapsed = time.perf_counter() - started
    return elapsed, int(data.split(b" ", 2)[1]) if data else -1


def _idle_flood(port: int, count: int, out: list[socket.socket]) -> None:
    for _ in range(count):
        out.append(socket.create_connection(("127.0.0.1", port), timeout=5))


def _slowloris(port: int, stop: threading.Event, cut_off: list[int]) -> None:
    head = b"GET /api/peer/health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 100_000
    while not stop.is_set():
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)) as s:
            for i in range(len(head)):
                if stop.wait(1.0):
                    return
                s.sendall(head[i : i + 1])
        cut_off[0] += 1  # the server's header deadline closed it; come back


def _trickled_upload(port: int, stop: threading.Event, sent: list[int]) -> None:
    size = 50 * 1024 * 1024
    head = (
        f"PUT /api/sync/state HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"X-Reconcile-Lock-Id: {'0' * 32}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    chunk = b"x" * 1024
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(head + b'{"state":"')
        while not stop.wait(0.1):  # 10 KB/s
            s.sendall(chunk)
            sent[0] += len(chunk)


def _sample(srv: Server, stop: threading.Event, threads: list[int], rss: list[int]) -> None:
    while not stop.wait(0.25):
        with contextlib.suppress(OSError, KeyError):
            threads.append(srv.threads())
            rss.append(srv.rss_kib())


def test_health_poll_keeps_answering_under_idle_slowloris_and_trickled_upload(
    tmp_path: Path,
) -> None:
    idle_n, loris_n = (500, 50) if LONG else (100, 10)
    duration = scaled(5.0, 20.0)
    extra = ["--idle-timeout", "300", "--header-timeout", "30", "--body-timeout", "300"]
    with server(tmp_path, extra=extra) as srv:
        time.sleep(0.3)
        base_threads, base_rss = srv.threads(), srv.rss_kib()
        stop = threading.Event()
        idle: list[socket.socket] = []
        cut_off, sent = [0], [0]
        threads_seen: list[int] = []
        rss_seen: list[int] = []
        workers = [
            threading.Thread(target=_idle_flood, args=(srv.port, idle_n, idle)),
            threading.Thread(target=_trickled_upload, args=(srv.port, stop, sent)),
            threading.Thread(target=_sample, args=(srv, stop, threads_seen, rss_seen)),
            *[
                threading.Thread(target=_slowloris, args=(srv.port, stop, cut_off))
                for _ in range(loris_n)
            ],
        ]
        for w in workers:
            w.daemon = True
            w.start()
        time.sleep(1.0)  # the flood is in place
        latencies: list[float] = []
        statuses: list[int] = []
        next_at = time.monotonic()
        end = next_at + duration
        while next_at < end:
            elapsed, status = _probe(srv.port)
            latencies.append(elapsed)
            statuses.append(status)
            next_at += 0.2  # 5 Hz
            time.sleep(max(0.0, next_at - time.monotonic()))
        open_conns = srv.fds()
        stop.set()
        for w in workers:
            w.join(5)
        for sock in idle:
            sock.close()
    p50, p99, worst = percentile(latencies, 50), percentile(latencies, 99), max(latencies)
    print(
        f"\nload: {idle_n} idle, {loris_n} slowloris, upload {sent[0] // 1024} KiB at 10 KB/s; "
        f"{len(latencies)} probes p50 {p50 * 1e3:.1f} ms p99 {p99 * 1e3:.1f} ms "
        f"max {worst * 1e3:.1f} ms; server threads {base_threads}->{max(threads_seen)}, "
        f"RSS {base_rss // 1024}->{max(rss_seen) // 1024} MiB, fds {open_conns}"
    )
    assert statuses == [200] * len(statuses), statuses
    assert p99 < P99_BOUND_S, f"p99 {p99 * 1e3:.1f} ms"
    assert len(idle) == idle_n and open_conns >= idle_n, "the idle flood was not held open"
    # Idle connections hold no thread; busy ones at most one each, capped.
    assert max(threads_seen) <= base_threads + MAX_CONNECTIONS + 4, threads_seen
    assert max(rss_seen) <= base_rss + 64 * 1024, rss_seen


def _churn(port: int, count: int, failures: list[str]) -> None:
    linger = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT pile-up
    for _ in range(count):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                sock.sendall(HEALTH)
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            if not data.startswith(b"HTTP/1.1 200 "):
                failures.append(repr(data[:80]))
        except OSError as exc:
            failures.append(repr(exc))


def test_short_connection_churn_keeps_memory_and_threads_flat(tmp_path: Path) -> None:
    total = 100_000 if LONG else 5_000
    clients = 4
    with server(tmp_path) as srv:
        failures: list[str] = []

        def burst(n: int, parallel: int = clients) -> None:
            ts = [
                threading.Thread(target=_churn, args=(srv.port, n // parallel, failures))
                for _ in range(parallel)
            ]
            for t in ts:
                t.start()
            for t in ts:
                t.join()

        # Warm-up: four times the measured concurrency, until the worker pool
        # stopped growing for two batches. (The pool grows past the real
        # concurrency, up to the connection cap: a worker that just freed its
        # connection is not yet counted idle, see docs/reliability.md. Bounded,
        # but it settles only once the pool has seen its peak.)
        base_threads = srv.threads()
        history = [base_threads]
        for _ in range(20):
            burst(800, clients * 4)
            history.append(srv.threads())
            if len(history) >= 3 and history[-1] == history[-2] == history[-3]:
                break
        warm_threads, warm_rss = srv.threads(), srv.rss_kib()
        started = time.monotonic()
        burst(total)
        end_threads, end_rss = srv.threads(), srv.rss_kib()
        rate = total / (time.monotonic() - started)
    print(
        f"\nchurn: warm-up threads {history}; {total} connections at {rate:.0f}/s; "
        f"threads {warm_threads}->{end_threads}, "
        f"RSS {warm_rss / 1024:.1f}->{end_rss / 1024:.1f} MiB"
    )
    assert failures == [], failures[:5]
    assert end_rss <= warm_rss * 1.10, (warm_rss, end_rss)
    assert end_threads <= max(warm_threads * 1.10, warm_threads + 1), (warm_threads, end_threads)
    assert max(history) <= base_threads + MAX_CONNECTIONS, history
