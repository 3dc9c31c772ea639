"""Contract 4.3 winner rule and the contract 3.2 promotion-epoch rule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peersync_proto._errors import LocalProtocolError
from peersync_proto._values import INT64_MAX
from peersync_proto._winner import Standing, pick_winner, promotion_epoch


def s(label: str, epoch: int, seq: int) -> Standing:
    return Standing(label=label, epoch=epoch, last_command_seq=seq)


def test_higher_epoch_wins_even_with_lower_seq_and_higher_label() -> None:
    assert pick_winner(s("b", 7, 1), s("a", 6, 999)).label == "b"
    assert pick_winner(s("a", 6, 999), s("b", 7, 1)).label == "b"


def test_equal_epoch_higher_seq_wins_even_with_higher_label() -> None:
    assert pick_winner(s("b", 7, 10), s("a", 7, 9)).label == "b"
    assert pick_winner(s("a", 7, 9), s("b", 7, 10)).label == "b"


def test_full_tie_lower_label_wins() -> None:
    assert pick_winner(s("b", 7, 10), s("a", 7, 10)).label == "a"
    assert pick_winner(s("a", 7, 10), s("b", 7, 10)).label == "a"


def test_labels_compare_by_code_point() -> None:
    # "B" (0x42) sorts before "a" (0x61); "a" before "ab".
    assert pick_winner(s("a", 1, 1), s("B", 1, 1)).label == "B"
    assert pick_winner(s("ab", 1, 1), s("a", 1, 1)).label == "a"


def test_two_engines_with_the_same_label_cannot_be_ranked() -> None:
    with pytest.raises(LocalProtocolError, match="labelled 'a'"):
        pick_winner(s("a", 1, 1), s("a", 2, 2))


standings = st.builds(
    s,
    st.sampled_from(["a", "b", "c", "z", "A"]),
    st.integers(0, 4),
    st.integers(0, 4),
)


@settings(max_examples=200, deadline=None)
@given(standings, standings, standings)
def test_winner_is_a_total_order_independent_of_argument_order(
    x: Standing, y: Standing, z: Standing
) -> None:
    if x.label == y.label:
        return
    w = pick_winner(x, y)
    assert w in (x, y)
    assert pick_winner(y, x) == w
    loser = y if w == x else x
    assert (w.epoch, w.last_command_seq) >= (loser.epoch, loser.last_command_seq)
    # Transitive: a winner over y and z is the winner of all three either way.
    if len({x.label, y.label, z.label}) == 3:
        assert pick_winner(pick_winner(x, y), z) == pick_winner(x, pick_winner(y, z))


def test_standing_refuses_bad_values() -> None:
    with pytest.raises(LocalProtocolError):
        Standing(label="", epoch=0, last_command_seq=0)
    with pytest.raises(LocalProtocolError):
        Standing(label="a", epoch=-1, last_command_seq=0)
    with pytest.raises(LocalProtocolError):
        Standing(label="a", epoch=0, last_command_seq=True)


def test_promotion_epoch_is_one_above_the_larger_of_own_and_peer() -> None:
    assert promotion_epoch(4, 9) == 10
    assert promotion_epoch(9, 4) == 10
    assert promotion_epoch(0, 0) == 1


def test_promotion_epoch_refuses_to_leave_the_64_bit_range() -> None:
    assert promotion_epoch(INT64_MAX - 1, 0) == INT64_MAX
    with pytest.raises(LocalProtocolError, match="ceiling"):
        promotion_epoch(0, INT64_MAX)


def test_promotion_epoch_refuses_non_ints() -> None:
    with pytest.raises(LocalProtocolError, match="own_epoch"):
        promotion_epoch(-1, 0)
    with pytest.raises(LocalProtocolError, match="last_peer_epoch"):
        promotion_epoch(0, 1.5)  # type: ignore[arg-type]
