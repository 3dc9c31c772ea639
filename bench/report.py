"""The figures of ``bench/run.py`` as Markdown: tables, targets, machine, commands."""

from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

NOTES = Path(__file__).resolve().parent / "notes.md"


@dataclass
class Results:
    settings: dict[str, Any]
    samples: dict[str, list[Any]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    health_body: str = ""
    snapshot_bytes: dict[float, int] = field(default_factory=dict)
    failover: str = ""
    failover_cmd: str = ""
    core: str = ""
    elapsed_s: float = 0.0
    load: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())
    command: str = ""

    def add(self, key: str, value: Any) -> None:
        self.samples.setdefault(key, []).append(value)

    def med(self, key: str, name: str | None = None) -> float:
        """Median over the rounds of one figure (of one field of it)."""
        values = self.samples[key] if name is None else [v[name] for v in self.samples[key]]
        return float(statistics.median(values))

    def spread(self, key: str, name: str) -> tuple[float, float]:
        values = [v[name] for v in self.samples[key]]
        return min(values), max(values)


def _met(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> list[str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        wrk = subprocess.run(["wrk", "-v"], capture_output=True, timeout=5).stdout.decode()
        wrk = wrk.splitlines()[0].split(" [")[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        wrk = "not installed (bench/loadgen.py used)"
    return [
        f"- CPU: {os.cpu_count()} cores, {model}",
        f"- Linux {platform.release()}, Python {platform.python_version()}"
        f" ({platform.python_implementation()})",
        f"- h11 {_version('h11')}, uvicorn {_version('uvicorn')},"
        f" httptools {_version('httptools')}, {wrk}",
    ]


def _fig1(r: Results, out: list[str]) -> None:
    n = r.settings["latency_n"]
    out += [
        f"## 1. Probe latency: one keep-alive client, {n:,} sequential GETs",
        "",
        "| server | p50 µs | p99 µs | max µs | p50 vs ours | p50 range over rounds |",
        "|---|---|---|---|---|---|",
    ]
    ours = r.med("lat/ours", "p50_us")
    for key, label in r.labels.items():
        k = f"lat/{key}"
        lo, hi = r.spread(k, "p50_us")
        answered = min(v["n"] for v in r.samples[k])
        note = f" (only {answered:,} answered in the time bound)" if answered < n else ""
        out.append(
            f"| {label}{note} | {r.med(k, 'p50_us'):.0f} | {r.med(k, 'p99_us'):.0f}"
            f" | {r.med(k, 'max_us'):.0f} | {r.med(k, 'p50_us') / ours:.2f}x"
            f" | {lo:.0f}-{hi:.0f} |"
        )
    p99 = r.med("lat/ours", "p99_us")
    checks = []
    for key in ("uvicorn-h11", "stdlib-nodelay"):
        if key in r.labels:
            peer = r.med(f"lat/{key}", "p50_us")
            checks.append(
                f"p50 at or below {r.labels[key]}: {_met(ours <= peer)} ({ours / peer:.2f}x)"
            )
    bare = r.med("lat/h11-bare", "p50_us")
    checks.append(
        f"p50 within 1.25x of the bare h11 server: {_met(ours <= 1.25 * bare)} ({ours / bare:.2f}x)"
    )
    checks.append(f"p99 under 1 ms: {_met(p99 < 1000)} ({p99:.0f} µs)")
    out += ["", "Targets (peersync-server): " + "; ".join(checks) + ".", ""]


def _fig2(r: Results, out: list[str]) -> None:
    conns = r.settings["connections"]
    out += [
        f"## 2. Throughput: answers per second, {r.settings['throughput_s']:g} s per level",
        "",
        "| server | " + " | ".join(f"{c} conn" for c in conns) + " | ours / this at 8 |",
        "|---|" + "---|" * (len(conns) + 1),
    ]
    at = 8 if 8 in conns else conns[-1]
    ours = r.med(f"rps/ours/{at}")
    for key, label in r.labels.items():
        cells = " | ".join(f"{r.med(f'rps/{key}/{c}'):,.0f}" for c in conns)
        out.append(f"| {label} | {cells} | {ours / r.med(f'rps/{key}/{at}'):.2f}x |")
    checks = []
    for key in ("uvicorn-h11", "stdlib-nodelay"):
        if key in r.labels:
            peer = r.med(f"rps/{key}/{at}")
            checks.append(
                f"at least {r.labels[key]} at {at}: {_met(ours >= peer)} ({ours / peer:.2f}x)"
            )
    if "uvicorn-httptools" in r.labels:
        peer = r.med(f"rps/uvicorn-httptools/{at}")
        checks.append(f"beside uvicorn --http httptools: {ours / peer:.2f}x (reported, no target)")
    out += ["", "Targets (peersync-server): " + "; ".join(checks) + ".", ""]


def _fig3(r: Results, out: list[str]) -> None:
    mb = r.settings["loaded_mb"]
    out += [
        f"## 3. Probe under load: a GET every {r.settings['probe_interval_ms']:g} ms for"
        f" {r.settings['probe_s']:g} s, idle and while a {mb:g} MB snapshot PUT and GET run"
        " back to back on two other connections (peersync-server)",
        "",
        "| | probes | p50 ms | p99 ms | max ms | PUTs / GETs done |",
        "|---|---|---|---|---|---|",
    ]
    for key in ("idle", "loaded"):
        k = f"probe/{key}"
        done = ""
        if key == "loaded":
            done = f"{r.med(k, 'puts'):.0f} / {r.med(k, 'gets'):.0f}"
        out.append(
            f"| {key} | {r.med(k, 'n'):.0f} | {r.med(k, 'p50_us') / 1000:.2f}"
            f" | {r.med(k, 'p99_us') / 1000:.2f} | {r.med(k, 'max_us') / 1000:.2f} | {done} |"
        )
    loaded = r.med("probe/loaded", "p99_us") / 1000
    ratio = loaded / (r.med("probe/idle", "p99_us") / 1000)
    out += ["", f"Target: loaded p99 under 10 ms: {_met(loaded < 10)} ({loaded:.1f} ms,"
            f" {ratio:.1f}x the idle p99).", ""]  # fmt: skip


def _fig4(r: Results, out: list[str]) -> None:
    out += [
        "## 4. Snapshots end to end (peersync-server, one client, loopback)",
        "",
        "| snapshot | PUT s | PUT MB/s | bare json.loads s | PUT / loads | GET s | GET MB/s"
        " | peak RSS PUT (server + decoder) MB | peak RSS GET MB | peak / snapshot |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    checks = []
    for size, nbytes in r.snapshot_bytes.items():
        k = f"snap/{size}"
        mb = nbytes / 1e6
        put, get, loads = r.med(k, "put_s"), r.med(k, "get_s"), r.med(f"loads/{size}")
        server = max(r.med(k, "put_rss"), r.med(k, "get_rss"))
        worker = r.med(k, "put_worker_rss")
        peak = max(server, worker)
        out.append(
            f"| {mb:.1f} MB | {put:.3f} | {mb / put:.0f} | {loads:.3f} | {put / loads:.2f}x"
            f" | {get:.3f} | {mb / get:.0f} | {r.med(k, 'put_rss'):.0f} + {worker:.0f}"
            f" | {r.med(k, 'get_rss'):.0f} | {peak / mb:.1f}x |"
        )
        checks.append(f"{mb:.0f} MB: PUT {_met(put <= 3 * loads)} ({put / loads:.2f}x loads),"
                      f" RSS {_met(peak < 5 * mb)} ({peak / mb:.1f}x)")  # fmt: skip
    out += [
        "",
        "Peak RSS is each process's `VmHWM` (reset through `/proc/PID/clear_refs` before"
        " each request): the server process, and its largest child (the snapshot decoder"
        " worker). `peak / snapshot` takes the larger of the two. The bare `json.loads` runs"
        " in the harness process with the GC paused, its result freed inside the timing.",
        "",
        "Targets (PUT within 3x of json.loads; peak RSS under 5x the snapshot): "
        + "; ".join(checks)
        + ".",
        "",
    ]


_ROW = re.compile(r"^\| (kill|SIGSTOP)[^|]*\| *(\d+) *\| *(\d+) *\| *(\d+) *\| *(\d+) *\|$")


def _fig5(r: Results, out: list[str]) -> None:
    out += ["## 5. Failover: a real pair, takeover time seen from outside", ""]
    if not r.failover:
        out += ["Not run (`--failover-kill 0 --failover-stop 0`, or no bench/failover.py).", ""]
        return
    out += [f"`python {r.failover_cmd}`:", "", r.failover, ""]
    checks = []
    for line in r.failover.splitlines():
        m = _ROW.match(line)
        if m:
            target = 400 if m.group(1) == "kill" else 800
            p99 = int(m.group(4))
            checks.append(f"{m.group(1)} p99 under {target} ms: {_met(p99 <= target)} ({p99} ms)")
    if checks:
        out += ["Targets: " + "; ".join(checks) + ".", ""]


def render(r: Results) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    (b1, _, _), (a1, _, _) = r.load
    out = [
        "# Performance",
        "",
        "Written by `bench/run.py` (`make bench`); do not edit by hand: the text under"
        " *What the figures say* comes from `bench/notes.md`.",
        "",
        f"Run {now}: `{r.command}` ({r.settings['rounds']} interleaved rounds, each figure the"
        f" median over them; {r.elapsed_s / 60:.1f} minutes).",
        "",
        *machine(),
        f"- load average (1 min) {b1:.2f} at the start, {a1:.2f} at the end: the machine is"
        " shared, so read ratios, not lone absolute times",
        "",
        "Every server runs in its own process and answers `GET /api/peer/health` with the"
        f" same body (`{r.health_body}`, `content-type: application/json`,"
        " `cache-control: no-store`). Load comes from other processes on loopback:"
        + (" `wrk -t1 -cC -dS URL` for throughput, `wrk -t1 -c1 -s bench/wrk_latency.lua`"
           " for latency" if r.settings["use_wrk"] else " `bench/loadgen.py`")
        + "; `bench/loadgen.py probe|snapshot` for figure 3. Servers, as started:",
        "",
        "- peersync-server: `python -m peersync_server --label a --no-auth --listen"
        " 127.0.0.1:P --state-dir D` (default flags: access log at INFO to a file, a"
        " `Connection: close` every 1,000 answers); `--log-level WARNING` for the quiet row",
        "- bare h11: `python bench/h11_bare.py --port P --body-file F`",
        "- stdlib: `python bench/peers.py stdlib [--nodelay] --port P --body-file F`",
        "- uvicorn: `python -m uvicorn peers:app --app-dir bench --http h11|httptools"
        " --port P` (default logging, access log on)",
        "- raw TCP: `python bench/peers.py raw --port P --body-file F`",
        "",
    ]  # fmt: skip
    _fig1(r, out)
    _fig2(r, out)
    _fig3(r, out)
    _fig4(r, out)
    _fig5(r, out)
    out += ["## 6. The core alone (`python bench/core.py`)", ""]
    out += ["```", r.core, "```", ""] if r.core else ["Not run (`--quick`).", ""]
    if NOTES.exists():
        out += ["## What the figures say", "", NOTES.read_text().strip(), ""]
    return "\n".join(out)
