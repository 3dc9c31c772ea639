"""The contract-6 replay, driven through the flat shim only.

A host written against ``peersync_proto.shim`` alone (no attrs objects): it
keeps its own state and status like a C engine would. Run over the vectors,
it must print exactly what ``python -m peersync_proto.replay`` prints, so the
shim adds and loses no behaviour.
"""

from __future__ import annotations

import json
from typing import Any

from peersync_proto import LocalProtocolError
from peersync_proto.shim import PENDING, EngineHandle, FlatResponse, create_engine

NS_PER_MS = 1_000_000


class ShimReplay:
    def __init__(self, config: dict[str, Any]) -> None:
        floors = config.get("floors") or {"epoch": -1, "fencingToken": -1}
        self.handle: EngineHandle = create_engine(
            config["label"],
            config.get("role", "follower"),
            config.get("apiToken"),
            config.get("controlPlaneSecret"),
            floors["epoch"],
            floors["fencingToken"],
            int(config.get("seed", 0)),
            0,
            bool(config.get("noAuth", False)),
            stall_limit_ns=int(config.get("stallLimitMs", 500)) * NS_PER_MS,
            max_snapshot_bytes=int(config.get("maxSnapshotBytes", 64 * 1024 * 1024)),
        )
        # The host's own records: what it reported and what it applied.
        self.state = b"{}"
        self.program, self.preview, self.seq, self.executed = "", "", 0, 0
        self.lock_ids: list[str] = []
        self.next_id = 1
        self.out: list[str] = []

    def expand(self, text: str) -> str:
        for n in range(len(self.lock_ids), 0, -1):
            text = text.replace(f"$LOCK{n}", self.lock_ids[n - 1])
        return text

    def mask(self, text: str) -> str:
        for n, lock_id in enumerate(self.lock_ids, 1):
            text = text.replace(lock_id, f"$LOCK{n}")
        return text

    def effects(self, at: int, jsonl: str) -> list[dict[str, Any]]:
        found = []
        for text in jsonl.splitlines():
            effect = json.loads(text)
            self.out.append(self.mask(json.dumps({"at": at, **effect}, ensure_ascii=False)))
            found.append(effect)
        return found

    def answer(self, at: int, flat: FlatResponse, fail_apply: bool) -> None:
        status, _headers, body, jsonl = flat
        for effect in self.effects(at, jsonl):
            now = at * NS_PER_MS
            rid = effect.get("requestId", 0)
            if effect["effect"] == "CaptureSnapshot":
                self.answer(
                    at,
                    self.handle.capture_done(
                        rid,
                        self.state,
                        1_700_000_000_000_000 + at * 1000,
                        self.program,
                        self.preview,
                        self.seq,
                        self.executed,
                        now,
                    ),
                    fail_apply,
                )
            elif effect["effect"] == "ApplySnapshot":
                envelope, state = self.handle.snapshot_to_apply(rid)
                if not fail_apply:
                    snap = json.loads(envelope)
                    self.state, self.preview = state, snap["previewSource"]
                    self.program, self.seq = snap["programSource"], snap["lastCommandSeq"]
                    self.executed = snap["lastExecutedSeq"]
                self.answer(at, self.handle.apply_done(rid, not fail_apply, now, "test"), False)
        if status != PENDING:
            obj = json.loads(body)
            if status == 200 and "lockId" in obj and obj["lockId"] not in self.lock_ids:
                self.lock_ids.append(obj["lockId"])
            line = {"at": at, "status": status, "body": obj}
            self.out.append(self.mask(json.dumps(line, ensure_ascii=False)))

    def step(self, at: int, line: dict[str, Any]) -> None:
        now = at * NS_PER_MS
        if "request" in line:
            spec = line["request"]
            headers = [(k, self.expand(v)) for k, v in spec.get("headers", {}).items()]
            body = b""
            if "rawBody" in spec:
                body = str(spec["rawBody"]).encode("utf-8", "surrogateescape")
            elif "body" in spec:
                body = json.dumps(spec["body"], ensure_ascii=False).encode("utf-8")
                if not any(k.lower() == "content-type" for k, _ in headers):
                    headers.append(("content-type", "application/json"))
            rid, self.next_id = self.next_id, self.next_id + 1
            flat = self.handle.request(
                rid, spec["method"], self.expand(spec["path"]), headers, body, now
            )
            self.answer(at, flat, bool(line.get("failApply")))
        elif "hostStatus" in line:
            report = line["hostStatus"]
            try:
                jsonl = self.handle.status_report(json.dumps(report), now)
            except LocalProtocolError as exc:
                self.out.append(json.dumps({"at": at, "refused": str(exc)}))
                return
            self.effects(at, jsonl)
            self.program = report.get("programSource", self.program)
            self.seq = report.get("lastCommandSeq", self.seq)
            self.executed = report.get("lastExecutedSeq", self.executed)
        else:
            self.effects(at, self.handle.tick(now))


def run(lines: list[str]) -> list[str]:
    parsed = [json.loads(text) for text in lines if text.strip()]
    replay = ShimReplay(parsed[0]["config"])
    for line in parsed[1:]:
        replay.step(line["at"], line)
    return replay.out
