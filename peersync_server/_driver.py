"""The engine driver: one core, one lock, the host, the clock and the ticker.

Every event goes to the core through :meth:`EngineDriver.handle`, which reads
the clock *under the engine lock* (so the ``now`` values the core sees never
decrease) and holds the lock only for the core call itself. Effects are run
outside the lock, in order, before the response that follows them is sent;
snapshot capture and apply run on the requesting thread, outside the lock, so
peer health never waits behind a transfer.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Sequence

from peersync_proto import (
    ApplySnapshot,
    CaptureSnapshot,
    DecodedSnapshot,
    Effect,
    Engine,
    EngineConfig,
    EngineView,
    Entropy,
    Event,
    FloorsRaised,
    HeadCheck,
    HostStatus,
    MonitorConfig,
    Output,
    RemoteProtocolError,
    Request,
    Response,
    SnapshotApplied,
    SnapshotApplyFailed,
    SnapshotCaptured,
    SnapshotCaptureFailed,
    Tick,
    check_head,
)

from ._clock import Clock, Ticker
from ._host import EngineHost

__all__ = ["EngineDriver", "OutputListener", "Precheck"]

_log = logging.getLogger("peersync.server.engine")

#: Called with every batch of outputs the core produced, after the effects ran
#: (the failover engineer's peer monitor hooks in here).
OutputListener = Callable[[Sequence[Output]], None]


#: What can be answered from the head alone, before a body is read: the core's
#: :class:`peersync_proto.HeadCheck` (route and auth, the body limit, the media
#: type). Checked early so an unauthenticated client cannot make the server
#: read or decode a 64 MiB body, and so ``Expect: 100-continue`` is honoured
#: only for a request that passed auth and size checks.
Precheck = HeadCheck


class EngineDriver:
    """Owns the engine core and hands it every event under one lock."""

    def __init__(
        self,
        config: EngineConfig,
        host: EngineHost,
        *,
        clock: Clock,
        entropy: Entropy,
        monitor: MonitorConfig | None = None,
    ) -> None:
        self._config = config
        self._host = host
        self._clock = clock
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._seq = 0
        self._listeners: list[OutputListener] = []
        floors = host.open(config.label)
        with self._lock:
            self._engine = Engine(
                config, now=clock.now(), entropy=entropy, floors=floors, monitor=monitor
            )
        self._ticker = Ticker(clock, self._deadline, self._tick)

    @property
    def config(self) -> EngineConfig:
        return self._config

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def ticker(self) -> Ticker:
        return self._ticker

    def start(self) -> None:
        self._host.start(self._report, self._clock)
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()
        self._host.close()

    def add_listener(self, listener: OutputListener) -> None:
        """Be told of every batch of outputs (after its effects ran)."""
        self._listeners.append(listener)

    def view(self) -> EngineView:
        with self._lock:
            return self._engine.view()

    # -- the one way into the core ------------------------------------------

    def handle(self, make: Callable[[int], Event]) -> tuple[Output, ...]:
        """Stamp an event with a fresh ``now`` and hand it to the core, then run
        its effects (in order). Returns every output.

        Effects run outside the lock, except a batch that raises the floors:
        that one is made durable before any other event reaches the core, and
        if the write fails the event is undone (``Engine.restore``) and the
        error propagates, so a grant or a promotion that could not be
        persisted never happened (the caller answers 500)."""
        with self._lock:
            seq, outputs, done = self._step(make(self._clock.now()))
            deadline = self._engine.next_deadline()
        self._ticker.deadline_changed(deadline)
        self._after(seq, outputs, done)
        return outputs

    def _step(self, event: Event) -> tuple[int, tuple[Output, ...], bool]:
        """One event through the core, under the lock: its sequence number,
        its outputs, and whether their effects already ran (floors raised)."""
        checkpoint = self._engine.checkpoint()
        outputs = self._engine.handle(event)
        self._seq += 1
        if not any(isinstance(o, FloorsRaised) for o in outputs):
            return self._seq, outputs, False
        try:
            self._host.on_effects(self._seq, _effects(outputs))
        except BaseException:
            self._seq -= 1
            self._engine.restore(checkpoint)
            raise
        return self._seq, outputs, True

    def _after(self, seq: int, outputs: tuple[Output, ...], done: bool) -> None:
        effects = _effects(outputs)
        if effects and not done:
            self._host.on_effects(seq, effects)
        for listener in self._listeners:
            listener(outputs)

    def _deadline(self) -> int | None:
        with self._lock:
            return self._engine.next_deadline()

    def _tick(self, due: int) -> None:
        try:
            with self._lock:
                seq, outputs, done = self._step(Tick(now=self._clock.at_least(due)))
            self._after(seq, outputs, done)
        except Exception:
            _log.exception("tick failed")

    def _report(
        self,
        *,
        program_source: str | None = None,
        last_command_seq: int | None = None,
        last_executed_seq: int | None = None,
    ) -> None:
        self.handle(
            lambda now: HostStatus(
                now=now,
                program_source=program_source,
                last_command_seq=last_command_seq,
                last_executed_seq=last_executed_seq,
            )
        )

    # -- requests --------------------------------------------------------------

    def precheck(
        self, method: str, target: str, headers: Sequence[tuple[bytes, bytes]], has_body: bool
    ) -> Precheck:
        """Route, auth, body limit and media type from the head: the core's
        :func:`peersync_proto.check_head` (pure; no engine lock needed)."""
        return check_head(self._config, method, target, headers, has_body=has_body)

    def serve(
        self,
        *,
        method: str,
        target: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes = b"",
        predecoded: DecodedSnapshot | RemoteProtocolError | None = None,
    ) -> Response:
        """One request through the core, completing any capture or apply it
        asks for on this thread. Returns the response to send."""
        rid = next(self._ids)
        outputs = self.handle(
            lambda now: Request(
                now=now,
                request_id=rid,
                method=method,
                target=target,
                headers=headers,
                body=body,
                predecoded=predecoded,
            )
        )
        while True:
            followup: Callable[[int], Event] | None = None
            for out in outputs:
                if isinstance(out, Response) and out.request_id == rid:
                    return out
                if isinstance(out, CaptureSnapshot) and out.request_id == rid:
                    followup = self._capture(rid)
                elif isinstance(out, ApplySnapshot) and out.request_id == rid:
                    followup = self._apply(rid, out.snapshot)
            if followup is None:
                raise RuntimeError(f"the core gave no answer for request {rid}")
            outputs = self.handle(followup)

    def _capture(self, rid: int) -> Callable[[int], Event]:
        try:
            got = self._host.capture()
        except Exception:
            _log.exception("engine host failed to capture a snapshot")
            return lambda now: SnapshotCaptureFailed(now=now, request_id=rid, reason="host error")
        return lambda now: SnapshotCaptured(
            now=now,
            request_id=rid,
            state=got.state,
            checksum=got.checksum,
            captured_at_us=got.captured_at_us,
            program_source=got.program_source,
            preview_source=got.preview_source,
            last_command_seq=got.last_command_seq,
            last_executed_seq=got.last_executed_seq,
        )

    def _apply(self, rid: int, snapshot: DecodedSnapshot) -> Callable[[int], Event]:
        try:
            self._host.apply(snapshot)
        except Exception:
            _log.exception("engine host failed to apply a snapshot")
            return lambda now: SnapshotApplyFailed(now=now, request_id=rid, reason="host error")
        return lambda now: SnapshotApplied(now=now, request_id=rid)


def _effects(outputs: Sequence[Output]) -> list[Effect]:
    """What the host acts on: everything but answers and completions asked for."""
    return [o for o in outputs if not isinstance(o, Response | CaptureSnapshot | ApplySnapshot)]
