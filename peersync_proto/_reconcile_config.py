"""The reconciler's configuration and its tunable defaults, each with its reason."""

from __future__ import annotations

import attrs

from ._config import DEFAULT_LOCK_TTL_MS, MAX_LOCK_TTL_MS, MAX_OWNER_CHARS, MIN_LOCK_TTL_MS
from ._errors import LocalProtocolError
from ._values import INT64_MAX

__all__ = [
    "DEFAULT_BACKOFF_BASE_NS",
    "DEFAULT_BACKOFF_CAP_NS",
    "DEFAULT_CALL_TIMEOUT_NS",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_RECONCILE_OWNER",
    "DEFAULT_TRANSFER_TIMEOUT_NS",
    "ReconcilerConfig",
]

_MS = 1_000_000

#: Who the lock status shows as holder while we reconcile.
DEFAULT_RECONCILE_OWNER = "peersync-reconciler"
#: Five rounds: two reconcilers racing for the same pair settle within two or
#: three rounds; five leaves room for a third party, and ends within ~3 s.
DEFAULT_MAX_ATTEMPTS = 5
#: First back-off 100 ms (a lock round trip on a LAN is well under that),
#: doubling per round, capped at 2 s; each delay is drawn in [d/2, d].
DEFAULT_BACKOFF_BASE_NS = 100 * _MS
DEFAULT_BACKOFF_CAP_NS = 2_000 * _MS
#: A lock or health call that has not answered in 5 s will not: abandon it.
DEFAULT_CALL_TIMEOUT_NS = 5_000 * _MS
#: A snapshot GET or PUT moves up to 64 MiB: allow 60 s.
DEFAULT_TRANSFER_TIMEOUT_NS = 60_000 * _MS


def _positive(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or not 0 < value <= INT64_MAX:
        raise LocalProtocolError(f"{attribute.name} must be a positive int, got {value!r}")


def _owner(_inst: object, _attr: object, value: str) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_OWNER_CHARS:
        raise LocalProtocolError(f"owner must be 1..{MAX_OWNER_CHARS} characters, got {value!r}")


def _ttl(_inst: object, _attr: object, value: int) -> None:
    if type(value) is not int or not MIN_LOCK_TTL_MS <= value <= MAX_LOCK_TTL_MS:
        raise LocalProtocolError(
            f"ttl_ms must be {MIN_LOCK_TTL_MS}..{MAX_LOCK_TTL_MS}, got {value!r}"
        )


def _engines(_inst: object, _attr: object, value: tuple[str, str]) -> None:
    ok = isinstance(value, tuple) and len(value) == 2
    if not ok or not all(isinstance(x, str) and x for x in value) or value[0] >= value[1]:
        raise LocalProtocolError(f"engines must be two labels in ascending order, got {value!r}")


@attrs.frozen(kw_only=True, slots=True)
class ReconcilerConfig:
    """``engines`` are the two labels in lock order (ascending, ``("a",
    "b")``); the host maps each to a URL."""

    engines: tuple[str, str] = attrs.field(default=("a", "b"), validator=_engines)
    owner: str = attrs.field(default=DEFAULT_RECONCILE_OWNER, validator=_owner)
    ttl_ms: int = attrs.field(default=DEFAULT_LOCK_TTL_MS, validator=_ttl)
    max_attempts: int = attrs.field(default=DEFAULT_MAX_ATTEMPTS, validator=_positive)
    backoff_base_ns: int = attrs.field(default=DEFAULT_BACKOFF_BASE_NS, validator=_positive)
    backoff_cap_ns: int = attrs.field(default=DEFAULT_BACKOFF_CAP_NS, validator=_positive)
    call_timeout_ns: int = attrs.field(default=DEFAULT_CALL_TIMEOUT_NS, validator=_positive)
    transfer_timeout_ns: int = attrs.field(default=DEFAULT_TRANSFER_TIMEOUT_NS, validator=_positive)

    @property
    def ttl_ns(self) -> int:
        return self.ttl_ms * _MS

    @property
    def refresh_every_ns(self) -> int:
        return self.ttl_ns // 3
