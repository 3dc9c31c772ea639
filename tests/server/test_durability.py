"""``kill -9`` at random instants during snapshot applies: never torn, never back."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

from srv_util import TOKEN, canonical, make_state, server_process, snapshot_body

KILLS = 20
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _call(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path, body=body, headers={**AUTH, **(headers or {})})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_kill_9_mid_apply_leaves_old_or_new_state_and_floors_never_go_back(
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("PEERSYNC_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    args = [
        "--label", "a", "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "state"),
        "--api-token-file", str(token_file),
    ]  # fmt: skip
    states = [make_state(rng.choice([200_000, 1_000_000, 3_000_000]), tag=i) for i in range(KILLS)]
    bodies = [snapshot_body(s, epoch=i + 1, seq=i) for i, s in enumerate(states)]
    acked = -1  # index of the last snapshot acknowledged with 200
    max_token = 0
    applied_somewhere = 0
    for i in range(KILLS + 1):
        with server_process(args, cwd=tmp_path) as proc:
            port = proc.wait_listening()
            # The state after the previous kill: the acknowledged one or a later one.
            status, snap = _call(port, "GET", "/api/sync/state")
            assert status == 200
            got = canonical(snap["state"])
            candidates = {canonical(states[j]): j for j in range(max(acked, 0), i)}
            if acked < 0:
                candidates[b"{}"] = -1
            assert got in candidates, f"torn or stale state after kill {i} (seed {seed})"
            assert snap["epoch"] >= acked + 1, f"epoch went back (seed {seed})"
            if i == KILLS:
                break
            status, grant = _call(port, "POST", "/api/sync/reconcile-lock")
            assert status == 200
            assert grant["fencingToken"] > max_token, f"fencing token went back (seed {seed})"
            max_token = grant["fencingToken"]
            result: list[int] = []

            def put(
                index: int = i,
                lock_id: str = grant["lockId"],
                port: int = port,
                result: list[int] = result,
            ) -> None:
                try:
                    status, _ = _call(
                        port, "PUT", "/api/sync/state", bodies[index],
                        {"Content-Type": "application/json", "X-Reconcile-Lock-Id": lock_id},
                    )  # fmt: skip
                    result.append(status)
                except (OSError, http.client.HTTPException):
                    result.append(-1)

            sender = threading.Thread(target=put)
            sender.start()
            time.sleep(rng.uniform(0.0, 0.12))
            proc.kill9()
            sender.join(10)
            if result == [200]:
                acked = i
                applied_somewhere += 1
    assert applied_somewhere >= 1, f"no apply was ever acknowledged (seed {seed})"


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found.update(int(c) for c in (task / "children").read_text().split())
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_decoder_worker_exits_when_its_server_is_killed(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    args = [
        "--label", "b", "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "state"),
        "--api-token-file", str(token_file),
    ]  # fmt: skip
    with server_process(args, cwd=tmp_path) as proc:
        proc.wait_listening()  # the decoder worker is up by now
        descendants = _children(proc.proc.pid)
        assert descendants, "no worker process found"
        proc.kill9()
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in descendants) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in descendants)
