"""One client connection: the h11 bridge, its limits and its deadlines.

Each connection runs on its own thread. It frames requests with h11, applies
the shell's limits and framing rules, asks the engine driver for the answer,
and writes each response in one ``sendall``. Every limit is a named default
here and a field of :class:`Limits` (and a ``peersync-server`` flag).

The server's own answers (400 framing, 408, 413, 431, 500, 503, 505) use the
contract's error body and headers and always close the connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http import HTTPStatus
from typing import Any

import attrs
import h11

from peersync_proto import DecodedSnapshot, RemoteProtocolError, Response
from peersync_proto._responses import error_response

from ._decoder_pool import DecoderPool, DecoderUnavailable
from ._driver import EngineDriver
from ._gate import RunGate
from ._logging import log_request

__all__ = [
    "DEFAULT_BODY_MIN_RATE",
    "DEFAULT_BODY_TIMEOUT_S",
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_IDLE_TIMEOUT_S",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_HEADER_FIELDS",
    "DEFAULT_MAX_REQUESTS_PER_CONNECTION",
    "DEFAULT_SEND_TIMEOUT_S",
    "Connection",
    "Limits",
    "own_error",
]

#: Request line + headers; past it -> 431 (a real client sends < 2 KiB).
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
#: Header fields per request; past it -> 431.
DEFAULT_MAX_HEADER_FIELDS = 100
#: Absolute deadline for the whole head, from its first byte -> 408 (slowloris).
DEFAULT_HEADER_TIMEOUT_S = 10.0
#: A body must arrive within this plus its length at the minimum rate -> 408.
DEFAULT_BODY_TIMEOUT_S = 10.0
#: Minimum body rate the deadline allows for (1 MiB/s: 64 MiB in 74 s).
DEFAULT_BODY_MIN_RATE = 1024 * 1024
#: Absolute deadline for writing one response (a reader that stopped reading).
DEFAULT_SEND_TIMEOUT_S = 30.0
#: A keep-alive connection idle this long is closed; advertised in Keep-Alive.
DEFAULT_IDLE_TIMEOUT_S = 5.0
#: Requests served on one connection before it is closed.
DEFAULT_MAX_REQUESTS_PER_CONNECTION = 1000

#: Read size for a large body (fewer, larger reads of an upload).
_RECV_BYTES = 256 * 1024
#: Read size for heads and small bodies. It stays under glibc's mmap threshold
#: (128 KiB): a 256 KiB read buffer is mapped and unmapped on every ``recv``,
#: about 15 us each, a tenth of a health probe's whole cost.
_RECV_SMALL_BYTES = 64 * 1024
#: Responses larger than this are written with gather writes, not joined.
_GATHER_ABOVE = 256 * 1024
_IOV_MAX = 64
#: ``GET /api/sync/state`` answers in flight at once, and how long a read
#: waits for a slot before its ``503`` (see ``Connection._state_read``).
DEFAULT_STATE_READS = 2
#: Seconds a client is told to wait after a 503 (the cap's and a state read's).
DEFAULT_RETRY_AFTER_S = 1
_STATE_READ_WAIT_S = 10.0
_STATE_READ_WAIT_STEP_S = 0.25  # a stop is noticed this soon
_STATE_PATH = "/api/sync/state"
#: After an early answer with a body left unread, read and drop what the
#: client still sends for this long, so the answer is not lost to a TCP RST.
_LINGER_S = 2.0
_LINGER_BYTES = 4 * 1024 * 1024

_CONNECTION_CLOSE = (b"connection", b"close")
#: The end of a request head (h11 takes bare LF line ends too).
_HEAD_END = re.compile(rb"\n\r?\n")
#: Send deadline of an answer the accept loop writes itself (a peer-health
#: answer past the busy cap): a few hundred bytes into an empty send buffer
#: go at once, and the accept loop must never wait on one client.
_INLINE_SEND_S = 0.05

_log = logging.getLogger("peersync.server")
_access = logging.getLogger("peersync.server.access")


@attrs.frozen(kw_only=True, slots=True)
class Limits:
    """The per-connection limits and deadlines (seconds, bytes)."""

    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_header_fields: int = DEFAULT_MAX_HEADER_FIELDS
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    body_min_rate: int = DEFAULT_BODY_MIN_RATE
    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    max_requests_per_connection: int = DEFAULT_MAX_REQUESTS_PER_CONNECTION


#: Every status line carries its reason phrase (``HTTP/1.1 409 Conflict``),
#: the core's answers as well as the server's own; prebuilt, not per answer.
_REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}


def _reason(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")


def own_error(
    status: int,
    code: str,
    message: str,
    *,
    extra: dict[str, Any] | None = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> bytes:
    """A whole HTTP/1.1 error response that closes the connection."""
    body_obj: dict[str, Any] = {"error": message, "code": code}
    body_obj.update(extra or {})
    body = json.dumps(body_obj, separators=(",", ":")).encode("utf-8")
    lines = [
        b"HTTP/1.1 %d %s" % (status, _reason(status)),
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"cache-control: no-store",
        *(name + b": " + value for name, value in headers),
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class _Closed(Exception):
    """The connection is finished (peer closed, evicted, or timed out)."""


class _Answered(Exception):
    """An own error was sent; close the connection."""


class Connection:
    """One accepted socket. It holds no thread while idle: the server parks it
    in the accept loop's selector and calls :meth:`serve_ready` on a worker
    thread when bytes arrive; that returns ``True`` to park it again (keep-alive,
    nothing buffered) or ``False`` once the connection is closed."""

    def __init__(
        self,
        sock: socket.socket,
        peer: str,
        *,
        driver: EngineDriver,
        decoder: DecoderPool,
        limits: Limits,
        draining: Callable[[], bool],
        gate: RunGate | None = None,
        for_peer: bool = False,
        state_reads: threading.Semaphore | None = None,
    ) -> None:
        # Non-blocking: a read or write that can be done at once is one system
        # call; a socket timeout would add a poll and a timeout change to each.
        # Deadlines are kept by :meth:`_wait`.
        sock.setblocking(False)
        self.sock = sock
        self.peer = peer
        self._driver = driver
        self._decoder = decoder
        self._limits = limits
        self._draining = draining
        self._gate = gate
        #: Slots for ``GET /api/sync/state`` answers in flight (see _serve).
        self._state_reads = state_reads
        #: Accepted on the peer's own address (``ServerConfig.peer_listen_host``).
        self.for_peer = for_peer
        #: The gate while a worker serves this connection holding a slot.
        self._holding: RunGate | None = None
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        timeout = int(limits.idle_timeout_s)
        self._keep_alive = (b"keep-alive", b"timeout=%d" % timeout) if timeout > 0 else None
        self._fed = 0  # bytes fed to h11 during the current request's head
        #: When the first byte of a head still being gathered came (monotonic).
        self._head_started: float | None = None
        self._send_timeout_s = limits.send_timeout_s
        #: Close after the next answer (one served by the accept loop itself).
        self._last_answer = False
        self._served = 0
        self._method = "-"
        self._target = "-"

    # -- lifecycle -------------------------------------------------------------

    def abort(self) -> None:
        """Wake a worker out of a blocking read or write (used at shutdown)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def serve_ready(self) -> bool:
        """Serve what the client sent, on a worker thread holding a slot of
        the run gate; ``True``: park me, ``False``: closed."""
        gate = self._gate
        if gate is None:
            return self._serve_guarded(None)
        if self.is_health_probe():
            # A peer's probe never queues for a slot (a slot holder may be
            # writing a snapshot to disk); requests pipelined behind it do.
            keep = self._serve_guarded(1)
            if not keep or not self._head_buffered():
                return keep
        with gate.held():
            self._holding = gate
            try:
                return self._serve_guarded(None)
            finally:
                self._holding = None

    def _serve_guarded(self, most: int | None) -> bool:
        """Serve at most ``most`` requests; ``True``: park me, ``False``: closed."""
        keep = False
        try:
            keep = self._serve(most)
        except (_Closed, _Answered):
            pass
        except OSError as exc:
            _log.debug("connection %s: %s", self.peer, type(exc).__name__)
        except Exception:
            _log.exception("connection %s failed", self.peer)
        if not keep:
            self.close()
        return keep

    # -- gathering a head in the accept loop ------------------------------------

    def gather(self) -> bool:
        """Take what the client sent, without waiting (the accept loop calls
        this for a parked connection that turned readable). ``True``: a worker
        has something to serve at once (a whole head, more bytes than a head
        may have, the client's close, or an error it will meet); ``False``:
        part of a head, so the connection stays parked, holding no worker,
        until the rest comes or :attr:`head_deadline` passes."""
        while True:
            try:
                data = self.sock.recv(_RECV_SMALL_BYTES)
            except BlockingIOError:
                break
            except OSError:
                return True
            if not data:
                return True  # the client closed: the worker's read meets it again
            if self._head_started is None:
                self._head_started = time.monotonic()
            self._h11.receive_data(data)
            if len(data) < _RECV_SMALL_BYTES or self._head_buffered():
                # A whole head is in: the body is the worker's to read. Read
                # on, and a 50 MB upload sent at loopback speed went into
                # memory here, while every other client waited for this loop.
                break
        return self._head_buffered() or self._h11.their_state is not h11.IDLE

    @property
    def head_deadline(self) -> float | None:
        """When a head being gathered runs out of time (``None``: no head)."""
        started = self._head_started
        return None if started is None else started + self._limits.header_timeout_s

    @property
    def head_ready(self) -> bool:
        """A worker has something to serve without reading (see :meth:`gather`)."""
        return self._head_buffered()

    def _head_buffered(self) -> bool:
        """A whole head, or more bytes than a head may have, is buffered."""
        buffered = self._h11.trailing_data[0]
        return (
            len(buffered) > self._limits.max_header_bytes or _HEAD_END.search(buffered) is not None
        )

    def is_health_probe(self) -> bool:
        """The buffered head is a peer-health ``GET``/``HEAD`` with no body:
        one the accept loop may answer itself past the busy cap (it never
        reads a body or waits on a client)."""
        buffered = self._h11.trailing_data[0]
        end = _HEAD_END.search(buffered)
        if end is None:
            return False
        head = buffered[: end.start()].lower()
        line, _, fields = head.partition(b"\n")
        parts = line.rstrip(b"\r").split(b" ")
        return (
            len(parts) == 3
            and parts[0] in (b"get", b"head")
            and parts[1].partition(b"?")[0] == b"/api/peer/health"
            and b"content-length" not in fields
            and b"transfer-encoding" not in fields
            and b"expect" not in fields
        )

    def serve_inline(self) -> None:
        """Serve one request on the accept loop's thread (a peer-health probe
        past the busy cap) with a short send deadline, and close: like the
        accept loop's ``503``, its answer carries ``Connection: close``, so a
        client pipelining probes past the cap gets one answer per connection
        it opens, and the accept loop never serves a queue of them."""
        self._send_timeout_s = _INLINE_SEND_S
        self._last_answer = True
        if self._serve_guarded(1):  # pragma: no cover - the answer closed it
            self.close()

    def time_out_head(self) -> None:
        """The accept loop's deadline passed: ``408`` and close when part of
        a head came (written without waiting), else close silently."""
        if self._head_started is not None:
            raw = own_error(408, "request_timeout", "The request head took too long.")
            with contextlib.suppress(OSError):
                self.sock.send(raw)
            log_request(
                _access, method="-", target="-", status=408, ms=0.0, nbytes=len(raw),
                peer=self.peer,
            )  # fmt: skip
        self.close()

    def read_ready(self) -> bool:
        """Take what the client already sent, without waiting. ``True``: there
        is something to serve (bytes, the client's close, or an error that
        :meth:`serve_ready` will meet); ``False``: nothing yet."""
        return self.gather()

    # -- reading -----------------------------------------------------------------

    def _wait(self, events: int, deadline: float) -> None:
        """Wait until the socket may be ready for ``events`` (or the deadline);
        raises ``TimeoutError`` when the deadline has passed. The caller
        retries its read or write either way."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        poller = select.poll()
        poller.register(self.sock, events)
        with self._unheld():
            poller.poll(remaining * 1e3)

    def _unheld(self) -> contextlib.AbstractContextManager[None]:
        """Around a wait: the run gate's slot is free for others meanwhile."""
        gate = self._holding
        return contextlib.nullcontext() if gate is None else gate.released()

    def _recv(self, deadline: float, size: int = _RECV_SMALL_BYTES) -> bytes:
        while True:
            if time.monotonic() >= deadline:
                raise TimeoutError
            try:
                data = self.sock.recv(size)
            except BlockingIOError:
                self._wait(select.POLLIN, deadline)
                continue
            if not data:
                raise _Closed
            return data

    def _feed(self, data: bytes) -> None:
        self._fed += len(data)
        self._h11.receive_data(data)

    def _next_head(self) -> h11.Request | None:
        """The next request head, or ``None`` when the client closed. The first
        byte is already here (buffered, or the socket is readable), so the
        absolute header deadline starts now."""
        limits = self._limits
        self._fed = len(self._h11.trailing_data[0])
        header_deadline = self.head_deadline or time.monotonic() + limits.header_timeout_s
        self._head_started = None
        got_bytes = self._fed > 0
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                if status == 431 or self._fed > limits.max_header_bytes:
                    self._answer(
                        431, "request_header_fields_too_large", "The request head is too large."
                    )
                self._answer(400, "bad_request", "The request is not valid HTTP/1.1.")
            if isinstance(event, h11.Request):
                head_bytes = self._fed - len(self._h11.trailing_data[0])
                if head_bytes > limits.max_header_bytes:
                    self._answer(
                        431, "request_header_fields_too_large", "The request head is too large."
                    )
                return event
            if isinstance(event, h11.ConnectionClosed):
                return None
            assert event is h11.NEED_DATA, event
            try:
                self._feed(self._recv(header_deadline))
            except TimeoutError:
                if not got_bytes:
                    return None  # readable but nothing came: close silently
                self._answer(408, "request_timeout", "The request head took too long.")
            except _Closed:
                if not got_bytes:
                    return None  # closed without a byte of a request
                raise
            got_bytes = True

    def _read_body(
        self, limit: int, expected: int | None, sink: Callable[[bytes], None] | None = None
    ) -> tuple[bytes, int]:
        """The body (or, with ``sink``, each chunk handed to it) and its length."""
        limits = self._limits
        budget = expected if expected is not None else limit
        deadline = time.monotonic() + limits.body_timeout_s + budget / limits.body_min_rate
        size = _RECV_BYTES if budget > _RECV_SMALL_BYTES else _RECV_SMALL_BYTES
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError:
                self._answer(400, "bad_request", "The request body is not valid HTTP/1.1 framing.")
            if isinstance(event, h11.Data):
                total += len(event.data)
                if total > limit:
                    self._too_large(limit)
                if sink is None:
                    chunks.append(bytes(event.data))
                else:
                    sink(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks), total
            elif event is h11.NEED_DATA:
                try:
                    self._h11.receive_data(self._recv(deadline, size))
                except TimeoutError:
                    self._answer(408, "request_timeout", "The request body took too long.")
            else:  # ConnectionClosed mid-body
                raise _Closed

    # -- writing -----------------------------------------------------------------

    def _sendall(self, data: bytes) -> None:
        """All of ``data`` within the send deadline (total, not per send)."""
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        deadline = time.monotonic() + self._send_timeout_s
        view = memoryview(data)[sent:]
        while view:
            self._wait(select.POLLOUT, deadline)
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                continue

    def _answer(
        self,
        status: int,
        code: str,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        linger: bool = False,
    ) -> None:
        """Send an own error and close (raises :class:`_Answered`)."""
        raw = own_error(status, code, message, extra=extra)
        self._finish_early(raw, status, linger=linger)

    def _too_large(self, limit: int) -> None:
        self._answer(
            413,
            "body_too_large",
            f"The body is larger than {limit} bytes.",
            extra={"limitBytes": limit},
            linger=True,
        )

    def _finish_early(self, raw: bytes, status: int, *, linger: bool) -> None:
        started = time.monotonic()
        try:
            self._sendall(raw)
            if linger:
                self._linger()
        except OSError:
            pass
        log_request(
            _access,
            method=self._method,
            target=self._target,
            status=status,
            ms=(time.monotonic() - started) * 1e3,
            nbytes=len(raw),
            peer=self.peer,
        )
        raise _Answered

    def _linger(self) -> None:
        """Half-close and drop what the client still sends, briefly."""
        self.sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + _LINGER_S
        dropped = 0
        while dropped < _LINGER_BYTES:
            try:
                dropped += len(self._recv(deadline))
            except (TimeoutError, _Closed, OSError):
                return

    # -- the request loop ----------------------------------------------------------

    def _serve(self, most: int | None) -> bool:
        """Requests while whole heads are buffered (at most ``most``); ``True``
        when it may be parked."""
        limits = self._limits
        done = 0
        while True:
            self._method = self._target = "-"
            head = self._next_head()
            if head is None:
                return False
            started = time.monotonic()
            self._served += 1
            method = head.method.decode("ascii", "replace")
            target = head.target.decode("latin-1")
            self._method, self._target = method, target
            with self._state_read(method, target, head.headers):
                response, closing = self._respond(head, method, target)
                closing = (
                    closing
                    or self._last_answer
                    or self._served >= limits.max_requests_per_connection
                    or self._draining()
                )
                nbytes = self._send_response(method, response, closing=closing)
                status = response.status
                # Not kept past its slot: a snapshot held by a worker waiting
                # for the next pipelined read's slot is the memory the slot
                # bounds (found in review).
                del response
            log_request(
                _access,
                method=method,
                target=target,
                status=status,
                ms=(time.monotonic() - started) * 1e3,
                nbytes=nbytes,
                peer=self.peer,
            )
            if closing or self._h11.our_state is h11.MUST_CLOSE:
                return False
            self._h11.start_next_cycle()
            if self._h11.trailing_data[0] and self._head_started is None:
                self._head_started = time.monotonic()  # a pipelined head began
            done += 1
            if self._holding is not None:
                self._holding.take_turns()  # a thousand pipelined requests share
            if not self._head_buffered() or (most is not None and done >= most):
                return True  # park until the client sends a whole head

    @contextlib.contextmanager
    def _state_read(
        self, method: str, target: str, headers: Sequence[tuple[bytes, bytes]]
    ) -> Iterator[None]:
        """Around a ``GET /api/sync/state``, from the core call until its answer
        is sent: one of a few slots, so the snapshots in memory are bounded
        (found by a tester: 64 connections pipelining reads of a 52 MB state,
        never reading, took the server from 128 MB to 3.5 GB in 10 s). A read
        that gets no slot within ``_STATE_READ_WAIT_S`` is ``503``. The peer's
        own address takes no slot (its reconciler must not wait behind
        clients), nor does a read the core refuses from its head (401)."""
        slots = self._state_reads
        if (
            slots is None
            or self.for_peer
            or method != "GET"
            or target.partition("?")[0] != _STATE_PATH
            or self._driver.precheck(method, target, headers, False).error is not None
        ):
            yield
            return
        got = False
        deadline = time.monotonic() + _STATE_READ_WAIT_S
        with self._unheld():
            while not got and not self._draining() and time.monotonic() < deadline:
                got = slots.acquire(timeout=_STATE_READ_WAIT_STEP_S)
        if not got:
            raw = own_error(
                503, "overloaded", "Too many snapshot reads at once; retry.",
                headers=((b"retry-after", b"%d" % DEFAULT_RETRY_AFTER_S),),
            )  # fmt: skip
            self._finish_early(raw, 503, linger=False)
        try:
            yield
        finally:
            slots.release()

    def _respond(self, head: h11.Request, method: str, target: str) -> tuple[Response, bool]:
        """The response for one request, and whether to close after it."""
        limits = self._limits
        headers = list(head.headers)
        if head.http_version not in (b"1.0", b"1.1"):
            self._answer(
                505, "http_version_not_supported", "Only HTTP/1.0 and 1.1 are served.",
            )  # fmt: skip
        if len(headers) > limits.max_header_fields:
            self._answer(
                431, "request_header_fields_too_large",
                f"At most {limits.max_header_fields} header fields are allowed.",
            )  # fmt: skip
        names = [name for name, _ in headers]
        chunked = b"transfer-encoding" in names
        if chunked and b"content-length" in names:
            self._answer(
                400, "bad_request", "Content-Length and Transfer-Encoding together are refused.",
            )  # fmt: skip
        if chunked and head.http_version == b"1.0":
            self._answer(
                400, "bad_request", "Transfer-Encoding is not allowed on HTTP/1.0.",
            )  # fmt: skip
        if not target.startswith("/"):
            self._answer(
                400, "bad_request", "Only origin-form request targets are served.",
            )  # fmt: skip
        length: int | None = None
        for name, value in headers:
            if name == b"content-length":
                length = int(value)
        has_body = chunked or bool(length)
        body = b""
        closing = False
        driver = self._driver
        snapshot = False
        predecoded: DecodedSnapshot | RemoteProtocolError | None = None
        if has_body or self._h11.they_are_waiting_for_100_continue:
            check = driver.precheck(method, target, headers, has_body)
            snapshot = check.snapshot
            if check.error is not None:
                raw = _encode_core(error_response(0, check.error), method)
                self._finish_early(raw, check.error.status, linger=has_body)
            if length is not None and length > check.limit:
                self._too_large(check.limit)
            if check.media_error is not None:
                raw = _encode_core(error_response(0, check.media_error), method)
                self._finish_early(raw, check.media_error.status, linger=has_body)
            if self._h11.they_are_waiting_for_100_continue:
                self._sendall(
                    self._h11.send(
                        h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                    )
                )
            if snapshot:
                try:
                    spool = self._decoder.spool()
                except OSError:
                    _log.exception("cannot spool an upload")
                    return _internal(), True
                try:
                    _, size = self._read_body(check.limit, length, spool.write)
                    if spool.failed is not None:
                        _log.error("cannot spool an upload: %s", spool.failed)
                        return _internal(), True
                    with self._unheld():  # the decoder process does the work
                        predecoded = self._decoder.decode_spooled(spool) if size else None
                except (DecoderUnavailable, OSError):
                    _log.exception("cannot decode a spooled upload")
                    return _internal(), True
                finally:
                    spool.discard()
            else:
                body, _ = self._read_body(check.limit, length)
        else:
            self._drain_empty_body()
        try:
            response = driver.serve(
                method=method, target=target, headers=headers, body=body, predecoded=predecoded
            )
        except Exception:
            _log.exception("serving %s failed", method)
            response, closing = _internal(), True
        return response, closing

    def _drain_empty_body(self) -> None:
        event = self._h11.next_event()
        while event is h11.NEED_DATA:  # pragma: no cover - no-body requests end at once
            event = self._h11.next_event()
        if not isinstance(event, h11.EndOfMessage):
            raise _Closed

    def _send_response(self, method: str, response: Response, *, closing: bool) -> int:
        headers = list(response.headers)
        if closing:
            headers.append(_CONNECTION_CLOSE)
        elif self._keep_alive is not None:
            headers.append(self._keep_alive)
        conn = self._h11
        parts = list(
            conn.send_with_data_passthrough(
                h11.Response(
                    status_code=response.status, headers=headers, reason=_reason(response.status)
                )
            )
            or ()
        )
        if method != "HEAD" and response.body:
            parts += conn.send_with_data_passthrough(h11.Data(data=response.body)) or ()
        parts += conn.send_with_data_passthrough(h11.EndOfMessage()) or ()
        return self._write([bytes(p) for p in parts if p])

    def _write(self, parts: list[bytes]) -> int:
        """One write per response. A small one is joined and sent with one
        ``sendall`` (two sends could wait ~40 ms for a delayed ACK); a large one
        goes out with gather writes (``sendmsg``) so its body is never copied
        while holding the GIL."""
        total = sum(len(p) for p in parts)
        if total <= _GATHER_ABOVE:
            self._sendall(b"".join(parts))
            return total
        deadline = time.monotonic() + self._send_timeout_s
        views = [memoryview(p) for p in parts]
        while views:
            if time.monotonic() >= deadline:
                raise TimeoutError("send deadline passed")
            try:
                sent = self.sock.sendmsg(views[:_IOV_MAX])
            except BlockingIOError:
                self._wait(select.POLLOUT, deadline)
                continue
            while sent and views:
                if sent >= len(views[0]):
                    sent -= len(views[0])
                    views.pop(0)
                else:
                    views[0] = views[0][sent:]
                    sent = 0
        return total


def _internal() -> Response:
    body = b'{"error":"The engine could not serve this request.","code":"internal"}'
    headers = (
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"cache-control", b"no-store"),
    )
    return Response(request_id=0, status=500, headers=headers, body=body)


def _encode_core(response: Response, method: str) -> bytes:
    """A core response sent as is, closing the connection (early answers)."""
    lines = [b"HTTP/1.1 %d %s" % (response.status, _reason(response.status))]
    lines += [name + b": " + value for name, value in response.headers]
    lines.append(b"connection: close")
    body = b"" if method == "HEAD" else response.body
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
