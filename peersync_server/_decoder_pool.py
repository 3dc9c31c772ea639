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
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool

import attrs

from peersync_proto import DecodedSnapshot, RemoteProtocolError, decode_snapshot

__all__ = [
    "DECODER_NICENESS",
    "DEFAULT_DECODER_WORKERS",
    "DecoderPool",
    "DecoderUnavailable",
    "Spool",
]

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


def _decode_spooled(body_path: str, state_path: str) -> DecodedSnapshot | RemoteProtocolError:
    """Runs in the worker: the body comes from a file and the canonical state
    goes back through one, so the server never copies 50 MB under its GIL."""
    with open(body_path, "rb") as f:
        body = f.read()
    try:
        snapshot = decode_snapshot(body)
    except RemoteProtocolError as err:
        return err
    with open(state_path, "wb") as f:
        f.write(snapshot.state)
    return attrs.evolve(snapshot, state=b"")


class Spool:
    """An upload written to a file as it arrives (a chunk at a time, GIL free
    during each write), handed to the worker by name, removed afterwards.
    Named ``.upload-*.tmp`` so a crash leaves nothing a restart keeps."""

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        fd, path = tempfile.mkstemp(prefix=".upload-", suffix=".tmp", dir=directory)
        self._fd: int | None = fd
        self.path = path
        self.state_path = path[: -len(".tmp")] + ".state.tmp"
        #: The write error that ended spooling (full disk, read-only, size
        #: limit); the rest of the body is then read and dropped, so the
        #: connection can still carry the 500 that says so.
        self.failed: OSError | None = None

    def write(self, data: bytes | bytearray) -> None:
        if self.failed is not None:
            return
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self.failed = exc
            self.finish()
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # give the space back at once

    def finish(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        self.finish()
        for path in (self.path, self.state_path):
            with contextlib.suppress(OSError):
                os.unlink(path)


def _warm() -> bool:
    return True


#: How often a worker checks that the server that started it is alive.
_PARENT_CHECK_S = 0.5


#: Decoding is bulk work: the worker yields the CPU to the server's threads,
#: so a peer-health answer never waits for a core busy parsing 50 MB.
DECODER_NICENESS = 10


def _init_worker(parent_pid: int) -> None:
    """Worker initializer: lower the worker's priority, and exit when the
    server dies (even by ``kill -9``) instead of lingering as an orphan
    holding the server's stdout and stderr."""
    with contextlib.suppress(OSError):
        os.nice(DECODER_NICENESS)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="peersync-parent-watch", daemon=True).start()


class DecoderPool:
    """A small process pool running ``decode_snapshot``."""

    def __init__(
        self,
        workers: int = DEFAULT_DECODER_WORKERS,
        *,
        method: str = "spawn",
        spool_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._workers = workers
        self._spool_dir = spool_dir
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
                    initializer=_init_worker,
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

    def spool(self) -> Spool:
        """A file to stream an upload into, for :meth:`decode_spooled`."""
        return Spool(self._spool_dir)

    def decode_spooled(self, spool: Spool) -> DecodedSnapshot | RemoteProtocolError:
        """Decode a spooled upload in a worker. The body and the canonical
        state travel through files: no 50 MB pickle or join on this GIL; the
        state is read back with one ``read`` (the GIL is released meanwhile)."""
        spool.finish()
        got = self._run(_decode_spooled, spool.path, spool.state_path)
        if isinstance(got, RemoteProtocolError):
            return got
        with open(spool.state_path, "rb") as f:
            state = f.read()
        return attrs.evolve(got, state=state)

    def decode(self, body: bytes) -> DecodedSnapshot | RemoteProtocolError:
        """Decode ``body`` in a worker (pickled across); blocks this thread only."""
        return self._run(_decode, body)

    def _run(
        self, fn: Callable[..., DecodedSnapshot | RemoteProtocolError], *args: object
    ) -> DecodedSnapshot | RemoteProtocolError:
        pool = self._get()
        try:
            return pool.submit(fn, *args).result()
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
