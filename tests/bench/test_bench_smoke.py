"""The benchmark harness in its tiny mode, so `make bench` cannot rot.

Runs ``bench/run.py --quick`` (a few hundred requests per server, a 0.2 MB
snapshot, no failover, no core; bench/loadgen.py makes the load) as
``make bench`` would, and checks every figure and every server is reported
with numbers. Times are not checked: this machine is shared.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _rows(text: str, heading: str) -> dict[str, list[str]]:
    """The table under ``heading`` (its head row left out): first cell -> the others."""
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_quick_bench_reports_every_figure_beside_every_server(tmp_path: Path) -> None:
    out = tmp_path / "performance.md"
    run = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    text = out.read_text()
    assert run.stdout.strip() == text.strip()
    for figure in range(1, 7):
        assert f"\n## {figure}. " in text

    latency = _rows(text, "## 1. ")
    throughput = _rows(text, "## 2. ")
    for server in (
        "peersync-server",
        "bare h11 thread/conn",
        "stdlib ThreadingHTTPServer, TCP_NODELAY",
        "raw TCP (loopback floor)",
    ):
        p50, p99 = (float(v) for v in latency[server][:2])
        assert 0 < p50 <= p99
        assert float(throughput[server][1].replace(",", "")) > 0
    # The stdlib without TCP_NODELAY is bounded in time, not left to run 5,000 x 40 ms.
    assert any(
        k.startswith("stdlib ThreadingHTTPServer (only") or k == "stdlib ThreadingHTTPServer"
        for k in latency
    )

    probes = _rows(text, "## 3. ")
    assert float(probes["idle"][0]) > 0 and float(probes["loaded"][0]) > 0
    puts, gets = (int(v) for v in probes["loaded"][4].split(" / "))
    assert puts > 0 and gets > 0, "the snapshot load did run beside the probe"

    snapshots = _rows(text, "## 4. ")
    (row,) = snapshots.values()
    put_s, _, loads_s = (float(v) for v in row[:3])
    assert put_s > 0 and loads_s > 0
    assert re.search(r"Targets \(PUT within 3x", text)
    assert "CPU: " in text and "h11 " in text
