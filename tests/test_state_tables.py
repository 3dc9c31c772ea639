"""The transition tables are the spec: the docs rendering must be current."""

from __future__ import annotations

import pathlib

import pytest

from peersync_proto import LocalProtocolError, Role
from peersync_proto._lock import LOCK_TRANSITIONS, LockInput, LockState, ReconcileLock
from peersync_proto._role import ROLE_TRANSITIONS, RoleInput, role_move
from peersync_proto._tables import render_markdown

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "state-tables.md"


def test_docs_state_tables_are_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render_markdown(), (
        "docs/state-tables.md is stale: run `python tools/render_tables.py`"
    )


def test_missing_role_moves_are_errors_not_no_ops() -> None:
    for role in Role:
        for event in RoleInput:
            if (role, event) in ROLE_TRANSITIONS:
                assert role_move(role, event) is ROLE_TRANSITIONS[(role, event)]
            else:
                with pytest.raises(LocalProtocolError):
                    role_move(role, event)


def test_missing_lock_moves_are_errors_not_no_ops() -> None:
    lock = ReconcileLock(fencing_floor=0)
    for state in LockState:
        for event in LockInput:
            lock._state = state
            if (state, event) in LOCK_TRANSITIONS:
                lock._move(event)
                assert lock.state is LOCK_TRANSITIONS[(state, event)]
            else:
                with pytest.raises(LocalProtocolError):
                    lock._move(event)


def test_grant_body_without_a_live_grant_is_host_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        ReconcileLock(fencing_floor=0).grant_body(0)
