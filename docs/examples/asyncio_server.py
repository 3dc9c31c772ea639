"""The nine-endpoint peer-sync server on asyncio streams and h11, over the core.

    python docs/examples/asyncio_server.py --label a --port 0 --api-token T --control-plane-secret S

What any wrapper must do is in docs/embedding.md: a fresh ``now`` per event, a
``loop.call_at`` timer on ``next_deadline()``, effects in order (floors before
the response), completions answered, one engine per lock (the loop thread).
The engine host is in memory: it heartbeats, captures and applies at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable
from http import HTTPStatus

import attrs
import h11

import peersync_proto as core

clock = time.monotonic_ns  # the one clock: every event's now comes from here
Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
Ready = Callable[[int], None]
CLOSE, EOM = (b"connection", b"close"), h11.EndOfMessage()
_BAD = core.encode_json({"error": "Not valid HTTP/1.1.", "code": "bad_request"})
_HEAD = [(b"content-type", b"application/json"), (b"cache-control", b"no-store"), CLOSE]
BAD_REQUEST = core.Response(
    request_id=0, status=400, headers=(*_HEAD, (b"content-length", b"%d" % len(_BAD))), body=_BAD
)
HEARTBEAT_S = 0.1  # five beats per 500 ms stall limit, like the threaded server's host
IDLE_TIMEOUT_S = 5.0
MAX_HEAD_BYTES = 16 * 1024


class MemoryHost:
    """The engine host: state bytes, status, floors. Runs on the loop thread."""

    def __init__(self) -> None:
        self.state, self.program, self.preview, self.seq, self.executed = b"{}", "", "", 0, 0
        self.floors = core.Floors()

    def captured(self, now: int, request_id: int) -> core.SnapshotCaptured:
        return core.SnapshotCaptured(
            now=now,
            request_id=request_id,
            state=self.state,
            captured_at_us=time.time_ns() // 1000,
            program_source=self.program,
            preview_source=self.preview,
            last_command_seq=self.seq,
            last_executed_seq=self.executed,
        )

    def apply(self, effect: core.ApplySnapshot, now: int) -> core.SnapshotApplied:
        snap = effect.snapshot  # "durably": a real host writes, fsyncs, then swaps
        self.state, self.program, self.seq = snap.state, snap.program_source, snap.last_command_seq
        self.preview, self.executed = snap.preview_source, snap.last_executed_seq
        return core.SnapshotApplied(now=now, request_id=effect.request_id)


class AsyncPeerSync:
    def __init__(self, config: core.EngineConfig) -> None:
        self.config, self.host = config, MemoryHost()
        self.engine = core.Engine(config, now=clock(), entropy=os.urandom)
        self.timer: asyncio.TimerHandle | None = None
        self.next_id = 0

    def feed(self, make: Callable[[int], core.Event]) -> core.Response | None:
        """One event with a fresh ``now``; run its outputs in order; re-arm the timer."""
        pending = list(self.engine.handle(make(clock())))
        response = None
        while pending:
            out = pending.pop(0)
            if isinstance(out, core.Response):
                response = out
            elif isinstance(out, core.FloorsRaised):  # before the response that follows
                self.host.floors = core.Floors(**attrs.asdict(out))
            elif isinstance(out, core.CaptureSnapshot):
                pending += self.engine.handle(self.host.captured(clock(), out.request_id))
            elif isinstance(out, core.ApplySnapshot):
                pending += self.engine.handle(self.host.apply(out, clock()))
            else:  # BecomeLeader, StepDown, lock notices, HostStalled: a real engine acts
                print(f"effect: {out!r}", file=sys.stderr)
        self.arm()
        return response

    def arm(self) -> None:
        """Sleep until the core's next deadline on the loop's clock; tick no earlier."""
        if self.timer is not None:
            self.timer.cancel()
        deadline, loop = self.engine.next_deadline(), asyncio.get_running_loop()
        if deadline is None:
            self.timer = None
            return
        when = loop.time() + max(0, deadline - clock()) / 1e9
        self.timer = loop.call_at(
            when, lambda: self.feed(lambda now: core.Tick(now=max(now, deadline)))
        )

    async def heartbeat(self) -> None:
        while True:  # the engine loop is alive: peer health stays "ok"
            self.feed(lambda now: core.HostStatus(now=now))
            await asyncio.sleep(HEARTBEAT_S)

    async def connection(self, reader: Reader, writer: Writer) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        try:
            while await self.exchange(conn, reader, writer):
                conn.start_next_cycle()
        except h11.RemoteProtocolError:  # not HTTP/1.1: the wrapper's own answer, then close
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                with contextlib.suppress(ConnectionError):  # the client may be gone
                    await send(conn, writer, BAD_REQUEST)
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def next_event(self, conn: h11.Connection, reader: Reader) -> object:
        while (event := conn.next_event()) is h11.NEED_DATA:
            conn.receive_data(await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT_S))
        return event

    async def exchange(self, conn: h11.Connection, reader: Reader, writer: Writer) -> bool:
        """One request, one response; False when the connection is done."""
        request = await self.next_event(conn, reader)
        if not isinstance(request, h11.Request):
            return False  # ConnectionClosed: the client is done
        # Read at most one byte past the largest limit; the core answers 413 itself.
        limit = max(self.config.max_snapshot_bytes, self.config.max_body_bytes)
        body, complete = b"", True
        while not isinstance(event := await self.next_event(conn, reader), h11.EndOfMessage):
            body += event.data if isinstance(event, h11.Data) else b""
            if len(body) > limit:  # stop reading; close after the answer
                complete = False
                break
        self.next_id += 1
        event = core.Request(
            now=0,  # replaced below: every event gets a fresh now in feed()
            request_id=self.next_id,
            method=request.method.decode("ascii"),
            target=request.target.decode("latin-1"),
            headers=request.headers,
            body=body,
        )
        response = self.feed(lambda now: attrs.evolve(event, now=now))
        assert response is not None  # the in-memory host completes at once
        if not complete:
            response = attrs.evolve(response, headers=(*response.headers, CLOSE))
        await send(conn, writer, response)
        return complete and conn.our_state is h11.DONE and conn.their_state is h11.DONE


async def send(conn: h11.Connection, writer: Writer, response: core.Response) -> None:
    phrase = HTTPStatus(response.status).phrase.encode()
    head = h11.Response(status_code=response.status, headers=list(response.headers), reason=phrase)
    writer.write(conn.send(head) + conn.send(h11.Data(data=response.body)) + conn.send(EOM))
    await writer.drain()


async def serve(config: core.EngineConfig, host: str, port: int, ready: Ready | None) -> None:
    """Serve until cancelled; ``ready(port)`` once listening."""
    app = AsyncPeerSync(config)
    beat = asyncio.create_task(app.heartbeat())
    server = await asyncio.start_server(app.connection, host, port)
    try:
        bound = server.sockets[0].getsockname()[1]
        (ready or (lambda p: print(f"listening on http://{host}:{p}", flush=True)))(bound)
        await server.serve_forever()
    finally:
        beat.cancel()
        server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--role", type=core.Role, default="follower", metavar="leader|follower")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8470)
    parser.add_argument("--api-token", type=str.encode)
    parser.add_argument("--control-plane-secret", type=str.encode)
    parser.add_argument("--no-auth", action="store_true")
    args = vars(parser.parse_args(argv))
    host, port = args.pop("host"), args.pop("port")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(core.EngineConfig(**args), host, port, None))


if __name__ == "__main__":
    main()
