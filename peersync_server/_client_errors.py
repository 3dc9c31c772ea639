"""Errors the blocking client raises: an error answer, or no usable answer.

Two families, with a common base :class:`PeerSyncClientError`:

- :class:`PeerSyncError` and its subclasses: the server answered with an error
  status. Each carries ``status``, the stable ``code`` of the contract and the
  parsed ``body``; one subclass per code, so a caller writes ``except
  LockHeld`` instead of comparing strings.
- :class:`TransportError` and its subclasses: there was no usable answer (the
  connection was refused, the deadline passed, the server hung up, or the
  answer broke HTTP or the contract's framing). The peer monitor counts every
  one of them as a failed probe, and tells :class:`ConnectionRefused` (the
  engine process is gone) from :class:`DeadlineExceeded` (it is there but slow).

No message of this module ever contains a token, a secret or a lock id: the
body of an error answer comes from the server, which never echoes them
(contract 2 and 3.5), and the client's own messages name the endpoint with the
lock id redacted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "AlreadyLeader",
    "BodyTooLarge",
    "ConnectionClosed",
    "ConnectionRefused",
    "DeadlineExceeded",
    "InternalError",
    "InvalidJson",
    "InvalidRequest",
    "InvalidResponse",
    "InvalidSnapshot",
    "LockHeld",
    "LockNotFound",
    "LockNotHeld",
    "MethodNotAllowed",
    "NotConfigured",
    "NotFound",
    "PeerSyncClientError",
    "PeerSyncError",
    "ServiceUnavailable",
    "StaleSnapshot",
    "TransportError",
    "Unauthorized",
    "UnsupportedMediaType",
    "error_from_answer",
]


class PeerSyncClientError(Exception):
    """Base of everything the client raises on purpose."""


class PeerSyncError(PeerSyncClientError):
    """The server answered with an error status.

    ``code`` is the contract's stable snake_case code, or ``""`` when the
    answer carried no contract error body (a proxy's page, say). ``body`` is
    the parsed JSON object of the answer (empty when it was not one);
    ``message`` is its human sentence, which is not stable API.
    """

    def __init__(self, status: int, code: str, body: Mapping[str, Any]) -> None:
        self.status = status
        self.code = code
        self.body: Mapping[str, Any] = dict(body)
        sentence = self.body.get("error")
        self.message = sentence if isinstance(sentence, str) else ""
        super().__init__(f"{status} {code or 'error'}: {self.message}".rstrip(": "))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r})"

    def _int_field(self, name: str) -> int | None:
        value = self.body.get(name)
        return value if type(value) is int else None


class InvalidRequest(PeerSyncError):
    """400 ``invalid_request``: a field of the wrong type or out of range."""


class InvalidJson(PeerSyncError):
    """400 ``invalid_json``: the body was not strict JSON."""


class InvalidSnapshot(PeerSyncError):
    """400 ``invalid_snapshot``: a snapshot field missing, wrong, or a checksum mismatch."""


class Unauthorized(PeerSyncError):
    """401 ``unauthorized``: missing or wrong bearer token or control-plane secret."""


class NotFound(PeerSyncError):
    """404 ``not_found``: unknown path (a base URL pointing at the wrong thing)."""


class LockNotFound(PeerSyncError):
    """404 ``lock_not_found``: expired, released, never granted, or malformed id."""


class MethodNotAllowed(PeerSyncError):
    """405 ``method_not_allowed``."""


class AlreadyLeader(PeerSyncError):
    """409 ``already_leader``; ``epoch`` is the engine's current epoch."""

    @property
    def epoch(self) -> int | None:
        return self._int_field("epoch")


class LockHeld(PeerSyncError):
    """409 ``lock_held``: another holder (or this same owner: not re-entrant)."""

    @property
    def owner(self) -> str | None:
        value = self.body.get("owner")
        return value if isinstance(value, str) else None

    @property
    def remaining_ms(self) -> int | None:
        return self._int_field("remainingMs")

    @property
    def fencing_token(self) -> int | None:
        return self._int_field("fencingToken")


class LockNotHeld(PeerSyncError):
    """409 ``lock_not_held``: PUT state without holding the named lock."""


class StaleSnapshot(PeerSyncError):
    """409 ``stale_snapshot``: the snapshot's epoch is below the engine's."""


class BodyTooLarge(PeerSyncError):
    """413 ``body_too_large``."""


class UnsupportedMediaType(PeerSyncError):
    """415 ``unsupported_media_type``."""


class InternalError(PeerSyncError):
    """500 ``internal``: the engine host raised; its state is unchanged."""


class NotConfigured(PeerSyncError):
    """501 ``not_configured``: force-leader on an engine without a secret."""


class ServiceUnavailable(PeerSyncError):
    """503: the server is at its connection cap; ``retry_after`` in seconds."""

    retry_after: int | None = None


_BY_CODE: Mapping[str, type[PeerSyncError]] = {
    "invalid_request": InvalidRequest,
    "invalid_json": InvalidJson,
    "invalid_snapshot": InvalidSnapshot,
    "unauthorized": Unauthorized,
    "not_found": NotFound,
    "lock_not_found": LockNotFound,
    "method_not_allowed": MethodNotAllowed,
    "already_leader": AlreadyLeader,
    "lock_held": LockHeld,
    "lock_not_held": LockNotHeld,
    "stale_snapshot": StaleSnapshot,
    "body_too_large": BodyTooLarge,
    "unsupported_media_type": UnsupportedMediaType,
    "internal": InternalError,
    "not_configured": NotConfigured,
}


def error_from_answer(
    status: int, body: Mapping[str, Any], retry_after: int | None = None
) -> PeerSyncError:
    """The typed exception for an error answer: by code, then by status."""
    code = body.get("code")
    code = code if isinstance(code, str) else ""
    cls = _BY_CODE.get(code)
    if cls is None:
        cls = ServiceUnavailable if status == 503 else PeerSyncError
    error = cls(status, code, body)
    if isinstance(error, ServiceUnavailable):
        error.retry_after = retry_after
    return error


class TransportError(PeerSyncClientError):
    """No usable answer. Whether a non-idempotent request took effect is unknown."""


class ConnectionRefused(TransportError):
    """Nothing listens at the address: the engine process is gone or not up yet."""


class DeadlineExceeded(TransportError):
    """The call's total deadline (or the connect timeout) passed first."""


class ConnectionClosed(TransportError):
    """The server closed or reset the connection before a whole answer."""


class InvalidResponse(TransportError):
    """The answer broke HTTP/1.1, the contract's framing or shape, or a size limit."""
