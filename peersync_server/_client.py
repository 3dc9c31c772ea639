"""A blocking client for one peersync engine: one typed method per endpoint.

Each method builds the request (auth headers only where the contract wants
them: the bearer token to the bearer endpoints, the control-plane secret to
force-leader), hands it to the kept-alive connection of ``_client_http``
(total deadline, one resend of an idempotent call on a stale connection,
framing and size limits) and turns the answer into an attrs value of
``_client_values`` or a typed exception of ``_client_errors``.

The client never logs a token, a secret or a lock id: one debug line per
call, with the lock id in the path redacted, and transport errors name the
path the same way. One client may be shared between threads; calls take
turns, and waiting for the turn counts against the caller's deadline.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
import h11

from peersync_proto import DEFAULT_MAX_SNAPSHOT_BYTES

from ._client_errors import InvalidResponse, TransportError, error_from_answer
from ._client_http import MAX_INTERIM_RESPONSES, HttpAnswer, HttpConnection
from ._client_values import (
    ApplyResult,
    ForceLeaderResult,
    LockGrant,
    LockStatus,
    PeerHealth,
    ReleaseResult,
    StateSnapshot,
    SyncHealth,
    from_wire,
)

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_MAX_SNAPSHOT_RESPONSE_BYTES",
    "DEFAULT_TIMEOUT_S",
    "MAX_INTERIM_RESPONSES",
    "PeerSyncClient",
]

#: Connecting on a LAN takes well under a millisecond; 2 s covers a SYN
#: retransmit (1 s) and still fails fast when a host is gone. Capped by the
#: call's total deadline.
DEFAULT_CONNECT_TIMEOUT_S = 2.0
#: Total deadline of one call, connect to last byte. Ample for every small
#: endpoint; pass ``timeout=`` for 50 MB snapshots on a slow link, and a
#: short one for health probes (the peer monitor uses 150 ms).
DEFAULT_TIMEOUT_S = 10.0
#: Every answer but a snapshot is a small JSON object (contract 3); 1 MiB is
#: far beyond any of them and still bounds memory against a runaway server.
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
#: A snapshot answer is the state (at most the server's snapshot limit, 64
#: MiB by default) plus a small envelope.
DEFAULT_MAX_SNAPSHOT_RESPONSE_BYTES = DEFAULT_MAX_SNAPSHOT_BYTES + 1024 * 1024
_USER_AGENT = b"peersync-client/0.1"
_LOCK_PATH = "/api/sync/reconcile-lock"

_log = logging.getLogger("peersync_server.client")

_T = TypeVar("_T", bound=attrs.AttrsInstance)


def _header_secret(name: str, value: str | bytes | None) -> bytes | None:
    if value is None:
        return None
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if not raw or raw != raw.strip() or any(b < 0x20 or b == 0x7F for b in raw):
        # Never echo the value itself.
        raise ValueError(f"{name} must be non-empty, without control characters or edge spaces")
    return raw


def _json_body(fields: Mapping[str, Any]) -> bytes | None:
    return json.dumps(dict(fields), separators=(",", ":")).encode() if fields else None


class PeerSyncClient:
    """A blocking client for one engine at ``base_url`` (``http://host:port``).

    ``api_token`` is sent to the bearer endpoints only, ``control_plane_secret``
    to force-leader only. ``timeout`` is each call's total deadline in seconds
    (every method also takes ``timeout=`` for that call); ``connect_timeout``
    caps the TCP connect within it.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_token: str | bytes | None = None,
        control_plane_secret: str | bytes | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_RESPONSE_BYTES,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        try:
            port = parts.port or 80
        except ValueError:
            raise ValueError(f"bad port in base URL {base_url!r}") from None
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"base URL must be http://HOST[:PORT], got {base_url!r}")
        if parts.username is not None or parts.query or parts.fragment:
            raise ValueError("base URL must not carry credentials, a query or a fragment")
        if connect_timeout <= 0 or timeout <= 0:
            raise ValueError("timeouts must be positive")
        self.base_url = base_url
        self._host = parts.hostname
        self._port = port
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._host_header = f"{host}:{port}".encode("idna")
        self._prefix = parts.path.rstrip("/")
        self._api_token = _header_secret("api_token", api_token)
        self._secret = _header_secret("control_plane_secret", control_plane_secret)
        self._timeout = timeout
        self._max_response_bytes = max_response_bytes
        self._max_snapshot_bytes = max_snapshot_bytes
        self._http = HttpConnection(self._host, port, connect_timeout=connect_timeout)

    def __repr__(self) -> str:
        return f"PeerSyncClient({self.base_url!r})"

    def __enter__(self) -> PeerSyncClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the kept-alive connection, if any. The client stays usable."""
        self._http.close()

    # -- the endpoints -------------------------------------------------------

    def peer_health(self, *, timeout: float | None = None) -> PeerHealth:
        """GET /api/peer/health (open)."""
        answer = self._call("GET", "/api/peer/health", timeout=timeout)
        return self._parse(answer, PeerHealth)

    def force_leader(
        self, reason: str | None = None, *, timeout: float | None = None
    ) -> ForceLeaderResult:
        """POST /api/peer/force-leader (control-plane secret). Never resent."""
        body = _json_body({"reason": reason} if reason is not None else {})
        answer = self._call(
            "POST", "/api/peer/force-leader", body=body, secret=True, timeout=timeout
        )
        return self._parse(answer, ForceLeaderResult)

    def sync_health(self, *, timeout: float | None = None) -> SyncHealth:
        """GET /api/sync/health."""
        answer = self._call("GET", "/api/sync/health", bearer=True, timeout=timeout)
        return self._parse(answer, SyncHealth)

    def get_state_bytes(self, *, timeout: float | None = None) -> bytes:
        """GET /api/sync/state, the body exactly as served and never parsed.

        Use this inside an engine process: parsing a 50 MB snapshot holds the
        GIL for seconds. The bytes go to :meth:`apply_state` unchanged.
        """
        answer = self._call(
            "GET", "/api/sync/state", bearer=True, timeout=timeout, limit=self._max_snapshot_bytes
        )
        if answer.status != 200:
            raise self._error(answer)
        return answer.body

    def get_state(self, *, timeout: float | None = None) -> StateSnapshot:
        """GET /api/sync/state, parsed once: envelope fields, ``state`` and raw ``body``."""
        answer = self._call(
            "GET", "/api/sync/state", bearer=True, timeout=timeout, limit=self._max_snapshot_bytes
        )
        obj = self._decode_ok(answer)
        return from_wire(StateSnapshot, obj, state=obj.get("state"), body=answer.body)

    def apply_state(
        self, body: bytes, lock_id: str, *, timeout: float | None = None
    ) -> ApplyResult:
        """PUT /api/sync/state with the snapshot ``body`` under lock ``lock_id``."""
        if not lock_id.isascii() or not lock_id.isprintable():
            raise ValueError("lock_id must be printable ASCII")
        answer = self._call(
            "PUT",
            "/api/sync/state",
            body=bytes(body),
            bearer=True,
            extra_headers=((b"x-reconcile-lock-id", lock_id.encode("utf-8")),),
            timeout=timeout,
        )
        return self._parse(answer, ApplyResult)

    def acquire_lock(
        self,
        owner: str | None = None,
        ttl_ms: int | None = None,
        *,
        timeout: float | None = None,
    ) -> LockGrant:
        """POST /api/sync/reconcile-lock. Never resent: a lost answer may hide a grant."""
        fields: dict[str, Any] = {}
        if owner is not None:
            fields["owner"] = owner
        if ttl_ms is not None:
            fields["ttlMs"] = ttl_ms
        answer = self._call(
            "POST", _LOCK_PATH, body=_json_body(fields), bearer=True, timeout=timeout
        )
        return self._parse(answer, LockGrant)

    def refresh_lock(
        self, lock_id: str, ttl_ms: int | None = None, *, timeout: float | None = None
    ) -> LockGrant:
        """PUT /api/sync/reconcile-lock/{lockId}; ``ttl_ms`` becomes the lock's TTL."""
        body = _json_body({"ttlMs": ttl_ms} if ttl_ms is not None else {})
        answer = self._call(
            "PUT", _lock_path(lock_id), body=body, bearer=True, timeout=timeout, redact=True
        )
        return self._parse(answer, LockGrant)

    def release_lock(self, lock_id: str, *, timeout: float | None = None) -> ReleaseResult:
        """DELETE /api/sync/reconcile-lock/{lockId}. After a resend, 404 means it is gone."""
        answer = self._call(
            "DELETE", _lock_path(lock_id), bearer=True, timeout=timeout, redact=True
        )
        return self._parse(answer, ReleaseResult)

    def lock_status(self, *, timeout: float | None = None) -> LockStatus:
        """GET /api/sync/reconcile-lock; never reveals a lock id."""
        answer = self._call("GET", _LOCK_PATH, bearer=True, timeout=timeout)
        status = self._parse(answer, LockStatus)
        needed = (
            (status.owner, status.remaining_ms, status.ttl_ms, status.fencing_token)
            if status.held
            else (status.last_fencing_token,)
        )
        if any(value is None for value in needed):
            raise InvalidResponse("LockStatus answer lacks a field its 'held' value requires")
        return status

    # -- answers -------------------------------------------------------------

    def _error(self, answer: HttpAnswer) -> Exception:
        try:
            obj = json.loads(answer.body)
        except ValueError:
            obj = None
        retry = answer.header(b"retry-after")
        retry_after = int(retry) if retry is not None and retry.isdigit() else None
        return error_from_answer(answer.status, obj if isinstance(obj, dict) else {}, retry_after)

    def _decode_ok(self, answer: HttpAnswer) -> dict[str, Any]:
        if answer.status != 200:
            raise self._error(answer)
        try:
            obj = json.loads(answer.body)
        except ValueError:
            raise InvalidResponse("the 200 answer's body is not JSON") from None
        if not isinstance(obj, dict):
            raise InvalidResponse("the 200 answer's body is not a JSON object")
        return obj

    def _parse(self, answer: HttpAnswer, cls: type[_T]) -> _T:
        return from_wire(cls, self._decode_ok(answer))

    # -- the wire ------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        bearer: bool = False,
        secret: bool = False,
        extra_headers: tuple[tuple[bytes, bytes], ...] = (),
        timeout: float | None = None,
        limit: int | None = None,
        redact: bool = False,
    ) -> HttpAnswer:
        started = time.monotonic()
        deadline = started + (self._timeout if timeout is None else timeout)
        shown = _LOCK_PATH + "/<redacted>" if redact else path
        headers = [(b"host", self._host_header), (b"user-agent", _USER_AGENT)]
        headers.append((b"accept", b"application/json"))
        if bearer and self._api_token is not None:
            headers.append((b"authorization", b"Bearer " + self._api_token))
        if secret and self._secret is not None:
            headers.append((b"x-control-plane-secret", self._secret))
        if body is not None:
            headers.append((b"content-type", b"application/json"))
        if body is not None or method != "GET":
            headers.append((b"content-length", str(len(body or b"")).encode()))
        headers.extend(extra_headers)
        request = h11.Request(method=method, target=self._prefix + path, headers=headers)
        try:
            answer = self._http.exchange(
                request,
                body,
                deadline=deadline,
                limit=limit or self._max_response_bytes,
                on_resend=lambda: _log.debug(
                    "%s %s: idle connection closed; resending", method, shown
                ),
            )
        except TransportError as exc:
            _log.debug("%s %s failed: %s", method, shown, exc)
            raise type(exc)(f"{method} {shown}: {exc}") from None
        elapsed_ms = (time.monotonic() - started) * 1000
        _log.debug("%s %s -> %d in %.1f ms", method, shown, answer.status, elapsed_ms)
        return answer


def _lock_path(lock_id: str) -> str:
    return f"{_LOCK_PATH}/{urllib.parse.quote(lock_id, safe='')}"
