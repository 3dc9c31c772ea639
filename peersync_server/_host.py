"""The engine host: the protocol an engine program implements, and the
durable standalone host the bundled server embeds when none is plugged in.

The server calls a host from several threads; every method must be
thread-safe. ``capture`` and ``apply`` run on the requesting connection's
thread *outside* the engine lock (an apply may take a second for a large
snapshot); ``on_effects`` runs on whichever thread got the effects from the
core, before the response that follows them is sent.

Durability (:class:`StandaloneHost`): the state directory holds

- ``engine.json``: the one commit point. Epoch, role, fencing-token floor,
  the status fields of the applied snapshot and the name of its state file.
- ``state-<sha256>.json``: the canonical (RFC 8785) state bytes, named by
  their checksum, written before ``engine.json`` points at them.
- ``lock``: held with ``flock`` while a server runs on the directory.

Every write is temp file, ``fsync``, ``rename``, ``fsync`` of the directory,
so a ``kill -9`` at any instant leaves the old or the new document, never a
torn one; floors only ever rise.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs

from peersync_proto import (
    BecomeLeader,
    DecodedSnapshot,
    Effect,
    Floors,
    FloorsRaised,
    Role,
    StepDown,
)

from ._clock import Clock

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL_S",
    "CapturedState",
    "EngineHost",
    "HostStateError",
    "StandaloneHost",
    "StatusReporter",
]

_log = logging.getLogger("peersync.server.host")

#: The standalone host's loop reports a heartbeat this often: five beats
#: inside the core's 500 ms stall limit, so ``stalled`` means the loop froze.
DEFAULT_HEARTBEAT_INTERVAL_S = 0.1
_FORMAT_VERSION = 1
_INT64_MAX = 2**63 - 1
_META = "engine.json"
_STATE_RE = re.compile(r"^state-([0-9a-f]{64})\.json$")
#: The canonical form of an empty engine document.
_EMPTY_STATE = b"{}"


#: ``state_checksum(_EMPTY_STATE)``: what a fresh engine serves.
_EMPTY_CHECKSUM = "sha256:" + hashlib.sha256(_EMPTY_STATE).hexdigest()


def _checksum_of(state_file: str | None) -> str:
    """The checksum of the state a document names: state files are named by
    the SHA-256 of their canonical bytes, which is the contract's checksum."""
    if state_file is None:
        return _EMPTY_CHECKSUM
    match = _STATE_RE.match(state_file)
    assert match is not None  # from_json and apply only ever store such names
    return "sha256:" + match.group(1)


class HostStateError(Exception):
    """The state directory cannot be used (unreadable, corrupt, wrong label,
    or in use by another server). The server refuses to start."""


@attrs.frozen(kw_only=True, slots=True)
class CapturedState:
    """One consistent instant of the engine, for ``GET /api/sync/state``.

    ``state`` is the canonical RFC 8785 bytes of the engine's own document;
    the server stamps the event with a fresh ``now`` and hands it to the core.
    """

    state: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    captured_at_us: int
    program_source: str
    preview_source: str
    last_command_seq: int
    last_executed_seq: int
    #: ``state_checksum(state)`` when the host keeps it beside the state (saves
    #: hashing a large state under the engine lock on every GET); ``None``
    #: and the core computes it.
    checksum: str | None = None


class StatusReporter(Protocol):
    """How a host reports status to the core (a ``HostStatus`` event).

    Every field is optional; a call with none is a heartbeat.
    """

    def __call__(
        self,
        *,
        program_source: str | None = None,
        last_command_seq: int | None = None,
        last_executed_seq: int | None = None,
    ) -> None: ...


class EngineHost(Protocol):
    """What the server needs from the engine it fronts.

    Plug your own into :class:`~peersync_server.PeerSyncServer` with
    ``PeerSyncServer(config, host=MyHost())``.
    """

    def open(self, label: str) -> Floors | None:
        """Load what was persisted: ``None`` for a fresh engine (the configured
        initial role applies), else the floors (the engine comes back follower).
        Raise :class:`HostStateError` to refuse to start."""
        ...

    def start(self, report: StatusReporter, clock: Clock) -> None:
        """Begin the host's own loop; it must call ``report()`` (at least a
        heartbeat) well within the stall limit while the engine is alive."""
        ...

    def capture(self) -> CapturedState:
        """One consistent instant of the engine."""
        ...

    def apply(self, snapshot: DecodedSnapshot) -> None:
        """Make ``snapshot`` the engine's state durably, or raise and keep the
        previous state whole."""
        ...

    def on_effects(self, seq: int, effects: Sequence[Effect]) -> None:
        """Act on the core's effects in order; ``FloorsRaised`` must be durable
        when this returns. ``seq`` rises with every core call, so a host can
        ignore a batch older than one it already applied (threads race)."""
        ...

    def close(self) -> None:
        """Stop the loop and persist; called once at shutdown."""
        ...


@attrs.frozen(kw_only=True, slots=True)
class _Doc:
    """The engine document as persisted; swapped whole, never mutated."""

    label: str
    epoch: int = 0
    fencing_token: int = 0
    peer_epoch: int = 0
    role: str = Role.FOLLOWER.value
    role_seq: int = -1
    state_file: str | None = None
    program_source: str = ""
    preview_source: str = ""
    last_command_seq: int = 0
    last_executed_seq: int = 0

    def to_json(self) -> bytes:
        body = {
            "formatVersion": _FORMAT_VERSION,
            "label": self.label,
            "epoch": self.epoch,
            "fencingToken": self.fencing_token,
            "peerEpoch": self.peer_epoch,
            "role": self.role,
            "stateFile": self.state_file,
            "programSource": self.program_source,
            "previewSource": self.preview_source,
            "lastCommandSeq": self.last_command_seq,
            "lastExecutedSeq": self.last_executed_seq,
        }
        return json.dumps(body, sort_keys=True, indent=1).encode("utf-8") + b"\n"

    @classmethod
    def from_json(cls, raw: bytes) -> _Doc:
        obj: Any = json.loads(raw)
        if not isinstance(obj, dict) or obj.get("formatVersion") != _FORMAT_VERSION:
            raise ValueError("unknown formatVersion")
        ints = ("epoch", "fencingToken", "lastCommandSeq", "lastExecutedSeq")
        obj.setdefault("peerEpoch", 0)  # written before the peer epoch was kept
        for key in (*ints, "peerEpoch"):
            if type(obj.get(key)) is not int or not 0 <= obj[key] <= _INT64_MAX:
                raise ValueError(f"bad {key}")
        for key in ("label", "role", "programSource", "previewSource"):
            if not isinstance(obj.get(key), str):
                raise ValueError(f"bad {key}")
        state_file = obj.get("stateFile")
        if state_file is not None and (
            not isinstance(state_file, str) or not _STATE_RE.match(state_file)
        ):
            raise ValueError("bad stateFile")
        Role(obj["role"])
        return cls(
            label=obj["label"],
            epoch=obj["epoch"],
            fencing_token=obj["fencingToken"],
            peer_epoch=obj["peerEpoch"],
            role=obj["role"],
            state_file=state_file,
            program_source=obj["programSource"],
            preview_source=obj["previewSource"],
            last_command_seq=obj["lastCommandSeq"],
            last_executed_seq=obj["lastExecutedSeq"],
        )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename over ``path``, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        # A full disk must not stay full of our half-written temp file.
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


class StandaloneHost:
    """A durable engine host keeping the engine document in ``state_dir``.

    With ``state_dir=None`` it keeps everything in memory (tests and demos:
    nothing survives a restart). Its loop only sends heartbeats; the status
    it reports is that of the last applied snapshot.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None,
        *,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
    ) -> None:
        self._dir = Path(state_dir) if state_dir is not None else None
        self._interval = heartbeat_interval_s
        self._lock = threading.Lock()  # guards _doc, _state and the meta file
        self._doc: _Doc | None = None
        self._state = _EMPTY_STATE
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._report: StatusReporter | None = None
        self._clock: Clock | None = None
        self._lock_fd: int | None = None
        self._max_seq = -1

    # -- persistence -------------------------------------------------------

    def open(self, label: str) -> Floors | None:
        if self._dir is None:
            self._doc = _Doc(label=label)
            return None
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self._dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise HostStateError(f"cannot use state directory {self._dir}: {exc}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise HostStateError(
                f"state directory {self._dir} is in use by another server"
            ) from exc
        try:
            return self._load(label)
        except BaseException:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise

    def _load(self, label: str) -> Floors | None:
        assert self._dir is not None
        meta = self._dir / _META
        try:
            raw = meta.read_bytes()
        except FileNotFoundError:
            raw = None
        except OSError as exc:
            raise HostStateError(f"cannot read {meta}: {exc}") from exc
        if raw is None:
            doc = _Doc(label=label)
            self._write_meta(doc)  # from now on a restart is a restart
            self._doc = doc
            self._collect_garbage(doc)
            return None
        try:
            doc = _Doc.from_json(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HostStateError(f"{meta} is not a peersync engine document: {exc}") from exc
        if doc.label != label:
            raise HostStateError(
                f"state directory {self._dir} belongs to engine {doc.label!r}, not {label!r}"
            )
        if doc.state_file is not None:
            self._state = self._read_state(doc.state_file)
        self._doc = doc
        self._collect_garbage(doc)
        return Floors(epoch=doc.epoch, fencing_token=doc.fencing_token, peer_epoch=doc.peer_epoch)

    def _read_state(self, name: str) -> bytes:
        assert self._dir is not None
        path = self._dir / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise HostStateError(f"cannot read {path}: {exc}") from exc
        match = _STATE_RE.match(name)
        assert match is not None
        if hashlib.sha256(data).hexdigest() != match.group(1):
            raise HostStateError(f"{path} does not match its checksum")
        return data

    def _collect_garbage(self, doc: _Doc) -> None:
        """Remove temp files and state files the document does not name."""
        assert self._dir is not None
        for entry in self._dir.iterdir():
            name = entry.name
            stale = (name.startswith(".") and name.endswith(".tmp")) or (
                _STATE_RE.match(name) is not None and name != doc.state_file
            )
            if stale:
                with contextlib.suppress(OSError):
                    entry.unlink()

    def _write_meta(self, doc: _Doc) -> None:
        if self._dir is not None:
            atomic_write(self._dir / _META, doc.to_json())

    @property
    def floors(self) -> Floors:
        doc = self._current()
        return Floors(epoch=doc.epoch, fencing_token=doc.fencing_token, peer_epoch=doc.peer_epoch)

    @property
    def role(self) -> str:
        return self._current().role

    def _current(self) -> _Doc:
        doc = self._doc
        if doc is None:
            raise RuntimeError("host used before open()")
        return doc

    # -- the host loop -------------------------------------------------------

    def start(self, report: StatusReporter, clock: Clock) -> None:
        self._report = report
        self._clock = clock
        doc = self._current()
        report(
            program_source=doc.program_source,
            last_command_seq=doc.last_command_seq,
            last_executed_seq=doc.last_executed_seq,
        )
        self._thread = threading.Thread(target=self._loop, name="peersync-host", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        assert self._report is not None
        while not self._stop.wait(self._interval):
            try:
                self._report()
            except Exception:  # the core refused: log, keep beating
                _log.exception("heartbeat failed")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            if self._doc is not None:
                self._write_meta(self._doc)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- serving -------------------------------------------------------------

    def capture(self) -> CapturedState:
        with self._lock:
            doc, state = self._current(), self._state
        assert self._clock is not None
        return CapturedState(
            state=state,
            captured_at_us=self._clock.wall_us(),
            program_source=doc.program_source,
            preview_source=doc.preview_source,
            last_command_seq=doc.last_command_seq,
            last_executed_seq=doc.last_executed_seq,
            checksum=_checksum_of(doc.state_file),
        )

    def apply(self, snapshot: DecodedSnapshot) -> None:
        digest = hashlib.sha256(snapshot.state).hexdigest()
        name = f"state-{digest}.json"
        if self._dir is not None:
            path = self._dir / name
            if not path.exists():
                atomic_write(path, snapshot.state)  # slow part, outside the lock
        with self._lock:
            old = self._current()
            doc = attrs.evolve(
                old,
                epoch=max(old.epoch, snapshot.epoch),
                state_file=name,
                program_source=snapshot.program_source,
                preview_source=snapshot.preview_source,
                last_command_seq=snapshot.last_command_seq,
                last_executed_seq=snapshot.last_executed_seq,
            )
            self._write_meta(doc)  # the commit point
            self._doc, self._state = doc, snapshot.state
            if self._dir is not None and old.state_file not in (None, name):
                with contextlib.suppress(OSError):
                    (self._dir / str(old.state_file)).unlink()
        if self._report is not None:
            self._report(
                program_source=doc.program_source,
                last_command_seq=doc.last_command_seq,
                last_executed_seq=doc.last_executed_seq,
            )

    def on_effects(self, seq: int, effects: Sequence[Effect]) -> None:
        with self._lock:
            old = doc = self._current()
            for effect in effects:
                if isinstance(effect, FloorsRaised):
                    doc = attrs.evolve(
                        doc,
                        epoch=max(doc.epoch, effect.epoch),
                        fencing_token=max(doc.fencing_token, effect.fencing_token),
                        peer_epoch=max(doc.peer_epoch, effect.peer_epoch),
                    )
                elif isinstance(effect, BecomeLeader | StepDown):
                    role = Role.LEADER if isinstance(effect, BecomeLeader) else Role.FOLLOWER
                    doc = attrs.evolve(doc, epoch=max(doc.epoch, effect.epoch))
                    if seq >= doc.role_seq:
                        doc = attrs.evolve(doc, role=role.value, role_seq=seq)
                    _log.info(
                        "role %s at epoch %d (cause %s)",
                        role.value,
                        effect.epoch,
                        effect.cause.value,
                    )
                else:
                    _log.debug("effect %r", effect)
            if doc != old:
                self._write_meta(doc)
                self._doc = doc
