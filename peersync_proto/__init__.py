"""peersync_proto: a pure, I/O-free core for a redundant pair of live engines."""
