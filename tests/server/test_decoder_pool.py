"""Snapshot decoding in a worker process: results, errors, a dying worker."""

from __future__ import annotations

import os
import signal

import pytest
from srv_util import canonical, snapshot_body

from peersync_proto import DecodedSnapshot, RemoteProtocolError
from peersync_server._decoder_pool import DecoderPool, DecoderUnavailable


@pytest.fixture
def pool() -> DecoderPool:
    p = DecoderPool()
    p.warm_up()
    assert p.wait_warm(30)
    yield p  # type: ignore[misc]
    p.close()


def test_worker_returns_the_decoded_snapshot_with_canonical_state(pool: DecoderPool) -> None:
    state = {"b": [1, 2], "a": "\u00e9"}
    got = pool.decode(snapshot_body(state, epoch=3, seq=8))
    assert isinstance(got, DecodedSnapshot)
    assert got.state == canonical(state)
    assert (got.epoch, got.last_command_seq) == (3, 8)


def test_worker_hands_back_the_remote_protocol_error(pool: DecoderPool) -> None:
    got = pool.decode(b'{"formatVersion": 1')
    assert isinstance(got, RemoteProtocolError)
    assert (got.status, got.code) == (400, "invalid_json")


def test_a_killed_worker_is_reported_then_replaced(pool: DecoderPool) -> None:
    inner = pool._pool
    assert inner is not None
    for pid in list(inner._processes):  # type: ignore[attr-defined]
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(DecoderUnavailable):
        pool.decode(snapshot_body({"k": 1}))
    got = pool.decode(snapshot_body({"k": 2}))  # a fresh worker
    assert isinstance(got, DecodedSnapshot)


def test_closed_pool_refuses(pool: DecoderPool) -> None:
    pool.close()
    with pytest.raises(DecoderUnavailable):
        pool.decode(b"{}")
    assert pool.wait_warm(0.1) in (True, False)
