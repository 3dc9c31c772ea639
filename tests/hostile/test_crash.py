"""``kill -9`` at random instants, extending tests/server/test_durability.py.

That test kills once per server lifetime during one apply. Here each
lifetime runs a stream of applies of varied sizes back to back (so a kill
can land between two of them, or during the commit of one while the next is
on the wire), or a stream of lock grants and releases (so it lands while
``FloorsRaised`` is being persisted). After every restart:

- the state is byte-equal (the served bytes, not a re-encoding) to the last
  acknowledged snapshot or to one sent after it; never torn, never older;
- the epoch is never lower than the last acknowledged one;
- the next fencing token is above every token any answer ever showed;
- the engine came back follower.

8 kills in ``make test``; 200 with ``PEERSYNC_LONG=1``.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

from hostile_util import LONG, TOKEN, canonical, make_state, server, snapshot_body, state_text

AUTH = {"Authorization": f"Bearer {TOKEN}"}
KILLS = 200 if LONG else 8
SIZES = [1_000, 100_000, 1_000_000, 3_000_000] + ([10_000_000] if LONG else [])


def _call(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={**AUTH, **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Ledger:
    """What the clients were told, across every lifetime."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.canon: list[bytes] = []  # index -> canonical state of snapshot index
        self.epochs: list[int] = []
        self.acked = -1  # the last snapshot acknowledged with 200
        self.sent_after: set[int] = set()  # sent (maybe applied) after the last ack
        self.max_token = 0
        self.max_epoch = 0

    def saw_token(self, token: int) -> None:
        with self.lock:
            self.max_token = max(self.max_token, token)


def _apply_stream(port: int, ledger: Ledger, rng: random.Random, stop: threading.Event) -> None:
    status, raw = _call(port, "POST", "/api/sync/reconcile-lock", b'{"ttlMs":120000}',
                        {"Content-Type": "application/json"})  # fmt: skip
    if status != 200:
        return
    grant = json.loads(raw)
    ledger.saw_token(grant["fencingToken"])
    while not stop.is_set():
        with ledger.lock:
            index = len(ledger.canon)
            state = make_state(rng.choice(SIZES), tag=index)
            ledger.canon.append(canonical(state))
            ledger.epochs.append(index + 1)
            ledger.sent_after.add(index)
        body = snapshot_body(state, epoch=index + 1, seq=index)
        try:
            headers = {"Content-Type": "application/json", "X-Reconcile-Lock-Id": grant["lockId"]}
            status, _ = _call(port, "PUT", "/api/sync/state", body, headers)
        except (OSError, http.client.HTTPException):
            return
        if status == 200:
            with ledger.lock:
                ledger.acked = index
                ledger.sent_after = set()
                ledger.max_epoch = max(ledger.max_epoch, index + 1)


def _grant_stream(port: int, ledger: Ledger, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            status, raw = _call(port, "POST", "/api/sync/reconcile-lock", b'{"ttlMs":1000}',
                                {"Content-Type": "application/json"})  # fmt: skip
            if status != 200:
                continue
            grant = json.loads(raw)
            ledger.saw_token(grant["fencingToken"])
            _call(port, "DELETE", "/api/sync/reconcile-lock/" + grant["lockId"])
        except (OSError, http.client.HTTPException):
            return


def _check_after_restart(port: int, ledger: Ledger, where: str) -> None:
    status, raw = _call(port, "GET", "/api/sync/state")
    assert status == 200
    got = state_text(raw)
    snap: dict[str, Any] = json.loads(raw)
    with ledger.lock:
        allowed = {ledger.canon[i]: i for i in ledger.sent_after}
        if ledger.acked >= 0:
            allowed[ledger.canon[ledger.acked]] = ledger.acked
        else:
            allowed[b"{}"] = -1
        assert got in allowed, f"torn or stale state after a kill {where}"
        index = allowed[got]
        if index >= 0:
            # the restarted state came with its own epoch, never an older one
            assert snap["epoch"] >= ledger.epochs[index], where
            ledger.acked, ledger.sent_after = index, set()
        assert snap["epoch"] >= ledger.max_epoch, f"epoch went back {where}"
        assert snap["role"] == "follower", where
    status, raw = _call(port, "POST", "/api/sync/reconcile-lock")
    assert status == 200, raw
    grant = json.loads(raw)
    assert grant["fencingToken"] > ledger.max_token, f"fencing token went back {where}"
    ledger.saw_token(grant["fencingToken"])
    assert _call(port, "DELETE", "/api/sync/reconcile-lock/" + grant["lockId"])[0] == 200


def test_kill_9_during_apply_and_grant_streams_never_tears_or_goes_back(tmp_path: Path) -> None:
    seed = int(os.environ.get("PEERSYNC_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    ledger = Ledger()
    state_dir = tmp_path / "state"
    kills = {"apply": 0, "grant": 0}
    for cycle in range(KILLS + 1):
        where = f"(cycle {cycle}, seed {seed})"
        with server(tmp_path, state_dir=state_dir) as srv:
            if cycle:
                _check_after_restart(srv.port, ledger, where)
            if cycle == KILLS:
                break
            mode = "apply" if rng.random() < 0.7 else "grant"
            stop = threading.Event()
            if mode == "apply":
                args: tuple[Any, ...] = (srv.port, ledger, random.Random(rng.random()), stop)
                worker = threading.Thread(target=_apply_stream, args=args, daemon=True)
            else:
                worker = threading.Thread(
                    target=_grant_stream, args=(srv.port, ledger, stop), daemon=True
                )
            worker.start()
            time.sleep(rng.uniform(0.02, 0.6))
            srv.kill9()
            stop.set()
            worker.join(30)
            assert not worker.is_alive()
            kills[mode] += 1
    assert ledger.acked >= 0, f"no apply was ever acknowledged (seed {seed})"
    print(f"\nkill -9: {sum(kills.values())} kills ({kills}), {len(ledger.canon)} applies sent, "
          f"last acked #{ledger.acked}, max token {ledger.max_token}")  # fmt: skip
