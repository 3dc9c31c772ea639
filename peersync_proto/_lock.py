"""The reconcile lock: one per engine (contract 3.5).

A lock granted at ``t`` with TTL ``T`` is held while ``now < t + T`` and free
from ``now >= t + T`` on, whether or not any event arrived in between. That
single boundary predicate, :meth:`ReconcileLock._live`, is the only place the
question "is it held?" is answered: acquire, refresh, release, apply and
status all go through it.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable

import attrs

from ._errors import LocalProtocolError, RemoteProtocolError
from ._outputs import LockExpired, LockGranted, LockRefreshed, LockReleased
from ._values import INT64_MAX

__all__ = ["LOCK_TRANSITIONS", "LockInput", "LockState", "LockView", "ReconcileLock"]

_NS_PER_MS = 1_000_000


class LockState(enum.Enum):
    FREE = "free"
    HELD = "held"


class LockInput(enum.Enum):
    ACQUIRE = "acquire"
    REFRESH = "refresh"
    RELEASE = "release"
    EXPIRE = "expire"


#: The legal moves. A refused request (409, 404) is not a move: it changes
#: nothing. Anything missing here is a bug and raises LocalProtocolError.
LOCK_TRANSITIONS: dict[tuple[LockState, LockInput], LockState] = {
    (LockState.FREE, LockInput.ACQUIRE): LockState.HELD,
    (LockState.HELD, LockInput.REFRESH): LockState.HELD,
    (LockState.HELD, LockInput.RELEASE): LockState.FREE,
    (LockState.HELD, LockInput.EXPIRE): LockState.FREE,
}


@attrs.frozen(kw_only=True, slots=True)
class LockView:
    """What may be shown of a held lock: never its id."""

    owner: str
    fencing_token: int
    ttl_ms: int
    expires_at: int


@attrs.frozen(kw_only=True, slots=True)
class _Grant:
    lock_id: str
    owner: str
    fencing_token: int
    ttl_ms: int
    expires_at: int


def _remaining_ms(expires_at: int, now: int) -> int:
    # Rounded up: a lock that is still held never reports 0 ms left.
    return -((now - expires_at) // _NS_PER_MS)


class ReconcileLock:
    """The lock machine. Ids are handed in (drawn by the engine from the
    host's entropy); ids are compared in constant time."""

    def __init__(self, *, fencing_floor: int) -> None:
        self._state = LockState.FREE
        self._grant: _Grant | None = None
        self._last_token = fencing_floor

    # -- the one boundary predicate -------------------------------------
    def _live(self, now: int) -> _Grant | None:
        grant = self._grant
        if grant is not None and now < grant.expires_at:
            return grant
        return None

    def _move(self, event: LockInput) -> None:
        key = (self._state, event)
        if key not in LOCK_TRANSITIONS:
            raise LocalProtocolError(f"lock: no move for {key}")
        self._state = LOCK_TRANSITIONS[key]

    # -- checkpoints --------------------------------------------------------
    def memento(self) -> tuple[LockState, _Grant | None, int]:
        return (self._state, self._grant, self._last_token)

    def restore(self, memento: tuple[LockState, _Grant | None, int]) -> None:
        self._state, self._grant, self._last_token = memento

    # -- reading ----------------------------------------------------------
    @property
    def state(self) -> LockState:
        return self._state

    @property
    def last_fencing_token(self) -> int:
        return self._last_token

    def view(self, now: int) -> LockView | None:
        grant = self._live(now)
        if grant is None:
            return None
        return LockView(
            owner=grant.owner,
            fencing_token=grant.fencing_token,
            ttl_ms=grant.ttl_ms,
            expires_at=grant.expires_at,
        )

    def deadline(self) -> int | None:
        """When the held lock runs out (its expiry must then be reported)."""
        return self._grant.expires_at if self._grant is not None else None

    def holds(self, now: int, lock_id: str | None) -> bool:
        grant = self._live(now)
        return grant is not None and lock_id is not None and _same_id(grant.lock_id, lock_id)

    def status_body(self, now: int) -> dict[str, object]:
        grant = self._live(now)
        if grant is None:
            return {"held": False, "lastFencingToken": self._last_token}
        return {
            "held": True,
            "owner": grant.owner,
            "remainingMs": _remaining_ms(grant.expires_at, now),
            "ttlMs": grant.ttl_ms,
            "fencingToken": grant.fencing_token,
        }

    # -- moves ------------------------------------------------------------
    def expire(self, now: int) -> LockExpired | None:
        """Free a lock whose time ran out; report it once."""
        grant = self._grant
        if grant is None or self._live(now) is not None:
            return None
        self._move(LockInput.EXPIRE)
        self._grant = None
        return LockExpired(
            owner=grant.owner, fencing_token=grant.fencing_token, expired_at=grant.expires_at
        )

    def acquire(
        self, now: int, *, draw_id: Callable[[], str], owner: str, ttl_ms: int
    ) -> LockGranted:
        """Grant a free lock. ``draw_id`` is called only once the lock is known
        to be free, so a refused acquire draws no entropy."""
        held = self._live(now)
        if held is not None:
            raise RemoteProtocolError(
                "The reconcile lock is held.",
                status=409,
                code="lock_held",
                extra={
                    "owner": held.owner,
                    "remainingMs": _remaining_ms(held.expires_at, now),
                    "fencingToken": held.fencing_token,
                },
            )
        if self._last_token >= INT64_MAX:
            raise RemoteProtocolError(
                "Fencing tokens are exhausted on this engine.", status=409, code="lock_exhausted"
            )
        lock_id = draw_id()
        self._move(LockInput.ACQUIRE)
        self._last_token += 1
        grant = _Grant(
            lock_id=lock_id,
            owner=owner,
            fencing_token=self._last_token,
            ttl_ms=ttl_ms,
            expires_at=now + ttl_ms * _NS_PER_MS,
        )
        self._grant = grant
        return LockGranted(
            owner=owner,
            fencing_token=grant.fencing_token,
            ttl_ms=ttl_ms,
            expires_at=grant.expires_at,
        )

    def refresh(self, now: int, *, lock_id: str, ttl_ms: int | None) -> LockRefreshed:
        grant = self._require(now, lock_id)
        self._move(LockInput.REFRESH)
        ttl = grant.ttl_ms if ttl_ms is None else ttl_ms
        self._grant = attrs.evolve(grant, ttl_ms=ttl, expires_at=now + ttl * _NS_PER_MS)
        return LockRefreshed(
            owner=grant.owner,
            fencing_token=grant.fencing_token,
            ttl_ms=ttl,
            expires_at=self._grant.expires_at,
        )

    def release(self, now: int, *, lock_id: str) -> LockReleased:
        grant = self._require(now, lock_id)
        self._move(LockInput.RELEASE)
        self._grant = None
        return LockReleased(owner=grant.owner, fencing_token=grant.fencing_token)

    def grant_body(self, now: int) -> dict[str, object]:
        """The LockGrant body for the live grant (the caller's own answer)."""
        grant = self._live(now)
        if grant is None:
            raise LocalProtocolError("lock: no live grant to describe")
        return {
            "lockId": grant.lock_id,
            "expiresMs": grant.ttl_ms,
            "fencingToken": grant.fencing_token,
            "owner": grant.owner,
        }

    def _require(self, now: int, lock_id: str) -> _Grant:
        grant = self._live(now)
        if grant is None or not _same_id(grant.lock_id, lock_id):
            raise RemoteProtocolError(
                "No reconcile lock is held with that id.", status=404, code="lock_not_found"
            )
        return grant


def _same_id(held: str, given: str) -> bool:
    return hmac.compare_digest(held.encode("utf-8"), given.encode("utf-8"))
