"""The contract's two ranking rules, as pure functions.

* :func:`pick_winner` is contract 4.3: of two engines, the winner has the
  higher ``epoch``; on a tie the higher ``lastCommandSeq``; on a tie the lower
  ``engineLabel``. Both engines (and any control plane) compute the same
  winner from the same two health answers, because the rule is a total order
  on distinct labels.
* :func:`promotion_epoch` is the epoch rule of contract 3.2, which every
  promotion follows whatever its cause: one above the larger of the engine's
  own epoch and the largest epoch it ever saw from its peer.

Used by the peer monitor (election of a leader when both are follower), by
the reconciler (who copies onto whom) and by the engine (force-leader).
"""

from __future__ import annotations

import attrs

from ._errors import LocalProtocolError
from ._values import INT64_MAX

__all__ = ["Standing", "pick_winner", "promotion_epoch"]


def _label(_inst: object, _attr: object, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise LocalProtocolError(f"engine label must be a non-empty str, got {value!r}")


def _u64(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or not 0 <= value <= INT64_MAX:
        raise LocalProtocolError(
            f"{attribute.name} must be a non-negative 64-bit int, got {value!r}"
        )


@attrs.frozen(kw_only=True, slots=True)
class Standing:
    """What the winner rule looks at: one engine's label, epoch and sequence."""

    label: str = attrs.field(validator=_label)
    epoch: int = attrs.field(validator=_u64)
    last_command_seq: int = attrs.field(validator=_u64)


def pick_winner(first: Standing, second: Standing) -> Standing:
    """The winner of contract 4.3; the argument order does not matter.

    Two standings with the same label cannot be ranked (the pair is
    misconfigured: a label clash) and raise :class:`LocalProtocolError`.
    Labels compare by code point (they are ASCII), so ``"a"`` beats ``"b"``.
    """
    if first.label == second.label:
        raise LocalProtocolError(f"cannot rank two engines labelled {first.label!r}")
    if first.epoch != second.epoch:
        return first if first.epoch > second.epoch else second
    if first.last_command_seq != second.last_command_seq:
        return first if first.last_command_seq > second.last_command_seq else second
    return first if first.label < second.label else second


def promotion_epoch(own_epoch: int, last_peer_epoch: int) -> int:
    """The epoch a promotion takes: ``max(own, last seen from peer) + 1``.

    A promoted engine thereby outranks its peer in any later reconciliation.
    An epoch at the 64-bit ceiling cannot rise and raises
    :class:`LocalProtocolError` rather than leave the wire's integer range.
    """
    for name, value in (("own_epoch", own_epoch), ("last_peer_epoch", last_peer_epoch)):
        if type(value) is not int or not 0 <= value <= INT64_MAX:
            raise LocalProtocolError(f"{name} must be a non-negative 64-bit int, got {value!r}")
    top = max(own_epoch, last_peer_epoch)
    if top == INT64_MAX:
        raise LocalProtocolError("epoch is at the 64-bit ceiling and cannot rise")
    return top + 1
