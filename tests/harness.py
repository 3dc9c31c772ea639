"""An engine core driven by a fake clock and an in-memory host, for tests."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import attrs

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
    Tick,
    canonical_json,
    encode_snapshot,
    state_checksum,
)

TOKEN = "t0k-secret"
SECRET = "s3c-control"
MS = 1_000_000


class CountingEntropy:
    """Distinct, reproducible 'random' bytes."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.n = 0

    def __call__(self, size: int) -> bytes:
        self.n += 1
        return hashlib.sha256(f"{self.seed}/{self.n}".encode()).digest()[:size]


@attrs.define
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[bytes, bytes]
    effects: list[Output]

    @property
    def code(self) -> str | None:
        return self.body.get("code")


class Harness:
    def __init__(
        self,
        *,
        label: str = "a",
        role: Role = Role.FOLLOWER,
        token: str | None = TOKEN,
        secret: str | None = SECRET,
        no_auth: bool = False,
        floors: Floors | None = None,
        fail_apply: bool = False,
        **config: Any,
    ) -> None:
        self.now = 1_000 * MS
        self.config = EngineConfig(
            label=label,
            role=role,
            api_token=token.encode() if token else None,
            control_plane_secret=secret.encode() if secret else None,
            no_auth=no_auth,
            **config,
        )
        self.engine = Engine(self.config, now=self.now, entropy=CountingEntropy(), floors=floors)
        self.state: dict[str, Any] = {}
        self.fail_apply = fail_apply
        self.rid = 0
        self.effects: list[Output] = []

    def advance(self, ms: float) -> list[Output]:
        self.now += int(ms * MS)
        out = list(self.engine.handle(Tick(now=self.now)))
        self.effects += out
        return out

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        content_type: str | None = "application/json",
    ) -> Answer:
        hdrs: list[tuple[str, str]] = []
        if auth:
            hdrs.append(("Authorization", f"Bearer {TOKEN}"))
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        if data and content_type:
            hdrs.append(("Content-Type", content_type))
        hdrs += list((headers or {}).items())
        self.rid += 1
        outputs = self.engine.handle(
            Request(
                now=self.now,
                request_id=self.rid,
                method=method,
                target=path,
                headers=hdrs,
                body=data,
            )
        )
        return self._finish(outputs)

    def _finish(self, outputs: tuple[Output, ...]) -> Answer:
        effects: list[Output] = []
        pending = list(outputs)
        while pending:
            out = pending.pop(0)
            if isinstance(out, Response):
                self.effects += effects
                return Answer(
                    status=out.status,
                    body=json.loads(out.body),
                    headers=dict(out.headers),
                    effects=effects,
                )
            effects.append(out)
            if isinstance(out, CaptureSnapshot):
                pending += self.engine.handle(self._captured(out.request_id))
            elif isinstance(out, ApplySnapshot):
                pending += self._apply(out)
        raise AssertionError(f"no response in {outputs!r}")

    def _captured(self, rid: int) -> SnapshotCaptured:
        host = self.engine.view().host
        return SnapshotCaptured(
            now=self.now,
            request_id=rid,
            state=canonical_json(self.state),
            captured_at_us=1_700_000_000_000_000,
            program_source=host.program_source,
            preview_source="cam-2",
            last_command_seq=host.last_command_seq,
            last_executed_seq=host.last_executed_seq,
        )

    def _apply(self, effect: ApplySnapshot) -> tuple[Output, ...]:
        if self.fail_apply:
            return self.engine.handle(
                SnapshotApplyFailed(now=self.now, request_id=effect.request_id, reason="disk full")
            )
        self.state = json.loads(effect.snapshot.state)
        return self.engine.handle(SnapshotApplied(now=self.now, request_id=effect.request_id))

    # -- conveniences --------------------------------------------------------
    def acquire(self, **body: Any) -> Answer:
        return self.call("POST", "/api/sync/reconcile-lock", body=body or None)

    def apply(self, snapshot: bytes, lock_id: str | None, **kw: Any) -> Answer:
        headers = {} if lock_id is None else {"X-Reconcile-Lock-Id": lock_id}
        return self.call("PUT", "/api/sync/state", raw=snapshot, headers=headers, **kw)


def make_snapshot(
    state: dict[str, Any] | None = None,
    *,
    label: str = "b",
    role: Role = Role.LEADER,
    epoch: int = 5,
    seq: int = 100,
    executed: int = 99,
    program: str = "cam-9",
) -> bytes:
    return encode_snapshot(
        engine_label=label,
        role=role,
        epoch=epoch,
        captured_at_us=1_700_000_000_000_000,
        last_command_seq=seq,
        last_executed_seq=executed,
        program_source=program,
        preview_source="cam-3",
        state=canonical_json(state if state is not None else {"scene": "news", "n": 1}),
    )


def snapshot_dict(**kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(make_snapshot(**kw))
    return doc


def checksum_of(state: Any) -> str:
    return state_checksum(canonical_json(state))
