"""Nobody in without the token or the secret; nothing secret ever shown.

Over the wire, against a real server process logging at DEBUG: every bearer
endpoint refuses every hostile spelling of the credential (and changes
nothing: the live lock and the state are untouched); force-leader refuses the
API token in place of the secret; no response (headers or body), no error and
no log line of the server or of the client carries the token, the secret or
a lock id (except the grant's own answer). And the comparisons are the
constant-time ones: ``hmac.compare_digest`` on bytes, and no ``==`` on a
secret in the modules that check them.
"""

from __future__ import annotations

import ast
import base64
import hmac
import http.client
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile_util import REPO, SECRET, TOKEN, Server, canonical, server, snapshot_body, state_text

from fuzz.core_rig import TOKEN as CORE_TOKEN
from fuzz.core_rig import Rig, make_engine
from peersync_proto import Engine

LOCK = "/api/sync/reconcile-lock"

BAD_AUTHORIZATION: dict[str, list[str]] = {
    "missing": [],
    "empty": [""],
    "scheme-only": ["Bearer"],
    "empty-token": ["Bearer "],
    "wrong": ["Bearer wrong-token-0000"],
    "upper-cased": ["Bearer " + TOKEN.upper()],
    "swapped-case": ["Bearer " + TOKEN.swapcase()],
    "prefix": ["Bearer " + TOKEN[:-1]],
    "extended": ["Bearer " + TOKEN + "x"],
    "over-long": ["Bearer " + TOKEN * 300],
    "basic-base64": ["Basic " + base64.b64encode(f"user:{TOKEN}".encode()).decode()],
    "basic-raw": ["Basic " + TOKEN],
    "token-scheme": ["Token " + TOKEN],
    "no-scheme": [TOKEN],
    "the-secret": ["Bearer " + SECRET],
    "two-headers": ["Bearer " + TOKEN, "Bearer wrong"],
    "comma-list": ["Bearer " + TOKEN + ", Bearer " + TOKEN],
}


class Wire:
    """Raw http.client calls; every answer is kept for the leak check."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers: list[tuple[int, str, bytes]] = []

    def call(
        self,
        method: str,
        path: str,
        *,
        auth: list[str] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest(method, path)
            for value in ["Bearer " + TOKEN] if auth is None else auth:
                conn.putheader("Authorization", value)
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Type", "application/json")
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            raw = response.read()
            head = {k.lower(): v for k, v in response.getheaders()}
            self.answers.append((response.status, str(response.getheaders()), raw))
            return response.status, head, raw
        finally:
            conn.close()


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[tuple[Wire, Server]]:
    with server(tmp_path, log_level="DEBUG") as srv:
        yield Wire(srv.port), srv


def _endpoints(lock_id: str, body: bytes) -> list[tuple[str, str, dict[str, str], bytes | None]]:
    put_headers = {"X-Reconcile-Lock-Id": lock_id}
    return [
        ("GET", "/api/sync/health", {}, None),
        ("GET", "/api/sync/state", {}, None),
        ("PUT", "/api/sync/state", put_headers, body),
        ("POST", LOCK, {}, b'{"owner":"intruder"}'),
        ("PUT", f"{LOCK}/{lock_id}", {}, b'{"ttlMs":300000}'),
        ("DELETE", f"{LOCK}/{lock_id}", {}, None),
        ("GET", LOCK, {}, None),
    ]


def test_every_bearer_endpoint_refuses_every_hostile_credential_and_nothing_leaks(
    wire: tuple[Wire, Server],
) -> None:
    w, srv = wire
    status, _, raw = w.call("POST", LOCK, body=b'{"owner":"recon","ttlMs":120000}')
    assert status == 200
    grant = json.loads(raw)
    lock_id = grant["lockId"]
    state = {"scene": "before", "secretish": "not a credential"}
    status, _, _ = w.call("PUT", "/api/sync/state", headers={"X-Reconcile-Lock-Id": lock_id},
                          body=snapshot_body(state))  # fmt: skip
    assert status == 200
    intruder_state = snapshot_body({"scene": "intruder"}, epoch=9)
    refused = 0
    for name, auth in BAD_AUTHORIZATION.items():
        for method, path, headers, body in _endpoints(lock_id, intruder_state):
            status, head, raw = w.call(method, path, auth=auth, headers=headers, body=body)
            what = f"{method} {path.replace(lock_id, '<id>')} with {name} credential"
            assert status == 401, f"{what}: {status} {raw[:200]!r}"
            assert json.loads(raw)["code"] == "unauthorized", what
            assert head.get("www-authenticate") == 'Bearer realm="peersync"', what
            refused += 1
    assert refused == len(BAD_AUTHORIZATION) * 7
    # Nothing changed: the same holder, the same token, the same state.
    status, _, raw = w.call("GET", LOCK)
    held = json.loads(raw)
    assert held["held"] and held["owner"] == "recon"
    assert held["fencingToken"] == grant["fencingToken"] and held["ttlMs"] == 120000
    status, _, raw = w.call("GET", "/api/sync/state")
    assert state_text(raw) == canonical(state)
    # The RFC 7235 scheme is case-insensitive: the control proves the token works.
    assert w.call("GET", "/api/sync/health", auth=["bEaReR " + TOKEN])[0] == 200
    _hostile_bodies_are_not_echoed(w, lock_id)
    assert w.call("DELETE", f"{LOCK}/{lock_id}")[0] == 200
    assert srv.terminate() == 0
    _assert_nothing_leaked(w, srv, [lock_id], grant_bodies=1)


def _hostile_bodies_are_not_echoed(w: Wire, lock_id: str) -> None:
    """Error answers name a field; they do not quote a credential the client
    misplaced in a body. (An invalid ``formatVersion`` is quoted, cut to 40
    characters: see docs/reliability.md.)"""
    bodies = [
        b'{"owner": "' + TOKEN.encode() + b'", "ttlMs": "' + SECRET.encode() + b'"}',
        b'{"owner": "' + TOKEN.encode(),
        b'{"ttlMs": 5, "x": "' + lock_id.encode() + b'"}',
    ]
    for body in bodies:
        status, _, raw = w.call("POST", LOCK, body=body)
        assert status in (400, 409), raw
    status, _, raw = w.call(
        "PUT", "/api/sync/state", headers={"X-Reconcile-Lock-Id": lock_id},
        body=b'{"formatVersion": 1, "engineLabel": "' + TOKEN.encode() + b'"}',
    )  # fmt: skip
    assert status == 400, raw
    status, _, raw = w.call("PUT", f"{LOCK}/{lock_id}", body=b'{"ttlMs":"' + TOKEN.encode() + b'"}')
    assert status == 400, raw


def _assert_nothing_leaked(w: Wire, srv: Server, lock_ids: list[str], grant_bodies: int) -> None:
    log = srv.stderr()
    if lock_ids:  # lock notices are logged at DEBUG
        assert " DEBUG " in log, "the server did not log at debug level"
    for word in (TOKEN, SECRET, *lock_ids):
        assert word not in log, f"a credential or lock id in the server log: {word[:6]}..."
    shown = 0
    for status, headers, body in w.answers:
        text = headers + body.decode("utf-8", "replace")
        assert TOKEN not in text and SECRET not in text, (status, text[:300])
        if any(lock_id in text for lock_id in lock_ids):
            obj = json.loads(body)
            assert status == 200 and obj.get("lockId") in lock_ids, (status, text[:300])
            shown += 1
    assert shown == grant_bodies  # the grant and nothing else


FORCE_LEADER_REFUSED: dict[str, dict[str, str]] = {
    "missing": {},
    "empty": {"X-Control-Plane-Secret": ""},
    "api-token": {"X-Control-Plane-Secret": TOKEN},
    "bearer-token": {"Authorization": "Bearer " + TOKEN},
    "secret-as-bearer": {"Authorization": "Bearer " + SECRET},
    "upper-cased": {"X-Control-Plane-Secret": SECRET.upper()},
    "prefix": {"X-Control-Plane-Secret": SECRET[:-1]},
    "extended": {"X-Control-Plane-Secret": SECRET + "x"},
    "over-long": {"X-Control-Plane-Secret": SECRET * 300},
    "with-scheme": {"X-Control-Plane-Secret": "Bearer " + SECRET},
}


def test_force_leader_refuses_everything_but_the_exact_secret(wire: tuple[Wire, Server]) -> None:
    w, srv = wire
    for name, headers in FORCE_LEADER_REFUSED.items():
        for body in (None, b'{"reason":"' + name.encode() + b'"}'):
            status, _, raw = w.call(
                "POST", "/api/peer/force-leader", auth=[], headers=headers, body=body
            )
            assert (status, json.loads(raw)["code"]) == (401, "unauthorized"), name
        status, _, raw = w.call("GET", "/api/peer/health", auth=[])
        assert json.loads(raw)["role"] == "follower", name
    status, _, raw = w.call(
        "POST", "/api/peer/force-leader", auth=[], headers={"X-Control-Plane-Secret": SECRET}
    )
    assert status == 200 and json.loads(raw)["previousRole"] == "follower"
    assert srv.terminate() == 0
    _assert_nothing_leaked(w, srv, [], grant_bodies=0)


def test_the_client_never_logs_a_credential_or_a_lock_id(
    wire: tuple[Wire, Server], caplog: pytest.LogCaptureFixture
) -> None:
    from peersync_server import PeerSyncClient

    _, srv = wire
    caplog.set_level(logging.DEBUG, logger="peersync_server.client")
    with PeerSyncClient(srv.url, api_token=TOKEN, control_plane_secret=SECRET) as client:
        grant = client.acquire_lock(owner="recon")
        client.refresh_lock(grant.lock_id)
        client.apply_state(snapshot_body({"n": 1}), grant.lock_id)
        client.release_lock(grant.lock_id)
        with pytest.raises(Exception) as gone:
            client.release_lock(grant.lock_id)
        client.force_leader(reason="test")
        text = caplog.text + repr(grant) + str(gone.value) + repr(gone.value)
    assert caplog.records, "the client logged nothing at debug level"
    for word in (TOKEN, SECRET, grant.lock_id):
        assert word not in text


# -- constant time -------------------------------------------------------------------


def test_credentials_and_lock_ids_are_compared_with_compare_digest_on_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[type, type, str]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        import inspect

        caller = inspect.stack()[1].function
        calls.append((type(a), type(b), caller))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    rig = Rig(make_engine())
    lock_id = rig.acquire()
    rig.send("PUT", f"{LOCK}/{lock_id}")
    rig.send("PUT", f"{LOCK}/{'0' * 32}")
    rig.send("PUT", "/api/sync/state", headers=[
        (b"authorization", b"Bearer " + CORE_TOKEN), (b"x-reconcile-lock-id", lock_id.encode())
    ])  # fmt: skip
    rig.send("POST", "/api/peer/force-leader", headers=[(b"x-control-plane-secret", b"nope")])
    rig.send("DELETE", f"{LOCK}/{lock_id}")
    sites = {caller for _, _, caller in calls}
    assert {"check_bearer", "check_control_plane", "_same_id"} <= sites, sites
    assert all(a is bytes and b is bytes for a, b, _ in calls), calls


def _is_len(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len"


SECRET_NAMES = ("token", "secret", "lock_id", "given", "held")


@pytest.mark.parametrize("module", ["_requests.py", "_lock.py", "_engine.py"])
def test_no_equality_test_on_a_credential_or_lock_id(module: str) -> None:
    """An ``==`` on a secret would leak its prefix through timing."""
    tree = ast.parse((REPO / "peersync_proto" / module).read_text())
    offenders = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops
        ):
            names = [
                n.id if isinstance(n, ast.Name) else n.attr
                for operand in (node.left, *node.comparators)
                if not _is_len(operand)  # a length is public
                for n in ast.walk(operand)
                if isinstance(n, ast.Name | ast.Attribute)
            ]
            names = [name for name in names if not name.isupper()]  # constants are public
            if any(s in name.lower() for name in names for s in SECRET_NAMES):
                offenders.append(f"{module}:{node.lineno}: {ast.unparse(node)}")
    allowed = {
        # The engine refuses an entropy source that repeats the last id: both
        # sides are ids it drew itself, never a client's guess.
        "_engine.py: lock_id == self._last_lock_id",
    }
    offenders = [o for o in offenders if f"{module}: {o.split(': ', 1)[1]}" not in allowed]
    assert offenders == [], offenders


def test_engine_view_and_outputs_never_carry_the_lock_id() -> None:
    rig = Rig(make_engine())
    lock_id = rig.acquire()
    engine: Engine = rig.engine
    assert lock_id not in repr(engine.view())
    assert all(lock_id not in repr(e) for e in rig.effects)
