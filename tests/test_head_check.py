"""``check_head``: what a wrapper answers from a request head before reading a
body, in the core's order (route and auth, then size, then media type), and
the same answer the engine gives on the whole request."""

from __future__ import annotations

import os

import pytest

from peersync_proto import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_SNAPSHOT_BYTES,
    Engine,
    EngineConfig,
    HeadCheck,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    Response,
    check_head,
    error_response,
)

TOKEN = b"t0k-head"
SECRET = b"s3c-head"
CONFIG = EngineConfig(label="a", api_token=TOKEN, control_plane_secret=SECRET)
BEARER = [(b"authorization", b"Bearer " + TOKEN)]
CP = [(b"x-control-plane-secret", SECRET)]
JSON = [(b"content-type", b"application/json")]
LOCK = "/api/sync/reconcile-lock/" + "0" * 32


def _code(err: RemoteProtocolError | None) -> tuple[int, str] | None:
    return None if err is None else (err.status, err.code)


# -- open ----------------------------------------------------------------------


def test_peer_health_is_open_whatever_the_auth_headers_say() -> None:
    check = check_head(
        CONFIG, "GET", "/api/peer/health", [(b"authorization", b"x")], has_body=False
    )
    assert check == HeadCheck(limit=DEFAULT_MAX_BODY_BYTES)
    assert check.refusal(0) is None


# -- control plane ---------------------------------------------------------------


def test_force_leader_without_a_configured_secret_is_501_before_the_size() -> None:
    config = EngineConfig(label="a", api_token=TOKEN)
    check = check_head(config, "POST", "/api/peer/force-leader", CP, has_body=True)
    assert _code(check.error) == (501, "not_configured")
    assert _code(check.refusal(10**9)) == (501, "not_configured")


def test_force_leader_with_a_wrong_secret_is_401_without_a_bearer_challenge() -> None:
    wrong = [(b"x-control-plane-secret", b"nope"), *BEARER]  # the bearer token does not count
    check = check_head(CONFIG, "POST", "/api/peer/force-leader", wrong, has_body=False)
    assert check.error is not None and _code(check.error) == (401, "unauthorized")
    assert check.error.headers == ()


def test_force_leader_with_the_secret_passes() -> None:
    check = check_head(CONFIG, "POST", "/api/peer/force-leader", CP + JSON, has_body=True)
    assert check == HeadCheck(limit=DEFAULT_MAX_BODY_BYTES)


# -- bearer ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [[], [(b"authorization", b"Bearer wrong")], [(b"authorization", b"Basic " + TOKEN)], CP],
    ids=["missing", "wrong", "other-scheme", "control-plane-secret"],
)
def test_bearer_endpoint_without_the_token_is_401_with_a_challenge(
    headers: list[tuple[bytes, bytes]],
) -> None:
    check = check_head(CONFIG, "PUT", "/api/sync/state", headers, has_body=True)
    assert check.error is not None and _code(check.error) == (401, "unauthorized")
    assert check.error.headers[0][0] == b"www-authenticate"
    assert check.media_error is None  # never looked at: auth comes first
    assert check.snapshot and check.limit == DEFAULT_MAX_SNAPSHOT_BYTES


def test_bearer_endpoint_on_an_engine_with_no_token_is_401() -> None:
    check = check_head(EngineConfig(label="a"), "GET", "/api/sync/health", BEARER, has_body=False)
    assert _code(check.error) == (401, "unauthorized")


def test_no_auth_mode_lets_a_bearer_endpoint_through() -> None:
    config = EngineConfig(label="a", no_auth=True)
    assert check_head(config, "GET", "/api/sync/health", [], has_body=False).error is None


def test_headers_are_taken_as_a_request_takes_them_str_and_any_case() -> None:
    headers = [("Authorization", "bearer " + TOKEN.decode()), ("Content-Type", "Application/JSON")]
    check = check_head(CONFIG, "POST", "/api/sync/reconcile-lock", headers, has_body=True)
    assert check == HeadCheck(limit=DEFAULT_MAX_BODY_BYTES)


# -- route -------------------------------------------------------------------------


def test_unknown_path_is_404_before_auth() -> None:
    check = check_head(CONFIG, "PUT", "/api/nope", [], has_body=True)
    assert _code(check.error) == (404, "not_found")
    assert check.limit == DEFAULT_MAX_BODY_BYTES and not check.snapshot


def test_wrong_method_is_405_with_allow() -> None:
    check = check_head(CONFIG, "PATCH", "/api/sync/state?x=1", BEARER, has_body=True)
    assert check.error is not None and _code(check.error) == (405, "method_not_allowed")
    assert (b"allow", b"GET, PUT") in check.error.headers


# -- size --------------------------------------------------------------------------


def test_a_declared_length_over_the_limit_is_413_naming_the_limit() -> None:
    check = check_head(CONFIG, "POST", "/api/sync/reconcile-lock", BEARER + JSON, has_body=True)
    assert check.refusal(DEFAULT_MAX_BODY_BYTES) is None
    err = check.refusal(DEFAULT_MAX_BODY_BYTES + 1)
    assert err is not None and _code(err) == (413, "body_too_large")
    assert err.extra == {"limitBytes": DEFAULT_MAX_BODY_BYTES}


def test_the_snapshot_route_has_the_snapshot_limit() -> None:
    config = EngineConfig(label="a", api_token=TOKEN, max_snapshot_bytes=1000)
    check = check_head(config, "PUT", "/api/sync/state", BEARER + JSON, has_body=True)
    assert check == HeadCheck(limit=1000, snapshot=True)
    assert _code(check.refusal(1001)) == (413, "body_too_large")
    refresh = check_head(config, "PUT", LOCK, BEARER + JSON, has_body=True)
    assert refresh == HeadCheck(limit=DEFAULT_MAX_BODY_BYTES)


def test_a_chunked_body_of_unknown_length_passes_the_size_check_until_counted() -> None:
    check = check_head(CONFIG, "PUT", "/api/sync/state", BEARER + JSON, has_body=True)
    assert check.refusal(None) is None
    assert _code(check.refusal(DEFAULT_MAX_SNAPSHOT_BYTES + 1)) == (413, "body_too_large")


# -- media type ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [[], [(b"content-type", b"text/plain")], [(b"content-type", b"application/json; x=y")]],
    ids=["missing", "text", "other-param"],
)
def test_a_body_not_sent_as_json_is_415_after_the_size(
    headers: list[tuple[bytes, bytes]],
) -> None:
    check = check_head(CONFIG, "PUT", "/api/sync/state", BEARER + headers, has_body=True)
    assert check.error is None
    assert _code(check.refusal(10)) == (415, "unsupported_media_type")
    assert _code(check.refusal(DEFAULT_MAX_SNAPSHOT_BYTES + 1)) == (413, "body_too_large")


def test_the_media_type_is_not_checked_without_a_body_or_where_no_body_is_read() -> None:
    assert check_head(CONFIG, "POST", "/api/sync/reconcile-lock", BEARER, has_body=False) == (
        HeadCheck(limit=DEFAULT_MAX_BODY_BYTES)
    )
    assert check_head(CONFIG, "DELETE", LOCK, BEARER, has_body=True).media_error is None


# -- the value ---------------------------------------------------------------------------


def test_a_head_check_is_validated_on_construction() -> None:
    with pytest.raises(LocalProtocolError):
        HeadCheck(limit=0)
    with pytest.raises(TypeError):
        HeadCheck(error="401", limit=1)  # type: ignore[arg-type]


# -- agreement with the engine --------------------------------------------------------------


@pytest.mark.parametrize(
    "method,target,headers,body",
    [
        ("PUT", "/api/nope", BEARER + JSON, b"{}"),
        ("DELETE", "/api/sync/state", BEARER, b""),
        ("POST", "/api/peer/force-leader", JSON, b"{}"),
        ("PUT", "/api/sync/state", JSON, b"{}"),
        ("POST", "/api/sync/reconcile-lock", BEARER + JSON, b" " * (DEFAULT_MAX_BODY_BYTES + 1)),
        ("POST", "/api/sync/reconcile-lock", [*BEARER, (b"content-type", b"text/plain")], b"{}"),
        ("PUT", LOCK, BEARER, b"{}"),
    ],
)
def test_a_refusal_is_the_answer_the_engine_gives_the_whole_request(
    method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    check = check_head(CONFIG, method, target, headers, has_body=bool(body))
    refusal = check.refusal(len(body))
    assert refusal is not None
    engine = Engine(CONFIG, now=1, entropy=os.urandom)
    request = Request(now=2, request_id=7, method=method, target=target, headers=headers, body=body)
    (answer,) = engine.handle(request)
    assert isinstance(answer, Response)
    assert answer == error_response(7, refusal)
