"""docs/reliability.md stays true: every test it names exists, every hostile
and fuzz test file is in it, and the counts it quotes are the code's."""

from __future__ import annotations

import ast
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "reliability.md"
#: ``tests/.../test_x.py::test_name`` or ``fuzz/test_x.py::test_name``
REF = re.compile(r"\b((?:tests|fuzz)/[\w/.-]+?\.py)::(\w+)")


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _refs() -> list[tuple[str, str]]:
    return sorted(set(REF.findall(_text())))


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def _source(rel: str) -> str:
    return (REPO / rel).read_text(encoding="utf-8")


def _int(rel: str, pattern: str, group: int = 1) -> int:
    found = re.search(pattern, _source(rel))
    assert found, f"{rel}: {pattern!r} not found: the doc test needs updating"
    return int(found.group(group).replace("_", ""))


def _dict_len(rel: str, name: str) -> int:
    for node in ast.walk(ast.parse(_source(rel))):
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                assert isinstance(node.value, ast.Dict)
                return len(node.value.keys)
    raise AssertionError(f"{rel}: no {name}")


def _n(value: int) -> str:
    return f"{value:,}"


def _quoted(fragment: str) -> None:
    """``fragment`` is in the doc, whatever the line breaks."""
    text = " ".join(_text().split())
    assert " ".join(fragment.split()) in text, (
        f"docs/reliability.md should say {fragment!r} (the code's count)"
    )


def test_the_doc_names_tests_at_all() -> None:
    assert len(_refs()) >= 40, _refs()


@pytest.mark.parametrize(("file", "name"), _refs(), ids=[f"{f}::{n}" for f, n in _refs()])
def test_every_named_test_exists(file: str, name: str) -> None:
    path = REPO / file
    assert path.is_file(), f"docs/reliability.md names {file}, which does not exist"
    assert name in _functions(path), f"docs/reliability.md names {file}::{name}, not defined there"


def test_every_hostile_and_fuzz_test_file_is_named() -> None:
    files = sorted(REPO.glob("tests/hostile/test_*.py")) + sorted(REPO.glob("fuzz/test_*.py"))
    assert len(files) >= 8, files
    named = {f for f, _ in _refs()}
    missing = [str(p.relative_to(REPO)) for p in files if str(p.relative_to(REPO)) not in named]
    assert missing == [], f"not named with a test in docs/reliability.md: {missing}"


def test_the_kill_counts_are_the_codes() -> None:
    long = _int("tests/hostile/test_crash.py", r"KILLS = (\d[\d_]*) if LONG else (\d+)")
    short = _int("tests/hostile/test_crash.py", r"KILLS = \d[\d_]* if LONG else (\d+)")
    _quoted(f"{short} kills (`KILLS`)")
    _quoted(f"{long} kills, 10 MB snapshots added")
    single = _int("tests/server/test_durability.py", r"KILLS = (\d+)")
    _quoted(f"{single} kills (`KILLS`)")


def test_the_load_counts_are_the_codes() -> None:
    rel = "tests/hostile/test_load.py"
    found = re.search(r"\((\d+), (\d+)\) if LONG else \((\d+), (\d+)\)", _source(rel))
    assert found
    idle_long, loris_long, idle, loris = (int(g) for g in found.groups())
    _quoted(f"{idle} idle, {loris} slowloris")
    _quoted(f"{idle_long} idle, {loris_long} slowloris")
    long = _int(rel, r"total = ([\d_]+) if LONG else ([\d_]+)")
    short = _int(rel, r"total = [\d_]+ if LONG else ([\d_]+)")
    _quoted(f"{_n(short)} connections")
    _quoted(f"{_n(long)} connections")
    bound_ms = round(float(re.findall(r"P99_BOUND_S = ([\d.]+)", _source(rel))[0]) * 1000)
    _quoted(f"p99 under {bound_ms} ms (`P99_BOUND_S`")
    found = re.search(r"duration = scaled\(([\d.]+), ([\d.]+)\)", _source(rel))
    assert found
    short_s, long_s = (round(float(g)) for g in found.groups())
    _quoted(f"slowloris, {short_s} s: about {short_s * 5} probes")
    _quoted(f"slowloris, {long_s} s: about {long_s * 5} probes")


def test_the_lock_hammer_counts_are_the_codes() -> None:
    rel = "tests/hostile/test_lock_concurrency.py"
    clients = _int(rel, r"CLIENTS = (\d+)")
    ttl_s = _int(rel, r"TTL_MS = (\d+)") // 1000
    _quoted(f"{clients} clients (`CLIENTS`)")
    _quoted(f"with a {ttl_s} s TTL")
    found = re.search(r"duration = scaled\(([\d.]+), ([\d.]+)\)", _source(rel))
    assert found
    short_s, long_s = (round(float(g)) for g in found.groups())
    _quoted(f"| {short_s} s (*measured*")
    _quoted(f"| {long_s} s |")


def test_the_credential_counts_are_the_codes() -> None:
    rel = "tests/hostile/test_security.py"
    bearer = _dict_len(rel, "BAD_AUTHORIZATION")
    force = _dict_len(rel, "FORCE_LEADER_REFUSED")
    _quoted(f"{bearer} spellings (`BAD_AUTHORIZATION`")
    _quoted(f"x 7 bearer endpoints = {bearer * 7} refusals")
    _quoted(f"{force} spellings (`FORCE_LEADER_REFUSED`) x 2 (with and without a body) = ")
    _quoted(f"= {force * 2} refusals")


def test_the_fuzz_counts_are_the_codes() -> None:
    examples = r"max_examples=(\d+)"
    wire = _int("fuzz/test_wire_bytes.py", examples)
    core_json = _int("fuzz/test_core_json.py", examples)
    sequences = _int("fuzz/test_core_sequences.py", examples)
    _quoted(f"+ {wire} generated (`max_examples`)")
    _quoted(f"{core_json} generated (`max_examples`) + 1 pinned")
    _quoted(f"{sequences} sequences (`max_examples`)")
    _quoted(f"{wire} + {core_json} + {sequences} generated examples in `make test`")
    low = _int("fuzz/test_core_sequences.py", r"min_size=(\d+), max_size=\d+\)")
    high = _int("fuzz/test_core_sequences.py", r"min_size=\d+, max_size=(\d+)\)")
    _quoted(f"of {low} to {high} events")
    rounds = _int("fuzz/run.py", r"ROUND_EXAMPLES = (\d+)")
    _quoted(f"rounds of {rounds} examples (`ROUND_EXAMPLES`)")
    corpus = len(list((REPO / "fuzz" / "corpus").glob("*.http")))
    _quoted(f"{corpus} corpus requests")


def test_the_simulation_counts_are_the_codes() -> None:
    seeds = _int("tests/sim/test_sim.py", r"SEEDS_IN_CI = ([\d_]+)")
    _quoted(f"runs {_n(seeds)} seeds (`SEEDS_IN_CI`")
    assert _int("Makefile", r"SEEDS \?= (\d+)") == seeds  # make sim runs as many
    for measure in ("crash_takeover", "hang_takeover", "partition_heal"):
        n = _int("tests/sim/test_sim.py", measure + r"\(samples=(\d+)\)")
        _quoted(f"| {n} samples |")


def test_the_simulated_fault_counts_are_what_the_seeds_draw() -> None:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.sim.scenario import draw_scenario

    seeds = _int("tests/sim/test_sim.py", r"SEEDS_IN_CI = ([\d_]+)")
    total: Counter[str] = Counter()
    seeded: Counter[str] = Counter()
    for seed in range(seeds):
        sc = draw_scenario(seed)
        kinds = Counter(f.kind for f in sc.faults)
        windows = Counter((p.start, p.end) for p in sc.partitions)
        kinds["two-way"] = sum(1 for n in windows.values() if n == 2)
        kinds["one-way"] = sum(1 for n in windows.values() if n == 1)
        kinds["partition"] = len(windows)
        for kind, n in kinds.items():
            total[kind] += n
            seeded[kind] += n > 0
        seeded["loss"] += sc.link.loss > 0
        seeded["jitter"] += sc.link.jitter_ns > 0
        seeded["both leader"] += sc.roles == ("leader", "leader")
        seeded["short ttl"] += sc.lock_ttl_ms < 30_000
    for kind, word in (("crash", "crashes"), ("pause", "pauses"), ("stall", "stalls")):
        _quoted(f"{total[kind]} {word} in {seeded[kind]} seeds")
    _quoted(f"{total['force']} control-plane forces in {seeded['force']} seeds")
    _quoted(
        f"{total['two-way']} two-way and {total['one-way']} one-way partitions "
        f"in {seeded['partition']} seeds"
    )
    _quoted(f"segment loss in {seeded['loss']} seeds")
    _quoted(f"jitter in {seeded['jitter']} seeds")
    _quoted(f"both engines started leader in {seeded['both leader']} seeds")
    _quoted(f"in {seeded['short ttl']} seeds")


def test_the_doc_is_linked_and_has_no_code_for_test_docs_to_run() -> None:
    assert "reliability.md" in (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "```python" not in _text()  # tests/test_docs.py would run it
