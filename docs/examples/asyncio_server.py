"""The nine-endpoint peer-sync server on asyncio streams and h11, over the core.

Run: python docs/examples/asyncio_server.py --label a --port 0 --api-token-file FILE
Secrets come from files or PEERSYNC_API_TOKEN / PEERSYNC_CONTROL_PLANE_SECRET, never argv.
What every wrapper must do, and how this one does it, is in docs/embedding.md.
"""

import argparse
import asyncio
import contextlib
import os
import pathlib
import sys
import time
from collections.abc import Callable
from http import HTTPStatus

import attrs
import h11

import peersync_proto as core

clock = time.monotonic_ns  # the one clock: every event's now comes from here
Reader, Writer, Ready = asyncio.StreamReader, asyncio.StreamWriter, Callable[[int], None]
CLOSE, EOM = (b"connection", b"close"), h11.EndOfMessage()
CONTINUE = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
HEARTBEAT_S, LINGER_S = 0.1, 1.0  # five beats per 500 ms stall limit; a refused body: 1 s
IDLE_TIMEOUT_S, HEAD_TIMEOUT_S, MAX_HEAD_BYTES, MAX_FIELDS = 5.0, 10.0, 16 * 1024, 100  # threaded's
TOO_LARGE = 431, "request_header_fields_too_large", "The request head is too large."


def own(status: int, code: str, message: str) -> core.RemoteProtocolError:
    return core.RemoteProtocolError(message, status=status, code=code)  # framing: not a core rule


class MemoryHost:
    """The engine host: state bytes, status, floors. Runs on the loop thread."""

    state, program, preview, seq, executed, floors = b"{}", "", "", 0, 0, core.Floors()

    def captured(self, now: int, request_id: int) -> core.SnapshotCaptured:
        return core.SnapshotCaptured(now=now, request_id=request_id, state=self.state,
            captured_at_us=time.time_ns() // 1000, program_source=self.program,
            preview_source=self.preview, last_command_seq=self.seq, last_executed_seq=self.executed)

    def apply(self, effect: core.ApplySnapshot, now: int) -> core.SnapshotApplied:
        snap = effect.snapshot  # "durably": a real host writes, fsyncs, then swaps
        self.state, self.program, self.seq = snap.state, snap.program_source, snap.last_command_seq
        self.preview, self.executed = snap.preview_source, snap.last_executed_seq
        return core.SnapshotApplied(now=now, request_id=effect.request_id)


class AsyncPeerSync:
    def __init__(self, config: core.EngineConfig) -> None:
        self.config, self.host, self.next_id = config, MemoryHost(), 0
        self.engine = core.Engine(config, now=clock(), entropy=os.urandom)
        self.timer: asyncio.TimerHandle | None = None

    def feed(self, make: Callable[[int], core.Event]) -> core.Response | None:
        """One event with a fresh ``now``; run its outputs in order; re-arm the timer."""
        pending, response = list(self.engine.handle(make(clock()))), None
        for out in pending:  # a completion's outputs join the end of the list as it runs
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
        self.timer, due, loop = None, self.engine.next_deadline(), asyncio.get_running_loop()
        if due is not None:
            when = loop.time() + max(0, due - clock()) / 1e9
            self.timer = loop.call_at(when, self.feed, lambda now: core.Tick(now=max(now, due)))

    async def heartbeat(self) -> None:
        while True:  # the engine loop is alive: peer health stays "ok"
            self.feed(lambda now: core.HostStatus(now=now))
            await asyncio.sleep(HEARTBEAT_S)

    async def connection(self, reader: Reader, writer: Writer) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        with contextlib.closing(writer), contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            try:
                while await self.exchange(conn, reader, writer):
                    conn.start_next_cycle()
            except (h11.RemoteProtocolError, core.RemoteProtocolError) as error:  # none sent yet
                await refuse(conn, reader, writer, error)  # ours, then close; a body stays unread

    async def next_event(self, conn: h11.Connection, reader: Reader) -> object:
        while (event := conn.next_event()) is h11.NEED_DATA:
            conn.receive_data(await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT_S))
        return event

    async def exchange(self, conn: h11.Connection, reader: Reader, writer: Writer) -> bool:
        """One request, one response (False: close); a refused head raises its answer."""
        try:  # all of the head within HEAD_TIMEOUT_S of the accept or the last answer (slowloris)
            request = await asyncio.wait_for(self.next_event(conn, reader), HEAD_TIMEOUT_S)
        except asyncio.TimeoutError:
            if conn.trailing_data[0]:  # part of a head came: 408; else a silent close
                raise own(408, "request_timeout", "The request head took too long.") from None
            raise
        if not isinstance(request, h11.Request):
            return False  # ConnectionClosed: the client is done
        names, version = {name for name, _ in request.headers}, request.http_version
        if version not in (b"1.0", b"1.1"):  # the threaded server's framing rules come first
            raise own(505, "http_version_not_supported", "Only HTTP/1.0 and 1.1 are served.")
        size = len(request.target) + sum(len(n) + len(v) + 4 for n, v in request.headers)
        if len(request.headers) > MAX_FIELDS or size > MAX_HEAD_BYTES:  # h11: a partial head only
            raise own(*TOO_LARGE)
        if b"transfer-encoding" in names and (b"content-length" in names or version == b"1.0"):
            raise own(400, "bad_request", "Transfer-Encoding with Content-Length or on HTTP/1.0.")
        if not request.target.startswith(b"/"):
            raise own(400, "bad_request", "Only origin-form request targets are served.")
        method, target = request.method.decode("ascii"), request.target.decode("latin-1")
        length = next((int(v) for n, v in request.headers if n == b"content-length"), None)
        has_body = bool(length) or b"transfer-encoding" in names
        check = core.check_head(self.config, method, target, request.headers, has_body=has_body)
        waiting = conn.they_are_waiting_for_100_continue
        if (has_body or waiting) and (error := check.refusal(length)) is not None:
            raise error  # route, auth, size, media type: the core's checks, in its order
        if waiting:  # only now that the head passed
            writer.write(conn.send(CONTINUE))
        body = bytearray()  # grows in place (bytes += would copy all of it for every piece)
        while not isinstance(event := await self.next_event(conn, reader), h11.EndOfMessage):
            body += event.data  # h11.Data: h11 raises on a body cut short
            if (error := check.refusal(len(body))) is not None:
                raise error  # a chunked body past the limit
        self.next_id += 1
        response = self.feed(lambda now: core.Request(now=now, request_id=self.next_id,
            method=method, target=target, headers=request.headers, body=bytes(body)))  # fmt: skip
        assert response is not None  # the in-memory host completes at once
        await send(conn, writer, attrs.evolve(response, body=b"") if method == "HEAD" else response)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE


async def refuse(conn: h11.Connection, reader: Reader, writer: Writer, error: Exception) -> None:
    """Answer and close, the body unread; drop what still comes for a moment (not a reset)."""
    if isinstance(error, h11.RemoteProtocolError):  # h11's own: junk, or a partial head too large
        big = error.error_status_hint == 431
        error = own(*TOO_LARGE) if big else own(400, "bad_request", "Not valid HTTP/1.1.")
    answer, end = core.error_response(0, error), time.monotonic() + LINGER_S
    with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
        await send(conn, writer, attrs.evolve(answer, headers=(*answer.headers, CLOSE)))
        writer.write_eof()
        while await asyncio.wait_for(reader.read(65536), end - time.monotonic()):
            pass


async def send(conn: h11.Connection, writer: Writer, response: core.Response) -> None:
    phrase = HTTPStatus(response.status).phrase.encode()
    head = h11.Response(status_code=response.status, headers=list(response.headers), reason=phrase)
    writer.write(conn.send(head) + conn.send(h11.Data(data=response.body)) + conn.send(EOM))
    await writer.drain()


async def serve(config: core.EngineConfig, host: str, port: int, ready: Ready | None) -> None:
    """Serve until cancelled; ``ready(port)`` once listening."""
    app = AsyncPeerSync(config)
    async with await asyncio.start_server(app.connection, host, port) as server:
        bound = server.sockets[0].getsockname()[1]
        if config.no_auth:  # loudly, as peersync-server does: anyone who connects may write
            print(f"WARNING: NO-AUTH MODE: open to all at http://{host}:{bound}", file=sys.stderr)
        (ready or (lambda p: print(f"listening on http://{host}:{p}", flush=True)))(bound)
        await asyncio.gather(server.serve_forever(), app.heartbeat())  # cancelled together


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--label", required=True)
    parser.add_argument("--role", type=core.Role, default="follower", metavar="leader|follower")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8470)
    parser.add_argument("--api-token-file", metavar="FILE", help="or env PEERSYNC_API_TOKEN")
    parser.add_argument("--control-plane-secret-file", metavar="FILE")  # or the env variable
    parser.add_argument("--no-auth", action="store_true")
    args = vars(parser.parse_args(argv))
    host, port = args.pop("host"), args.pop("port")
    for name in ("api_token", "control_plane_secret"):  # a file, else the threaded server's env
        path, env = args.pop(name + "_file"), os.environ.get("PEERSYNC_" + name.upper(), "")
        args[name] = (pathlib.Path(path).read_bytes() if path else env.encode()).strip() or None
    if not (args["api_token"] or args["no_auth"]):  # never open by accident: one line, exit 2
        parser.exit(2, f"{parser.prog}: error: no API token: give --api-token-file FILE or set "
                    "PEERSYNC_API_TOKEN (or --no-auth for a demo)\n")  # fmt: skip
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(core.EngineConfig(**args), host, port, None))


if __name__ == "__main__":
    main()
