"""Engine configuration, persisted floors, and the tunable defaults.

Every default is a named constant with the reason beside it.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from ._errors import LocalProtocolError
from ._values import INT64_MAX, Role

__all__ = [
    "DEFAULT_LOCK_OWNER",
    "DEFAULT_LOCK_TTL_MS",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_SNAPSHOT_BYTES",
    "DEFAULT_STALL_LIMIT_NS",
    "MAX_LOCK_TTL_MS",
    "MAX_OWNER_CHARS",
    "MAX_REASON_CHARS",
    "MIN_LOCK_TTL_MS",
    "EngineConfig",
    "Entropy",
    "Floors",
]

#: Contract 3.1: a host silent this long is reported ``stalled``. 500 ms is
#: 2.5 probe periods: long enough to ride out a GC pause, short enough that
#: the peer (threshold 3 x 200 ms) sees a frozen engine within a second.
DEFAULT_STALL_LIMIT_NS = 500_000_000
#: Contract 2: every body but a snapshot is at most 16 KiB.
DEFAULT_MAX_BODY_BYTES = 16 * 1024
#: Contract 2: snapshots up to 64 MiB unless configured otherwise.
DEFAULT_MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024
#: Contract 3.5: lock TTL bounds and default, owner and reason lengths.
MIN_LOCK_TTL_MS = 1_000
MAX_LOCK_TTL_MS = 300_000
DEFAULT_LOCK_TTL_MS = 30_000
DEFAULT_LOCK_OWNER = "anonymous"
MAX_OWNER_CHARS = 128
MAX_REASON_CHARS = 256

#: A source of random bytes: ``entropy(n)`` returns exactly ``n`` bytes.
Entropy = Callable[[int], bytes]


def _label(_inst: object, _attr: object, value: str) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= 32 or not value.isascii():
        raise LocalProtocolError(f"engine label must be 1..32 ASCII characters, got {value!r}")


def _secret(_inst: object, attribute: attrs.Attribute[bytes | None], value: bytes | None) -> None:
    if value is not None and (not isinstance(value, bytes) or not value):
        raise LocalProtocolError(f"{attribute.name} must be non-empty bytes or None")


def _positive(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or not 0 < value <= INT64_MAX:
        raise LocalProtocolError(f"{attribute.name} must be a positive int, got {value!r}")


@attrs.frozen(kw_only=True, slots=True)
class EngineConfig:
    """What an engine is told at start.

    ``api_token`` guards the bearer endpoints; with ``None`` they are refused
    unless ``no_auth`` is set (demos and tests only). ``control_plane_secret``
    guards force-leader; with ``None`` force-leader answers 501. ``role`` is
    the initial role of a *fresh* engine only: one restarted over persisted
    floors always comes back follower (contract 4.2).
    """

    label: str = attrs.field(validator=_label)
    role: Role = Role.FOLLOWER
    api_token: bytes | None = attrs.field(default=None, validator=_secret)
    control_plane_secret: bytes | None = attrs.field(default=None, validator=_secret)
    no_auth: bool = False
    stall_limit_ns: int = attrs.field(default=DEFAULT_STALL_LIMIT_NS, validator=_positive)
    max_body_bytes: int = attrs.field(default=DEFAULT_MAX_BODY_BYTES, validator=_positive)
    max_snapshot_bytes: int = attrs.field(default=DEFAULT_MAX_SNAPSHOT_BYTES, validator=_positive)


@attrs.frozen(kw_only=True, slots=True)
class Floors:
    """What an engine persisted: the last epoch and fencing token it reached,
    and the largest epoch it ever saw from its peer.

    Handed back at restart; the engine never goes below any of them, so a
    restarted engine that is cut off from its peer still promotes above it.
    """

    epoch: int = attrs.field(default=0)
    fencing_token: int = attrs.field(default=0)
    peer_epoch: int = attrs.field(default=0)

    def __attrs_post_init__(self) -> None:
        for name in ("epoch", "fencing_token", "peer_epoch"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= INT64_MAX:
                raise LocalProtocolError(f"floor {name} must be a non-negative int, got {value!r}")
