"""The accept loop reads a request head, not the body behind it
(``Connection.gather``).

Found while chasing a 100 to 170 ms tail in the 50 MB snapshot test: the
accept loop read for as long as each read came back full, so an upload sent
at loopback speed went into memory there, tens of megabytes, while the peer's
probe waited for that loop to come back to its selector.
"""

from __future__ import annotations

import socket

from srv_util import AUTH, ServerFactory

from peersync_server._connection import Connection, Limits


def _pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=5)
        server_side, _ = listener.accept()
    return client, server_side


def test_gather_stops_at_a_whole_head_and_leaves_the_body_in_the_socket(
    make_server: ServerFactory,
) -> None:
    server = make_server()
    client, server_side = _pair()
    body_bytes = 4 * 1024 * 1024
    head = (
        "PUT /api/sync/state HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
        "Content-Type: application/json\r\nContent-Length: {n}\r\n\r\n"
    ).format(auth=AUTH["Authorization"], n=body_bytes)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024 * 1024)
    client.setblocking(False)
    sent = client.send(head.encode() + b"x" * body_bytes)
    assert sent > 1024 * 1024  # megabytes are waiting in the socket
    conn = Connection(
        server_side,
        "test",
        driver=server.driver,
        decoder=server._decoder,
        limits=Limits(),
        draining=lambda: False,
    )
    try:
        assert conn.gather()  # a whole head: a worker may take it
        assert conn.head_ready
        buffered = len(conn._h11.trailing_data[0])
        assert len(head) <= buffered <= 64 * 1024, buffered
    finally:
        conn.close()
        client.close()
