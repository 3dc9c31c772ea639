"""A small TCP fault proxy on loopback, controlled at run time from Python.

Used by the demo and the failover tests to stand between two engines::

    proxy = FaultProxy(upstream_port=None)   # upstream may be set later
    port = proxy.start()                     # 127.0.0.1:port forwards to the upstream
    proxy.set_upstream(8470)
    proxy.set_mode(ProxyMode.BLACKHOLE)      # a partition: accepted, then silence
    proxy.set_mode(ProxyMode.PASS)           # healed
    proxy.stop()

Modes:

* ``PASS``: every connection is forwarded, byte for byte, both ways. When the
  upstream refuses (its process is gone) the client's connection is *reset*
  (RST, not FIN), as a host with nothing listening answers a SYN: the peer
  monitor counts a reset as a refusal, so a crash is still seen fast.
* ``REFUSE``: new connections are reset at once (what a dead peer looks like).
* ``BLACKHOLE``: new connections are accepted and held, never forwarded and
  never answered (a partition, or a peer whose kernel accepts while the
  process is frozen): the client's own deadline ends them.

Leaving ``PASS`` resets every connection forwarded so far, so a kept-alive
connection cannot leak through a partition. The listening port stays bound
in every mode. Every thread is bounded: each wakes at least every
``_POLL_S`` to notice ``stop()``.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import selectors
import socket
import struct
import threading

__all__ = ["FaultProxy", "ProxyMode"]

_log = logging.getLogger("peersync.proxy")

_HOST = "127.0.0.1"
_POLL_S = 0.2
_CONNECT_TIMEOUT_S = 1.0
_CHUNK = 256 * 1024
#: A side that does not drain what it is sent ends its connection.
_SEND_TIMEOUT_S = 10.0


class ProxyMode(enum.Enum):
    PASS = "pass"
    REFUSE = "refuse"
    BLACKHOLE = "blackhole"


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0) rather than FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:upstream_port`` with faults.

    ``upstream_port=None`` behaves like an upstream that refuses (until
    :meth:`set_upstream`). ``listen_port`` 0 picks a free port.
    """

    def __init__(self, upstream_port: int | None, *, listen_port: int = 0) -> None:
        self._upstream = upstream_port
        self._listen_port = listen_port
        self._mode = ProxyMode.PASS
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._held: list[socket.socket] = []
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self._port}"

    @property
    def mode(self) -> ProxyMode:
        with self._lock:
            return self._mode

    def start(self) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((_HOST, self._listen_port))
        sock.listen(128)
        sock.settimeout(_POLL_S)
        self._listener = sock
        self._port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)
        self._thread.start()
        return self._port

    def set_upstream(self, port: int | None) -> None:
        with self._lock:
            self._upstream = port

    def set_mode(self, mode: ProxyMode) -> None:
        with self._lock:
            previous, self._mode = self._mode, mode
            cut = list(self._pairs) if mode is not ProxyMode.PASS else []
            held = self._held if mode is not ProxyMode.BLACKHOLE else []
            if mode is not ProxyMode.BLACKHOLE:
                self._held = []
            self._pairs.difference_update(cut)
        for client, upstream in cut:
            _reset(client)
            _reset(upstream)
        for sock in held:
            _reset(sock)
        if previous is not mode:
            _log.info("proxy :%d %s -> %s", self._port, previous.value, mode.value)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            pairs, self._pairs = list(self._pairs), set()
            held, self._held = self._held, []
        for client, upstream in pairs:
            _reset(client)
            _reset(upstream)
        for sock in held:
            _reset(sock)

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- threads -------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                mode, upstream = self._mode, self._upstream
                if mode is ProxyMode.BLACKHOLE:
                    self._held.append(client)
            if mode is ProxyMode.BLACKHOLE:
                continue
            if mode is ProxyMode.REFUSE or upstream is None:
                _reset(client)
                continue
            threading.Thread(
                target=self._forward, args=(client, upstream), name="proxy-pipe", daemon=True
            ).start()

    def _forward(self, client: socket.socket, upstream_port: int) -> None:
        try:
            upstream = socket.create_connection((_HOST, upstream_port), timeout=_CONNECT_TIMEOUT_S)
        except OSError:
            _reset(client)
            return
        client.settimeout(_SEND_TIMEOUT_S)
        upstream.settimeout(_SEND_TIMEOUT_S)
        pair = (client, upstream)
        with self._lock:
            if self._mode is not ProxyMode.PASS:
                _reset(client)
                _reset(upstream)
                return
            self._pairs.add(pair)
        try:
            self._pump(client, upstream)
        finally:
            with self._lock:
                mine = pair in self._pairs
                self._pairs.discard(pair)
            if mine:
                client.close()
                upstream.close()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        other = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as sel:
            try:
                sel.register(client, selectors.EVENT_READ)
                sel.register(upstream, selectors.EVENT_READ)
            except (OSError, ValueError):
                return
            while not self._stopping.is_set():
                try:
                    ready = sel.select(_POLL_S)
                except (OSError, ValueError):
                    return
                for key, _ in ready:
                    src = key.fileobj
                    assert isinstance(src, socket.socket)
                    try:
                        data = src.recv(_CHUNK)
                        if not data:
                            return
                        other[src].sendall(data)
                    except OSError:
                        return
