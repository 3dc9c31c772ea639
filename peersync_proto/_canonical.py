"""RFC 8785 (JSON Canonicalization Scheme) and the state checksum.

The snapshot checksum (contract 3.4) is SHA-256 over the JCS form of ``state``,
so an engine written in any language computes the same value. JCS is the
compact JSON that ECMAScript's ``JSON.stringify`` writes, with object members
sorted by the UTF-16 code units of their names.

For values made of objects, arrays, strings, integers, booleans and null,
that is exactly what the C encoder of :mod:`json` writes with
``sort_keys=True, separators=(",", ":"), ensure_ascii=False``. The two differ
only on floats (ECMAScript number formatting) and on member names outside the
Basic Multilingual Plane (UTF-16 order is not code-point order there). So
:func:`canonical_json` surveys the value once, container by container, and
lets the C encoder write every subtree that has neither; only the containers
on the path to a float or to such a name are written here.

One deliberate departure from RFC 8785, recorded in ``docs/decisions.md``:
integers are written exactly in decimal over the whole signed 64-bit range.
RFC 8785 would route an integer beyond 2**53 through a double and round it; the
contract promises 64-bit integers and says the canonical form of such state
equals Python's ``json.dumps``, which writes them exactly.
"""

from __future__ import annotations

import hashlib
import json
import operator
import re
from collections.abc import Callable
from typing import Any, TypeAlias

from ._errors import LocalProtocolError
from ._values import INT64_MAX, INT64_MIN

__all__ = ["JSONValue", "canonical_json", "jcs_float", "state_checksum"]

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"

_INF = float("inf")
_SCALARS = frozenset({type(None), bool, int, float, str})
_CONTAINERS = frozenset({dict, list})
_ALLOWED = _SCALARS | _CONTAINERS
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_LONG_DIGITS = b"0" * 19
_DIGITS_ONLY = bytes(0x30 if 0x30 <= b <= 0x39 else 0x78 for b in range(256))

#: Sort key giving RFC 8785 member order: UTF-16 code units, compared as
#: big-endian byte strings. ``surrogatepass`` so that a lone surrogate is
#: reported by the UTF-8 encoding step, not by the sort.
utf16_order: Callable[[str], bytes] = operator.methodcaller("encode", "utf-16-be", "surrogatepass")


def _fast(value: Any) -> str:
    """The C encoder's compact, sorted, non-ASCII-preserving form."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def jcs_float(value: float) -> str:
    """A finite float as ECMAScript's ``Number.prototype.toString`` writes it.

    Python's ``repr`` already gives the shortest digits that round-trip (the
    same digits ECMAScript picks); only the layout differs: ECMAScript writes
    plain decimals from 1e-6 up to (not including) 1e21 and an exponent with an
    explicit sign and no leading zero outside that range.
    """
    if value != value or value in (_INF, -_INF):
        raise LocalProtocolError(f"{value!r} has no JSON form")
    if value == 0:
        return "0"  # -0.0 too: ECMAScript writes both zeros as 0
    if value < 0:
        return "-" + jcs_float(-value)
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    # value == 0.<digits> * 10**point
    count = len(digits)
    if count <= point <= 21:
        return digits + "0" * (point - count)
    if 0 < point <= 21:
        return digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return "0." + "0" * -point + digits
    exp = point - 1
    head = digits[0] + ("." + digits[1:] if count > 1 else "")
    return f"{head}e{'+' if exp > 0 else '-'}{abs(exp)}"


def _check_ints(values: Any) -> None:
    for item in values:
        if type(item) is int and not INT64_MIN <= item <= INT64_MAX:
            raise LocalProtocolError(f"integer {item} is outside signed 64 bits")


def _survey(value: Any, dirty: set[int], *, check_ints: bool) -> bool:
    """Validate ``value``; record in ``dirty`` the containers the C encoder
    would write differently from JCS (they hold a float or a non-BMP member
    name, themselves or below). Returns whether ``value`` itself is dirty.

    The work per container is a few C-level passes over its members; only
    containers nested in containers are walked member by member.
    """
    kind = type(value)
    if kind is dict:
        key_types = set(map(type, value))
        if key_types - {str}:
            raise LocalProtocolError(f"object member names must be str, got {key_types - {str}}")
        names = "".join(value)
        mark = not names.isascii() and _ASTRAL.search(names) is not None
        members: Any = value.values()
    elif kind is list:
        mark = False
        members = value
    else:
        if kind not in _SCALARS:
            raise LocalProtocolError(f"{kind.__name__} is not a JSON value")
        return kind is float
    types = set(map(type, members))
    if not types <= _ALLOWED:
        bad = ", ".join(sorted(t.__name__ for t in types - _ALLOWED))
        raise LocalProtocolError(f"{bad} is not a JSON value")
    if float in types:
        mark = True
    if check_ints and int in types:
        _check_ints(members)
    if types & _CONTAINERS:
        for item in members:
            if type(item) in _CONTAINERS and _survey(item, dirty, check_ints=check_ints):
                mark = True
    if mark:
        dirty.add(id(value))
    return mark


def _exact(value: Any, dirty: set[int]) -> str:
    """JCS text of a surveyed value: C encoder for clean subtrees."""
    kind = type(value)
    if kind is float:
        return jcs_float(value)
    if id(value) not in dirty:
        return _fast(value)
    if kind is dict:
        names = sorted(value, key=utf16_order)
        return (
            "{" + ",".join(_fast(name) + ":" + _exact(value[name], dirty) for name in names) + "}"
        )
    return "[" + ",".join(_exact(item, dirty) for item in value) + "]"


def canonical_json(value: JSONValue) -> bytes:
    """The RFC 8785 canonical UTF-8 form of a JSON value.

    Raises :class:`LocalProtocolError` (the host handed in something that is
    not JSON) for NaN and infinities, non-str member names, types other than
    dict, list, str, int, float, bool and None, integers outside signed 64
    bits, lone surrogates, and nesting too deep to walk.
    """
    dirty: set[int] = set()
    try:
        _survey(value, dirty, check_ints=False)
        text = _exact(value, dirty)
        data = text.encode("utf-8")
    except RecursionError:
        raise LocalProtocolError("value is nested too deeply to canonicalize") from None
    except UnicodeEncodeError:
        raise LocalProtocolError("a string holds a lone surrogate; it has no UTF-8 form") from None
    # An integer out of range has 19+ digits; look for such runs in the output
    # (a C pass) and only then check the integers one by one.
    if _LONG_DIGITS in data.translate(_DIGITS_ONLY):
        _survey(value, set(), check_ints=True)
    return data


def state_checksum(canonical: bytes) -> str:
    """``"sha256:"`` and the 64 lowercase hex digits of SHA-256 over ``canonical``."""
    return "sha256:" + hashlib.sha256(canonical).hexdigest()
