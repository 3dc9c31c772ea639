"""Replay a scenario against one engine core and print what came out.

``python -m peersync_proto.replay [FILE]`` (stdin when no FILE). The format is
contract section 6: JSON Lines in, JSON Lines out. Engines written in other
languages run the same scenarios and compare outputs byte for byte.

This module is a tiny host: a fake clock (``at`` milliseconds), a seeded
entropy source (SHA-256 in counter mode, so no ``random`` module is needed and
any language can reproduce it) and an in-memory engine host that captures and
applies snapshots at once. Extensions to the contract's format, all optional:
``"noAuth": true``, ``"stallLimitMs"`` and ``"maxSnapshotBytes"`` in the
config; ``"floors": {"epoch": E, "fencingToken": F}`` to start as a restarted
engine; ``rawBody`` characters U+DC80..U+DCFF stand for the single bytes
0x80..0xFF (Python's surrogateescape), so a scenario can send bytes that are
not UTF-8; a host status report the core refuses prints
``{"at": T, "refused": "<reason>"}``; ``"failApply": true`` on a request line
makes the in-memory host fail the apply that request causes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from ._config import EngineConfig, Floors
from ._engine import Engine
from ._errors import LocalProtocolError, ProtocolError
from ._events import (
    Request,
    SnapshotApplied,
    SnapshotApplyFailed,
    SnapshotCaptured,
    Tick,
)
from ._host_json import effect_fields, host_status
from ._outputs import ApplySnapshot, CaptureSnapshot, Output, Response
from ._values import Role

__all__ = ["ScenarioError", "SeededEntropy", "main", "run_scenario"]

_NS_PER_MS = 1_000_000


class ScenarioError(Exception):
    """A malformed scenario line; ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


class SeededEntropy:
    """Deterministic bytes: SHA-256(f"{seed}:{counter}") blocks, in order."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._counter = 0

    def __call__(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(f"{self._seed}:{self._counter}".encode()).digest()
            self._counter += 1
        return out[:n]


class _Run:
    def __init__(self, config: dict[str, Any]) -> None:
        self.lock_ids: list[str] = []
        self.next_request_id = 1
        self.state = b"{}"
        self.preview = ""
        self.out: list[str] = []
        floors = config.get("floors")
        self.engine = Engine(
            EngineConfig(
                label=config["label"],
                role=Role(config.get("role", "follower")),
                api_token=_secret(config.get("apiToken")),
                control_plane_secret=_secret(config.get("controlPlaneSecret")),
                no_auth=bool(config.get("noAuth", False)),
                stall_limit_ns=int(config.get("stallLimitMs", 500)) * _NS_PER_MS,
                max_snapshot_bytes=int(config.get("maxSnapshotBytes", 64 * 1024 * 1024)),
            ),
            now=0,
            entropy=SeededEntropy(int(config.get("seed", 0))),
            floors=None
            if floors is None
            else Floors(epoch=floors["epoch"], fencing_token=floors["fencingToken"]),
        )

    # -- lock ids appear as $LOCKn on both sides -------------------------------
    def expand(self, text: str) -> str:
        for n in range(len(self.lock_ids), 0, -1):
            text = text.replace(f"$LOCK{n}", self.lock_ids[n - 1])
        return text

    def mask(self, text: str) -> str:
        for n, lock_id in enumerate(self.lock_ids, 1):
            text = text.replace(lock_id, f"$LOCK{n}")
        return text

    def emit(self, at: int, outputs: Iterable[Output], fail_apply: bool = False) -> None:
        for output in outputs:
            if isinstance(output, Response):
                body = json.loads(output.body)
                if (
                    output.status == 200
                    and "lockId" in body
                    and body["lockId"] not in self.lock_ids
                ):
                    self.lock_ids.append(body["lockId"])
                line = {"at": at, "status": output.status, "body": body}
            else:
                line = {"at": at, "effect": type(output).__name__, **effect_fields(output)}
            self.out.append(self.mask(json.dumps(line, ensure_ascii=False)))
            if isinstance(output, CaptureSnapshot):
                self.emit(at, self.capture(at, output.request_id))
            elif isinstance(output, ApplySnapshot):
                self.emit(at, self.apply(at, output, fail_apply))

    # -- the in-memory engine host ------------------------------------------------
    def capture(self, at: int, request_id: int) -> tuple[Output, ...]:
        host = self.engine.view().host
        return self.engine.handle(
            SnapshotCaptured(
                now=at * _NS_PER_MS,
                request_id=request_id,
                state=self.state,
                captured_at_us=1_700_000_000_000_000 + at * 1000,
                program_source=host.program_source,
                preview_source=self.preview,
                last_command_seq=host.last_command_seq,
                last_executed_seq=host.last_executed_seq,
            )
        )

    def apply(self, at: int, effect: ApplySnapshot, fail: bool) -> tuple[Output, ...]:
        now = at * _NS_PER_MS
        if fail:
            return self.engine.handle(
                SnapshotApplyFailed(now=now, request_id=effect.request_id, reason="test")
            )
        self.state = effect.snapshot.state
        self.preview = effect.snapshot.preview_source
        return self.engine.handle(SnapshotApplied(now=now, request_id=effect.request_id))

    # -- one scenario line ----------------------------------------------------------
    def step(self, at: int, line: dict[str, Any]) -> None:
        now = at * _NS_PER_MS
        if "request" in line:
            outputs = self.engine.handle(self.request(now, line["request"]))
            self.emit(at, outputs, bool(line.get("failApply")))
        elif "hostStatus" in line:
            try:
                self.emit(at, self.engine.handle(host_status(now, line["hostStatus"])))
            except LocalProtocolError as exc:
                self.out.append(json.dumps({"at": at, "refused": str(exc)}))
        else:
            self.emit(at, self.engine.handle(Tick(now=now)))

    def request(self, now: int, spec: dict[str, Any]) -> Request:
        headers = [(k, self.expand(v)) for k, v in dict(spec.get("headers", {})).items()]
        if "rawBody" in spec:
            body = str(spec["rawBody"]).encode("utf-8", "surrogateescape")
        elif "body" in spec:
            body = json.dumps(spec["body"], ensure_ascii=False).encode("utf-8")
            if not any(k.lower() == "content-type" for k, _ in headers):
                headers.append(("content-type", "application/json"))
        else:
            body = b""
        request_id = self.next_request_id
        self.next_request_id += 1
        return Request(
            now=now,
            request_id=request_id,
            method=str(spec["method"]),
            target=self.expand(str(spec["path"])),
            headers=headers,
            body=body,
        )


def _secret(value: Any) -> bytes | None:
    return None if value is None else str(value).encode("utf-8")


def _parse(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except ValueError as exc:
            raise ScenarioError(number, f"not JSON: {exc}") from None
        if not isinstance(line, dict):
            raise ScenarioError(number, "a scenario line must be a JSON object")
        yield number, line


def run_scenario(lines: Iterable[str]) -> list[str]:
    """Run a scenario; return the output lines. Raises ScenarioError."""
    run: _Run | None = None
    last_at = 0
    for number, line in _parse(lines):
        try:
            if run is None:
                if not isinstance(line.get("config"), dict):
                    raise ScenarioError(number, 'the first line must be {"config": {...}}')
                run = _Run(line["config"])
                continue
            at = line.get("at")
            if type(at) is not int or at < last_at:
                raise ScenarioError(number, "'at' must be an integer that never decreases")
            kinds = [k for k in ("request", "hostStatus", "tick") if k in line]
            if len(kinds) != 1:
                raise ScenarioError(number, "need exactly one of request, hostStatus, tick")
            last_at = at
            run.step(at, line)
        except ScenarioError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, ProtocolError) as exc:
            raise ScenarioError(number, f"{type(exc).__name__}: {exc}") from None
    if run is None:
        raise ScenarioError(1, "empty scenario: the first line must be a config")
    return run.out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: python -m peersync_proto.replay [FILE]", file=sys.stderr)
        return 2
    try:
        if args:
            with open(args[0], encoding="utf-8") as handle:
                out = run_scenario(handle.read().splitlines())
        else:
            out = run_scenario(sys.stdin.read().splitlines())
    except ScenarioError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"replay: cannot read {args[0]}: {exc.strerror}", file=sys.stderr)
        return 2
    sys.stdout.write("".join(line + "\n" for line in out))
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through subprocess tests
    sys.exit(main())
