"""Logging: one line per request, text or JSON lines, and nothing secret.

What is never logged: request headers (so never ``Authorization`` or
``X-Control-Plane-Secret``), bodies, query strings, and lock ids. Refresh and
release carry the lock id in the path, so :func:`safe_path` redacts it there.
Control characters and anything outside printable ASCII are escaped, so a
request cannot forge log lines.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any, TextIO

__all__ = [
    "ACCESS_LOGGER",
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


#: Printable ASCII but the backslash: logged as is (every well-formed path).
_PLAIN = re.compile(r"[\x21-\x5b\x5d-\x7e]*")
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
    path is replaced by ``<redacted>``, and control characters are escaped.
    """
    if isinstance(target, bytes):
        target = target.decode("latin-1")
    path, sep, _query = target.partition("?")
    if path.startswith(LOCK_PATH_PREFIX) and len(path) > len(LOCK_PATH_PREFIX):
        path = LOCK_PATH_PREFIX + REDACTED
    elif "://" in path or not path.startswith("/"):
        # absolute-form or garbage: it may carry credentials (user:pass@host)
        path = REDACTED
    escaped = _escape(path)[:MAX_LOGGED_PATH]
    return escaped + ("?" + REDACTED if sep else "")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
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


def configure_logging(
    *, fmt: str = "text", level: str | int = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Send the server's logs to ``stream`` (stderr by default); returns the handler."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger("peersync")
    for old in list(root.handlers):
        root.removeHandler(old)
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
