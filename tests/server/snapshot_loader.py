"""Run as a script: apply and read back big snapshots against a server, back to
back, from its own process (so the prober's timings see only the server)."""

from __future__ import annotations

import hashlib
import http.client
import json
import sys
import time

from srv_util import TOKEN, make_state, snapshot_body


def main(port: int, size: int, rounds: int, read_back: bool) -> int:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    states = [make_state(size, tag=i) for i in range(2)]
    bodies = [snapshot_body(states[i % 2], epoch=i + 1) for i in range(rounds)]
    print("ready", flush=True)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request(
        "POST",
        "/api/sync/reconcile-lock",
        body=b'{"ttlMs":300000}',
        headers={**auth, "Content-Type": "application/json"},
    )
    lock_id = json.loads(conn.getresponse().read())["lockId"]
    for i in range(rounds):
        started = time.monotonic()
        conn.request(
            "PUT",
            "/api/sync/state",
            body=bodies[i],
            headers={**auth, "Content-Type": "application/json", "X-Reconcile-Lock-Id": lock_id},
        )
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
        put_s = time.monotonic() - started
        if not read_back:
            print(f"round {i} put {put_s:.2f}s", flush=True)
            continue
        conn.request("GET", "/api/sync/state", headers=auth)
        response = conn.getresponse()
        data = response.read()
        assert response.status == 200 and len(data) > size
        print(
            f"round {i} put {put_s:.2f}s get {time.monotonic() - started - put_s:.2f}s "
            f"sha {hashlib.sha256(data).hexdigest()[:8]}",
            flush=True,
        )
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "get"))
