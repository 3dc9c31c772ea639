"""State snapshot bodies (contract 3.4): decoding a PUT, encoding a GET.

:func:`decode_snapshot` is a pure function of the body bytes, so a shell may
run it in a worker process (parsing 50 MB holds the GIL for a second or more)
and hand the engine its result. It returns the validated envelope with the
state as canonical (RFC 8785) bytes, which the engine stores and serves
without parsing again; :func:`encode_snapshot` builds a GET body around those
bytes, again without parsing them.

Speed: a body built by :func:`encode_snapshot` (or by any engine that embeds
the state in canonical form, compact) is recognised as such and its state
bytes are taken as they are, so checking it costs little more than parsing
it. Recognising needs C passes over the bytes (no whitespace between tokens,
no escape JCS would not write, no ``-0``) plus one order check per distinct
*set of member names* (objects of one shape share it); every float is
compared with its JCS spelling by the float hook. Any other body has its state
written out again by the C encoder, floats through placeholders: about twice
the cost of the parse.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any

from ._canonical import jcs_float, state_checksum, utf16_order
from ._errors import LocalProtocolError, RemoteProtocolError
from ._json import (
    DEFAULT_MAX_DEPTH,
    Source,
    check_members,
    check_utf8,
    checked_float,
    invalid_json_error,
    make_decoder,
    parse_guard,
    prepare,
)
from ._values import INT64_MAX, DecodedSnapshot, Role

__all__ = ["FORMAT_VERSION", "decode_snapshot", "encode_snapshot"]

#: The only snapshot ``formatVersion`` this core reads and writes.
FORMAT_VERSION = 1
#: Longest ``engineLabel`` and longest ``programSource``/``previewSource``.
MAX_LABEL_CHARS = 32
MAX_SOURCE_CHARS = 256

_CHECKSUM = re.compile(r"sha256:[0-9a-f]{64}")
_WS = re.compile(r"[ \t\n\r]*")
# A backslash escape JCS would not write: JCS escapes only the quote, the
# backslash and C0 controls (\b \f \n \r \t short, the rest as lowercase \u00xx).
_ESCAPE_NOT_JCS = re.compile(rb'\\(?:[^"\\bfnrtu]|u(?!00(?:0[0-7bef]|1[0-9a-f])))')
# The integer -0 in compact text (JCS writes 0).
_NEG_ZERO = re.compile(rb"-0(?=[,\]}])(?<=[\[:,]-0)")
_ASTRAL_LEAD_BYTES = (b"\xf0", b"\xf1", b"\xf2", b"\xf3", b"\xf4")
# Float placeholder: a lone surrogate cannot occur in a string that was
# accepted, so a string "<MARK>1.5<MARK>" in the output can only be ours.
_MARK = "\udfff"
_INT_FIELDS = ("epoch", "capturedAtUs", "lastCommandSeq", "lastExecutedSeq")


class _Float:
    """What the state decoder makes of a JSON float: its JCS spelling."""

    __slots__ = ("jcs", "verbatim")

    def __init__(self, text: str) -> None:
        self.jcs = jcs_float(checked_float(text))
        self.verbatim = self.jcs == text


def _placeholder(token: _Float) -> str:
    return _MARK + token.jcs + _MARK


def _skip_ws(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _members(
    text: str, plain: json.JSONDecoder, stateful: json.JSONDecoder
) -> tuple[dict[str, Any], int, int]:
    """Parse the top-level object by hand, to learn where ``state`` lies.

    Member values are parsed by the C scanner; ``state`` by ``stateful``.
    Returns the members and the span of the ``state`` value in ``text``.
    """
    pos = _skip_ws(text, 0)
    if not text.startswith("{", pos):
        plain.decode(text)  # raises if it is not JSON at all
        raise invalid_json_error("the top level must be a JSON object")
    fields: dict[str, Any] = {}
    start = end = 0
    pos = _skip_ws(text, pos + 1)
    if text.startswith("}", pos):
        pos += 1
    else:
        while True:
            if not text.startswith('"', pos):
                raise invalid_json_error(f"not JSON: expecting a member name at character {pos}")
            name, pos = plain.raw_decode(text, pos)
            if name in fields:
                raise invalid_json_error(f"duplicate member name {name[:64]!r}")
            pos = _skip_ws(text, pos)
            if not text.startswith(":", pos):
                raise invalid_json_error(f"not JSON: expecting ':' at character {pos}")
            pos = _skip_ws(text, pos + 1)
            if name == "state":
                start = pos
                fields[name], pos = stateful.raw_decode(text, pos)
                end = pos
            else:
                fields[name], pos = plain.raw_decode(text, pos)
            pos = _skip_ws(text, pos)
            if text.startswith(",", pos):
                pos = _skip_ws(text, pos + 1)
            elif text.startswith("}", pos):
                pos += 1
                break
            else:
                raise invalid_json_error(f"not JSON: expecting ',' or '}}' at character {pos}")
    if _skip_ws(text, pos) != len(text):
        raise invalid_json_error(f"not JSON: extra data at character {pos}")
    return fields, start, end


def _verbatim_slice(source: Source, start: int, end: int) -> bytes:
    """The bytes of ``source.text[start:end]``, without encoding them again."""
    if len(source.text) == len(source.body):  # ASCII: offsets agree
        return source.body[start:end]
    head = len(source.text[:start].encode("utf-8"))
    tail = len(source.text[end:].encode("utf-8"))
    return source.body[head : len(source.body) - tail]


def _canonical_state(
    source: Source,
    state: dict[str, Any],
    span: tuple[int, int],
    objects: list[dict[str, Any]],
    floats: list[_Float],
) -> bytes:
    """The JCS bytes of the parsed state; ``objects`` are all its objects."""
    astral = source.surrogate_escapes or any(b in source.body for b in _ASTRAL_LEAD_BYTES)
    order: Callable[[Any], list[str]] = (
        functools.partial(sorted, key=utf16_order) if astral else sorted
    )
    if (
        source.layout.compact
        and all(list(shape) == order(shape) for shape in set(map(tuple, objects)))
        and all(token.verbatim for token in floats)
        and not (source.escapes and _ESCAPE_NOT_JCS.search(source.body))
        and _NEG_ZERO.search(source.body) is None
    ):
        return _verbatim_slice(source, *span)
    if astral:  # the C encoder can only sort by code point: put members in order here
        for obj in objects:
            names = order(obj)
            if names != list(obj):
                members = [(name, obj[name]) for name in names]
                obj.clear()
                obj.update(members)
    text = json.dumps(
        state,
        sort_keys=not astral,
        separators=(",", ":"),
        ensure_ascii=False,
        default=_placeholder,
    )
    if floats:
        if text.count(_MARK) != 2 * len(floats):
            raise invalid_json_error("a string holds a lone UTF-16 surrogate escape")
        text = text.replace('"' + _MARK, "").replace(_MARK + '"', "")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid_json_error("a string holds a lone UTF-16 surrogate escape") from None


def _field_error(field: str, message: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"snapshot field {field} {message}",
        status=400,
        code="invalid_snapshot",
        extra={"field": field},
    )


def _get(fields: dict[str, Any], name: str) -> Any:
    if name not in fields:
        raise _field_error(name, "is missing")
    return fields[name]


def _text_field(fields: dict[str, Any], name: str, low: int, high: int) -> str:
    value = _get(fields, name)
    if type(value) is not str or not low <= len(value) <= high:
        raise _field_error(name, f"must be a string of {low} to {high} characters")
    return value


def _envelope(fields: dict[str, Any], canonical: bytes | None) -> DecodedSnapshot:
    version = _get(fields, "formatVersion")
    if type(version) is not int or version != FORMAT_VERSION:
        raise _field_error("formatVersion", f"must be {FORMAT_VERSION}, got {version!r:.40}")
    label = _text_field(fields, "engineLabel", 1, MAX_LABEL_CHARS)
    role = _get(fields, "role")
    if type(role) is not str or role not in ("leader", "follower"):
        raise _field_error("role", 'must be "leader" or "follower"')
    numbers: dict[str, int] = {}
    for name in _INT_FIELDS:
        value = _get(fields, name)
        if type(value) is not int or value < 0:  # bool is not int here
            raise _field_error(name, "must be a non-negative integer")
        numbers[name] = value
    program = _text_field(fields, "programSource", 0, MAX_SOURCE_CHARS)
    preview = _text_field(fields, "previewSource", 0, MAX_SOURCE_CHARS)
    if type(_get(fields, "state")) is not dict or canonical is None:
        raise _field_error("state", "must be a JSON object")
    checksum = _get(fields, "checksum")
    if type(checksum) is not str or _CHECKSUM.fullmatch(checksum) is None:
        raise _field_error("checksum", 'must be "sha256:" and 64 lowercase hex digits')
    if numbers["lastExecutedSeq"] > numbers["lastCommandSeq"]:
        raise _field_error("lastExecutedSeq", "must not exceed lastCommandSeq")
    if checksum != state_checksum(canonical):
        raise _field_error("checksum", "does not match the state")
    return DecodedSnapshot(
        format_version=version,
        engine_label=label,
        role=Role(role),
        epoch=numbers["epoch"],
        captured_at_us=numbers["capturedAtUs"],
        last_command_seq=numbers["lastCommandSeq"],
        last_executed_seq=numbers["lastExecutedSeq"],
        program_source=program,
        preview_source=preview,
        state=canonical,
        checksum=checksum,
    )


def decode_snapshot(body: bytes) -> DecodedSnapshot:
    """Validate a ``PUT /api/sync/state`` body; the state comes back canonical.

    Raises :class:`RemoteProtocolError`: ``400 invalid_json`` when the body
    is not strict JSON (the rules of :func:`decode_json`), else ``400
    invalid_snapshot`` naming the first bad field (message and
    ``extra["field"]``), in contract order: ``formatVersion``,
    ``engineLabel``, ``role``, ``epoch``, ``capturedAtUs``,
    ``lastCommandSeq``, ``lastExecutedSeq``, ``programSource``,
    ``previewSource``, ``state``, ``checksum``; then ``lastExecutedSeq``
    above ``lastCommandSeq``; then a checksum that does not match the state.
    Unknown fields are ignored.
    """
    source = prepare(body, DEFAULT_MAX_DEPTH)
    envelope_objects: list[dict[str, Any]] = []
    state_objects: list[dict[str, Any]] = []
    floats: list[_Float] = []

    def read_float(text: str) -> _Float:
        token = _Float(text)
        floats.append(token)
        return token

    plain = make_decoder(source, envelope_objects, checked_float)
    stateful = make_decoder(source, state_objects, read_float)
    try:
        fields, start, end = _members(source.text, plain, stateful)
    except (ValueError, RecursionError) as exc:
        raise parse_guard(exc) from None
    check_members(
        source,
        len(fields) + sum(map(len, envelope_objects)) + sum(map(len, state_objects)),
    )
    state = fields.get("state")
    if source.surrogate_escapes:
        for name, value in fields.items():
            if name != "state" or type(value) is not dict:  # a state object is checked below
                check_utf8([name, value], default=_placeholder_free)
    canonical = None
    if type(state) is dict:
        canonical = _canonical_state(source, state, (start, end), state_objects, floats)
    return _envelope(fields, canonical)


def _placeholder_free(token: _Float) -> str:
    return token.jcs


def _uint64(name: str, value: int) -> int:
    if type(value) is not int or not 0 <= value <= INT64_MAX:
        raise LocalProtocolError(f"{name} must be a non-negative 64-bit int, got {value!r:.40}")
    return value


def _host_text(name: str, value: str, low: int, high: int) -> str:
    if type(value) is not str or not low <= len(value) <= high:
        raise LocalProtocolError(f"{name} must be a str of {low} to {high} characters")
    return value


def encode_snapshot(
    *,
    engine_label: str,
    role: Role,
    epoch: int,
    captured_at_us: int,
    last_command_seq: int,
    last_executed_seq: int,
    program_source: str,
    preview_source: str,
    state: bytes,
    checksum: str | None = None,
) -> bytes:
    """The ``GET /api/sync/state`` body around canonical ``state`` bytes.

    ``checksum``, when the host kept it beside the state (it is
    ``DecodedSnapshot.checksum`` of the applied snapshot), saves hashing the
    whole state again on every GET; it must be ``state_checksum(state)``.

    ``state`` is embedded as it is, never parsed (it must be what
    :func:`canonical_json` returned for an object); the checksum is computed
    over it. Members come in the order of the contract's example. A value out
    of the contract's range is the host's bug: :class:`LocalProtocolError`.
    """
    if not isinstance(role, Role):
        raise LocalProtocolError(f"role must be a Role, got {role!r:.40}")
    if type(state) is not bytes or not (state.startswith(b"{") and state.endswith(b"}")):
        raise LocalProtocolError("state must be the canonical bytes of a JSON object")
    head = {
        "formatVersion": FORMAT_VERSION,
        "engineLabel": _host_text("engine_label", engine_label, 1, MAX_LABEL_CHARS),
        "role": role.value,
        "epoch": _uint64("epoch", epoch),
        "capturedAtUs": _uint64("captured_at_us", captured_at_us),
        "lastCommandSeq": _uint64("last_command_seq", last_command_seq),
        "lastExecutedSeq": _uint64("last_executed_seq", last_executed_seq),
        "programSource": _host_text("program_source", program_source, 0, MAX_SOURCE_CHARS),
        "previewSource": _host_text("preview_source", preview_source, 0, MAX_SOURCE_CHARS),
    }
    try:
        envelope = json.dumps(head, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError("a text field holds a lone surrogate") from None
    if checksum is None:
        checksum = state_checksum(state)
    elif not _CHECKSUM.fullmatch(checksum):
        raise LocalProtocolError("checksum must be 'sha256:' and 64 lowercase hex digits")
    tail = checksum.encode("ascii")
    return b"".join((envelope[:-1], b',"state":', state, b',"checksum":"', tail, b'"}'))
