"""Contract 6: the replay tool and the test vectors other engines run."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from peersync_proto.replay import ScenarioError, SeededEntropy, run_scenario

VECTORS = pathlib.Path(__file__).resolve().parent / "vectors"
SCENARIOS = sorted(VECTORS.glob("*.scenario.jsonl"))
CONFIG = json.dumps(
    {
        "config": {
            "label": "a",
            "role": "leader",
            "apiToken": "t0k",
            "controlPlaneSecret": "s3c",
            "seed": 7,
        }
    }
)
ACQUIRE = json.dumps(
    {
        "at": 0,
        "request": {
            "method": "POST",
            "path": "/api/sync/reconcile-lock",
            "headers": {"Authorization": "Bearer t0k"},
        },
    }
)


def test_there_are_at_least_40_vectors_each_with_an_expected_output() -> None:
    assert len(SCENARIOS) >= 40
    for scenario in SCENARIOS:
        assert scenario.with_name(scenario.name.replace(".scenario.", ".expected.")).exists()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name.split(".")[0])
def test_vector(scenario: pathlib.Path) -> None:
    expected = scenario.with_name(scenario.name.replace(".scenario.", ".expected.")).read_text(
        "utf-8"
    )
    assert run_scenario(scenario.read_text("utf-8").splitlines()) == expected.splitlines()


def test_vectors_cover_every_error_code_of_the_contract() -> None:
    codes = set()
    for path in VECTORS.glob("*.expected.jsonl"):
        for line in path.read_text("utf-8").splitlines():
            codes.add(json.loads(line).get("body", {}).get("code"))
    assert {
        "invalid_request",
        "invalid_json",
        "unsupported_media_type",
        "body_too_large",
        "not_found",
        "method_not_allowed",
        "unauthorized",
        "not_configured",
        "already_leader",
        "lock_not_held",
        "invalid_snapshot",
        "stale_snapshot",
        "lock_held",
        "lock_not_found",
        "apply_failed",
    } <= codes


def test_outputs_do_not_depend_on_the_seed() -> None:
    lines = [
        CONFIG,
        ACQUIRE,
    ]
    other = [lines[0].replace('"seed": 7', '"seed": 8'), lines[1]]
    assert run_scenario(lines) == run_scenario(other)
    assert "$LOCK1" in run_scenario(lines)[-1]


def test_seeded_entropy_is_deterministic_and_exact_length() -> None:
    assert SeededEntropy(7)(16) == SeededEntropy(7)(16) != SeededEntropy(8)(16)
    assert len(SeededEntropy(1)(50)) == 50


@pytest.mark.parametrize(
    "lines,line_no",
    [
        ([], 1),
        (["not json"], 1),
        (["[1]"], 1),
        (['{"at": 0, "tick": true}'], 1),
        ([CONFIG, '{"at": 5, "tick": true}', '{"at": 4, "tick": true}'], 3),
        ([CONFIG, '{"at": "0", "tick": true}'], 2),
        ([CONFIG, '{"at": 0}'], 2),
        ([CONFIG, '{"at": 0, "tick": true, "hostStatus": {}}'], 2),
        ([CONFIG, '{"at": 0, "request": {"path": "/x"}}'], 2),
        (['{"config": {"label": ""}}'], 1),
    ],
)
def test_malformed_scenarios_name_the_line(lines: list[str], line_no: int) -> None:
    with pytest.raises(ScenarioError) as info:
        run_scenario(lines)
    assert info.value.line == line_no
    assert f"line {line_no}:" in str(info.value)


def test_command_line_reads_a_file_or_stdin_and_exits_2_on_bad_input(
    tmp_path: pathlib.Path,
) -> None:
    scenario = SCENARIOS[0]
    expected = scenario.with_name(scenario.name.replace(".scenario.", ".expected.")).read_text(
        "utf-8"
    )
    cmd = [sys.executable, "-m", "peersync_proto.replay"]
    by_file = subprocess.run([*cmd, str(scenario)], capture_output=True, text=True, check=False)
    assert (by_file.returncode, by_file.stdout) == (0, expected)
    by_stdin = subprocess.run(
        cmd, input=scenario.read_text("utf-8"), capture_output=True, text=True, check=False
    )
    assert (by_stdin.returncode, by_stdin.stdout) == (0, expected)
    bad = subprocess.run(
        cmd, input=CONFIG + "\n{oops\n", capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "line 2" in bad.stderr
    missing = subprocess.run(
        [*cmd, str(tmp_path / "none.jsonl")], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    usage = subprocess.run([*cmd, "-h"], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_main_in_process_covers_both_input_paths(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from peersync_proto.replay import main

    path = tmp_path / "s.jsonl"
    path.write_text(CONFIG + '\n{"at": 0, "tick": true}\n', encoding="utf-8")
    assert main([str(path)]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO(CONFIG + "\n"))
    assert main([]) == 0
    assert main(["a", "b"]) == 2
    monkeypatch.setattr(sys, "stdin", io.StringIO("{bad"))
    assert main([]) == 2
    assert main([str(tmp_path / "missing")]) == 2
    capsys.readouterr()
