"""Strict JSON in, compact JSON out (contract section 2).

Input is refused with ``400 invalid_json`` for: bytes that are not UTF-8 (a
UTF-8 byte order mark, UTF-16 and UTF-32 included), text that is not JSON or
has anything after the value, ``NaN`` and the infinities, a number that
overflows a double (``1e400``), an integer outside signed 64 bits (however
many digits), a duplicate member name at any depth, nesting deeper than
``max_depth`` (64 by default; a top-level object is depth 1), a lone UTF-16
surrogate escape (``"\\ud800"`` has no UTF-8 form) and, for
:func:`decode_json`, a top level that is not an object. No other exception
escapes, whatever the bytes.

How it stays close to the speed of a bare ``json.loads`` on 50 MB snapshots:
the checks that would need Python code per value are done with C passes over
the bytes instead (see :func:`_layout`):

- nesting depth is measured *before* parsing, on the brackets left once the
  strings are cut out, so a 100,000-deep body never reaches the recursive
  parser;
- duplicate names are found by counting: the colons outside strings are the
  member count of the text, and the parsed objects (collected by an
  ``object_hook``, one cheap call per object) must hold as many members;
- integers need a checking hook only when the bytes hold a run of 19 or more
  digits somewhere; otherwise every integer is in range by length alone;
- lone surrogates need a check only when the bytes hold a ``\\uD8..`` to
  ``\\uDF..`` escape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._errors import LocalProtocolError, RemoteProtocolError
from ._values import INT64_MAX, INT64_MIN, float_spelled_as_wide_int

__all__ = ["DEFAULT_MAX_DEPTH", "decode_json", "encode_json"]

#: Deepest nesting accepted (contract 2); a top-level object is depth 1.
DEFAULT_MAX_DEPTH = 64

_INF = float("inf")
_BOM = b"\xef\xbb\xbf"
# Structural view of the bytes: quotes, brackets as ( and ), colons, and any
# JSON whitespace as a space; everything else is deleted.
_MARKS = bytes.maketrans(b"[{]}\t\n\r", b"(())   ")
_NOT_MARKS = bytes(sorted(set(range(256)) - set(b'"[]{}: \t\n\r')))
_DIGITS_ONLY = bytes(0x30 if 0x30 <= b <= 0x39 else 0x78 for b in range(256))
_LONG_DIGITS = b"0" * 19
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def invalid_json_error(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, status=400, code="invalid_json")


@attrs.frozen(kw_only=True, slots=True)
class _Layout:
    """What C passes over the bytes tell about a body that parses."""

    members: int  #: colons outside strings: member count of all objects
    compact: bool  #: no whitespace between tokens (before and after the value aside)
    too_deep: bool  #: brackets nest deeper than the limit
    unbalanced: bool  #: brackets do not pair up: not JSON


def _layout(body: bytes, max_depth: int, *, escapes: bool) -> _Layout:
    """Measure structure without parsing, in a handful of C passes.

    Escaped backslashes, then escaped quotes, are cut out (JSON pairs
    backslashes left to right, exactly as ``bytes.replace`` does), so every
    quote left delimits a string. Everything but quotes, brackets, colons and
    whitespace is deleted. Adjacent quotes are dropped: that removes a string
    with nothing structural inside, or merges two strings with nothing between
    them, so the quotes left still pair up; splitting on them keeps the text
    outside strings. Depth: each pass of ``replace("()", "")`` removes every
    innermost pair, so a body of depth ``d`` is empty after exactly ``d``
    passes. The result is exact for any text that parses; other text may be
    called too deep or unbalanced, which is refused all the same.
    """
    if escapes:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = body.translate(_MARKS, _NOT_MARKS).replace(b'""', b"")
    if b'"' in marks:
        marks = b"".join(marks.split(b'"')[::2])
    nest = marks.translate(None, b": ")
    for _ in range(max_depth):
        if not nest:
            break
        nest = nest.replace(b"()", b"")
    unbalanced = nest.count(b"(") != nest.count(b")")
    return _Layout(
        members=marks.count(b":"),
        compact=b" " not in marks.strip(),
        too_deep=bool(nest) and not unbalanced,
        unbalanced=unbalanced,
    )


@attrs.frozen(kw_only=True, slots=True)
class Source:
    """A body that is UTF-8 and not too deep, with what its bytes tell."""

    body: bytes
    text: str
    layout: _Layout
    long_digits: bool  #: some run of 19+ digits: integers need the checking hook
    escapes: bool  #: some backslash: the text has escapes
    surrogate_escapes: bool  #: some \\uD800-\\uDFFF escape: strings need a UTF-8 check


def prepare(body: bytes, max_depth: int) -> Source:
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise LocalProtocolError(f"body must be bytes, got {type(body).__name__}")
    body = bytes(body)
    if body.startswith(_BOM):
        raise invalid_json_error("JSON must be UTF-8 without a byte order mark")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid_json_error(f"body is not UTF-8 (byte {exc.start})") from None
    escapes = b"\\" in body
    layout = _layout(body, max_depth, escapes=escapes)
    if layout.unbalanced:
        raise invalid_json_error("not JSON: brackets do not pair up")
    if layout.too_deep:
        raise invalid_json_error(f"JSON nests deeper than {max_depth} levels")
    return Source(
        body=body,
        text=text,
        layout=layout,
        long_digits=_LONG_DIGITS in body.translate(_DIGITS_ONLY),
        escapes=escapes,
        surrogate_escapes=escapes and _SURROGATE_ESCAPE.search(body) is not None,
    )


def _reject_constant(name: str) -> Any:
    raise invalid_json_error(f"{name} is not a JSON number")


def checked_float(text: str) -> float:
    """``parse_float`` hook: a finite double."""
    value = float(text)
    if value in (_INF, -_INF):
        raise invalid_json_error(f"number {text[:40]} overflows a double")
    if float_spelled_as_wide_int(value):
        raise invalid_json_error(f"number {text[:40]} is an integer outside signed 64 bits")
    return value


def _checked_int(text: str) -> int:
    # int() refuses more than 4,300 digits; past 20 characters no integer is
    # in range anyway, so those are never converted.
    if len(text) <= 20:
        value = int(text)
        if INT64_MIN <= value <= INT64_MAX:
            return value
    shown = text if len(text) <= 24 else text[:24] + "..."
    raise invalid_json_error(f"integer {shown} is outside signed 64 bits")


def make_decoder(
    source: Source, objects: list[dict[str, Any]], parse_float: Callable[[str], Any]
) -> json.JSONDecoder:
    """A strict decoder that appends every object it builds to ``objects``."""

    def collect(obj: dict[str, Any]) -> dict[str, Any]:
        objects.append(obj)
        return obj

    return json.JSONDecoder(
        object_hook=collect,
        parse_float=parse_float,
        parse_int=_checked_int if source.long_digits else None,
        parse_constant=_reject_constant,
    )


def _name_duplicate(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise invalid_json_error(f"duplicate member name {name[:64]!r}")
        seen.add(name)
    return {}


def check_members(source: Source, parsed: int) -> None:
    """Refuse duplicate names: the text holds more members than were parsed."""
    if source.layout.members != parsed:
        # Error path only: parse again to name the duplicate.
        json.loads(source.text, object_pairs_hook=_name_duplicate)
        raise AssertionError("member count and duplicate search disagree")


def check_utf8(value: Any, default: Callable[[Any], Any] | None = None) -> None:
    """Refuse strings holding lone surrogates (they have no UTF-8 form).

    ``default`` stands in for values the decoder made that are not JSON types.
    """
    try:
        json.dumps(value, ensure_ascii=False, default=default).encode("utf-8")
    except UnicodeEncodeError:
        raise invalid_json_error("a string holds a lone UTF-16 surrogate escape") from None


def parse_guard(exc: ValueError | RecursionError) -> RemoteProtocolError:
    """The error for whatever :mod:`json` raised while parsing."""
    return invalid_json_error(f"not JSON: {exc}")


def decode_json(body: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> dict[str, Any]:
    """Parse a request body strictly; the top level must be an object.

    Raises :class:`RemoteProtocolError` (``400 invalid_json``) and nothing
    else for bad bytes.
    """
    source = prepare(body, max_depth)
    objects: list[dict[str, Any]] = []
    decoder = make_decoder(source, objects, checked_float)
    try:
        value = decoder.decode(source.text)
    except (ValueError, RecursionError) as exc:
        raise parse_guard(exc) from None
    check_members(source, sum(map(len, objects)))
    if source.surrogate_escapes:
        check_utf8(value)
    if type(value) is not dict:
        raise invalid_json_error(f"the top level must be a JSON object, not {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def encode_json(obj: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON for a response body.

    NaN, infinities, non-JSON types and lone surrogates are the caller's bug:
    :class:`LocalProtocolError`.
    """
    try:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as exc:
        raise LocalProtocolError(f"response body is not JSON: {exc}") from None
