"""The server raises its soft open-file limit toward the hard one, and warns
when even the hard one is short of what its connection limits can use."""

from __future__ import annotations

import re
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from srv_util import PYTHON

NEED = 64 + 512 + 64  # --max-connections + --max-idle-connections + spare (defaults)


def _limit(soft: int, hard: int) -> Callable[[], None]:
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _run(tmp_path: Path, soft: int, hard: int) -> tuple[int, str]:
    """The soft limit the running server has, and its log."""
    args = ["--label", "a", "--listen", "127.0.0.1:0", "--no-auth", "--state-dir", str(tmp_path)]
    proc = subprocess.Popen(
        [PYTHON, "-m", "peersync_server", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_limit(soft, hard),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"listening on http://")
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        found = re.search(r"Max open files\s+(\d+)", limits)
        assert found is not None, limits
        proc.terminate()
        _, err = proc.communicate(timeout=15)
        return int(found.group(1)), err.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


_, HARD = resource.getrlimit(resource.RLIMIT_NOFILE)


@pytest.mark.skipif(HARD != resource.RLIM_INFINITY and HARD < NEED, reason="hard limit too low")
def test_a_low_soft_limit_is_raised_to_what_the_server_can_use(tmp_path: Path) -> None:
    soft, log = _run(tmp_path, 256, HARD)
    assert soft >= NEED
    assert "open-file limit" not in log


def test_a_hard_limit_short_of_the_need_is_warned_about(tmp_path: Path) -> None:
    soft, log = _run(tmp_path, 256, 256)
    assert soft == 256
    assert f"open-file limit 256 is below the {NEED} this server can use" in log
