"""peersync_server: a threaded h11 server, a blocking client and the CLIs."""

# The blocking client (the full surface is in ``peersync_server.client``).
from .client import PeerSyncClient, PeerSyncClientError, PeerSyncError, TransportError

__all__ = ["PeerSyncClient", "PeerSyncClientError", "PeerSyncError", "TransportError"]
