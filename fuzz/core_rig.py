"""A pure engine core on a fake clock, driven like a host drives it.

Shared by the core harnesses: deterministic entropy, a helper that runs one
request to its response (doing the host's part of a capture or apply), the
contract's codes per endpoint, and valid snapshot bodies to mutate.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from typing import Any

from peersync_proto import (
    ApplySnapshot,
    CaptureSnapshot,
    Engine,
    EngineConfig,
    Floors,
    Output,
    Request,
    Response,
    Role,
    SnapshotApplied,
    SnapshotApplyFailed,
    SnapshotCaptured,
    canonical_json,
)

TOKEN = b"fuzz-api-token-5b0c1e9d"
SECRET = b"fuzz-cp-secret-77a3f210"
BEARER = (b"authorization", b"Bearer " + TOKEN)
CP = (b"x-control-plane-secret", SECRET)
JSON_CT = (b"content-type", b"application/json")
START_NS = 1_000_000_000_000
MS = 1_000_000

HEALTH = ("GET", "/api/peer/health")
FORCE = ("POST", "/api/peer/force-leader")
SYNC_HEALTH = ("GET", "/api/sync/health")
GET_STATE = ("GET", "/api/sync/state")
PUT_STATE = ("PUT", "/api/sync/state")
ACQUIRE = ("POST", "/api/sync/reconcile-lock")
STATUS = ("GET", "/api/sync/reconcile-lock")
LOCK_PATH = "/api/sync/reconcile-lock/"

#: Contract sections 2-3 (and docs/protocol.md): every (status, code) each
#: endpoint may answer to an authenticated request with a JSON content type.
ALLOWED: dict[str, frozenset[tuple[int, str | None]]] = {
    "health": frozenset({(200, None)}),
    "force": frozenset(
        {
            (200, None),
            (400, "invalid_json"),
            (400, "invalid_request"),
            (409, "already_leader"),
            (413, "body_too_large"),
        }
    ),
    "sync_health": frozenset({(200, None)}),
    "get_state": frozenset({(200, None)}),
    "put_state": frozenset(
        {
            (200, None),
            (400, "invalid_json"),
            (400, "invalid_snapshot"),
            (409, "lock_not_held"),
            (409, "stale_snapshot"),
            (409, "apply_in_progress"),
            (413, "body_too_large"),
        }
    ),
    "acquire": frozenset(
        {
            (200, None),
            (400, "invalid_json"),
            (400, "invalid_request"),
            (409, "lock_held"),
            (413, "body_too_large"),
        }
    ),
    "refresh": frozenset(
        {
            (200, None),
            (400, "invalid_json"),
            (400, "invalid_request"),
            (404, "lock_not_found"),
            (413, "body_too_large"),
        }
    ),
    "release": frozenset({(200, None), (404, "lock_not_found")}),
    "status": frozenset({(200, None)}),
}


def counter_entropy() -> Any:
    """Distinct, reproducible 'random' bytes: SHA-256 of a counter."""
    counter = itertools.count(1)

    def entropy(n: int) -> bytes:
        return hashlib.sha256(b"%d" % next(counter)).digest()[:n]

    return entropy


def make_engine(
    *, role: Role = Role.FOLLOWER, floors: Floors | None = None, now: int = START_NS
) -> Engine:
    config = EngineConfig(label="a", role=role, api_token=TOKEN, control_plane_secret=SECRET)
    return Engine(config, now=now, entropy=counter_entropy(), floors=floors)


def snapshot_obj(
    state: Any, *, epoch: int = 1, seq: int = 5, role: str = "leader", label: str = "b"
) -> dict[str, Any]:
    canon = canonical_json(state)
    return {
        "formatVersion": 1,
        "engineLabel": label,
        "role": role,
        "epoch": epoch,
        "capturedAtUs": 1_713_200_000_000_000,
        "lastCommandSeq": seq,
        "lastExecutedSeq": seq,
        "programSource": f"cam-{seq}",
        "previewSource": "cam-2",
        "state": state,
        "checksum": "sha256:" + hashlib.sha256(canon).hexdigest(),
    }


def body_of(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


class Rig:
    """One engine, its clock, and the host's side of every effect."""

    def __init__(self, engine: Engine | None = None, now: int = START_NS) -> None:
        self.engine = engine if engine is not None else make_engine(now=now)
        self.now = now
        self._ids = itertools.count(1)
        self.state = b"{}"
        self.effects: list[Output] = []

    def advance_ms(self, ms: int) -> None:
        self.now += ms * MS

    def send(
        self,
        method: str,
        target: str,
        *,
        headers: Sequence[tuple[bytes, bytes]] = (BEARER,),
        body: bytes = b"",
        apply_ok: bool = True,
    ) -> Response:
        """One request at ``self.now``, run to its response (completions at
        the same ``now``)."""
        rid = next(self._ids)
        hdrs = list(headers)
        pending = list(
            self.engine.handle(
                Request(
                    now=self.now,
                    request_id=rid,
                    method=method,
                    target=target,
                    headers=hdrs,
                    body=body,
                )
            )
        )
        while pending:
            out = pending.pop(0)
            if isinstance(out, Response):
                assert out.request_id == rid, out
                return out
            if isinstance(out, CaptureSnapshot):
                pending += self.engine.handle(
                    SnapshotCaptured(
                        now=self.now,
                        request_id=out.request_id,
                        state=self.state,
                        captured_at_us=1,
                        program_source="",
                        preview_source="",
                        last_command_seq=0,
                        last_executed_seq=0,
                    )
                )
            elif isinstance(out, ApplySnapshot):
                if apply_ok:
                    self.state = out.snapshot.state
                    done: Any = SnapshotApplied(now=self.now, request_id=out.request_id)
                else:
                    done = SnapshotApplyFailed(
                        now=self.now, request_id=out.request_id, reason="fuzz"
                    )
                pending += self.engine.handle(done)
            else:
                self.effects.append(out)
        raise AssertionError(f"no response to {method} {target}")

    def acquire(self, ttl_ms: int = 30_000, owner: str = "b") -> str:
        resp = self.send(
            *ACQUIRE,
            headers=(BEARER, JSON_CT),
            body=body_of({"owner": owner, "ttlMs": ttl_ms}),
        )
        assert resp.status == 200, resp
        lock_id: str = json.loads(resp.body)["lockId"]
        return lock_id


def check_response_shape(resp: Response) -> dict[str, Any]:
    """Contract 2: JSON object body, the three headers, a code on errors."""
    headers = dict(resp.headers)
    assert headers[b"content-type"] == b"application/json", headers
    assert headers[b"cache-control"] == b"no-store", headers
    assert int(headers[b"content-length"]) == len(resp.body), headers
    body = json.loads(resp.body)
    assert isinstance(body, dict), body
    if resp.status >= 400:
        assert isinstance(body.get("error"), str) and body["error"], body
        assert isinstance(body.get("code"), str) and body["code"].islower(), body
    if resp.status == 401:
        assert headers.get(b"www-authenticate", b'Bearer realm="peersync"') == (
            b'Bearer realm="peersync"'
        )
    return body
