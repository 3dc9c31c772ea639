"""``peersync reconcile URL_A URL_B`` as a subprocess against two real engines
that do not watch each other (a control plane heals their split brain)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from peersync_proto import Role, canonical_json, encode_snapshot
from peersync_proto._canonical import JSONValue
from peersync_server._pair import EnginePair, EngineProcess


@pytest.fixture
def lone_pair(tmp_path: Path) -> Iterator[tuple[EngineProcess, EngineProcess, Path]]:
    """Two engines, both leader, no --peer: nothing heals them but us."""
    with EnginePair(tmp_path, own_root=False):  # writes the token and secret files
        engines = []
        for label in ("a", "b"):
            engine = EngineProcess(
                label,
                root=tmp_path,
                token_file=tmp_path / "api-token",
                secret_file=tmp_path / "cp-secret",
                peer_url=None,
            )
            engine.start("leader")
            engines.append(engine)
        try:
            yield engines[0], engines[1], tmp_path / "api-token"
        finally:
            for engine in engines:
                engine.kill9()


def _reconcile(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "peersync_server.cli", "reconcile", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _seed(engine: EngineProcess, pair_state: dict[str, JSONValue], seq: int) -> str:
    with engine.client(timeout=5) as client:
        health = client.peer_health()
        body = encode_snapshot(
            engine_label=engine.label, role=Role.FOLLOWER, epoch=health.epoch,
            captured_at_us=1, last_command_seq=seq, last_executed_seq=seq,
            program_source="cam", preview_source="", state=canonical_json(pair_state),
        )  # fmt: skip
        grant = client.acquire_lock()
        client.apply_state(body, grant.lock_id)
        client.release_lock(grant.lock_id)
        return client.get_state().checksum


def test_reconcile_cli_copies_the_winner_onto_the_loser_and_prints_each_step(
    lone_pair: tuple[EngineProcess, EngineProcess, Path],
) -> None:
    a, b, token_file = lone_pair
    _seed(a, {"scene": "A"}, 10)
    winner_sum = _seed(b, {"scene": "B"}, 20)  # equal epochs: b's higher seq wins
    done = _reconcile(a.url, b.url, "--api-token-file", str(token_file), "--owner", "ops")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    steps = [line["step"] for line in lines if "step" in line]
    assert lines[:2] == [
        {"step": "identified", "target": "a", "detail": f"URL_A {a.url}"},
        {"step": "identified", "target": "b", "detail": f"URL_B {b.url}"},
    ]
    assert steps[2:4] == ["acquiring_first", "acquiring_second"]  # a's lock, then b's
    assert "fetching" in steps and "applying" in steps
    assert steps.index("releasing_second") < steps.index("releasing_first")
    assert lines[-1] == {"outcome": "reconciled", "winner": "b", "loser": "a",
                         "epoch": lines[-1]["epoch"], "seq": 20}  # fmt: skip
    with a.client() as ca, b.client() as cb:
        assert ca.get_state().checksum == cb.get_state().checksum == winner_sum
        assert ca.peer_health().role is Role.FOLLOWER  # the loser stepped down
        assert cb.peer_health().role is Role.LEADER
        assert not ca.lock_status().held and not cb.lock_status().held  # both released
    token = token_file.read_text().strip()
    assert token not in done.stdout + done.stderr


def test_the_reconcile_output_in_docs_client_md_is_what_the_command_prints(
    lone_pair: tuple[EngineProcess, EngineProcess, Path],
) -> None:
    a, b, token_file = lone_pair
    doc = (Path(__file__).resolve().parents[2] / "docs" / "client.md").read_text("utf-8")
    found = re.search(r'^```\n(\{"step": "identified".*?)^```', doc, re.S | re.M)
    assert found is not None, "no reconcile output block in docs/client.md"
    shown = [json.loads(line) for line in found.group(1).splitlines()]
    _seed(a, {"scene": "A"}, 10)
    _seed(b, {"scene": "B"}, 120)  # the doc's run: b wins, and is given first
    done = _reconcile(b.url, a.url, "--api-token-file", str(token_file))
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [sorted(x) for x in printed] == [sorted(x) for x in shown]  # the same fields
    steps = [(x.get("step"), x.get("target")) for x in printed]
    assert steps == [(x.get("step"), x.get("target")) for x in shown]
    assert [x["detail"].split()[0] for x in printed[:2]] == ["URL_A", "URL_B"]
    for got, doc_line in zip(printed[2:-1], shown[2:-1], strict=True):  # numbers aside
        assert re.sub(r"\d+", "N", got["detail"]) == re.sub(r"\d+", "N", doc_line["detail"])
    assert {k: printed[-1][k] for k in ("outcome", "winner", "loser", "seq")} == {
        k: shown[-1][k] for k in ("outcome", "winner", "loser", "seq")
    }


def _last_fencing_token(engine: EngineProcess) -> int | None:
    with engine.client() as client:
        status = client.lock_status()
    assert not status.held
    return status.last_fencing_token


def test_reconcile_cli_takes_a_lock_first_even_when_b_is_given_first(
    lone_pair: tuple[EngineProcess, EngineProcess, Path],
) -> None:
    a, b, token_file = lone_pair
    with a.client() as ca:
        held = ca.acquire_lock(owner="other-operator", ttl_ms=30_000)
    b_floor = _last_fencing_token(b)
    done = _reconcile(b.url, a.url, "--api-token-file", str(token_file), "--max-attempts", "1")
    assert done.returncode == 1, done.stdout
    assert json.loads(done.stderr.splitlines()[-1])["code"] == "busy"
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(x["step"], x["target"]) for x in lines[:3]] == [
        ("identified", "b"), ("identified", "a"), ("acquiring_first", "a"),
    ]  # fmt: skip
    assert "acquiring_second" not in [x.get("step") for x in lines]
    assert _last_fencing_token(b) == b_floor  # b's lock was never granted: a's came first
    with a.client() as ca:
        assert ca.lock_status().fencing_token == held.fencing_token  # the holder kept it
        ca.release_lock(held.lock_id)


def test_two_reconcilers_given_the_urls_in_opposite_orders_both_finish(
    lone_pair: tuple[EngineProcess, EngineProcess, Path],
) -> None:
    a, b, token_file = lone_pair
    _seed(a, {"scene": "A"}, 10)
    winner_sum = _seed(b, {"scene": "B"}, 20)
    argv = [sys.executable, "-m", "peersync_server.cli", "reconcile"]
    runs = [
        subprocess.Popen(
            [*argv, *urls, "--api-token-file", str(token_file), "--max-attempts", "8"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for urls in ((a.url, b.url), (b.url, a.url))
    ]
    pairs = []
    for run in runs:
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, (out, err)  # no label_mismatch, no busy
        outcome = json.loads(out.splitlines()[-1])
        pairs.append((outcome["winner"], outcome["loser"]))
        steps = [json.loads(line) for line in out.splitlines()]
        firsts = [x["target"] for x in steps if x.get("step") == "acquiring_first"]
        assert firsts and set(firsts) == {"a"}
    # The first to finish copied b onto a; the other found them equal (seq tie: a wins).
    assert ("b", "a") in pairs
    with a.client() as ca, b.client() as cb:
        assert ca.get_state().checksum == cb.get_state().checksum == winner_sum
        assert not ca.lock_status().held and not cb.lock_status().held


def test_reconcile_cli_given_one_engine_twice_fails_before_any_lock(
    lone_pair: tuple[EngineProcess, EngineProcess, Path],
) -> None:
    a, _, token_file = lone_pair
    floor = _last_fencing_token(a)
    done = _reconcile(a.url, a.url, "--api-token-file", str(token_file))
    assert done.returncode == 1
    assert json.loads(done.stderr.splitlines()[-1])["code"] == "label_mismatch"
    assert json.loads(done.stdout.splitlines()[-1])["outcome"] == "failed"
    assert _last_fencing_token(a) == floor


def test_reconcile_cli_fails_with_exit_1_when_an_engine_is_unreachable(
    lone_pair: tuple[EngineProcess, EngineProcess, Path],
) -> None:
    a, b, token_file = lone_pair
    b.kill9()
    done = _reconcile(a.url, b.url, "--api-token-file", str(token_file))
    assert done.returncode == 1
    assert json.loads(done.stdout.splitlines()[-1])["outcome"] == "failed"
    assert json.loads(done.stderr.splitlines()[-1])["code"] == "call_failed"
    with a.client() as ca:
        assert not ca.lock_status().held  # what it held, it released


def test_reconcile_cli_without_a_token_is_refused_and_changes_nothing(
    lone_pair: tuple[EngineProcess, EngineProcess, Path],
) -> None:
    a, b, _ = lone_pair
    done = _reconcile(a.url, b.url)
    assert done.returncode == 1
    assert json.loads(done.stdout.splitlines()[-1])["outcome"] == "failed"
    with a.client() as ca, b.client() as cb:
        assert ca.peer_health().role is Role.LEADER and cb.peer_health().role is Role.LEADER


def test_reconcile_cli_rejects_a_bad_url_as_a_usage_error() -> None:
    done = _reconcile("https://127.0.0.1:1", "http://127.0.0.1:2")
    assert done.returncode == 2
    assert "peersync: error" in done.stderr
