"""RFC 8785 canonical JSON and the state checksum, against the rfc8785 package."""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peersync_proto._canonical import canonical_json, jcs_float, state_checksum
from peersync_proto._errors import LocalProtocolError, RemoteProtocolError
from peersync_proto._json import decode_json
from peersync_proto._values import float_spelled_as_wide_int

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SAFE = 2**53 - 1  # rfc8785's integer domain


def python_sorted(value: Any) -> bytes:
    """The contract's shortcut: right for state without floats or non-BMP names."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


FLOATS = [
    5e-324,
    -5e-324,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    0.1 + 0.2,
    1e21,
    1e-7,
    123456789012345680000.0,
    1e20,
    999999999999999900000.0,
    1e-6,
    0.000001234,
    1.5,
    -1.5,
    100.0,
    -0.0,
    0.0,
    29.97,
    2.5e-3,
    333333333.33333329,
    1e30,
    4.50,
    1e-27,
    2**53 + 0.0,
    9007199254740993.0,
    1.2345e-10,
    6.02214076e23,
]


@pytest.mark.parametrize("number", FLOATS, ids=repr)
def test_floats_match_rfc8785(number: float) -> None:
    assert jcs_float(number) == rfc8785.dumps(number).decode()
    if float_spelled_as_wide_int(number):  # 1e20: refused in a value, see below
        with pytest.raises(LocalProtocolError):
            canonical_json([number])
    else:
        assert canonical_json([number]) == rfc8785.dumps([number])


#: Floats RFC 8785 writes as integers outside signed 64 bits, and the
#: neighbours that are still fine.
WIDE = [2.0**63, -(2.0**63), 9.3e18, 1e20, 9.999999999999999e20, -5e20]
NARROW = [9.223372036854775e18, -9.223372036854775e18, 1e21, -1e21, 1e18, 2.0**53]


@pytest.mark.parametrize("number", WIDE, ids=repr)
def test_a_float_written_as_a_wide_integer_is_refused_in_and_out(number: float) -> None:
    """Its canonical bytes would read back as an integer outside signed 64
    bits, which strict JSON refuses: so a host's state holding it is refused
    (canonical_json), and so is a body spelling it as a float (decode_json).
    Found by Hypothesis: 9.223372036854776e18 canonicalized to bytes that the
    peer then refused, so such a state could never be reconciled."""
    text = jcs_float(number)
    assert "e" not in text and "." not in text and not -(2**63) <= int(text) < 2**63
    with pytest.raises(LocalProtocolError):
        canonical_json({"x": number})
    for spelling in (repr(number), text + ".0"):
        with pytest.raises(RemoteProtocolError) as caught:
            decode_json(b'{"x":' + spelling.encode() + b"}")
        assert caught.value.code == "invalid_json"


@pytest.mark.parametrize("number", NARROW, ids=repr)
def test_a_float_at_the_edge_that_reads_back_is_kept(number: float) -> None:
    data = canonical_json({"x": number})
    assert canonical_json(decode_json(data)) == data  # an integral one reads back as an int


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1e21, "1e+21"),
        (1e-7, "1e-7"),
        (100.0, "100"),
        (-0.0, "0"),
        (123456789012345680000.0, "123456789012345680000"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e-6, "0.000001"),
        (1.25e-7, "1.25e-7"),
        (1.25e21, "1.25e+21"),
    ],
)
def test_floats_are_written_as_ecmascript_does(number: float, text: str) -> None:
    assert jcs_float(number) == text


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_host_misuse(number: float) -> None:
    with pytest.raises(LocalProtocolError):
        jcs_float(number)
    with pytest.raises(LocalProtocolError):
        canonical_json({"a": [1, {"b": number}]})


def test_rfc8785_appendix_example() -> None:
    value = json.loads(
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    ).encode()
    assert canonical_json(value) == expected == rfc8785.dumps(value)


def test_member_order_is_utf16_code_units_as_in_rfc8785() -> None:
    names = ["\u20ac", "\r", "\ufb33", "1", "\U0001f600", "\u0080", "\u00f6"]
    value = {name: i for i, name in enumerate(names)}
    got = canonical_json(value)
    assert got == rfc8785.dumps(value)
    order = [m.group(1) for m in re.finditer(r'"(.*?)":', got.decode())]
    assert order == ["\\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_astral_name_sorts_before_private_use_name_unlike_code_point_order() -> None:
    value = {"\ue000": 1, "\U0001f600": 2}
    assert canonical_json(value) == '{"\U0001f600":2,"\ue000":1}'.encode()
    assert canonical_json(value) == rfc8785.dumps(value)
    assert python_sorted(value) != canonical_json(value)  # where the shortcut is wrong


def test_nested_astral_names_are_ordered_at_every_depth() -> None:
    value = {"z": [{"x": {"\uffff": 1, "\U00010000": 2, "a": 3}}], "\ue001": {"\U0010ffff": 0}}
    assert canonical_json(value) == rfc8785.dumps(value)


def test_control_characters_and_specials_are_escaped_as_jcs_says() -> None:
    text = "".join(map(chr, range(0x20))) + '"\\/\x7f\u2028\u2029\U0001f600é'
    assert canonical_json({"s": text}) == rfc8785.dumps({"s": text})
    assert b"\\u001f" in canonical_json({"s": text})  # lowercase hex
    assert b"\\b\\t\\n\\u000b\\f\\r" in canonical_json({"s": text})


def test_nested_mixed_value_with_float_deep_inside_matches_rfc8785() -> None:
    clean = {"k": ["a", 1, True, None, {"m": "n"}], "big": {"x": [1, 2, 3]}}
    value = {
        "clean": clean,
        "list": [clean, [clean, {"f": [0.5, clean]}], "s"],
        "b": {"c": {"d": {"e": 1e-7}}},
    }
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value", [None, True, False, 0, -1, "x", 2.5, [], {}, [[]], {"a": {}}], ids=repr
)
def test_any_json_value_at_top_level(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


def test_integers_are_exact_over_signed_64_bits_unlike_rfc8785() -> None:
    value = {"max": 2**63 - 1, "min": -(2**63), "edge": 2**53 + 1}
    assert canonical_json(value) == (
        b'{"edge":9007199254740993,"max":9223372036854775807,"min":-9223372036854775808}'
    )
    assert canonical_json(value) == python_sorted(value)  # the contract's promise
    with pytest.raises(rfc8785.IntegerDomainError):
        rfc8785.dumps(value)  # the departure recorded in docs/decisions.md


@pytest.mark.parametrize("number", [2**63, -(2**63) - 1, 10**30])
def test_integers_beyond_64_bits_are_host_misuse(number: int) -> None:
    with pytest.raises(LocalProtocolError, match="64 bits"):
        canonical_json({"a": [{"b": number}]})


def test_long_digit_strings_are_not_mistaken_for_big_integers() -> None:
    value = {"id": "1234567890123456789012", "n": [5, "x", 2**63 - 1]}
    assert canonical_json(value) == python_sorted(value)


@pytest.mark.parametrize(
    "value",
    [
        {1: "a"},
        {"a": {None: 1}},
        {"a": (1, 2)},
        {"a": {1, 2}},
        {"a": b"x"},
        {"a": object()},
        object(),
        (1, 2),
        {"a": "\ud800"},
        {"\udfff": 1},
        "\udc00",
        2**64,
        {"a": [{"b": 1.5, "c": "\ud800"}]},
    ],
    ids=repr,
)
def test_values_that_are_not_json_are_host_misuse(value: Any) -> None:
    with pytest.raises(LocalProtocolError):
        canonical_json(value)


def test_a_string_posing_as_a_float_stand_in_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="surrogate"):
        canonical_json({"a": [1.5, "\udfff0\udfff"]})


def test_str_subclasses_are_not_json_values_here() -> None:
    class Label(str):
        pass

    with pytest.raises(LocalProtocolError):
        canonical_json({"a": Label("x")})


def test_nesting_too_deep_to_walk_is_host_misuse() -> None:
    value: list[Any] = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(LocalProtocolError, match="deep"):
        canonical_json(value)
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(LocalProtocolError):
        canonical_json(cycle)


def test_float_at_the_bottom_of_a_deep_value_is_refused_not_crashed() -> None:
    value: Any = [1.5]
    for _ in range(990):
        value = [value]
    with pytest.raises(LocalProtocolError, match="deep"):
        canonical_json(value)


def test_state_checksum_is_sha256_of_the_bytes_in_lowercase_hex() -> None:
    assert state_checksum(b"{}") == "sha256:" + hashlib.sha256(b"{}").hexdigest()
    assert state_checksum(b"{}") == (
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", state_checksum(canonical_json({"é": 1.5})))


# --- differential: any value in rfc8785's domain ----------------------------

SPECIAL = st.sampled_from(
    ["\ue000", "\uffff", "\U00010000", "\U0001f600", "\U0010ffff", "\x00", "\x1f", '"', "\\"]
)
TEXT = st.text(st.one_of(SPECIAL, st.characters(blacklist_categories=("Cs",))), max_size=6)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-SAFE, SAFE),
    # The contract's domain: no float that RFC 8785 writes as an integer
    # outside signed 64 bits (refused; see WIDE above).
    st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda f: not float_spelled_as_wide_int(f)
    ),
    TEXT,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=30,
)


@SETTINGS
@given(VALUES)
def test_canonical_json_equals_rfc8785_on_its_domain(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@SETTINGS
@given(VALUES)
def test_canonical_bytes_always_read_back_as_the_same_bytes(value: Any) -> None:
    """Closure: whatever canonical_json accepts, strict decoding accepts, and
    canonicalizing again gives the same bytes (what a peer checks)."""
    data = canonical_json({"v": value})
    assert canonical_json(decode_json(data)) == data


@SETTINGS
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_float_equals_rfc8785(number: float) -> None:
    assert jcs_float(number) == rfc8785.dumps(number).decode()


BMP_TEXT = st.text(st.characters(blacklist_categories=("Cs",), max_codepoint=0xFFFF), max_size=6)
STATE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), TEXT),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(BMP_TEXT, inner, max_size=4)
    ),
    max_leaves=30,
)


@SETTINGS
@given(st.dictionaries(BMP_TEXT, STATE, max_size=5))
def test_float_free_bmp_state_equals_python_sorted_dumps(value: Any) -> None:
    assert canonical_json(value) == python_sorted(value)
