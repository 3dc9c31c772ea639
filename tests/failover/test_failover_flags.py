"""``peersync-server``'s failover flags: listed, validated, and turned into the
engine's monitor configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from peersync_proto import FailoverPolicy, MonitorConfig
from peersync_server import ServerConfig
from peersync_server.__main__ import build_config, parse_args


def _server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peersync_server", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_help_lists_the_failover_flags() -> None:
    out = _server("--help").stdout
    for flag in (
        "--peer", "--failover", "--probe-interval-ms", "--probe-deadline-ms",
        "--failure-threshold", "--peer-api-token-file",
    ):  # fmt: skip
        assert flag in out


@pytest.mark.parametrize(
    "args",
    [
        ("--peer", "ftp://127.0.0.1:1"),
        ("--probe-interval-ms", "100", "--probe-deadline-ms", "150"),
        ("--failure-threshold", "0"),
        ("--peer-api-token-file", "/nonexistent/peersync-token"),
    ],
)
def test_bad_failover_flags_are_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    done = _server("--label", "a", "--no-auth", "--listen", "127.0.0.1:0", *args)
    assert done.returncode == 2
    assert done.stderr.startswith("peersync-server: error:")
    assert len(done.stderr.strip().splitlines()) == 1


def test_flags_become_the_monitor_config(tmp_path: Path) -> None:
    token = tmp_path / "peer-token"
    token.write_text("peer-t0k\n")
    args = parse_args(
        [
            "--label", "b", "--no-auth", "--peer", "http://127.0.0.1:9", "--failover", "manual",
            "--probe-interval-ms", "100", "--probe-deadline-ms", "80",
            "--failure-threshold", "4", "--peer-api-token-file", str(token),
        ]
    )  # fmt: skip
    config = build_config(args)
    assert config.peer_api_token == b"peer-t0k"
    assert "peer-t0k" not in repr(config)
    monitor = config.monitor_config()
    assert monitor is not None
    assert monitor.policy is FailoverPolicy.MANUAL
    assert monitor.probe_period_ns == 100_000_000
    assert monitor.probe_deadline_ns == 80_000_000
    assert monitor.failure_threshold == 4
    assert monitor.refused_retry_ns == MonitorConfig().refused_retry_ns


def test_no_peer_means_no_monitor() -> None:
    assert ServerConfig(label="a").monitor_config() is None


def test_a_short_interval_caps_the_refused_retry() -> None:
    config = ServerConfig(
        label="a", peer_url="http://127.0.0.1:9", probe_interval_ms=30, probe_deadline_ms=20
    )
    monitor = config.monitor_config()
    assert monitor is not None and monitor.refused_retry_ns == 30_000_000
