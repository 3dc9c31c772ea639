"""Reading a request: auth, size, media type, and the fields of small bodies.

Each check raises :class:`RemoteProtocolError` with the contract's status and
code; the engine calls them in the contract's order.
"""

from __future__ import annotations

import hmac
from typing import Any

from ._config import (
    DEFAULT_LOCK_OWNER,
    DEFAULT_LOCK_TTL_MS,
    MAX_LOCK_TTL_MS,
    MAX_OWNER_CHARS,
    MAX_REASON_CHARS,
    MIN_LOCK_TTL_MS,
)
from ._errors import RemoteProtocolError
from ._events import Headers
from ._json import decode_json

__all__ = [
    "body_too_large",
    "check_bearer",
    "check_body_size",
    "check_content_type",
    "check_control_plane",
    "header_values",
    "parse_acquire",
    "parse_force_leader",
    "parse_refresh",
    "read_object",
]

WWW_AUTHENTICATE = (b"www-authenticate", b'Bearer realm="peersync"')


def header_values(headers: Headers, name: bytes) -> list[bytes]:
    return [value for key, value in headers if key == name]


def _unauthorized(message: str, *, bearer: bool) -> RemoteProtocolError:
    return RemoteProtocolError(
        message,
        status=401,
        code="unauthorized",
        headers=(WWW_AUTHENTICATE,) if bearer else (),
    )


def check_bearer(headers: Headers, token: bytes | None, *, no_auth: bool) -> None:
    """``Authorization: Bearer <token>``; the scheme is case-insensitive (RFC 7235),
    the token is compared exactly and in constant time."""
    if no_auth:
        return
    if token is None:
        raise _unauthorized("This engine has no API token configured.", bearer=True)
    values = header_values(headers, b"authorization")
    if len(values) != 1:
        raise _unauthorized("A bearer token is required.", bearer=True)
    scheme, _, given = values[0].partition(b" ")
    if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(b" "), token):
        raise _unauthorized("The bearer token is missing or wrong.", bearer=True)


def check_control_plane(headers: Headers, secret: bytes | None) -> None:
    if secret is None:
        raise RemoteProtocolError(
            "No control-plane secret is configured on this engine.",
            status=501,
            code="not_configured",
        )
    values = header_values(headers, b"x-control-plane-secret")
    if len(values) != 1 or not hmac.compare_digest(values[0], secret):
        raise _unauthorized("The control-plane secret is missing or wrong.", bearer=False)


def body_too_large(limit: int) -> RemoteProtocolError:
    """Contract 2: ``413 body_too_large``, naming the limit."""
    return RemoteProtocolError(
        f"The body is larger than {limit} bytes.",
        status=413,
        code="body_too_large",
        extra={"limitBytes": limit},
    )


def check_body_size(body: bytes, limit: int) -> None:
    if len(body) > limit:
        raise body_too_large(limit)


def check_content_type(headers: Headers) -> None:
    """A request with a body must say ``application/json`` (``charset=utf-8`` allowed)."""
    values = header_values(headers, b"content-type")
    if len(values) == 1:
        media, *params = (part.strip(b" \t").lower() for part in values[0].split(b";"))
        if media == b"application/json" and all(
            p.replace(b'"', b"") in (b"charset=utf-8",) for p in params
        ):
            return
    raise RemoteProtocolError(
        "The body must be sent as Content-Type: application/json.",
        status=415,
        code="unsupported_media_type",
    )


def read_object(body: bytes) -> dict[str, Any]:
    """An empty body means "all defaults"."""
    return decode_json(body) if body else {}


def _invalid(field: str, message: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"Field {field!r} {message}.", status=400, code="invalid_request", extra={"field": field}
    )


def _ttl(obj: dict[str, Any]) -> int | None:
    if "ttlMs" not in obj:
        return None
    ttl = obj["ttlMs"]
    if type(ttl) is not int or not MIN_LOCK_TTL_MS <= ttl <= MAX_LOCK_TTL_MS:
        raise _invalid("ttlMs", f"must be an integer from {MIN_LOCK_TTL_MS} to {MAX_LOCK_TTL_MS}")
    return ttl


def parse_acquire(body: bytes) -> tuple[str, int]:
    obj = read_object(body)
    owner = obj.get("owner", DEFAULT_LOCK_OWNER)
    if not isinstance(owner, str) or not 1 <= len(owner) <= MAX_OWNER_CHARS:
        raise _invalid("owner", f"must be a string of 1 to {MAX_OWNER_CHARS} characters")
    ttl = _ttl(obj)
    return owner, DEFAULT_LOCK_TTL_MS if ttl is None else ttl


def parse_refresh(body: bytes) -> int | None:
    return _ttl(read_object(body))


def parse_force_leader(body: bytes) -> str:
    obj = read_object(body)
    reason = obj.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
        raise _invalid("reason", f"must be a string of at most {MAX_REASON_CHARS} characters")
    return reason
