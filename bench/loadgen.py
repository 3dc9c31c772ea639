"""A small load generator, run as its own process; prints one JSON line.

Used by ``bench/run.py`` for what ``wrk`` cannot do (paced probes, snapshot
traffic) and in place of ``wrk`` where it is not installed. Every loop is
bounded in count and in time.

    python bench/loadgen.py latency --port P --n 5000 --max-seconds 20
    python bench/loadgen.py throughput --port P --connections 8 --seconds 3
    python bench/loadgen.py probe --port P --interval-ms 5 --seconds 4
    python bench/loadgen.py snapshot --port P --body-file F --seconds 4

* ``latency``: one keep-alive connection, N sequential GETs; p50/p99/max.
* ``throughput``: C keep-alive connections, one request in flight each, for
  S seconds (one thread, a selector); answers per second.
* ``probe``: a GET every I ms on one keep-alive connection; p50/p99/max.
* ``snapshot``: two connections, one PUTting the snapshot in F (under a
  reconcile lock), one GETting the state, back to back for S seconds.

A server that says ``Connection: close`` (e.g. peersync-server's 1,000th
answer on a connection) is reconnected before the next request, outside the
timing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import selectors
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

HEALTH = "/api/peer/health"
MAX_HEAD = 64 * 1024


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the same rule as bench/failover.py)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def request_bytes(port: int, path: str = HEALTH) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


class Answers:
    """Splits a byte stream into HTTP/1.1 answers framed by Content-Length."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[tuple[int, bool]]:
        """Adds bytes; returns ``(status, closing)`` per answer completed."""
        self.buf += data
        done: list[tuple[int, bool]] = []
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    raise ValueError("answer head too long")
                return done
            head = self.buf[:end].lower()
            length = 0
            closing = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and b"close" in value:
                    closing = True
            if len(self.buf) < end + 4 + length:
                return done
            status = int(head[9:12])
            self.buf = self.buf[end + 4 + length :]
            done.append((status, closing))


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _one(sock: socket.socket, answers: Answers, request: bytes) -> tuple[int, bool]:
    sock.sendall(request)
    while True:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("server closed mid-answer")
        got = answers.feed(data)
        if got:
            return got[0]


def _timed(port: int, n: int, max_seconds: float, interval_s: float) -> dict[str, float]:
    request = request_bytes(port)
    sock, answers = _connect(port), Answers()
    times: list[float] = []
    errors = 0
    stop_at = time.monotonic() + max_seconds
    next_at = time.monotonic()
    try:
        while len(times) < n and time.monotonic() < stop_at:
            if interval_s:
                next_at += interval_s
                time.sleep(max(0.0, next_at - time.monotonic()))
            start = time.perf_counter_ns()
            status, closing = _one(sock, answers, request)
            times.append((time.perf_counter_ns() - start) / 1000)
            errors += status != 200
            if closing:
                sock.close()
                sock, answers = _connect(port), Answers()
    finally:
        sock.close()
    return {
        "n": len(times),
        "errors": errors,
        "p50_us": percentile(times, 50),
        "p99_us": percentile(times, 99),
        "max_us": max(times),
    }


def throughput(port: int, connections: int, seconds: float) -> dict[str, float]:
    request = request_bytes(port)
    selector = selectors.DefaultSelector()

    def open_one() -> None:
        sock = _connect(port)
        sock.setblocking(False)
        sock.sendall(request)
        selector.register(sock, selectors.EVENT_READ, Answers())

    for _ in range(connections):
        open_one()
    count = errors = 0
    start = time.monotonic()
    stop_at = start + seconds
    while (now := time.monotonic()) < stop_at:
        for key, _ in selector.select(timeout=stop_at - now):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            got = key.data.feed(data) if data else []
            count += len(got)
            errors += sum(status != 200 for status, _ in got)
            if not data or any(closing for _, closing in got):
                selector.unregister(sock)
                sock.close()
                errors += not data
                open_one()
            elif got:
                sock.sendall(request)
    elapsed = time.monotonic() - start
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    return {"requests": count, "errors": errors, "seconds": elapsed, "rps": count / elapsed}


def acquire_lock(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = b'{"owner": "bench", "ttlMs": 300000}'
        conn.request("POST", "/api/sync/reconcile-lock", body, {"content-type": "application/json"})
        answer = conn.getresponse()
        grant = json.loads(answer.read())
        if answer.status != 200:
            raise RuntimeError(f"lock: {answer.status} {grant}")
        return str(grant["lockId"])
    finally:
        conn.close()


def release_lock(port: int, lock_id: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("DELETE", f"/api/sync/reconcile-lock/{lock_id}")
        conn.getresponse().read()
    finally:
        conn.close()


def put_state(conn: http.client.HTTPConnection, body: bytes, lock_id: str) -> int:
    headers = {"content-type": "application/json", "x-reconcile-lock-id": lock_id}
    conn.request("PUT", "/api/sync/state", body, headers)
    answer = conn.getresponse()
    answer.read()
    return answer.status


def get_state(conn: http.client.HTTPConnection) -> int:
    conn.request("GET", "/api/sync/state")
    answer = conn.getresponse()
    size = len(answer.read())
    if answer.status != 200:
        raise RuntimeError(f"GET state: {answer.status}")
    return size


def snapshot_load(port: int, body: bytes, seconds: float) -> dict[str, float]:
    lock_id = acquire_lock(port)
    stop_at = time.monotonic() + seconds
    counts = {"puts": 0, "gets": 0, "put_errors": 0}

    def putter() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < stop_at:
            status = put_state(conn, body, lock_id)
            counts["puts"] += 1
            counts["put_errors"] += status != 200

    def getter() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < stop_at:
            get_state(conn)
            counts["gets"] += 1

    threads = [threading.Thread(target=putter), threading.Thread(target=getter)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    release_lock(port, lock_id)
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("latency", "throughput", "probe", "snapshot"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--interval-ms", type=float, default=5.0)
    parser.add_argument("--body-file", type=Path)
    args = parser.parse_args(argv)
    if args.mode == "latency":
        result = _timed(args.port, args.n, args.max_seconds, 0.0)
    elif args.mode == "probe":
        n = int(args.seconds * 1000 / args.interval_ms) + 1
        result = _timed(args.port, n, args.seconds + 5, args.interval_ms / 1000)
    elif args.mode == "throughput":
        result = throughput(args.port, args.connections, args.seconds)
    else:
        result = snapshot_load(args.port, args.body_file.read_bytes(), args.seconds)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
