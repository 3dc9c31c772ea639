"""Lock safety under real concurrency: 16 clients hammer one real server.

Each of 16 threads has its own ``PeerSyncClient`` and, for ~5 s (20 s with
``PEERSYNC_LONG=1``), acquires the lock with a 1 s TTL, then applies,
refreshes, sleeps (sometimes past the TTL) and releases, recording when it
sent and received every call. The checks (issue 6):

- belief intervals never overlap: a client may believe it holds a lock from
  the grant's answer to the earlier of (its last successful renewal's send
  time + TTL) and its release's send time;
- fencing tokens rise in grant order and never repeat;
- every apply that succeeded was sent under a live lock: no later grant had
  been answered before it was sent;
- no 5xx and no transport error; and the state left is the last applied one.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from pathlib import Path
from typing import Any

import attrs
from hostile_util import TOKEN, canonical, scaled, server, snapshot_body, state_text

from peersync_server import PeerSyncClient, PeerSyncError
from peersync_server.client import TransportError

CLIENTS = 16
TTL_MS = 1000
TTL_S = TTL_MS / 1000


@attrs.define
class Call:
    client: int
    kind: str
    sent: float
    received: float
    status: int
    code: str = ""
    token: int = 0
    lock_id: str = ""
    tag: int = -1


def _hammer(url: str, index: int, stop_at: float, calls: list[Call], seed: int) -> None:
    rng = random.Random(seed * 100 + index)
    with PeerSyncClient(url, api_token=TOKEN, timeout=10) as client:

        def call(kind: str, fn: Any, lock_id: str = "", tag: int = -1) -> Any:
            sent = time.monotonic()
            try:
                result = fn()
            except PeerSyncError as err:
                calls.append(
                    Call(index, kind, sent, time.monotonic(), err.status, err.code, 0, lock_id, tag)
                )
                return None
            except TransportError as err:
                calls.append(Call(index, kind, sent, time.monotonic(), -1, repr(err)))
                return None
            received = time.monotonic()
            token = getattr(result, "fencing_token", 0)
            calls.append(Call(index, kind, sent, received, 200, "", token, lock_id, tag))
            return result

        while time.monotonic() < stop_at:
            grant = call("acquire", lambda: client.acquire_lock(owner=f"c{index}", ttl_ms=TTL_MS))
            if grant is None:
                time.sleep(rng.uniform(0.001, 0.02))
                continue
            lock_id = grant.lock_id
            calls[-1].lock_id = lock_id
            for _ in range(rng.randrange(0, 3)):
                step = rng.random()
                if step < 0.5:
                    tag = rng.randrange(1 << 40)
                    body = snapshot_body({"tag": tag, "by": index}, seq=index)
                    call("apply", lambda b=body, i=lock_id: client.apply_state(b, i), lock_id, tag)
                elif step < 0.8:
                    call("refresh", lambda i=lock_id: client.refresh_lock(i), lock_id)
                else:
                    # Mostly short holds; one in ten sleeps past the TTL.
                    time.sleep(rng.choices([0.01, 0.1, 1.1], weights=[6, 3, 1])[0])
            call("release", lambda i=lock_id: client.release_lock(i), lock_id)


def _beliefs(calls: list[Call]) -> list[tuple[float, float, Call]]:
    """(start, end, grant) of every grant, from the client's own clock."""
    by_lock: dict[str, list[Call]] = {}
    for c in calls:
        if c.lock_id:
            by_lock.setdefault(c.lock_id, []).append(c)
    out = []
    for lock_calls in by_lock.values():
        grant = next(c for c in lock_calls if c.kind == "acquire")
        renewals = [
            c.sent for c in lock_calls if c.kind in ("acquire", "refresh") and c.status == 200
        ]
        end = max(renewals) + TTL_S
        releases = [c.sent for c in lock_calls if c.kind == "release"]
        if releases:
            end = min(end, min(releases))
        out.append((grant.received, end, grant))
    return sorted(out, key=lambda b: b[0])


def test_sixteen_clients_never_hold_the_lock_at_once_and_tokens_rise(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    duration = scaled(5.0, 20.0)
    calls: list[Call] = []
    with server(tmp_path) as srv:
        stop_at = time.monotonic() + duration
        threads = [
            threading.Thread(target=_hammer, args=(srv.url, i, stop_at, calls, seed))
            for i in range(CLIENTS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(duration + 60)
        assert not any(t.is_alive() for t in threads), "a client hung"
        with PeerSyncClient(srv.url, api_token=TOKEN) as client:
            final_state = state_text(client.get_state_bytes())
            status = client.lock_status()

    where = f"(seed {seed})"
    failures = [c for c in calls if c.status < 0 or c.status >= 500]
    assert not failures, f"5xx or transport errors {where}: {failures[:5]}"
    grants = [c for c in calls if c.kind == "acquire" and c.status == 200]
    assert len(grants) >= 20, f"too few grants to mean anything {where}"
    refused = {c.code for c in calls if c.status != 200}
    assert refused <= {"lock_held", "lock_not_found", "lock_not_held"}, refused

    # 1. Belief intervals never overlap.
    beliefs = _beliefs(calls)
    for (_s1, e1, g1), (s2, _e2, g2) in itertools.pairwise(beliefs):
        assert s2 >= e1, (
            f"client {g2.client} was granted at {s2:.4f} while client {g1.client} "
            f"could still believe it held the lock until {e1:.4f} {where}"
        )

    # 2. Fencing tokens rise in grant order and never repeat.
    tokens = [g.token for _, _, g in beliefs]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens), f"{tokens} {where}"
    assert status.held or status.last_fencing_token == tokens[-1]

    # 3. Every successful apply was sent under a live lock.
    token_of = {g.lock_id: g.token for g in grants}
    applies = [c for c in calls if c.kind == "apply" and c.status == 200]
    assert applies, f"no apply succeeded {where}"
    for a in applies:
        mine = token_of[a.lock_id]
        later = [g for g in grants if g.token > mine and g.received < a.sent]
        assert not later, f"apply under token {mine} sent after grant {later[0].token} {where}"

    # 4. The state left is the last applied one.
    last = max(applies, key=lambda a: (token_of[a.lock_id], a.received))
    assert final_state == canonical({"tag": last.tag, "by": last.client})
    print(
        f"\nlock hammer: {duration:.0f}s, {len(calls)} calls, {len(grants)} grants, "
        f"{len(applies)} applies, {sum(c.code == 'lock_held' for c in calls)} lock_held, "
        f"{sum(c.code == 'lock_not_held' for c in calls)} lock_not_held, "
        f"{sum(c.code == 'lock_not_found' for c in calls)} lock_not_found"
    )
