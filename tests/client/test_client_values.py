"""The answer parsers: over any JSON value, only InvalidResponse escapes, and a
value survives to_wire -> from_wire unchanged."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peersync_server._client_values import (
    ApplyResult,
    ForceLeaderResult,
    LockGrant,
    LockStatus,
    PeerHealth,
    ReleaseResult,
    StateSnapshot,
    SyncHealth,
    from_wire,
    to_wire,
)
from peersync_server.client import InvalidResponse

CLASSES = [
    PeerHealth,
    ForceLeaderResult,
    SyncHealth,
    LockGrant,
    LockStatus,
    ReleaseResult,
    ApplyResult,
    StateSnapshot,
]
FIELD_NAMES = [
    "status", "uptimeMs", "programSource", "lastCommandSeq", "engineLabel", "epoch", "role",
    "previousRole", "clockSync", "mode", "offsetNs", "jitterNs", "lastExecutedSeq",
    "lastExecutedErr", "lateCommands", "lastPongSentUs", "lockId", "expiresMs", "fencingToken",
    "owner", "held", "remainingMs", "ttlMs", "lastFencingToken", "released", "applied",
    "formatVersion", "capturedAtUs", "previewSource", "checksum", "state",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from(["ok", "stalled", "leader", "follower", "ptp", "free-run", ""]),
    st.text(max_size=5),
    st.floats(allow_nan=False),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(FIELD_NAMES), inner, max_size=6)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(cls=st.sampled_from(CLASSES), obj=st.dictionaries(st.sampled_from(FIELD_NAMES), JSON))
def test_only_invalid_response_escapes_the_parsers(cls, obj) -> None:
    try:
        value = from_wire(cls, obj)
    except InvalidResponse:
        return
    assert from_wire(cls, to_wire(value)) == value


@settings(max_examples=100, deadline=None)
@given(cls=st.sampled_from(CLASSES), obj=JSON)
def test_a_non_object_is_invalid(cls, obj) -> None:
    if isinstance(obj, dict):
        return
    with pytest.raises(InvalidResponse):
        from_wire(cls, obj)
