# Invariant: any bytes sent on one connection to the real server (h11 plus our
# bridge), without the credentials, get only a 200 from peer health or a
# 4xx/5xx (never 500) with the contract's JSON error body, or a close; never an
# unhandled exception in the server's log, a worker thread that does not come
# back, or a changed engine (role, epoch, fencing token, lock, host status,
# pending work); and the same bytes sent whole and one byte per send get the
# same answers (status and code, in order).
"""Raw bytes into one server connection (see the invariant above)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fuzz.wire_rig import (
    ErrorLog,
    check_answers,
    corpus,
    engine_facts,
    exchange,
    fuzz_server,
    parse_answers,
    thread_count,
    wait_idle,
)
from peersync_server import PeerSyncServer

CORPUS = corpus()

METHODS = [b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"get", b"PATCH", b"X" * 40]
TARGETS = [
    b"/api/peer/health",
    b"/api/peer/force-leader",
    b"/api/sync/health",
    b"/api/sync/state",
    b"/api/sync/reconcile-lock",
    b"/api/sync/reconcile-lock/" + b"0" * 32,
    b"/api/sync/reconcile-lock/",
    b"/api/sync/reconcile-lock/a/b",
    b"/",
    b"*",
    b"http://x/api/peer/health",
    b"/api/peer/health?q=\xff",
    b"/%00",
]
HEADERS = [
    b"Host: x",
    b"Content-Type: application/json",
    b"Content-Type: text/plain",
    b"Content-Length: 2",
    b"Content-Length: 0",
    b"Content-Length: 70000",
    b"Transfer-Encoding: chunked",
    b"Expect: 100-continue",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Authorization: Bearer wrong",
    b"Authorization: Basic d3Jvbmc=",
    b"X-Control-Plane-Secret: wrong",
    b"X-Reconcile-Lock-Id: " + b"0" * 32,
    b"X-Junk: \x01\x7f",
    b"Bad Header",
    b": empty name",
]
BODIES = [
    b"",
    b"{}",
    b'{"owner":"x"}',
    b"0\r\n\r\n",
    b"2\r\n{}\r\n0\r\n\r\n",
    b"\xff" * 8,
    b"[" * 80,
]


@st.composite
def structured(draw: st.DrawFn) -> bytes:
    """A plausible request with hostile parts, pipelined up to three times."""
    out = b""
    for _ in range(draw(st.integers(1, 3))):
        line = b" ".join(
            [
                draw(st.sampled_from(METHODS)),
                draw(st.sampled_from(TARGETS)),
                draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 x"])),
            ]
        )
        headers = draw(st.lists(st.sampled_from(HEADERS), max_size=5))
        eol = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
        out += line + eol + b"".join(h + eol for h in headers) + eol + draw(st.sampled_from(BODIES))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A corpus entry with a few bytes flipped, inserted, cut or repeated."""
    data = bytearray(draw(st.sampled_from([d for _, d in CORPUS])))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 3))
        at = draw(st.integers(0, len(data)))
        if op == 0 and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == 1:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == 2:
            del data[at : at + draw(st.integers(1, 64))]
        else:
            data += data[:at]
    return bytes(data[:4096])


hostile = st.binary(max_size=200) | structured() | mutated()


@pytest.fixture(scope="module")
def wire() -> Iterator[tuple[PeerSyncServer, ErrorLog]]:
    with fuzz_server() as pair:
        yield pair


def _check(server: PeerSyncServer, errors: ErrorLog, data: bytes) -> list[tuple[int, str | None]]:
    facts = engine_facts(server.driver.view())
    keys = []
    for bytewise in (False, True):
        answers = parse_answers(exchange(server.port, data, bytewise=bytewise))
        check_answers(answers)
        keys.append([a.key for a in answers])
        assert wait_idle(server), "a worker thread did not come back"
    assert not errors.records, [r.getMessage() for r in errors.records]
    assert engine_facts(server.driver.view()) == facts, "hostile bytes changed the engine"
    whole, bytewise_keys = keys
    assert whole == bytewise_keys, f"whole {whole} != one byte at a time {bytewise_keys}"
    return whole


@pytest.mark.parametrize(("name", "data"), CORPUS, ids=[n for n, _ in CORPUS])
def test_corpus_request_gets_its_expected_answer_whole_and_bytewise(
    wire: tuple[PeerSyncServer, ErrorLog], name: str, data: bytes
) -> None:
    server, errors = wire
    answers = _check(server, errors, data)
    expected = name.split("-", 1)[0]
    if expected == "close":
        assert answers == [], answers
    else:
        assert answers and answers[0][0] == int(expected), answers


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
@given(data=hostile)
def test_hostile_bytes_get_an_error_or_a_close_and_change_nothing(
    wire: tuple[PeerSyncServer, ErrorLog], data: bytes
) -> None:
    check_hostile(wire, data)


def check_hostile(wire: tuple[PeerSyncServer, ErrorLog], data: bytes) -> None:
    server, errors = wire
    before = thread_count()
    event(str(_check(server, errors, data)[:1]))
    assert thread_count() <= before + server.config.max_connections
