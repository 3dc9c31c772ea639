"""``GET /api/sync/state`` answers in flight are bounded (``state_reads``).

Found by a tester: 64 connections that each pipelined reads of a 52 MB state
and never read the answers took the server from 128 MB to 3.5 GB in 10 s
(each blocked answer held its snapshot), and peer probes missed meanwhile.
"""

from __future__ import annotations

import http.client
import json
import socket
import time

from srv_util import AUTH, ServerFactory, make_state, snapshot_body

STATE_BYTES = 12_000_000  # more than a loopback send buffer takes (4 MiB here)


def _apply(port: int, n_bytes: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {**AUTH, "Content-Type": "application/json"}
    conn.request("POST", "/api/sync/reconcile-lock", body=b'{"ttlMs":60000}', headers=headers)
    lock_id = json.loads(conn.getresponse().read())["lockId"]
    conn.request(
        "PUT",
        "/api/sync/state",
        body=snapshot_body(make_state(n_bytes), epoch=2),
        headers={**headers, "X-Reconcile-Lock-Id": lock_id},
    )
    response = conn.getresponse()
    assert response.status == 200, response.read()
    response.read()
    conn.close()


def test_a_read_waits_while_an_unread_one_holds_the_only_slot(make_server: ServerFactory) -> None:
    server = make_server(state_reads=1, peer_listen_host="127.0.0.1")
    _apply(server.port, STATE_BYTES)
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", server.port))
    stuck.sendall(
        b"GET /api/sync/state HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: {AUTH['Authorization']}\r\n\r\n".encode()
    )  # and never reads: its answer blocks in send, holding the slot
    time.sleep(0.5)
    second = http.client.HTTPConnection("127.0.0.1", server.port, timeout=1.5)
    try:
        second.request("GET", "/api/sync/state", headers=AUTH)
        try:
            second.getresponse()
            waited = False
        except TimeoutError:
            waited = True
        assert waited, "a second snapshot read was served beside the stuck one"
    finally:
        second.close()
    # Neither a read the core refuses from its head nor the peer's waits.
    started = time.monotonic()
    unauthorized = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    unauthorized.request("GET", "/api/sync/state")
    assert unauthorized.getresponse().status == 401
    unauthorized.close()
    assert server.peer_listen_url is not None
    peer = http.client.HTTPConnection(
        "127.0.0.1", int(server.peer_listen_url.rsplit(":", 1)[1]), timeout=30
    )
    peer.request("GET", "/api/sync/state", headers=AUTH)
    answer = peer.getresponse()
    assert answer.status == 200 and len(answer.read()) > STATE_BYTES
    peer.close()
    assert time.monotonic() - started < 5
    stuck.close()  # its send fails, the slot comes back
    third = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    third.request("GET", "/api/sync/state", headers=AUTH)
    response = third.getresponse()
    assert response.status == 200
    assert len(response.read()) > STATE_BYTES
    third.close()
