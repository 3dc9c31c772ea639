"""peersync_server: a threaded h11 server, a blocking client and the CLIs."""

# The blocking client (the full surface is in ``peersync_server.client``).
from .client import PeerSyncClient, PeerSyncClientError, PeerSyncError, TransportError

__all__ = ["PeerSyncClient", "PeerSyncClientError", "PeerSyncError", "TransportError"]

# The server and the engine host (see docs/operations.md).
from ._connection import Limits
from ._host import CapturedState, EngineHost, HostStateError, StandaloneHost, StatusReporter
from ._server import PeerSyncServer, ServerConfig, ServerStartError

__all__ += [
    "CapturedState",
    "EngineHost",
    "HostStateError",
    "Limits",
    "PeerSyncServer",
    "ServerConfig",
    "ServerStartError",
    "StandaloneHost",
    "StatusReporter",
]
