"""The engine's role machine: leader or follower (the epoch rule is in ``_winner``)."""

from __future__ import annotations

import enum

from ._errors import LocalProtocolError
from ._values import Role

__all__ = ["ROLE_TRANSITIONS", "RoleInput", "role_move"]


class RoleInput(enum.Enum):
    PROMOTE = "promote"  #: force-leader, peer down, or elected
    STEP_DOWN = "step_down"  #: a leader's snapshot was applied over ours


#: The legal moves. Promoting a leader or stepping down a follower is not a
#: move: the handler refuses it (409 already_leader) or does not ask.
ROLE_TRANSITIONS: dict[tuple[Role, RoleInput], Role] = {
    (Role.FOLLOWER, RoleInput.PROMOTE): Role.LEADER,
    (Role.LEADER, RoleInput.STEP_DOWN): Role.FOLLOWER,
}


def role_move(role: Role, event: RoleInput) -> Role:
    try:
        return ROLE_TRANSITIONS[(role, event)]
    except KeyError:
        raise LocalProtocolError(f"role: no move for {(role, event)}") from None
