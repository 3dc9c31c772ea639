"""Side-by-side benchmarks: peersync-server beside what a user would run instead.

Run: ``make bench`` (or ``python bench/run.py``; ``--quick`` for a run of a
few seconds, as the smoke test does). Prints the tables and writes them to
``docs/performance.md`` (``--out``) with the machine and the commands.

Every server runs in its own process and answers the same health JSON; the
load comes from other processes on loopback (``wrk`` where installed, else
``bench/loadgen.py``). Rounds are interleaved: each round visits every server
in turn (the order rotates), and each figure is the median over the rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import loadgen  # noqa: E402
import report  # noqa: E402

PY = sys.executable
HEALTH = "/api/peer/health"


@dataclass
class Settings:
    rounds: int = 3
    latency_n: int = 5000
    latency_max_s: float = 10.0
    throughput_s: float = 2.0
    connections: tuple[int, ...] = (1, 8, 32)
    probe_s: float = 4.0
    probe_interval_ms: float = 5.0
    sizes_mb: tuple[float, ...] = (1, 10, 50)
    loaded_mb: float = 50
    failover_kill: int = 100
    failover_stop: int = 50
    core: bool = True
    use_wrk: bool = True

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            rounds=1,
            latency_n=300,
            latency_max_s=2.0,
            throughput_s=0.3,
            connections=(1, 8),
            probe_s=1.0,
            probe_interval_ms=10.0,
            sizes_mb=(0.2,),
            loaded_mb=1,
            failover_kill=0,
            failover_stop=0,
            core=False,
            use_wrk=False,
        )


@dataclass
class Server:
    """One server process under test."""

    key: str
    label: str
    argv: Callable[[int], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    def start(self, work: Path) -> None:
        self.port = _free_port()
        log = (work / f"{self.key}.log").open("wb")
        self.proc = subprocess.Popen(
            self.argv(self.port),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
        )
        log.close()

    def wait_ready(self, timeout: float = 20.0) -> bytes:
        """Polls until the health answer is a 200; returns its body."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}")
            try:
                url = f"http://127.0.0.1:{self.port}{HEALTH}"
                with urllib.request.urlopen(url, timeout=2) as answer:
                    return bytes(answer.read())
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def servers(work: Path, body_file: Path) -> list[Server]:
    """Every server of the comparison that can run here (uvicorn is optional)."""

    def ours(key: str, *extra: str) -> Callable[[int], list[str]]:
        state = str(work / f"state-{key}")
        return lambda port: [
            *(PY, "-m", "peersync_server", "--label", "a", "--no-auth"),
            *("--listen", f"127.0.0.1:{port}", "--state-dir", state, *extra),
        ]

    def script(*args: str) -> Callable[[int], list[str]]:
        return lambda port: [PY, *args, "--port", str(port), "--body-file", str(body_file)]

    def uvicorn(http: str) -> Callable[[int], list[str]]:
        return lambda port: [
            *(PY, "-m", "uvicorn", "peers:app", "--app-dir", "bench"),
            *("--http", http, "--host", "127.0.0.1", "--port", str(port)),
        ]

    stdlib = "stdlib ThreadingHTTPServer"
    found = [
        Server("ours", "peersync-server", ours("ours")),
        Server(
            "ours-quiet",
            "peersync-server --log-level WARNING",
            ours("quiet", "--log-level", "WARNING"),
        ),
        Server("h11-bare", "bare h11 thread/conn", script("bench/h11_bare.py")),
        Server(
            "stdlib-nodelay",
            f"{stdlib}, TCP_NODELAY",
            script("bench/peers.py", "stdlib", "--nodelay"),
        ),
        Server("stdlib", stdlib, script("bench/peers.py", "stdlib")),
    ]
    if _have("uvicorn"):
        env = {"PEERSYNC_BENCH_BODY_FILE": str(body_file)}
        for http in ("h11", "httptools"):
            if http == "httptools" and not _have("httptools"):
                continue
            found.append(
                Server(
                    f"uvicorn-{http}",
                    f"uvicorn --http {http}",
                    uvicorn(http),
                    env,
                )
            )
    found.append(Server("raw", "raw TCP (loopback floor)", script("bench/peers.py", "raw")))
    return found


# -- load ---------------------------------------------------------------------


def _run_json(argv: list[str], timeout: float) -> dict[str, Any]:
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=timeout, check=True)
    return dict(json.loads(out.stdout.decode().strip().splitlines()[-1]))


def _loadgen(*args: str, timeout: float) -> dict[str, Any]:
    return _run_json([PY, str(BENCH / "loadgen.py"), *args], timeout)


def latency(port: int, s: Settings) -> dict[str, Any]:
    """Figure 1: one keep-alive client, N sequential requests (bounded in time)."""
    if not s.use_wrk:
        return _loadgen(
            *("latency", "--port", str(port), "--n", str(s.latency_n)),
            *("--max-seconds", str(s.latency_max_s)),
            timeout=s.latency_max_s + 30,
        )
    url = f"http://127.0.0.1:{port}{HEALTH}"
    argv = [
        "wrk",
        "-t1",
        "-c1",
        f"-d{s.latency_max_s:.0f}s",
        "-s",
        str(BENCH / "wrk_latency.lua"),
        url,
    ]
    env = {**os.environ, "WRK_REQUESTS": str(s.latency_n)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    # The script says "limit reached" on stderr; SIGINT ends wrk's timed sleep.
    select.select([proc.stderr], [], [], s.latency_max_s + 5)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


def throughput(port: int, connections: int, s: Settings) -> float:
    """Figure 2: answers per second with C keep-alive connections."""
    if not s.use_wrk:
        result = _loadgen(
            *("throughput", "--port", str(port), "--connections", str(connections)),
            *("--seconds", str(s.throughput_s)),
            timeout=s.throughput_s + 30,
        )
        return float(result["rps"])
    url = f"http://127.0.0.1:{port}{HEALTH}"
    duration = f"-d{max(1, round(s.throughput_s))}s"
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", duration, url],
        capture_output=True,
        timeout=s.throughput_s + 30,
        check=True,
    ).stdout.decode()
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(f"wrk said: {out}")


# -- the server's memory --------------------------------------------------------


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            kids += [int(k) for k in text.split()]
    return kids


def _status_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def _reset_peaks(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM


def _peaks_mb(pid: int) -> tuple[float, float]:
    """(server VmHWM, largest child VmHWM: the decoder worker), in MB."""
    kids = [_status_kb(k, "VmHWM") for k in _children(pid)]
    return _status_kb(pid, "VmHWM") / 1024, max(kids, default=0) / 1024


# -- figures ----------------------------------------------------------------------


def snapshot_round(port: int, pid: int, body: bytes) -> dict[str, float]:
    """Figure 4, one size: PUT then GET end to end, and the peaks of each."""
    import http.client

    pids = [pid, *_children(pid)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        lock_id = loadgen.acquire_lock(port)
        _reset_peaks(pids)
        start = time.perf_counter()
        status = loadgen.put_state(conn, body, lock_id)
        put_s = time.perf_counter() - start
        loadgen.release_lock(port, lock_id)
        if status != 200:
            raise RuntimeError(f"PUT state: {status}")
        put_server, put_worker = _peaks_mb(pid)
        _reset_peaks(pids)
        start = time.perf_counter()
        size = loadgen.get_state(conn)
        get_s = time.perf_counter() - start
        get_server, _ = _peaks_mb(pid)
    finally:
        conn.close()
    return {
        "put_s": put_s,
        "get_s": get_s,
        "get_bytes": size,
        "put_rss": put_server,
        "put_worker_rss": put_worker,
        "get_rss": get_server,
    }


def bare_loads_s(body: bytes) -> float:
    """``json.loads`` of the same bytes in this process, GC paused, result freed."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        json.loads(body)
        return time.perf_counter() - start
    finally:
        gc.enable()


def probe(port: int, s: Settings) -> dict[str, Any]:
    return _loadgen(
        *("probe", "--port", str(port), "--seconds", str(s.probe_s)),
        *("--interval-ms", str(s.probe_interval_ms)),
        timeout=s.probe_s + 60,
    )


def loaded_probe(port: int, body_file: Path, s: Settings) -> dict[str, Any]:
    """Figure 3: the probe while a PUT and a GET of the big snapshot run."""
    load = subprocess.Popen(
        [
            *(PY, str(BENCH / "loadgen.py"), "snapshot", "--port", str(port)),
            *("--body-file", str(body_file), "--seconds", str(s.probe_s + 0.5)),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        time.sleep(0.3)
        result = probe(port, s)
        out, _ = load.communicate(timeout=s.probe_s + 120)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    result.update(json.loads(out.decode().strip().splitlines()[-1]))
    return result


def _subprocess_table(argv: list[str], timeout: float) -> str:
    try:
        out = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=timeout, check=True)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"(not measured: {exc})"
    return out.stdout.decode().strip()


# -- the run ------------------------------------------------------------------------


@contextlib.contextmanager
def running(work: Path, s: Settings) -> Iterator[tuple[list[Server], bytes]]:
    body_file = work / "health.json"
    body_file.write_bytes(b'{"status":"ok"}')
    group = servers(work, body_file)
    try:
        ours = group[0]
        ours.start(work)
        body = ours.wait_ready()
        body_file.write_bytes(body)
        for server in group[1:]:
            server.start(work)
        for server in group[1:]:
            server.wait_ready()
        yield group, body
    finally:
        for server in group:
            server.stop()


def measure(s: Settings, work: Path, log: Callable[[str], None]) -> report.Results:
    results = report.Results(settings=vars(s).copy())
    snapshots = {size: _snapshot_body(size) for size in (*s.sizes_mb, s.loaded_mb)}
    loaded_file = work / "loaded.json"
    loaded_file.write_bytes(snapshots[s.loaded_mb])
    with running(work, s) as (group, health):
        results.health_body = health.decode()
        results.labels = {server.key: server.label for server in group}
        ours = group[0]
        for round_no in range(s.rounds):
            shift = round_no % len(group)
            for server in group[shift:] + group[:shift]:
                log(f"round {round_no + 1}/{s.rounds}: {server.label}")
                results.add(f"lat/{server.key}", latency(server.port, s))
                for c in s.connections:
                    results.add(f"rps/{server.key}/{c}", throughput(server.port, c, s))
            log(f"round {round_no + 1}/{s.rounds}: probe idle and under snapshot load")
            results.add("probe/idle", probe(ours.port, s))
            results.add("probe/loaded", loaded_probe(ours.port, loaded_file, s))
            for size in s.sizes_mb:
                log(f"round {round_no + 1}/{s.rounds}: snapshot {size} MB")
                body = snapshots[size]
                results.add(f"snap/{size}", snapshot_round(ours.port, ours.pid, body))
                results.add(f"loads/{size}", bare_loads_s(body))
        results.snapshot_bytes = {size: len(snapshots[size]) for size in s.sizes_mb}
    if s.failover_kill or s.failover_stop:
        log(f"failover: {s.failover_kill} kill -9, {s.failover_stop} SIGSTOP")
        argv = [PY, "bench/failover.py", "--kill", str(s.failover_kill)]
        argv += ["--stop", str(s.failover_stop), "--partition", "0", "--force", "0"]
        if (BENCH / "failover.py").exists():
            results.failover = _subprocess_table(argv, 1800)
            results.failover_cmd = " ".join(argv[1:])
    if s.core:
        log("core alone: bench/core.py")
        results.core = _subprocess_table([PY, "bench/core.py"], 900)
    return results


def _snapshot_body(size_mb: float) -> bytes:
    from core_codec import bodies

    return bodies(size_mb)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds: the smoke test")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--no-wrk", action="store_true", help="use bench/loadgen.py only")
    parser.add_argument("--failover-kill", type=int, help="kill -9 runs (default 100)")
    parser.add_argument("--failover-stop", type=int, help="SIGSTOP runs (default 50)")
    args = parser.parse_args(argv)
    s = Settings.quick() if args.quick else Settings()
    if args.rounds:
        s.rounds = args.rounds
    if args.failover_kill is not None:
        s.failover_kill = args.failover_kill
    if args.failover_stop is not None:
        s.failover_stop = args.failover_stop
    s.use_wrk = s.use_wrk and not args.no_wrk and shutil.which("wrk") is not None
    command = "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.monotonic()
    load_before = os.getloadavg()

    def log(message: str) -> None:
        print(f"# {time.monotonic() - started:6.1f} s  {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="peersync-bench-") as tmp:
        results = measure(s, Path(tmp), log)
    results.elapsed_s = time.monotonic() - started
    results.load = (load_before, os.getloadavg())
    results.command = command.strip()
    text = report.render(results)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
