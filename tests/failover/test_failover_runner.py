"""The reconcile runner against in-process engines: it performs the machine's
calls over HTTP, heals a split brain, and never outlives its run limit."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from peersync_proto import (
    Call,
    Reconciled,
    ReconcileFailed,
    ReconcilerConfig,
    Role,
    canonical_json,
    encode_snapshot,
)
from peersync_proto._reconcile_events import ReconcileOutput
from peersync_server import PeerSyncServer, ServerConfig
from peersync_server._proxy import FaultProxy, ProxyMode
from peersync_server._reconcile_runner import Endpoint, describe, run_reconcile
from peersync_server.client import PeerSyncClient

TOKEN = b"runner-t0k"


@pytest.fixture
def engines() -> Iterator[dict[str, PeerSyncServer]]:
    servers = {
        label: PeerSyncServer(
            ServerConfig(label=label, port=0, role=Role.LEADER, api_token=TOKEN, decoder_workers=1)
        )
        for label in ("a", "b")
    }
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


def _seed(server: PeerSyncServer, scene: str, seq: int) -> str:
    with PeerSyncClient(server.url, api_token=TOKEN) as client:
        body = encode_snapshot(
            engine_label=server.config.label, role=Role.FOLLOWER, epoch=0, captured_at_us=1,
            last_command_seq=seq, last_executed_seq=seq, program_source="cam",
            preview_source="", state=canonical_json({"scene": scene}),
        )  # fmt: skip
        grant = client.acquire_lock()
        client.apply_state(body, grant.lock_id)
        client.release_lock(grant.lock_id)
        return client.get_state().checksum


def test_runner_heals_a_split_brain_and_shows_no_lock_id(
    engines: dict[str, PeerSyncServer],
) -> None:
    _seed(engines["a"], "A", 7)
    winner = _seed(engines["b"], "B", 9)
    seen: list[ReconcileOutput] = []
    outcome = run_reconcile(
        {label: Endpoint(url=s.url, api_token=TOKEN) for label, s in engines.items()},
        config=ReconcilerConfig(owner="runner-test"),
        entropy=os.urandom,
        on_output=seen.append,
    )
    assert outcome == Reconciled(winner="b", loser="a", epoch=0, seq=9)
    for label, server in engines.items():
        with PeerSyncClient(server.url, api_token=TOKEN) as client:
            assert client.get_state().checksum == winner
            assert not client.lock_status().held
            assert client.peer_health().role is (Role.LEADER if label == "b" else Role.FOLLOWER)
    calls = [o for o in seen if isinstance(o, Call)]
    assert [(c.target, c.method) for c in calls[:2]] == [("a", "POST"), ("b", "POST")]
    shown = " ".join(str(describe(o)) for o in seen)
    assert "lockId" not in shown and all(describe(c) is None for c in calls)


def test_runner_gives_up_at_its_run_limit_even_when_a_call_hangs(
    engines: dict[str, PeerSyncServer],
) -> None:
    with FaultProxy(engines["b"].port) as proxy:
        proxy.set_mode(ProxyMode.BLACKHOLE)  # b accepts and never answers
        started = time.monotonic()
        outcome = run_reconcile(
            {
                "a": Endpoint(url=engines["a"].url, api_token=TOKEN),
                "b": Endpoint(url=proxy.url, api_token=TOKEN),
            },
            config=ReconcilerConfig(),
            entropy=os.urandom,
            run_limit_s=0.5,
        )
        took = time.monotonic() - started
    assert isinstance(outcome, ReconcileFailed) and "limit" in outcome.detail
    assert 0.5 <= took < 2.0


def test_runner_refuses_an_engine_without_a_url() -> None:
    with pytest.raises(ValueError, match="no URL"):
        run_reconcile(
            {"a": Endpoint(url="http://127.0.0.1:1")},
            config=ReconcilerConfig(),
            entropy=os.urandom,
        )
