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
:func:`canonical_json` surveys the value once, level by level with C-level
passes, and lets the C encoder write every subtree that has neither; only the
containers on the path to a float or to such a name are written here.

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
from collections.abc import Callable, Iterable
from itertools import chain, compress, repeat
from typing import Any, TypeAlias

from ._errors import LocalProtocolError
from ._values import INT64_MAX, INT64_MIN, float_spelled_as_wide_int

__all__ = ["JSONValue", "canonical_json", "jcs_float", "state_checksum"]

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"

_INF = float("inf")
_SCALARS = frozenset({type(None), bool, int, float, str})
_CONTAINERS = frozenset({dict, list})
_ALLOWED = _SCALARS | _CONTAINERS
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
#: Deepest value :func:`canonical_json` walks (a cycle would never end).
MAX_WALK_DEPTH = 1000
_LONG_DIGITS = b"0" * 19
_DIGITS_ONLY = bytes(0x30 if 0x30 <= b <= 0x39 else 0x78 for b in range(256))
# Marks a stand-in string in the C encoder's output: a lone surrogate, which
# no string that can be written as UTF-8 holds.
_MARK = "\udfff"

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


def _member_float(value: float) -> str:
    """:func:`jcs_float` of a float in a value being canonicalized, refusing
    one RFC 8785 writes as an integer outside signed 64 bits: its canonical
    bytes would read back as an integer the contract refuses."""
    if float_spelled_as_wide_int(value):
        raise LocalProtocolError(f"{value!r} is written as an integer outside signed 64 bits")
    return jcs_float(value)


def _not_json(types: set[type]) -> LocalProtocolError:
    names = ", ".join(sorted(t.__name__ for t in types))
    return LocalProtocolError(f"{names} is not a JSON value")


def _check_ints(values: Iterable[Any], types: list[type]) -> None:
    ints = list(compress(values, map(operator.is_, types, repeat(int))))
    if min(ints) < INT64_MIN or max(ints) > INT64_MAX:
        raise LocalProtocolError("an integer is outside signed 64 bits")


def _names(objects: list[dict[Any, Any]]) -> str:
    try:
        return "".join(chain.from_iterable(objects))
    except TypeError:
        raise LocalProtocolError("object member names must be str") from None


def _clean(level: list[Any], *, check_ints: bool) -> int | None:
    """Validate the values in ``level``. None when they hold no float and no
    non-BMP member name; else how many levels :func:`_survey` must look at.

    Level by level, with a few C-level passes over all the members of a level
    at once; the Python work is per level and per container, never per
    scalar. Integers are range-checked only with ``check_ints``.
    """
    needed: int | None = None
    for depth in range(MAX_WALK_DEPTH):
        types = list(map(type, level))
        kinds = set(types)
        if not kinds <= _ALLOWED:
            raise _not_json(kinds - _ALLOWED)
        if check_ints and int in kinds:
            _check_ints(level, types)
        if float in kinds:
            needed = depth  # the owners of these floats are one level up
        if not kinds & _CONTAINERS:
            return needed
        containers = list(compress(level, map(_CONTAINERS.__contains__, types)))
        names = _names([c for c in containers if type(c) is dict])
        if not names.isascii() and _ASTRAL.search(names):
            needed = depth + 1
        members = [c.values() if type(c) is dict else c for c in containers]
        level = list(chain.from_iterable(members))
    raise LocalProtocolError(f"value nests deeper than {MAX_WALK_DEPTH} levels")


def _survey(value: Any, levels: int) -> tuple[set[int], set[int]]:
    """For a value :func:`_clean` accepted: the ids of its *dirty* containers
    (holding a float or a non-BMP member name, themselves or below; the C
    encoder writes every other container as JCS does), and of the objects
    with a non-BMP member name (their members need UTF-16 order). Only the
    top ``levels`` levels of containers can be dirty.
    """
    level: list[Any] = [value]
    parents: list[int] = [-1]  # index in the level above of each container's owner
    history: list[tuple[list[Any], list[int], set[int]]] = []
    astral: set[int] = set()
    for _ in range(levels):
        members = [c.values() if type(c) is dict else c for c in level]
        flat = list(chain.from_iterable(members))
        owner = list(chain.from_iterable(map(repeat, range(len(level)), map(len, members))))
        types = list(map(type, flat))
        marked = set(compress(owner, map(operator.is_, types, repeat(float))))
        names = "".join(chain.from_iterable(c for c in level if type(c) is dict))
        if not names.isascii() and _ASTRAL.search(names):
            for i, container in enumerate(level):
                if type(container) is dict and _ASTRAL.search("".join(container)):
                    marked.add(i)
                    astral.add(id(container))
        history.append((level, parents, marked))
        nested = list(map(_CONTAINERS.__contains__, types))
        level = list(compress(flat, nested))
        parents = list(compress(owner, nested))
    dirty: set[int] = set()
    carry: set[int] = set()
    for containers, owners, marked in reversed(history):
        here = marked | carry
        dirty.update(id(containers[i]) for i in here)
        carry = {owners[i] for i in here}
    return dirty, astral


class _Spliced:
    """Stands in, in a copy of a dirty container, for text written here."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def _marked(spliced: _Spliced) -> str:
    return _MARK + str(spliced.index) + _MARK


def _render(value: Any, dirty: set[int], astral: set[int]) -> str:
    """JCS text of a value :func:`_survey` looked at.

    Floats, and objects with a non-BMP member name, are written here and
    spliced into the C encoder's text of everything else: the dirty
    containers are copied with :class:`_Spliced` stand-ins (the encoder's
    ``default`` writes them as marked strings); clean subtrees are shared, so
    the C encoder still writes nearly all of the text in one call.
    """
    pieces: list[str] = []

    def stand_in(text: str) -> _Spliced:
        pieces.append(text)
        return _Spliced(len(pieces) - 1)

    def copy(item: Any) -> Any:
        if type(item) is float:
            return stand_in(_member_float(item))
        if id(item) not in dirty:
            return item
        if id(item) in astral:
            names = sorted(item, key=utf16_order)
            members = (_fast(name) + ":" + _render(item[name], dirty, astral) for name in names)
            return stand_in("{" + ",".join(members) + "}")
        if type(item) is dict:
            return {name: copy(member) for name, member in item.items()}
        return [copy(member) for member in item]

    text = json.dumps(
        copy(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=_marked,
    )
    # text == ... '"' MARK index MARK '"' ... for each stand-in, in order.
    parts = text.split(_MARK)
    if len(parts) != 2 * len(pieces) + 1:  # a string of the value holds the mark
        raise UnicodeEncodeError("utf-8", _MARK, 0, 1, "lone surrogate")
    if not pieces:
        return text
    out = [parts[0][:-1]]
    for index, between in zip(parts[1::2], parts[2::2], strict=True):
        out.append(pieces[int(index)])
        out.append(between[1:-1])
    out[-1] = parts[-1][1:]
    return "".join(out)


def canonical_json(value: JSONValue) -> bytes:
    """The RFC 8785 canonical UTF-8 form of a JSON value.

    Raises :class:`LocalProtocolError` (the host handed in something that is
    not JSON) for NaN and infinities, non-str member names, types other than
    dict, list, str, int, float, bool and None, integers outside signed 64
    bits (a float RFC 8785 writes as such an integer, ``1e20``, too), lone
    surrogates, and nesting too deep to walk.
    """
    try:
        levels = _clean([value], check_ints=False)
        if levels is None:
            data = _fast(value).encode("utf-8")
        else:
            data = _render(value, *_survey(value, levels)).encode("utf-8")
    except RecursionError:
        raise LocalProtocolError("value is nested too deeply to canonicalize") from None
    except UnicodeEncodeError:
        raise LocalProtocolError("a string holds a lone surrogate; it has no UTF-8 form") from None
    # An integer out of range has 19 or more digits: look for such runs in the
    # text (one C pass) and only then check the integers one by one.
    if _LONG_DIGITS in data.translate(_DIGITS_ONLY):
        _clean([value], check_ints=True)
    return data


def state_checksum(canonical: bytes) -> str:
    """``"sha256:"`` and the 64 lowercase hex digits of SHA-256 over ``canonical``."""
    return "sha256:" + hashlib.sha256(canonical).hexdigest()
