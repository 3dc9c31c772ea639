"""A log pipe nobody reads must not stop the engine (found by a tester).

The server's stderr was a pipe its supervisor stopped reading. After 64 KiB of
access lines the pipe was full; request threads blocked in logging (and the
accept loop in its synchronous 503 warning), every endpoint hung, and then
``GET /api/peer/health`` stopped answering too: the peer would have declared
a live engine dead and taken over. The rule: logging never blocks a request
thread or the accept loop. Lines the sink cannot take are dropped and counted;
once the sink drains, one line says how many were dropped.

Everything here is real: a server process, its stderr an OS pipe the test
does not read, a flood of requests from another process, and health probes on
fresh loopback connections with the peer monitor's 150 ms deadline.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from srv_util import PYTHON, ServerProcess

PROBE_DEADLINE_S = 0.15
PROBE_EVERY_S = 0.1
FLOOD_THREADS = 4
FLOOD_REQUESTS = 4000  # per thread: 16000 access lines, about 1.8 MB: past the queue and the pipe
DROPPED = re.compile(r"dropped (\d+) log lines")

#: The flood, in its own process so that the probes here get the GIL when
#: they need it. Keep-alive connections (or, with ``fresh``, a new connection
#: per request), a mix of endpoints (404s and the lock status included); a
#: request that takes longer than 3 s stops its thread (the engine hangs);
#: prints what it did as JSON, statuses counted.
FLOOD = r"""
import collections, http.client, json, sys, threading, time
port, threads, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
fresh = sys.argv[4] == "fresh"
paths = ["/api/peer/health", "/api/sync/health", "/api/sync/reconcile-lock",
         "/api/sync/state/nothing-here", "/no/such/path"]
if fresh:
    paths = paths[1:]  # peer health past the cap is answered: only 503s wanted
sent, done, failed = [0] * threads, [0] * threads, [0] * threads
statuses = collections.Counter()
def run(k):
    conn = None
    for i in range(count):
        sent[k] += 1
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
            conn.request("GET", paths[i % len(paths)])
            response = conn.getresponse()
            response.read()
            statuses[response.status] += 1
            if fresh:
                conn.close()
                conn = None
        except Exception:
            failed[k] += 1
            return
        done[k] += 1
workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
started = time.monotonic()
for w in workers: w.start()
for w in workers: w.join()
print(json.dumps({"sent": sum(sent), "done": sum(done), "failed": sum(failed),
                  "statuses": dict(statuses), "seconds": round(time.monotonic() - started, 2)}))
"""


def _probe(port: int) -> bool:
    """Peer health on a fresh connection, answered 200 within the deadline."""
    deadline = time.monotonic() + PROBE_DEADLINE_S
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_DEADLINE_S) as sock:
            sock.sendall(b"GET /api/peer/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return False
    return data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"}")


def _start(tmp_path: Path, *more: str) -> ServerProcess:
    args = [
        "--label", "a", "--listen", "127.0.0.1:0", "--no-auth",
        "--state-dir", str(tmp_path / "s"), "--log-level", "info", *more,
    ]  # fmt: skip
    return ServerProcess(args, cwd=tmp_path)


def _flood_while_probing(
    port: int, requests: int = FLOOD_REQUESTS, mode: str = "keep-alive"
) -> tuple[dict[str, Any], list[bool]]:
    """Flood from another process; probe peer health every 100 ms meanwhile
    (and a second after). Returns the flood's report and the probe results."""
    flood = subprocess.Popen(
        [PYTHON, "-c", FLOOD, str(port), str(FLOOD_THREADS), str(requests), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    probes: list[bool] = []
    try:
        stop_at = time.monotonic() + 60
        while flood.poll() is None and time.monotonic() < stop_at:
            probes.append(_probe(port))
            time.sleep(PROBE_EVERY_S)
        for _ in range(10):  # and after the flood: a stuck engine stays stuck
            probes.append(_probe(port))
            time.sleep(PROBE_EVERY_S)
        out, _ = flood.communicate(timeout=30)
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait(10)
    return json.loads(out), probes


def test_an_unread_log_pipe_does_not_stop_the_engine(tmp_path: Path) -> None:
    server = _start(tmp_path)
    try:
        port = server.wait_listening()
        report, probes = _flood_while_probing(port)
        on_time = sum(probes)
        print(f"flood {report}; probes on time {on_time}/{len(probes)}")
        total = FLOOD_THREADS * FLOOD_REQUESTS
        assert report["failed"] == 0 and report["done"] == total, report
        assert len(probes) >= 15, probes
        assert on_time >= len(probes) - 1, f"{on_time}/{len(probes)} probes on time"

        # Now read the pipe: the lines that could not be written are counted.
        assert server.proc.stderr is not None
        err_fd = server.proc.stderr.fileno()
        chunks: list[bytes] = []

        def read() -> None:
            while data := os.read(err_fd, 65536):
                chunks.append(data)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + 15
        while not DROPPED.search(b"".join(chunks).decode()) and time.monotonic() < deadline:
            time.sleep(0.05)
        text = b"".join(chunks).decode()
        found = DROPPED.search(text)
        assert found is not None, text[-2000:]
        dropped = int(found.group(1))
        assert dropped > 0
        server.signal(15)
        server.proc.wait(15)
        reader.join(15)
        assert server.proc.returncode == 0
    finally:
        server.close()
    text = b"".join(chunks).decode()
    access = sum(1 for line in text.splitlines() if " peersync.server.access " in line)
    counted = sum(int(n) for n in DROPPED.findall(text))
    print(f"access lines written {access}, dropped {counted}")
    # Every request was either logged or counted (the probes are requests too;
    # during the flood only access lines were logged).
    assert access + counted == total + len(probes), (access, counted, total, len(probes))


def test_a_stuck_log_pipe_does_not_stop_the_engine_from_exiting(tmp_path: Path) -> None:
    server = _start(tmp_path)
    try:
        port = server.wait_listening()
        report, _ = _flood_while_probing(port, 1500)  # 600 KB: the pipe is full
        assert report["failed"] == 0, report
        started = time.monotonic()
        server.signal(15)  # stderr still unread: the log is stuck
        code = server.proc.wait(15)
        took = time.monotonic() - started
        print(f"exit {code} after {took:.2f} s with the log pipe stuck")
        assert code == 0
        assert took < 5, took
    finally:
        server.close()


def test_503_warnings_on_an_unread_log_pipe_do_not_stop_the_accept_loop(tmp_path: Path) -> None:
    """Past the busy cap the accept loop answers 503 itself and logs a WARNING
    for each, and it answers the peer's probe itself too: a warning written
    synchronously to a full pipe stopped both."""
    # The two held uploads must outlast the flood: a body deadline of 60 s.
    server = _start(tmp_path, "--max-connections", "2", "--body-timeout", "60")
    held: list[socket.socket] = []
    try:
        port = server.wait_listening()
        for _ in range(2):  # two uploads in flight hold both slots
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(
                b"POST /api/sync/reconcile-lock HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            )
            held.append(sock)
        time.sleep(0.3)
        report, probes = _flood_while_probing(port, 4000, "fresh")  # 16000 x 503: 1.3 MB
        on_time = sum(probes)
        print(f"flood {report}; probes on time {on_time}/{len(probes)}")
        assert report["failed"] == 0 and report["statuses"] == {"503": 16000}, report
        assert len(probes) >= 15, probes
        assert on_time >= len(probes) - 1, f"{on_time}/{len(probes)} probes on time"
        for sock in held:
            sock.close()
        held.clear()
        code, _, err = server.terminate()  # reads the pipe: the drops are reported
        assert code == 0
    finally:
        for sock in held:
            sock.close()
        server.close()
    warnings = err.count("over 2 connections: answered 503")
    counted = sum(int(n) for n in DROPPED.findall(err))
    print(f"503 warnings written {warnings}, lines dropped {counted}")
    assert counted > 0
    assert 0 < warnings < 16000
