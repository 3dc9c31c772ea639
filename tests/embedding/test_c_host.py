"""The C host (docs/examples/c-host): built with gcc against the Python C API,
run, and every step it prints checked."""

from __future__ import annotations

import hashlib
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "c-host"
VENV_PYTHON = REPO / ".venv" / "bin" / "python"

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None or shutil.which("make") is None, reason="needs a C compiler"
)


def make(*args: str, python: pathlib.Path = VENV_PYTHON) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(EXAMPLE), *args, f"PYTHON={python}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def c_host(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    build = tmp_path_factory.mktemp("c-host")
    built = make(f"BUILD_DIR={build}")
    assert built.returncode == 0, built.stderr
    assert "warning" not in built.stderr, built.stderr
    return build / "c_host"


def test_make_run_builds_and_prints_one_line_per_step(tmp_path: pathlib.Path) -> None:
    out = make("run", f"BUILD_DIR={tmp_path}")
    assert out.returncode == 0, out.stderr
    steps = [line for line in out.stdout.splitlines() if line.startswith("[")]
    assert len(steps) == 13
    assert out.stdout.splitlines()[-1] == "done: 13 steps, exit 0"


def test_the_c_host_does_every_step_an_engine_does(
    c_host: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    run = subprocess.run(
        [str(c_host)], capture_output=True, text=True, timeout=30, cwd=tmp_path, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    lines = run.stdout.splitlines()
    expected = [
        rf"\[1\] embed: Python {re.escape(sys.version.split()[0])} initialised, "
        r"peersync_proto\.shim imported",
        r"\[2\] create: engine a, follower, fresh \(no floors\), lock ids from getrandom\(2\)",
        r"\[3\] status: programSource=cam-1 lastCommandSeq=7 reported, effects: none",
        r"\[4\] peer-health: 200 status=ok role=follower epoch=0 programSource=cam-1",
        r"\[5\] acquire: 200 fencingToken=1 expiresMs=5000, effects: FloorsRaised,LockGranted, "
        r"floors persisted epoch=0 fencingToken=1",
        r"\[6\] refresh: 200 same lockId, fencingToken=1 expiresMs=10000, effects: LockRefreshed",
        r"\[7\] capture: GET /api/sync/state pending on CaptureSnapshot, state handed over, "
        r"200 checksum=sha256:(?P<sum>[0-9a-f]{64})",
        r"\[8\] apply: PUT /api/sync/state pending on ApplySnapshot, 30 state bytes applied, "
        r"200 epoch=0 role=follower",
        r"\[9\] release: 200 released=true, effects: LockReleased",
        r"\[10\] force-leader: 200 epoch=1 previousRole=follower, effects: "
        r"FloorsRaised,BecomeLeader, on air at epoch 1",
        r"\[11\] sleep: next deadline in (?P<ms>\d+) ms, slept on CLOCK_MONOTONIC, "
        r"woke at or after it, tick effects: HostStalled",
        r"\[12\] peer-health: 200 status=stalled role=leader epoch=1",
        r"\[13\] heartbeat: effects: none, peer-health status=ok",
        r"done: 13 steps, exit 0",
    ]
    assert len(lines) == len(expected), run.stdout
    matches = [re.fullmatch(pattern, line) for pattern, line in zip(expected, lines, strict=True)]
    for pattern, line, match in zip(expected, lines, matches, strict=True):
        assert match, f"{line!r} does not match {pattern!r}"
    # The checksum is the core's: SHA-256 of the RFC 8785 form of the C host's state.
    assert (
        matches[6] is not None
        and matches[6]["sum"] == hashlib.sha256(b'{"scene":"news","tally":[1,2]}').hexdigest()
    )
    # The only deadline was the 500 ms stall limit counted from the status at step 3.
    assert matches[10] is not None and 400 <= int(matches[10]["ms"]) <= 500


def test_a_host_that_cannot_import_the_shim_prints_the_error_and_exits_nonzero(
    tmp_path: pathlib.Path,
) -> None:
    # The base interpreter, outside the venv: peersync is not importable there.
    base = (
        pathlib.Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    )
    built = make(f"BUILD_DIR={tmp_path}", python=base)
    assert built.returncode == 0, built.stderr
    run = subprocess.run(
        [str(tmp_path / "c_host")],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        check=False,
    )
    assert run.returncode == 1
    assert "ModuleNotFoundError" in run.stderr
    assert "c_host: import peersync_proto.shim failed" in run.stderr
    assert run.stdout == ""
