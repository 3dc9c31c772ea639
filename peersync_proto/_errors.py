"""Errors: who is at fault, and what to answer.

``RemoteProtocolError`` is bad input from outside (a client or the peer). It
carries the HTTP status to answer with and the stable error ``code`` of the
contract. The engine turns it into an error *response*; it never poisons the
engine's state.

``LocalProtocolError`` means the host misused the API (a decreasing ``now``,
a completion for a request that was never asked, a wrong-typed status report).
It is raised to the host and the engine is left exactly as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base of every error this package raises on purpose."""


class LocalProtocolError(ProtocolError):
    """The host broke the API contract; nothing was changed."""


class RemoteProtocolError(ProtocolError):
    """Input from outside broke the wire contract.

    ``status`` is the HTTP status to answer with, ``code`` the stable
    snake_case code, ``extra`` any further fields of the error body (for
    example ``epoch`` on ``already_leader``) and ``headers`` any header the
    answer needs (``Allow`` on 405, ``WWW-Authenticate`` on 401).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str,
        extra: Mapping[str, Any] | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.extra: Mapping[str, Any] = dict(extra or {})
        self.headers = headers

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable, so a decoder running in a worker process can hand it back.
        return (
            _rebuild_remote,
            (self.message, self.status, self.code, dict(self.extra), self.headers),
        )

    def __repr__(self) -> str:
        return f"RemoteProtocolError({self.message!r}, status={self.status}, code={self.code!r})"


def _rebuild_remote(
    message: str,
    status: int,
    code: str,
    extra: dict[str, Any],
    headers: tuple[tuple[bytes, bytes], ...],
) -> RemoteProtocolError:
    return RemoteProtocolError(message, status=status, code=code, extra=extra, headers=headers)
