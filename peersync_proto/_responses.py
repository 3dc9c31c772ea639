"""Building responses: every answer is a JSON object with the same headers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._errors import RemoteProtocolError
from ._json import encode_json
from ._outputs import Response

__all__ = ["error_response", "json_response", "raw_json_response"]

_BASE_HEADERS = ((b"content-type", b"application/json"), (b"cache-control", b"no-store"))


def raw_json_response(
    request_id: int,
    status: int,
    body: bytes,
    extra_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> Response:
    """A response around body bytes that already are one JSON object."""
    headers = (
        *_BASE_HEADERS,
        (b"content-length", str(len(body)).encode("ascii")),
        *extra_headers,
    )
    return Response(request_id=request_id, status=status, headers=headers, body=body)


def json_response(
    request_id: int,
    status: int,
    body: Mapping[str, Any],
    extra_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> Response:
    return raw_json_response(request_id, status, encode_json(body), extra_headers)


def error_response(request_id: int, error: RemoteProtocolError) -> Response:
    """The contract's error body: ``{"error": ..., "code": ...}`` plus fields."""
    body: dict[str, Any] = {"error": error.message, "code": error.code}
    for key, value in error.extra.items():
        body.setdefault(key, value)
    return json_response(request_id, error.status, body, error.headers)
