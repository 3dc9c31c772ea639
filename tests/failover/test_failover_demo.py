"""``make demo`` (``python -m peersync_server.demo``): passes, narrates every
step with its time, and on a failure names the step and still cleans up."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import peersync_server.demo as demo
from peersync_server._pair import EnginePair


def test_demo_passes_and_narrates_every_step_within_30_s() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "peersync_server.demo"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for step in ("start", "seed", "healthy", "kill -9", "restart", "partition", "heal", "done"):
        assert f" {step} " in out, step
    assert "b took over in" in out
    assert "split brain:" in out
    assert "'outcome': 'reconciled'" in out
    assert "every step held" in out


def test_a_failing_step_is_named_exits_1_and_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    made: list[EnginePair] = []
    pids: list[int] = []
    real_create = EnginePair.create

    def sabotaged(**_kwargs: object) -> EnginePair:
        # Policy manual: b never takes over from a killed a.
        pair = real_create(extra_args=("--failover", "manual"))
        made.append(pair)
        start = pair.start

        def start_and_note(**kwargs: str) -> None:
            start(**kwargs)
            pids.extend([pair.a.pid, pair.b.pid])

        pair.start = start_and_note  # type: ignore[method-assign]
        return pair

    monkeypatch.setattr(demo.EnginePair, "create", staticmethod(sabotaged))
    monkeypatch.setattr(demo, "TAKEOVER_LIMIT_S", 1.0)
    assert demo.main([]) == 1
    err = capsys.readouterr().err
    assert "demo FAILED: step 'kill -9' failed" in err
    assert "engine b log (tail):" in err
    [pair] = made
    assert not pair.root.exists()  # the temp dir is gone
    assert len(pids) == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # killed and reaped


def test_the_demo_refuses_an_unknown_option_without_echoing_its_value() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "peersync_server.demo", "--api-token", "SECRETVALUE-9f2c"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert "unrecognized option --api-token" in done.stderr
    assert "SECRETVALUE" not in done.stderr
