"""Snapshot decoding off the server's GIL.

``json.loads`` of a 50 MB snapshot holds the GIL for one to two and a half
seconds; every other thread stops, peer-health answers included, and a peer
probing at 5 Hz would declare this engine dead mid-apply. So the core's pure
:func:`peersync_proto.decode_snapshot` runs in a worker *process*: bytes in,
the validated envelope and the canonical state bytes (a ``DecodedSnapshot``)
or the ``RemoteProtocolError`` it raised out. The server hands the result to
the core as ``Request(predecoded=...)``.

Workers are started with ``spawn`` (never ``fork``: the server has threads
holding locks) and warmed up at start so the first apply pays no start-up.
A worker that dies is replaced and the request answered ``500 internal``; a
worker whose server died (``kill -9``) exits within half a second.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures.process import BrokenProcessPool

from peersync_proto import DecodedSnapshot, RemoteProtocolError, decode_snapshot

__all__ = ["DEFAULT_DECODER_WORKERS", "DecoderPool", "DecoderUnavailable"]

_log = logging.getLogger("peersync.server.decoder")

#: One worker: snapshot applies are serialized by the core anyway (one apply
#: at a time), and the machine may have only two cores.
DEFAULT_DECODER_WORKERS = 1


class DecoderUnavailable(Exception):
    """The worker died or the pool is shut down; answer ``500 internal``."""


def _decode(body: bytes) -> DecodedSnapshot | RemoteProtocolError:
    """Runs in the worker process."""
    try:
        return decode_snapshot(body)
    except RemoteProtocolError as err:
        return err


def _warm() -> bool:
    return True


#: How often a worker checks that the server that started it is alive.
_PARENT_CHECK_S = 0.5


def _watch_parent(parent_pid: int) -> None:
    """Worker initializer: exit when the server dies (even by ``kill -9``),
    instead of lingering as an orphan holding the server's stdout and stderr."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="peersync-parent-watch", daemon=True).start()


class DecoderPool:
    """A small process pool running ``decode_snapshot``."""

    def __init__(self, workers: int = DEFAULT_DECODER_WORKERS, *, method: str = "spawn") -> None:
        self._workers = workers
        self._context = multiprocessing.get_context(method)
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._closed = False
        self._warming: concurrent.futures.Future[bool] | None = None

    def _get(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise DecoderUnavailable("the decoder pool is shut down")
            if self._pool is None:
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=self._workers,
                    mp_context=self._context,
                    initializer=_watch_parent,
                    initargs=(os.getpid(),),
                )
            return self._pool

    def warm_up(self) -> None:
        """Start the worker now (in the background) so the first decode is quick."""
        with contextlib.suppress(DecoderUnavailable, RuntimeError):
            self._warming = self._get().submit(_warm)

    def wait_warm(self, timeout: float) -> bool:
        """Wait until the worker has started (``False`` if it did not in time)."""
        future = self._warming
        if future is None:
            return False
        try:
            return bool(future.result(timeout))
        except (concurrent.futures.TimeoutError, BrokenProcessPool, RuntimeError):
            return False

    def decode(self, body: bytes) -> DecodedSnapshot | RemoteProtocolError:
        """Decode ``body`` in a worker; blocks this thread only (not the GIL)."""
        pool = self._get()
        try:
            return pool.submit(_decode, body).result()
        except (BrokenProcessPool, RuntimeError) as exc:
            # RuntimeError: submit after shutdown. Replace a broken pool.
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            _log.error("snapshot decoder worker failed: %s", type(exc).__name__)
            raise DecoderUnavailable(str(exc)) from exc

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
