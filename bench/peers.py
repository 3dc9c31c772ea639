"""The servers a user would run instead, answering the same health JSON.

Run one per process (the harness, ``bench/run.py``, starts them)::

    python bench/peers.py stdlib --port P --body-file F [--nodelay]
    python bench/peers.py raw --port P --body-file F
    PEERSYNC_BENCH_BODY_FILE=F python -m uvicorn peers:app --app-dir bench \\
        --http h11 --port P

* ``stdlib``: ``http.server.ThreadingHTTPServer``, HTTP/1.1 keep-alive, the
  answer written as the stdlib writes it (``send_response`` + headers, then
  the body: two writes). Without ``--nodelay`` the second small write can wait
  for the client's delayed ACK (~40 ms on Linux).
* ``raw``: the loopback floor: one ``recv`` -> one ``sendall`` of the canned
  answer, no HTTP parsing at all (a TCP echo that answers in HTTP, so the
  same load generators can drive it).
* ``app``: a tiny ASGI app for uvicorn (``--http h11`` or ``--http httptools``).

The body (and the headers: ``content-type``, ``cache-control``) are those of
``peersync-server``'s ``GET /api/peer/health``, read from ``--body-file``.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HEADERS = ((b"content-type", b"application/json"), (b"cache-control", b"no-store"))

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


def canned_answer(body: bytes) -> bytes:
    """The whole HTTP/1.1 answer as one byte string (what ``raw`` sends)."""
    head = b"HTTP/1.1 200 OK\r\n"
    for name, value in HEADERS:
        head += name + b": " + value + b"\r\n"
    return head + b"content-length: %d\r\n\r\n" % len(body) + body


def _stdlib(port: int, body: bytes, *, nodelay: bool) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            if nodelay:
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:
            self.send_response(200)
            for name, value in HEADERS:
                self.send_header(name.decode(), value.decode())
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.serve_forever()


def _raw(port: int, body: bytes) -> None:
    answer = canned_answer(body)
    listener = socket.create_server(("127.0.0.1", port), backlog=128)

    def serve(sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with sock:
            while sock.recv(65536):
                sock.sendall(answer)

    while True:
        sock, _ = listener.accept()
        threading.Thread(target=serve, args=(sock,), daemon=True).start()


def _body_from_env() -> bytes:
    path = os.environ.get("PEERSYNC_BENCH_BODY_FILE")
    return Path(path).read_bytes() if path else b'{"status":"ok"}'


_APP_BODY = _body_from_env()
_APP_HEADERS = [*HEADERS, (b"content-length", str(len(_APP_BODY)).encode())]


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """The health answer for any HTTP request (uvicorn's ``peers:app``)."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _APP_HEADERS})
    await send({"type": "http.response.body", "body": _APP_BODY})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("stdlib", "raw"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--nodelay", action="store_true", help="stdlib: set TCP_NODELAY")
    args = parser.parse_args(argv)
    body = args.body_file.read_bytes()
    try:
        if args.kind == "stdlib":
            _stdlib(args.port, body, nodelay=args.nodelay)
        else:
            _raw(args.port, body)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
