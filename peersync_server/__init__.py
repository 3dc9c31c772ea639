"""peersync_server: a threaded h11 server, a blocking client and the CLIs."""
