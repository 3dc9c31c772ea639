"""Strict JSON input and compact output (contract section 2), peersync_proto._json."""

from __future__ import annotations

import codecs
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peersync_proto._errors import LocalProtocolError, RemoteProtocolError
from peersync_proto._json import DEFAULT_MAX_DEPTH, _layout, decode_json, encode_json

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rejected(body: bytes, **kwargs: Any) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        decode_json(body, **kwargs)
    assert info.value.status == 400
    assert info.value.code == "invalid_json"
    return info.value


def nested(depth: int, *, opener: str = "[", closer: str = "]") -> str:
    """A top-level object holding ``depth - 1`` nested arrays: total depth ``depth``."""
    return '{"a":' + opener * (depth - 1) + closer * (depth - 1) + "}"


# --- a slow, obviously right reference ------------------------------------


class Refused(Exception):
    pass


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def reference_decode(body: bytes, max_depth: int = 64) -> dict[str, Any]:
    """The contract's rules applied one by one, with plain json.loads."""
    if body.startswith(codecs.BOM_UTF8):
        raise Refused("bom")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("utf-8") from None

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in items]
        if len(set(names)) != len(names):
            raise Refused("duplicate")
        return dict(items)

    def parse_int(s: str) -> int:
        value = int(s)
        if not -(2**63) <= value < 2**63:
            raise Refused("range")
        return value

    def parse_float(s: str) -> float:
        value = float(s)
        if math.isinf(value):
            raise Refused("overflow")
        return value

    def constant(name: str) -> Any:
        raise Refused(name)

    try:
        value = json.loads(
            text,
            object_pairs_hook=pairs,
            parse_int=parse_int,
            parse_float=parse_float,
            parse_constant=constant,
        )
    except ValueError:
        raise Refused("syntax") from None
    if _depth(value) > max_depth:
        raise Refused("depth")
    for s in _strings(value):
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            raise Refused("surrogate") from None
    if not isinstance(value, dict):
        raise Refused("top level")
    return value


# --- JSON text with every trap a scanner can fall into ----------------------

TRICKY_CHARS = '"\\[]{}:, \n\t/é\u2028\ue000\U0001f600\x00\x1f\x7fu0'


@st.composite
def json_string(draw: st.DrawFn) -> str:
    """A JSON string literal, escaped in a random but valid way (rarely a lone surrogate)."""
    chars = draw(
        st.lists(
            st.one_of(st.sampled_from(TRICKY_CHARS), st.characters(blacklist_categories=("Cs",))),
            max_size=6,
        )
    )
    out = ['"']
    for ch in chars:
        style = draw(st.integers(0, 3))
        if ch == '"':
            out.append('\\"' if style else "\\u0022")
        elif ch == "\\":
            out.append("\\\\" if style else "\\u005C")
        elif ch in "\b\f\n\r\t" and style:
            out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif ord(ch) < 0x20 or style == 0:
            units = ch.encode("utf-16-be")
            for i in range(0, len(units), 2):
                code = f"{int.from_bytes(units[i : i + 2], 'big'):04x}"
                out.append("\\u" + (code.upper() if style == 1 else code))
        elif ch == "/" and style == 1:
            out.append("\\/")
        else:
            out.append(ch)
    if draw(st.integers(0, 40)) == 0:
        out.append(draw(st.sampled_from(["\\ud800", "\\uDFFF", "\\udc00x"])))
    out.append('"')
    return "".join(out)


NUMBERS = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.integers(-1000, 1000).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(
        [
            "0",
            "-0",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "1e400",
            "-1e400",
            "1E5",
            "2.5e-3",
            "0.1",
            "-0.0",
            "123456789012345678901234567890",
        ]
    ),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)


def _ws(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(["", "", "", " ", "\n  ", "\t", "\r\n"]))


@st.composite
def json_text(draw: st.DrawFn, depth: int = 0) -> str:
    kind = draw(st.integers(0, 9)) if depth < 6 else draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.sampled_from(["true", "false", "null"]))
    if kind in (1, 2):
        return draw(NUMBERS)
    if kind in (3, 4):
        return draw(json_string())
    if kind in (5, 6):
        items = draw(st.lists(json_text(depth + 1), max_size=4))
        return "[" + ",".join(_ws(draw) + item + _ws(draw) for item in items) + "]"
    return draw(json_object(depth + 1))


@st.composite
def json_object(draw: st.DrawFn, depth: int = 0) -> str:
    names = draw(st.lists(json_string(), max_size=4, unique=True))
    if names and draw(st.integers(0, 30)) == 0:
        names.append(draw(st.sampled_from(names)))  # a duplicate, sometimes
    members = [
        _ws(draw) + name + _ws(draw) + ":" + _ws(draw) + draw(json_text(depth)) + _ws(draw)
        for name in names
    ]
    return "{" + ",".join(members) + "}"


def agree(body: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    try:
        expected = reference_decode(body, max_depth)
    except Refused:
        rejected(body, max_depth=max_depth)
    else:
        got = decode_json(body, max_depth=max_depth)
        assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


@SETTINGS
@given(json_object())
def test_decode_json_agrees_with_reference_on_tricky_text(text: str) -> None:
    agree(text.encode("utf-8"))


@SETTINGS
@given(json_text())
def test_any_top_level_agrees_with_reference(text: str) -> None:
    agree(_ws_wrap(text).encode("utf-8"))


def _ws_wrap(text: str) -> str:
    return " " + text + "\n"


@SETTINGS
@given(json_object(), st.integers(1, 8))
def test_depth_limit_agrees_with_reference_for_any_limit(text: str, limit: int) -> None:
    agree(text.encode("utf-8"), max_depth=limit)


@SETTINGS
@given(json_object())
def test_byte_scan_counts_members_and_depth_exactly(text: str) -> None:
    members = 0

    def count(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal members
        members += len(items)
        return {str(i): member for i, (_, member) in enumerate(items)}  # duplicates kept

    value = json.loads(text, object_pairs_hook=count)  # lenient: dups, 1e400, surrogates
    body = text.encode("utf-8", "surrogatepass")
    layout = _layout(body, _depth(value), escapes=b"\\" in body)
    assert (layout.members, layout.too_deep, layout.unbalanced) == (members, False, False)
    assert _layout(body, _depth(value) - 1, escapes=b"\\" in body).too_deep


JUNK = st.sampled_from(["x", "}", "]", ",", "{}", '"', "0", "null", "\\", "/", "\x00", "{"])


@SETTINGS
@given(json_object(), JUNK)
def test_decode_json_whole_and_with_trailing_junk(text: str, junk: str) -> None:
    body = text.encode("utf-8")
    try:
        whole = decode_json(body)
    except RemoteProtocolError as whole_error:
        assert whole_error.code == "invalid_json"
        rejected(body + junk.encode("utf-8"))  # junk never repairs a bad body
    else:
        assert whole == reference_decode(body)
        rejected(body + junk.encode("utf-8"))
        assert decode_json(body + b" \r\n\t") == whole  # whitespace is not junk


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_invalid_json(body: bytes) -> None:
    try:
        result = decode_json(body)
    except RemoteProtocolError as exc:
        assert exc.code == "invalid_json"
    else:
        assert isinstance(result, dict)


@SETTINGS
@given(json_object(), st.data())
def test_mutated_text_raises_only_invalid_json(text: str, data: st.DataObject) -> None:
    body = bytearray(text.encode("utf-8"))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body)))
        body[at:at] = data.draw(st.binary(min_size=1, max_size=3))
    agree(bytes(body))


# --- each rule, by name ----------------------------------------------------


def test_valid_object_decodes_to_plain_python() -> None:
    body = b'{"a": [1, -2, 2.5, true, false, null, "x\\u00e9\\n"], "b": {"c": {}}}'
    assert decode_json(body) == {
        "a": [1, -2, 2.5, True, False, None, "x\u00e9\n"],
        "b": {"c": {}},
    }


def test_bytearray_and_memoryview_bodies_are_accepted() -> None:
    assert decode_json(bytearray(b'{"a":1}')) == {"a": 1}
    assert decode_json(memoryview(b'{"a":1}')) == {"a": 1}


def test_body_that_is_not_bytes_is_host_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        decode_json('{"a":1}')  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":"\xff"}',
        b'{"a":"\xc3"}',
        b'{"a":"\xc0\xaf"}',  # overlong
        b'{"a":"\xed\xa0\x80"}',  # an encoded surrogate (CESU-8)
        codecs.BOM_UTF8 + b'{"a":1}',
        '{"a":1}'.encode("utf-16"),
        '{"a":1}'.encode("utf-16-le"),
        '{"a":1}'.encode("utf-16-be"),
        '{"a":1}'.encode("utf-32"),
        '{"a":1}'.encode("utf-32-le"),
    ],
)
def test_non_utf8_bodies_are_invalid_json(body: bytes) -> None:
    rejected(body)


@pytest.mark.parametrize(
    "body",
    [b"", b" ", b"{", b'{"a"}', b"{'a':1}", b'{"a":1,}', b"{a:1}", b'{"a":01}', b'{"a":.5}'],
)
def test_text_that_is_not_json_is_invalid_json(body: bytes) -> None:
    assert "not JSON" in rejected(body).message


@pytest.mark.parametrize("junk", [b"x", b"{}", b"}", b'"', b"\x00", b"1"])
def test_trailing_garbage_is_invalid_json(junk: bytes) -> None:
    rejected(b'{"a":1}' + junk)
    rejected(b'{"a":1} ' + junk)


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinities_are_invalid_json(constant: bytes) -> None:
    assert constant.decode().lstrip("-") in rejected(b'{"a":' + constant + b"}").message


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1.5e99999999999999999999"])
def test_float_overflow_is_invalid_json(number: bytes) -> None:
    assert "overflows" in rejected(b'{"a":[' + number + b"]}").message


def test_huge_integer_is_invalid_json_without_leaking_the_digit_limit() -> None:
    assert "64 bits" in rejected(b'{"a":' + b"7" * 5000 + b"}").message
    assert "64 bits" in rejected(b'{"a":-' + b"7" * 5000 + b"}").message


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        (2**63 - 1, True),
        (-(2**63), True),
        (2**63, False),
        (-(2**63) - 1, False),
        (10**19, False),
        (-(10**19), False),
        (10**18, True),
    ],
)
def test_integers_must_fit_signed_64_bits(number: int, ok: bool) -> None:
    body = b'{"a":{"b":[%d]}}' % number
    if ok:
        assert decode_json(body) == {"a": {"b": [number]}}
    else:
        rejected(body)


def test_long_digit_runs_inside_strings_do_not_refuse_small_integers() -> None:
    body = b'{"id":"12345678901234567890123","n":1,"m":-9223372036854775808}'
    assert decode_json(body) == {"id": "12345678901234567890123", "n": 1, "m": -(2**63)}


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":1,"a":1}',
        b'{"a":1, "b":2 , "a" :3}',
        b'{"x":{"a":1,"a":2}}',
        b'{"x":[1,{"a":{"k":1,"k":2}}]}',
        b'{"\\u0061":1,"a":2}',  # the same name, spelled differently
        b'{"a:b":1,"a:b":2}',
    ],
)
def test_duplicate_names_at_any_depth_are_invalid_json(body: bytes) -> None:
    assert "duplicate" in rejected(body).message


def test_colons_and_quotes_inside_strings_are_not_members() -> None:
    body = b'{"a":"x:y\\":z","b\\\\":"\\\\","c":[":",{"d":"::"}]}'
    assert decode_json(body) == {"a": 'x:y":z', "b\\": "\\", "c": [":", {"d": "::"}]}


def test_nesting_of_64_is_accepted_and_65_refused() -> None:
    assert decode_json(nested(64).encode())
    assert "deeper than 64" in rejected(nested(65).encode()).message
    deep_objects = '{"a":' * 64 + "1" + "}" * 64
    assert decode_json(deep_objects.encode())
    rejected(('{"a":' * 65 + "1" + "}" * 65).encode())


def test_max_depth_is_the_depth_of_the_top_level_object() -> None:
    assert decode_json(b'{"a":[]}', max_depth=2) == {"a": []}
    rejected(b'{"a":[[]]}', max_depth=2)
    assert decode_json(b"{}", max_depth=1) == {}
    rejected(b'{"a":[]}', max_depth=1)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    body = ('{"a":"' + "[" * 500 + '","b":"' + "{" * 500 + '"}').encode()
    assert decode_json(body)["a"] == "[" * 500


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_hundred_thousand_deep_is_invalid_json_not_a_crash(opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    rejected((opener * 100_000 + closer * 100_000).encode())
    rejected((opener * 100_000).encode())  # unclosed too


def test_deeper_than_the_parser_can_go_is_invalid_json_even_with_a_huge_limit() -> None:
    body = ("[" * 5000 + "]" * 5000).encode()
    assert "not JSON" in rejected(b'{"a":' + body + b"}", max_depth=10_000).message


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"[]", "an array"),
        (b'"x"', "a string"),
        (b"1", "a number"),
        (b"-2.5", "a number"),
        (b"true", "a boolean"),
        (b"null", "null"),
    ],
)
def test_top_level_that_is_not_an_object_is_invalid_json(body: bytes, kind: str) -> None:
    assert kind in rejected(body).message


@pytest.mark.parametrize(
    "escape", [b"\\ud800", b"\\uDBFF", b"\\udc00", b"\\uDFFF", b"\\ud800\\u0041", b"\\udc00\\ud800"]
)
def test_lone_surrogate_escapes_are_invalid_json(escape: bytes) -> None:
    assert "surrogate" in rejected(b'{"a":"x' + escape + b'"}').message
    rejected(b'{"' + escape + b'":1}')  # in a name too
    rejected(b'{"a":[{"b":["' + escape + b'"]}]}')


def test_surrogate_pairs_and_escaped_backslashes_are_fine() -> None:
    assert decode_json(b'{"a":"\\ud83d\\ude00"}') == {"a": "\U0001f600"}
    assert decode_json(b'{"a":"\\\\ud800"}') == {"a": "\\ud800"}


# --- encode_json ---------------------------------------------------------------


def test_encode_json_is_compact_utf8_with_non_ascii_kept() -> None:
    assert encode_json({"a": [1, True, None], "é": "\U0001f600"}) == (
        '{"a":[1,true,null],"é":"\U0001f600"}'.encode()
    )


def test_encode_json_keeps_insertion_order() -> None:
    assert encode_json({"b": 1, "a": 2}) == b'{"b":1,"a":2}'


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, {1, 2}, b"bytes", "\ud800", object()],
)
def test_encode_json_refuses_what_is_not_json_as_host_misuse(value: Any) -> None:
    with pytest.raises(LocalProtocolError):
        encode_json({"a": value})


def test_encode_json_then_decode_json_round_trips() -> None:
    obj = {"a": [1, 2.5, "x\n\u2028"], "b": {"c": None, "d": -(2**63)}}
    assert decode_json(encode_json(obj)) == obj
