"""Run as a script: CLIENTS threads, each pipelining REQUESTS peer-health
requests on a connection, reading every answer, then reconnecting, for
SECONDS (a tester's flood; from its own process so the prober's timings see
only the server). Prints the connections made.

    python health_flood.py PORT CLIENTS REQUESTS SECONDS
"""

from __future__ import annotations

import socket
import sys
import threading
import time

PROBE = b"GET /api/peer/health HTTP/1.1\r\nHost: x\r\n\r\n"


def main(port: int, clients: int, requests: int, seconds: float) -> int:
    stop = time.monotonic() + seconds
    made = [0]

    def run() -> None:
        while time.monotonic() < stop:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                    made[0] += 1
                    sock.sendall(PROBE * requests)
                    while time.monotonic() < stop and sock.recv(1 << 20):
                        pass
            except OSError:
                time.sleep(0.01)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 5)
    print(made[0], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
