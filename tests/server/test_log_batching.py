"""The server's log handler writes lines below WARNING in batches from its own
thread (one write per batch, not per access line), at most LOG_BATCH_DELAY_S
late; WARNING and above go out at once, in order after what is pending; a
flush or close writes everything."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from peersync_server._logging import LOG_BATCH_DELAY_S, configure_logging


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


def test_a_warning_is_written_at_once_after_what_is_pending(stream: _Stream) -> None:
    log = logging.getLogger("peersync.server")
    log.info("first")
    log.warning("second")
    lines = stream.text().splitlines()  # no wait: the warning wrote both
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["first", "second"]


def test_flush_and_close_write_what_is_pending() -> None:
    out = _Stream()
    handler = configure_logging(level="INFO", stream=out)
    logging.getLogger("peersync.server").info("pending")
    handler.flush()
    assert out.text().endswith("pending\n")
    logging.getLogger("peersync.server").info("at close")
    handler.close()
    assert out.text().endswith("at close\n")
