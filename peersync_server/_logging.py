"""Logging: one line per request, text or JSON lines, and nothing secret.

What is never logged: request headers (so never ``Authorization`` or
``X-Control-Plane-Secret``), bodies, query strings, and lock ids. Refresh and
release carry the lock id in the path, so :func:`safe_path` redacts it there;
a mistyped path (a 404) may carry one anywhere, so it also redacts anything
with a lock id's shape (32 hex digits or more) wherever it is. Control
characters and anything outside printable ASCII are escaped, so a
request cannot forge log lines.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
import threading
import time
from typing import Any, TextIO

__all__ = [
    "ACCESS_LOGGER",
    "LOG_BATCH_DELAY_S",
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
#: WARNING and above are written at once, after whatever is pending. A
#: ``kill -9`` loses at most this much of the access log.
LOG_BATCH_DELAY_S = 0.01


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
    """A stream handler that writes lines below WARNING in batches, from its
    own thread, at most ``delay`` seconds late (:data:`LOG_BATCH_DELAY_S`).
    The thread sleeps until a line is pending (it never polls); ``flush`` and
    ``close`` (``logging.shutdown`` at exit) write what is pending."""

    def __init__(self, stream: TextIO, delay: float) -> None:
        super().__init__(stream)
        self._delay = delay
        self._pending: list[str] = []
        self._due = threading.Event()
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="peersync-log", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:  # under the handler lock
        try:
            self._pending.append(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING or self._closed:
            self._write_pending()
        elif len(self._pending) == 1:
            self._due.set()

    def _write_pending(self) -> None:  # under the handler lock
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # stream closed or broken: drop, as logging does
            pass

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_pending()
        finally:
            self.release()

    def close(self) -> None:
        self._closed = True
        self.flush()
        self._due.set()
        super().close()

    def _run(self) -> None:
        while True:
            self._due.wait()
            if self._closed:
                return
            time.sleep(self._delay)  # let the batch gather
            self.acquire()
            try:
                self._due.clear()  # under the lock: a line logged now sets it again
                self._write_pending()
            finally:
                self.release()


def configure_logging(
    *, fmt: str = "text", level: str | int = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Send the server's logs to ``stream`` (stderr by default); returns the
    handler. Lines below WARNING are written in batches, at most
    :data:`LOG_BATCH_DELAY_S` late."""
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
