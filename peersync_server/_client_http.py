"""The client's wire: one kept-alive HTTP/1.1 connection on h11, blocking, with deadlines.

Every exchange has a *total* deadline, a ``time.monotonic`` instant: connect,
send and every read draw on it, each socket timeout recomputed from what is
left, so a server that trickles a byte a second cannot stretch a 150 ms
probe into a minute.

The connection is kept alive and reused. Before reuse it is checked (a
non-blocking peek): a server that closed it while idle is noticed there.
When the race is lost anyway (the server closed it while the request was on
the way, and not one byte of an answer came back) an idempotent request is
sent once more on a fresh connection; any other gets
:class:`ConnectionClosed`, since whether it took effect is unknown.

Answers are held to the contract's framing: ``Content-Length`` or chunked,
never read-until-close (a cut-short answer would pass unnoticed); at most
:data:`MAX_INTERIM_RESPONSES` interim 1xx answers; a body within the limit.
Each request leaves in one ``sendall`` on a ``TCP_NODELAY`` socket.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import attrs
import h11

from ._client_errors import (
    ConnectionClosed,
    ConnectionRefused,
    DeadlineExceeded,
    InvalidResponse,
    TransportError,
)

__all__ = ["MAX_INTERIM_RESPONSES", "HttpAnswer", "HttpConnection", "remaining"]

#: RFC 9110 allows any number of 1xx answers; a server that sends more than a
#: handful is broken or hostile.
MAX_INTERIM_RESPONSES = 5

_RECV_BYTES = 256 * 1024
_MAX_HEADER_BYTES = 64 * 1024
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline``, or :class:`DeadlineExceeded`."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("the call's deadline passed")
    return left


@attrs.frozen(kw_only=True, slots=True)
class HttpAnswer:
    """A whole final answer: status, headers (names lowercase) and body."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class _Stale(Exception):
    """A reused connection ended before any byte of an answer."""


class _Socket:
    """One TCP connection and its h11 state."""

    __slots__ = ("h11", "reused", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEADER_BYTES)
        self.reused = False

    def reusable(self) -> bool:
        """Idle on both sides, and the server has not closed it meanwhile."""
        if self.h11.our_state is not h11.IDLE or self.h11.their_state is not h11.IDLE:
            return False
        self.sock.setblocking(False)
        try:
            # EOF (b"") means the server closed it; a stray byte means it is
            # confused. Either way, do not send on it.
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        except OSError:
            pass
        return False


class HttpConnection:
    """A kept-alive connection to ``host:port``; calls are serialised by a lock
    (waiting for the turn counts against the caller's deadline)."""

    def __init__(self, host: str, port: int, *, connect_timeout: float) -> None:
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._turn = threading.Lock()
        self._sock: _Socket | None = None

    def close(self) -> None:
        with self._turn:
            self._drop()

    def exchange(
        self,
        request: h11.Request,
        body: bytes | None,
        *,
        deadline: float,
        limit: int,
        on_resend: Callable[[], None] | None = None,
    ) -> HttpAnswer:
        """Send ``request`` (and ``body``) and read the final answer by ``deadline``."""
        if not self._turn.acquire(timeout=remaining(deadline)):
            raise DeadlineExceeded("waited for another call on this client until the deadline")
        try:
            method = request.method.decode("ascii")
            for _attempt in (1, 2):
                conn = self._checkout(deadline)
                try:
                    return self._exchange(conn, request, body, limit, deadline)
                except _Stale:
                    self._drop()
                    # Only a reused connection is stale, and the second
                    # attempt runs on a fresh one: at most one resend.
                    if method in _IDEMPOTENT:
                        if on_resend is not None:
                            on_resend()
                        continue
                    raise ConnectionClosed(
                        "the server closed the connection before answering;"
                        " the request may or may not have taken effect"
                    ) from None
                except BaseException:
                    self._drop()
                    raise
            raise AssertionError("unreachable: the second attempt returns or raises")
        finally:
            self._turn.release()

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.sock.close()
            self._sock = None

    def _checkout(self, deadline: float) -> _Socket:
        if self._sock is not None:
            if self._sock.reusable():
                self._sock.reused = True
                return self._sock
            self._drop()
        where = f"{self._host}:{self._port}"
        wait = min(self._connect_timeout, remaining(deadline))
        try:
            sock = socket.create_connection((self._host, self._port), timeout=wait)
        except ConnectionRefusedError:
            raise ConnectionRefused(f"connection to {where} refused") from None
        except TimeoutError:
            raise DeadlineExceeded(f"connecting to {where} took longer than {wait:.3f} s") from None
        except OSError as exc:
            raise TransportError(f"cannot connect to {where}: {exc.strerror or exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = _Socket(sock)
        return self._sock

    def _exchange(
        self,
        conn: _Socket,
        request: h11.Request,
        body: bytes | None,
        limit: int,
        deadline: float,
    ) -> HttpAnswer:
        pieces = [conn.h11.send(request)]
        if body:
            pieces.extend(conn.h11.send_with_data_passthrough(h11.Data(data=body)) or ())
        pieces.append(conn.h11.send(h11.EndOfMessage()))
        try:
            conn.sock.settimeout(remaining(deadline))
            conn.sock.sendall(b"".join(p for p in pieces if p))
        except TimeoutError:
            raise DeadlineExceeded("sending the request took past the deadline") from None
        except OSError:
            # The server hung up mid-send. It may have answered first (413 on a
            # big body, say): read on, the reader decides.
            pass
        answer = self._read_answer(conn, limit, deadline)
        done = conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE
        # Bytes after the answer (no request asked for them) mean a confused
        # server: never read the next answer from that stream.
        if done and not conn.h11.trailing_data[0]:
            conn.h11.start_next_cycle()
        else:
            self._drop()
        return answer

    def _read_answer(self, conn: _Socket, limit: int, deadline: float) -> HttpAnswer:
        interim = 0
        got_bytes = False
        head: h11.Response | None = None
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise InvalidResponse(f"the answer broke HTTP/1.1: {exc}") from None
            if event is h11.NEED_DATA:
                conn.h11.receive_data(_recv(conn, deadline, got_bytes))
                got_bytes = True
            elif isinstance(event, h11.InformationalResponse):
                interim += 1
                if interim > MAX_INTERIM_RESPONSES:
                    raise InvalidResponse(f"more than {MAX_INTERIM_RESPONSES} interim 1xx answers")
            elif isinstance(event, h11.Response):
                _check_framing(event, limit)
                head = event
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise InvalidResponse(f"the answer's body is over the {limit}-byte limit")
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                return HttpAnswer(
                    status=head.status_code, headers=tuple(head.headers), body=b"".join(chunks)
                )
            else:
                # h11 yields nothing else while we never feed it EOF.
                raise AssertionError(f"unexpected h11 event {event!r}")


def _recv(conn: _Socket, deadline: float, got_bytes: bool) -> bytes:
    try:
        conn.sock.settimeout(remaining(deadline))
        data = conn.sock.recv(_RECV_BYTES)
    except TimeoutError:
        raise DeadlineExceeded("the answer did not arrive whole before the deadline") from None
    except OSError:
        data = b""  # reset by the server: as good as closed
    if data:
        return data
    if conn.reused and not got_bytes:
        raise _Stale
    raise ConnectionClosed("the server closed the connection before a whole answer")


def _check_framing(head: h11.Response, limit: int) -> None:
    if head.status_code in (204, 304):
        return
    length: bytes | None = None
    for name, value in head.headers:
        if name == b"transfer-encoding":
            return  # h11 accepts only chunked
        if name == b"content-length":
            length = value
    if length is None:
        raise InvalidResponse("the answer has neither Content-Length nor chunked framing")
    if int(length) > limit:
        raise InvalidResponse(f"the answer's body is over the {limit}-byte limit")
