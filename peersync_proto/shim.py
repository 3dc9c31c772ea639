"""The flat host shim: the engine core for hosts that are not Python.

A C or C++ engine embedding CPython (or any foreign-function caller) wants
plain values, not attrs objects. Everything here takes and returns ``str``,
``bytes``, ``int``, ``bool``, tuples and JSON text, and adds no rule of its own:
each call builds one core event, hands it to :meth:`Engine.handle`, and
flattens the outputs.

Conventions (see ``docs/embedding.md``):

- A call that can answer a request returns ``(status, header_pairs, body,
  effects_jsonl)``. ``header_pairs`` is a tuple of ``(name, value)`` strings,
  ``body`` the JSON bytes to send. ``effects_jsonl`` holds one JSON object per
  line, ``{"effect": "<Name>", ...}``, in the shape the replay tool prints;
  run them in order *before* sending the response (persist ``FloorsRaised``).
- ``status == PENDING`` (0): no response yet. The effects name what the core
  waits for (``CaptureSnapshot`` or ``ApplySnapshot`` with its ``requestId``);
  answer with :meth:`EngineHandle.capture_done` / ``capture_failed`` /
  ``apply_done``, which return the response the same way.
- ``next_deadline()`` is ``NO_DEADLINE`` (-1) when the core needs no tick.
- Host misuse (a decreasing ``now``, a completion nobody asked for, a bad
  argument) raises :class:`LocalProtocolError` and changes nothing.
- Not thread-safe, like the core: one engine, one lock, taken before the GIL
  and held across each call. The GIL alone is not enough: CPython switches
  threads between bytecodes, inside a call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from ._canonical import canonical_json
from ._config import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_SNAPSHOT_BYTES,
    DEFAULT_STALL_LIMIT_NS,
    EngineConfig,
    Floors,
)
from ._engine import Engine
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    Event,
    Request,
    SnapshotApplied,
    SnapshotApplyFailed,
    SnapshotCaptured,
    SnapshotCaptureFailed,
    Tick,
)
from ._host_json import effect_fields, host_status
from ._json import decode_json
from ._outputs import ApplySnapshot, Output, Response
from ._values import DecodedSnapshot, Role
from .replay import SeededEntropy

__all__ = ["NO_DEADLINE", "PENDING", "EngineHandle", "FlatResponse", "create_engine"]

#: ``next_deadline()`` when the core needs no tick at all.
NO_DEADLINE = -1
#: The status of a flat response that is not there yet: a completion is awaited.
PENDING = 0

#: ``(status, header_pairs, body, effects_jsonl)``
FlatResponse = tuple[int, tuple[tuple[str, str], ...], bytes, str]


def _utf8(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _secret(value: str | bytes | None) -> bytes | None:
    return None if value is None else _utf8(value)


def create_engine(
    label: str,
    role: str,
    api_token: str | bytes | None,
    control_plane_secret: str | bytes | None,
    epoch_floor: int,
    fencing_floor: int,
    seed_or_entropy: int | Callable[[int], bytes],
    now_ns: int,
    no_auth: bool = False,
    *,
    peer_epoch_floor: int = 0,
    stall_limit_ns: int = DEFAULT_STALL_LIMIT_NS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES,
) -> EngineHandle:
    """A new engine core behind a flat handle.

    ``role`` is ``"leader"`` or ``"follower"`` (a fresh engine's initial role).
    ``epoch_floor`` and ``fencing_floor`` are what the host persisted from
    ``FloorsRaised``; both ``-1`` means a fresh engine (no floors persisted).
    ``peer_epoch_floor`` is its ``peerEpoch`` (the largest epoch seen from the
    peer), so a restarted engine still promotes above its peer.
    ``seed_or_entropy`` is a callable ``entropy(n) -> n bytes`` or an int seed
    for the replay tool's deterministic SHA-256 counter source (tests, demos).
    A ``None`` secret means "not configured". The keyword-only limits are
    ``EngineConfig``'s, with its defaults.
    """
    try:
        initial_role = Role(role)
    except ValueError:
        raise LocalProtocolError(f"role must be 'leader' or 'follower', got {role!r}") from None
    entropy: object = (
        SeededEntropy(seed_or_entropy) if isinstance(seed_or_entropy, int) else seed_or_entropy
    )
    if not callable(entropy):
        raise LocalProtocolError(f"seed_or_entropy must be an int or a callable, got {entropy!r}")
    floors = (
        None
        if epoch_floor == -1 and fencing_floor == -1
        else Floors(epoch=epoch_floor, fencing_token=fencing_floor, peer_epoch=peer_epoch_floor)
    )
    config = EngineConfig(
        label=label,
        role=initial_role,
        api_token=_secret(api_token),
        control_plane_secret=_secret(control_plane_secret),
        no_auth=no_auth,
        stall_limit_ns=stall_limit_ns,
        max_body_bytes=max_body_bytes,
        max_snapshot_bytes=max_snapshot_bytes,
    )
    return EngineHandle(Engine(config, now=now_ns, entropy=entropy, floors=floors))


class EngineHandle:
    """One engine core with a flat surface. Every method takes ``now_ns``
    (the host's monotonic clock, integer nanoseconds, never decreasing)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._applies: dict[int, DecodedSnapshot] = {}

    # -- requests and their completions -------------------------------------------
    def request(
        self,
        request_id: int,
        method: str,
        path: str,
        header_pairs: Iterable[tuple[str | bytes, str | bytes]],
        body: bytes,
        now_ns: int,
    ) -> FlatResponse:
        """An HTTP request the host framed. ``request_id`` is the host's
        (unique among requests still pending), echoed in completion effects."""
        return self._answer(
            Request(
                now=now_ns,
                request_id=request_id,
                method=method,
                target=path,
                headers=tuple(header_pairs),
                body=body,
            )
        )

    def capture_done(
        self,
        request_id: int,
        state_json: str | bytes,
        captured_at_us: int,
        program_source: str,
        preview_source: str,
        last_command_seq: int,
        last_executed_seq: int,
        now_ns: int,
    ) -> FlatResponse:
        """The answer to ``CaptureSnapshot``: the engine's state as a JSON
        object (any formatting; it is canonicalized here) and the status
        fields of the same instant. Not a JSON object: ``LocalProtocolError``,
        and the capture is still pending (answer it again or fail it)."""
        try:
            state = canonical_json(decode_json(_utf8(state_json)))
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"state_json: {exc}") from None
        return self._answer(
            SnapshotCaptured(
                now=now_ns,
                request_id=request_id,
                state=state,
                captured_at_us=captured_at_us,
                program_source=program_source,
                preview_source=preview_source,
                last_command_seq=last_command_seq,
                last_executed_seq=last_executed_seq,
            )
        )

    def capture_failed(self, request_id: int, reason: str, now_ns: int) -> FlatResponse:
        """The capture failed: the request is answered ``500 internal``."""
        return self._answer(SnapshotCaptureFailed(now=now_ns, request_id=request_id, reason=reason))

    def snapshot_to_apply(self, request_id: int) -> tuple[str, bytes]:
        """The snapshot of a pending ``ApplySnapshot``: its envelope as JSON
        (every field but ``state``) and the canonical state bytes to apply."""
        snap = self._applies.get(request_id)
        if snap is None:
            raise LocalProtocolError(f"request {request_id} has no snapshot waiting to be applied")
        envelope = {
            "formatVersion": snap.format_version,
            "engineLabel": snap.engine_label,
            "role": snap.role.value,
            "epoch": snap.epoch,
            "capturedAtUs": snap.captured_at_us,
            "lastCommandSeq": snap.last_command_seq,
            "lastExecutedSeq": snap.last_executed_seq,
            "programSource": snap.program_source,
            "previewSource": snap.preview_source,
            "checksum": snap.checksum,
        }
        return json.dumps(envelope, ensure_ascii=False), snap.state

    def apply_done(self, request_id: int, ok: bool, now_ns: int, reason: str = "") -> FlatResponse:
        """The answer to ``ApplySnapshot``: ``ok`` once the state is durable;
        not ``ok`` when it failed and the old state is whole (``500
        apply_failed``, the caller keeps its lock)."""
        event: Event = (
            SnapshotApplied(now=now_ns, request_id=request_id)
            if ok
            else SnapshotApplyFailed(now=now_ns, request_id=request_id, reason=reason)
        )
        answer = self._answer(event)
        self._applies.pop(request_id, None)
        return answer

    # -- the host's own events -------------------------------------------------
    def status_report(self, report_json: str | bytes, now_ns: int) -> str:
        """Status fields as a JSON object with the replay tool's ``hostStatus``
        keys (``programSource``, ``lastCommandSeq``, ``clockSync``, ...);
        ``"{}"`` is a heartbeat. Returns the effects."""
        try:
            report = decode_json(_utf8(report_json))
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"status report: {exc}") from None
        return self._answer(host_status(now_ns, report))[3]

    def tick(self, now_ns: int) -> str:
        """Only time passes (the host woke at ``next_deadline()``). Returns the effects."""
        return self._answer(Tick(now=now_ns))[3]

    def next_deadline(self) -> int:
        """When to call ``tick`` next (monotonic ns), or ``NO_DEADLINE``."""
        deadline = self._engine.next_deadline()
        return NO_DEADLINE if deadline is None else deadline

    # -- flattening ------------------------------------------------------------
    def _answer(self, event: Event) -> FlatResponse:
        return self._flatten(self._engine.handle(event))

    def _flatten(self, outputs: Iterable[Output]) -> FlatResponse:
        status, body = PENDING, b""
        headers: tuple[tuple[str, str], ...] = ()
        lines: list[str] = []
        for output in outputs:
            if isinstance(output, Response):
                status, body = output.status, output.body
                headers = tuple(
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in output.headers
                )
                continue
            if isinstance(output, ApplySnapshot):
                self._applies[output.request_id] = output.snapshot
            line = {"effect": type(output).__name__, **effect_fields(output)}
            lines.append(json.dumps(line, ensure_ascii=False) + "\n")
        return status, headers, body, "".join(lines)
