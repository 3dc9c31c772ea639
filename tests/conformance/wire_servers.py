"""Every server built on the core, startable on a free loopback port.

The over-the-wire suite is parametrized over ``SERVERS``, so a wrapper that
drifts from the contract fails the same test the threaded server passes.
(A uniquely named module: ``conftest`` names clash across test folders.)
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import pathlib
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Protocol

from peersync_proto import EngineConfig, Role
from peersync_server import Limits, PeerSyncServer, ServerConfig

REPO = pathlib.Path(__file__).resolve().parents[2]
ASYNCIO_EXAMPLE = REPO / "docs" / "examples" / "asyncio_server.py"
TOKEN = "t0k-conformance"
SECRET = "s3c-conformance"
#: The absolute request-head deadline of every server here (the servers' own
#: default is 10 s; short, so the 408 test takes a second, not ten).
HEAD_TIMEOUT_S = 1.0


def load_asyncio_example() -> ModuleType:
    name = "peersync_asyncio_example"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ASYNCIO_EXAMPLE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        module.HEAD_TIMEOUT_S = HEAD_TIMEOUT_S  # the example's own setting, like Limits below
    return sys.modules[name]


class Running(Protocol):
    port: int

    def stop(self) -> None: ...


class Threaded:
    def __init__(self, role: str, secret: bytes | None) -> None:
        self.server = PeerSyncServer(
            ServerConfig(
                label="a",
                port=0,
                state_dir=None,
                role=Role(role),
                api_token=TOKEN.encode(),
                control_plane_secret=secret,
                limits=Limits(header_timeout_s=HEAD_TIMEOUT_S),
            )
        )
        self.port = self.server.start()

    def stop(self) -> None:
        self.server.stop()


class Asyncio:
    """The asyncio example's ``serve`` on its own event loop in a thread."""

    def __init__(self, role: str, secret: bytes | None) -> None:
        module = load_asyncio_example()
        config = EngineConfig(
            label="a", role=Role(role), api_token=TOKEN.encode(), control_plane_secret=secret
        )
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

        def listening(port: int) -> None:
            self.port = port
            self._ready.set()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.create_task(module.serve(config, "127.0.0.1", 0, listening))
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:  # surfaced by start/stop
                self._error = exc
                self._ready.set()

        self._thread = threading.Thread(target=run, name="asyncio-example", daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the asyncio server did not start"
        assert self._error is None, self._error

    def stop(self) -> None:
        assert self._loop is not None and self._task is not None
        self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)
        assert not self._thread.is_alive()
        assert self._error is None, self._error


SERVERS: dict[str, Callable[[str, bytes | None], Running]] = {
    "threaded": Threaded,
    "asyncio": Asyncio,
}

StartServer = Callable[..., int]
