"""Logging: one line per request, text or JSON lines, and nothing secret.

What is never logged: request headers (so never ``Authorization`` or
``X-Control-Plane-Secret``), bodies, query strings, and lock ids. Refresh and
release carry the lock id in the path, so :func:`safe_path` redacts it there;
a mistyped path (a 404) may carry one anywhere, so it also redacts anything
with a lock id's shape (32 hex digits or more) wherever it is. Control
characters and anything outside printable ASCII are escaped, so a request
cannot forge log lines.

Logging never blocks the thread that logs (a request thread, the accept
loop): lines go to a bounded queue and one writer thread writes them. A log
stream that stops taking lines (a pipe nobody reads) costs log lines, never
requests: they are dropped and counted, and ``dropped N log lines`` is written
where they were lost once the stream drains.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import json
import logging
import re
import sys
import threading
import time
import traceback
from typing import Any, TextIO

__all__ = [
    "ACCESS_LOGGER",
    "LOG_BATCH_DELAY_S",
    "LOG_FLUSH_TIMEOUT_S",
    "LOG_QUEUE_LIMIT_CHARS",
    "LOCK_PATH_PREFIX",
    "LOGGER",
    "REDACTED",
    "JsonFormatter",
    "configure_logging",
    "log_request",
    "safe_path",
]

LOGGER = "peersync.server"
ACCESS_LOGGER = "peersync.server.access"
REDACTED = "<redacted>"
#: Contract 3.5: refresh and release name the lock id in the path.
LOCK_PATH_PREFIX = "/api/sync/reconcile-lock/"
#: A logged path is cut to this many characters (after escaping).
MAX_LOGGED_PATH = 256
#: Lines below WARNING (the access lines) reach the stream at most this long
#: after they were logged, many in one write: one system call per batch, not
#: one per request (each is a hand-off of the GIL to another busy thread).
#: WARNING and above wake the writer at once, and go out after whatever is
#: pending. A ``kill -9`` loses at most this much of the log.
LOG_BATCH_DELAY_S = 0.01
#: Logging never waits for the log stream: lines wait for the writer thread
#: in a queue of at most this many characters (about 9000 access lines);
#: past it a line is dropped and counted, and the stream later gets
#: ``dropped N log lines`` where they were lost.
LOG_QUEUE_LIMIT_CHARS = 1 << 20
#: ``flush`` and ``close`` (at exit) wait at most this long for the writer: a
#: stream nobody reads must not keep the engine from stopping.
LOG_FLUSH_TIMEOUT_S = 1.0


#: Printable ASCII but the backslash: logged as is (every well-formed path).
_PLAIN = re.compile(r"[\x21-\x5b\x5d-\x7e]*")
#: What a lock id looks like anywhere in a path (``/api/sync/state/<id>``,
#: ``/api/sync//reconcile-lock/<id>``, ``/api/sync/reconcile-lock<id>``): a
#: lock id is 16 bytes of entropy in hex, 32 digits; any run of 32 or more
#: hex digits, in either case, percent-encoded digits counted, is redacted.
_LOCK_ID_SHAPE = re.compile(r"(?:%(?:3[0-9]|[46][1-6])|[0-9A-Fa-f]){32,}")
#: Where an access record says it comes from (what ``Logger.info`` would find
#: by walking the stack, which :func:`log_request` skips).
_SOURCE = (__file__, 0, "log_request")


def _escape(text: str) -> str:
    if _PLAIN.fullmatch(text):
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 0x21 <= code <= 0x7E and ch != "\\":
            out.append(ch)
        elif ch == "\\":
            out.append("\\\\")
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return "".join(out)


def safe_path(target: str | bytes) -> str:
    """The request target fit for a log line.

    The query string is dropped (it may carry anything), a lock id in the
    path is replaced by ``<redacted>`` (on the refresh and release route
    whatever follows the prefix; elsewhere anything shaped like a lock id,
    see ``_LOCK_ID_SHAPE``), and control characters are escaped.
    """
    if isinstance(target, bytes):
        target = target.decode("latin-1")
    path, sep, _query = target.partition("?")
    if path.startswith(LOCK_PATH_PREFIX) and len(path) > len(LOCK_PATH_PREFIX):
        path = LOCK_PATH_PREFIX + REDACTED
    elif "://" in path or not path.startswith("/"):
        # absolute-form or garbage: it may carry credentials (user:pass@host)
        path = REDACTED
    else:  # a mistyped path may carry a live lock id anywhere
        path = _LOCK_ID_SHAPE.sub(REDACTED, path)
    escaped = _escape(path)[:MAX_LOGGED_PATH]
    return escaped + ("?" + REDACTED if sep else "")


def _utc_millis(created: float) -> str:
    """``2026-12-04T08:03:20.123Z``: failover timing needs the milliseconds,
    and a log shipped off the machine needs the zone."""
    moment = datetime.datetime.fromtimestamp(created, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _utc_millis(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=True, separators=(",", ":"))


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")


class _BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that never makes the logging thread wait for the
    stream: :meth:`emit` formats the line and hands it to a bounded queue
    (a few microseconds under a lock nobody holds across a write), and one
    writer thread of its own writes the queue to the stream, many lines in
    one write. Lines below WARNING are written at most ``delay`` seconds
    late (:data:`LOG_BATCH_DELAY_S`); a WARNING or above wakes the writer at
    once. Order is kept.

    When the stream does not keep up (a pipe nobody reads fills, and the
    writer may then block in ``write()`` for good), the queue fills to
    :data:`LOG_QUEUE_LIMIT_CHARS` and further lines are dropped and counted,
    never waited for; where they were lost, the stream later gets one line
    ``dropped N log lines``, written once it drains. ``flush`` and ``close``
    (``logging.shutdown`` at exit) wait for what is pending, but at most
    :data:`LOG_FLUSH_TIMEOUT_S`, and not again while the writer is still
    stuck."""

    def __init__(self, stream: TextIO, delay: float, limit: int = 0) -> None:
        super().__init__(stream)
        self._delay = delay
        self._limit = limit or LOG_QUEUE_LIMIT_CHARS
        self._cond = threading.Condition(threading.Lock())
        # Guarded by _cond. Items are lines, or an int: that many dropped here.
        self._pending: collections.deque[str | int] = collections.deque()
        self._pending_chars = 0
        self._dropped = 0  # since the last item that got in
        self._dropped_total = 0
        self._urgent = False
        self._due = 0.0  # when the oldest pending line must be written
        self._closed = False
        self._queued = 0  # items ever queued
        self._written = 0  # items ever taken and written (or lost to a broken stream)
        self._stuck_at = -1  # _written when a flush last gave up waiting
        self._writer = threading.Thread(target=self._run, name="peersync-log", daemon=True)
        self._writer.start()

    @property
    def dropped_total(self) -> int:
        """Lines dropped since the start (for tests and diagnostics)."""
        with self._cond:
            return self._dropped_total

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._offer(line, record.levelno >= logging.WARNING)

    def handleError(self, record: logging.LogRecord) -> None:
        """As :class:`logging.Handler` does, but through the queue: its
        default writes the traceback to ``sys.stderr`` on this thread, and
        that may be the very pipe that is stuck."""
        if not logging.raiseExceptions:
            return
        text = traceback.format_exc()
        try:
            where = f"{record.name} {record.pathname}:{record.lineno}"
        except Exception:
            where = "?"
        self._offer(f"--- Logging error ({where}) ---\n{text}", True)

    def _offer(self, line: str, urgent: bool) -> None:
        """Queue ``line`` or count it dropped: never waits for the writer."""
        with self._cond:
            if self._closed or self._pending_chars + len(line) > self._limit:
                self._dropped += 1
                self._dropped_total += 1
                if not self._pending and not self._closed:  # say so, even with nothing queued
                    self._due = time.monotonic()
                    self._cond.notify()
                return
            if self._dropped:
                self._pending.append(self._dropped)  # the gap, where it was
                self._dropped = 0
                self._queued += 1
            self._pending.append(line)
            self._pending_chars += len(line)
            self._queued += 1
            if urgent:
                self._urgent = True
                self._cond.notify()
            elif len(self._pending) == 1:
                self._due = time.monotonic() + self._delay
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._pending or self._dropped:
                        if self._urgent or self._closed:
                            break
                        left = self._due - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                    elif self._closed:
                        return
                    else:
                        self._cond.wait()
                batch = list(self._pending)
                if self._dropped:  # lost after every line in this batch
                    batch.append(self._dropped)
                    self._dropped = 0
                    self._queued += 1
                self._pending.clear()
                self._pending_chars = 0
                self._urgent = False
            text = "".join(item if isinstance(item, str) else self._gap(item) for item in batch)
            with contextlib.suppress(Exception):  # a closed or broken stream: drop
                self.stream.write(text)
                self.stream.flush()
            with self._cond:
                self._written += len(batch)
                self._cond.notify_all()

    def _gap(self, count: int) -> str:
        record = logging.LogRecord(
            LOGGER, logging.WARNING, __file__, 0,
            "dropped %d log lines: the log stream did not keep up", (count,), None,
            "log",
        )  # fmt: skip
        record.fields = {"dropped": count}
        try:
            return self.format(record) + self.terminator
        except Exception:
            return f"dropped {count} log lines: the log stream did not keep up\n"

    def flush(self) -> None:
        """Wait until what was logged before this call is written, but at
        most :data:`LOG_FLUSH_TIMEOUT_S` (no wait while the writer is stuck
        where a previous flush left it)."""
        with self._cond:
            target = self._queued + (1 if self._dropped else 0)
            if self._written >= target or self._written == self._stuck_at:
                return
            self._urgent = True
            self._cond.notify_all()
            if not self._cond.wait_for(
                lambda: self._written >= target, timeout=LOG_FLUSH_TIMEOUT_S
            ):
                self._stuck_at = self._written

    def close(self) -> None:
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        super().close()


def configure_logging(
    *, fmt: str = "text", level: str | int = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Send the server's logs to ``stream`` (stderr by default); returns the
    handler. Lines below WARNING are written in batches, at most
    :data:`LOG_BATCH_DELAY_S` late, by a thread of the handler's own; the
    thread that logs never waits for ``stream`` (a line it cannot take in
    time is dropped and counted, see :data:`LOG_QUEUE_LIMIT_CHARS`)."""
    handler = _BatchingStreamHandler(
        stream if stream is not None else sys.stderr, LOG_BATCH_DELAY_S
    )
    handler.setFormatter(JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger("peersync")
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, _BatchingStreamHandler):
            old.close()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    root.propagate = False
    return handler


def log_request(
    logger: logging.Logger,
    *,
    method: str,
    target: str | bytes,
    status: int,
    ms: float,
    nbytes: int,
    peer: str = "",
) -> None:
    """The access line: method, safe path, status, milliseconds, bytes sent.

    Nothing is built when the logger is off for ``INFO``. The record is made
    and handled as ``logger.info`` would, without its stack walk (one per
    request) to find the caller: it names this function.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    path = safe_path(target)
    method_safe = _escape(method)[:16]
    fields = {
        "method": method_safe,
        "path": path,
        "status": status,
        "ms": round(ms, 2),
        "bytes": nbytes,
        "peer": peer,
    }
    pathname, lineno, func = _SOURCE
    record = logger.makeRecord(
        logger.name,
        logging.INFO,
        pathname,
        lineno,
        "%s %s %d %.1fms %dB %s",
        (method_safe, path, status, ms, nbytes, peer),
        None,
        func,
        {"fields": fields},
    )
    logger.handle(record)
