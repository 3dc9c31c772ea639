"""The accept loop survives evicting an idle connection that spoke in the same
batch of events (found by a tester: ``KeyError`` killed the accept thread, the
process stayed up and every later connection hung, health included)."""

from __future__ import annotations

import contextlib
import http.client
import socket
import time

from srv_util import ServerFactory


def test_evicting_an_idle_connection_that_spoke_in_the_same_batch_keeps_serving(
    make_server: ServerFactory,
) -> None:
    server = make_server(max_idle_connections=2)
    for _ in range(20):
        old = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
        time.sleep(0.02)
        new = []
        for _ in range(10):
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect(("127.0.0.1", server.port))
            new.append(sock)
        for sock in old:
            with contextlib.suppress(OSError):  # already evicted and closed
                sock.send(b"GET /api/peer/health HTTP/1.1\r\n")
        time.sleep(0.02)
        for sock in old + new:
            sock.close()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=3)
        try:
            conn.request("GET", "/api/peer/health")
            assert conn.getresponse().status == 200
        finally:
            conn.close()
