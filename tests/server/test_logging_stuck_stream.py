"""The log handler in-process, with a stream that stops taking lines.

Logging never waits for the stream: lines the stream cannot take are dropped
and counted (the queue holds at most LOG_QUEUE_LIMIT_CHARS), and once it
drains it gets ``dropped N log lines`` where they were lost. ``flush`` and
``close`` give up after LOG_FLUSH_TIMEOUT_S. The server-level test, with a
real server process and an unread stderr pipe, is test_logging_stuck_pipe.py.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator

import pytest

from peersync_server._logging import (
    LOG_FLUSH_TIMEOUT_S,
    LOG_QUEUE_LIMIT_CHARS,
    _BatchingStreamHandler,
    configure_logging,
)

DROPPED = re.compile(r"dropped (\d+) log lines")


class _GatedStream(io.StringIO):
    """A stream whose ``write`` blocks until the gate opens (30 s at most),
    as a write to a full pipe does."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.entered = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        self.gate.wait(30)
        with self.lock:
            return super().write(text)

    def text(self) -> str:
        with self.lock:
            return self.getvalue()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger("peersync")
    saved = (list(root.handlers), root.level, root.propagate)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    handlers, root.level, root.propagate = saved
    for handler in handlers:
        root.addHandler(handler)


def _until(predicate: object, timeout: float = 10.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def _flood(threads: int, lines: int, level: int = logging.INFO) -> float:
    """Log ``lines`` lines on each of ``threads`` threads; the slowest single
    logging call, in seconds."""
    log = logging.getLogger("peersync.server.access")
    slowest = [0.0] * threads

    def run(k: int) -> None:
        for i in range(lines):
            started = time.perf_counter()
            log.log(level, "thread %d line %d %s", k, i, "x" * 60)
            slowest[k] = max(slowest[k], time.perf_counter() - started)

    workers = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(threads)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 20
    for w in workers:
        w.join(max(0.0, deadline - time.monotonic()))
    assert not any(w.is_alive() for w in workers), "a logging call blocked"
    return max(slowest)


@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING], ids=["info", "warning"])
def test_a_stuck_stream_never_blocks_the_logger_and_the_drops_are_counted(level: int) -> None:
    out = _GatedStream()
    handler = configure_logging(level="INFO", stream=out)
    threads, lines = 4, 6000  # 24000 lines of about 130 characters: 3 MB
    try:
        slowest = _flood(threads, lines, level)
    except AssertionError:
        out.gate.set()
        raise
    assert isinstance(handler, _BatchingStreamHandler)
    assert out.entered.is_set()  # the writer is inside write(), stuck
    assert slowest < 0.5, slowest
    dropped = handler.dropped_total
    assert dropped > 0
    out.gate.set()  # the stream drains
    assert _until(lambda: DROPPED.search(out.text()) is not None), out.text()[-500:]
    handler.flush()
    text = out.text()
    counted = sum(int(n) for n in DROPPED.findall(text))
    written = len(re.findall(r"thread \d+ line \d+", text))
    assert counted == dropped
    assert written + counted == threads * lines
    assert written * 130 < LOG_QUEUE_LIMIT_CHARS * 2  # bounded: the queue, not all
    # Each thread's lines that got through are in order.
    for k in range(threads):
        seen = [int(n) for n in re.findall(rf"thread {k} line (\d+)", text)]
        assert seen == sorted(seen)


def test_the_dropped_line_stands_where_the_lines_were_lost() -> None:
    out = _GatedStream()
    handler = _BatchingStreamHandler(out, 0.001, limit=100)
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        handler.handle(_record("first"))
        assert out.entered.wait(5)  # the writer took "first" and is stuck
        for i in range(19):  # 19 lines of 5 characters: 95 of 100
            handler.handle(_record(f"a{i:03d}"))
        handler.handle(_record("b" * 200))  # does not fit: dropped
        handler.handle(_record("zz"))  # 3 characters fit: after the gap
        for i in range(19, 24):  # 5 more do not fit: dropped
            handler.handle(_record(f"a{i:03d}"))
        assert handler.dropped_total == 6
        out.gate.set()
        assert _until(lambda: "dropped 5" in out.text())
        handler.handle(_record("after"))
        handler.flush()
        lines = out.text().splitlines()
    finally:
        out.gate.set()
        handler.close()
    kept = [f"a{i:03d}" for i in range(19)]
    gap1, gap5 = "dropped 1 log lines", "dropped 5 log lines"
    assert [line.split(":")[0] for line in lines] == ["first", *kept, gap1, "zz", gap5, "after"]


def test_flush_and_close_give_up_on_a_stuck_stream() -> None:
    out = _GatedStream()
    handler = configure_logging(level="INFO", stream=out)
    try:
        log = logging.getLogger("peersync.server")
        log.warning("stuck")
        assert out.entered.wait(5)
        log.info("pending")
        started = time.monotonic()
        handler.flush()
        took = time.monotonic() - started
        assert LOG_FLUSH_TIMEOUT_S * 0.9 <= took < LOG_FLUSH_TIMEOUT_S + 1.0, took
        started = time.monotonic()
        handler.flush()  # still stuck where the last flush left it: no wait
        handler.close()
        assert time.monotonic() - started < 0.5
    finally:
        out.gate.set()
    assert _until(lambda: out.text().endswith("pending\n")), out.text()


def test_a_real_pipe_nobody_reads() -> None:
    """An OS pipe, its write end as a text stream, not read until the end:
    logging returns at once; once read, the drops are reported, as JSON."""
    read_fd, write_fd = os.pipe()
    stream = open(write_fd, "w", encoding="utf-8")  # noqa: SIM115
    chunks: list[bytes] = []

    def read() -> None:
        while data := os.read(read_fd, 65536):
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    try:
        handler = configure_logging(fmt="json", level="INFO", stream=stream)
        slowest = _flood(2, 10000)
        assert slowest < 0.5, slowest
        assert isinstance(handler, _BatchingStreamHandler)
        assert handler.dropped_total > 0
        reader.start()
        assert _until(lambda: b'"dropped"' in b"".join(chunks))
        logging.getLogger("peersync.server").warning("the end")
        handler.flush()
        handler.close()
    finally:
        if not reader.is_alive():
            reader.start()  # drain, so that nothing stays stuck on the pipe
        stream.close()  # the writer's end: the reader sees EOF
        reader.join(10)
        os.close(read_fd)
    records = [json.loads(line) for line in b"".join(chunks).decode().splitlines()]
    gaps = [r for r in records if "dropped" in r]
    assert gaps and all(r["level"] == "warning" for r in gaps)
    assert all(r["message"].startswith(f"dropped {r['dropped']} log lines") for r in gaps)
    written = sum(1 for r in records if r["message"].startswith("thread "))
    assert written + sum(r["dropped"] for r in gaps) == 20000
    assert records[-1]["message"] == "the end"


def test_a_formatting_error_goes_through_the_queue(capfd: pytest.CaptureFixture[str]) -> None:
    """logging's own handleError prints to sys.stderr on the logging thread,
    which may be the stuck pipe; here it is a line in the queue."""
    out = _GatedStream()
    configure_logging(level="INFO", stream=out)
    log = logging.getLogger("peersync.server")
    log.warning("stuck")
    assert out.entered.wait(5)
    started = time.monotonic()
    log.info("%d items", "not a number")
    assert time.monotonic() - started < 0.5
    out.gate.set()
    assert _until(lambda: "Logging error" in out.text()), out.text()
    assert "TypeError" in out.text()
    assert "Logging error" not in capfd.readouterr().err


def _record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("peersync.server", logging.INFO, __file__, 1, msg, (), None)
