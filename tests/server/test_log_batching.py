"""The server's log handler writes lines below WARNING in batches from its own
thread (one write per batch, not per access line), at most LOG_BATCH_DELAY_S
late; WARNING and above wake that thread at once, in order after what is
pending; a flush or close writes everything. The thread that logs never
writes, so never waits for the stream: see test_logging_stuck_stream.py."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from peersync_server._logging import (
    LOG_BATCH_DELAY_S,
    _BatchingStreamHandler,
    configure_logging,
)


class _Stream(io.StringIO):
    """Counts writes, so a test sees lines arrive batched."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            self.writes += 1
            return super().write(text)

    def text(self) -> str:
        with self.lock:
            return self.getvalue()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure_logging changes the ``peersync`` logger; later tests need it back."""
    root = logging.getLogger("peersync")
    saved = (list(root.handlers), root.level, root.propagate)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    handlers, root.level, root.propagate = saved
    for handler in handlers:
        root.addHandler(handler)


@pytest.fixture
def stream() -> _Stream:
    out = _Stream()
    configure_logging(level="INFO", stream=out)
    return out


def _record(level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord("peersync.server", level, __file__, 1, msg, (), None)


def _wait_for(stream: _Stream, count: int, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while stream.text().count("\n") < count and time.monotonic() < deadline:
        time.sleep(0.001)


def test_the_delay_is_short() -> None:
    assert 0 < LOG_BATCH_DELAY_S <= 0.05


def test_info_lines_arrive_soon_and_many_in_one_write(stream: _Stream) -> None:
    log = logging.getLogger("peersync.server.access")
    started = time.monotonic()
    for i in range(50):
        log.info("line %d", i)
    _wait_for(stream, 50)
    took = time.monotonic() - started
    lines = stream.text().splitlines()
    assert [line.rsplit(" ", 1)[1] for line in lines] == [str(i) for i in range(50)]
    assert took < 1.0
    assert stream.writes < 10, stream.writes  # batched, not one write per line


def test_a_warning_is_written_soon_after_what_is_pending(stream: _Stream) -> None:
    log = logging.getLogger("peersync.server")
    log.info("first")
    log.warning("second")
    _wait_for(stream, 2)
    lines = stream.text().splitlines()
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["first", "second"]


def test_a_warning_wakes_the_writer_without_the_delay() -> None:
    """With a 5 s batching delay an INFO line waits; a WARNING after it takes
    both out at once (it is not written by the thread that logs it, so a
    stuck stream cannot block that thread)."""
    out = _Stream()
    handler = _BatchingStreamHandler(out, 5.0)
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        handler.handle(_record(logging.INFO, "first"))
        time.sleep(0.2)
        assert out.text() == ""  # batched: due in 5 s
        started = time.monotonic()
        handler.handle(_record(logging.WARNING, "second"))
        _wait_for(out, 2)
        assert out.text() == "first\nsecond\n"
        assert time.monotonic() - started < 2.0
    finally:
        handler.close()


def test_flush_and_close_write_what_is_pending() -> None:
    out = _Stream()
    handler = configure_logging(level="INFO", stream=out)
    logging.getLogger("peersync.server").info("pending")
    handler.flush()
    assert out.text().endswith("pending\n")
    logging.getLogger("peersync.server").info("at close")
    handler.close()
    assert out.text().endswith("at close\n")
