"""The floor for any h11 design: a bare thread-per-connection h11 server.

``python bench/h11_bare.py --port P --body-file F`` answers every request
with the same health JSON, one ``sendall`` per answer, TCP_NODELAY set. No
routing, auth, limits, deadlines or core: what ``peersync-server`` adds on
top of this should cost little.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading
from pathlib import Path

import h11

HEADERS = [("content-type", "application/json"), ("cache-control", "no-store")]


def serve(sock: socket.socket, body: bytes) -> None:
    headers = [*HEADERS, ("content-length", str(len(body)))]
    conn = h11.Connection(h11.SERVER)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with sock, contextlib.suppress(h11.ProtocolError, OSError):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Request):
                out = conn.send(h11.Response(status_code=200, headers=headers))
                out += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
                sock.sendall(out)
            elif isinstance(event, h11.EndOfMessage) and conn.our_state is h11.DONE:
                conn.start_next_cycle()
            elif event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-file", type=Path, required=True)
    args = parser.parse_args(argv)
    body = args.body_file.read_bytes()
    listener = socket.create_server(("127.0.0.1", args.port), backlog=128)
    try:
        while True:
            sock, _ = listener.accept()
            threading.Thread(target=serve, args=(sock, body), daemon=True).start()
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
