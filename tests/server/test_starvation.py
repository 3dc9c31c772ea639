"""Peer health is never starved: slow, idle and stalled clients cannot block it."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from pathlib import Path

from srv_util import TOKEN, server_process

PROBE_PERIOD_S = 0.2  # 5 Hz, like the peer monitor
PROBE_BUDGET_S = 0.2
PROBES = 20


def _probe(port: int) -> tuple[float, int, str]:
    """One probe on a fresh connection, as an abandoning peer monitor does."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/api/peer/health")
        response = conn.getresponse()
        status = json.loads(response.read())["status"]
        return time.perf_counter() - started, response.status, status
    finally:
        conn.close()


def test_health_answers_within_200ms_under_slowloris_idle_flood_and_stalled_upload(
    tmp_path: Path,
) -> None:
    (tmp_path / "token").write_text(TOKEN)
    args = [
        "--label", "a", "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "s"),
        "--api-token-file", str(tmp_path / "token"),
    ]  # fmt: skip
    stop = threading.Event()
    sockets: list[socket.socket] = []
    with server_process(args, cwd=tmp_path) as proc:
        port = proc.wait_listening()
        auth = f"Bearer {TOKEN}"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/api/sync/reconcile-lock", headers={"Authorization": auth})
        lock_id = json.loads(conn.getresponse().read())["lockId"]
        conn.close()

        # A stalled 50 MB upload: head and 1 MiB of body, then nothing.
        upload = socket.create_connection(("127.0.0.1", port))
        upload.sendall(
            (
                f"PUT /api/sync/state HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
                f"X-Reconcile-Lock-Id: {lock_id}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {50 * 1024 * 1024}\r\n\r\n"
            ).encode()
            + b'{"state":"'
            + b"x" * (1 << 20)
        )
        sockets.append(upload)

        # Slowloris: ten heads trickling a byte every 300 ms.
        loris = []
        for _ in range(10):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /api/peer/health HTTP/1.1\r\nHost: x\r\n")
            loris.append(sock)
        sockets.extend(loris)

        def trickle() -> None:
            while not stop.wait(0.3):
                for sock in loris:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X")

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()

        # 200 idle connections that never send a byte.
        for _ in range(200):
            sockets.append(socket.create_connection(("127.0.0.1", port)))

        results = []
        try:
            next_at = time.monotonic()
            for _ in range(PROBES):
                results.append(_probe(port))
                next_at += PROBE_PERIOD_S
                time.sleep(max(0.0, next_at - time.monotonic()))
        finally:
            stop.set()
            trickler.join()
            for sock in sockets:
                sock.close()
        assert proc.terminate()[0] == 0
    latencies = sorted(r[0] for r in results)
    assert all(r[1] == 200 and r[2] == "ok" for r in results), results
    assert latencies[-1] < PROBE_BUDGET_S, latencies
