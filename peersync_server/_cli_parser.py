"""The argument parser of every shipped command line: options are spelled in
full, and a word the user typed is never echoed in an error.

argparse takes any unique prefix of a long option for the option, so
``--api-token SECRET`` was read as ``--api-token-file SECRET`` and the "cannot
read" error printed SECRET. ``allow_abbrev=False`` alone does not close it:
``--api-token SECRET`` is then "unrecognized arguments: --api-token SECRET",
and before a command name SECRET is taken for the command ("invalid choice:
'SECRET'"). So each parser (sub-parsers included: argparse makes them of the
parent's class) first looks for an option that neither it nor any parser
below it knows, and refuses it by name alone before parsing anything (its
value may hold a space: argparse reads ``"--api-token=SEC RET"`` as a
positional, we do not); words left over at the end are counted, not echoed;
and argparse's own messages that quote a value ("invalid choice: 'X'",
"invalid int value: 'X'", "ignored explicit argument 'X'") name the argument
and what it accepts instead. Type converters given to ``type=`` must not
quote their input either (a message that does is replaced by a generic one).

:func:`url_problem` is the check of a base URL both command lines share: one
that carries credentials, a query or a fragment is refused without being
echoed.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from collections.abc import Iterable
from typing import Any

__all__ = ["StrictParser", "clean_secret", "redact_url", "url_problem"]


class StrictParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` with ``allow_abbrev=False`` that never echoes
    a word the user typed (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})

    def parse_known_args(
        self, args: Iterable[str] | None = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        argv = list(sys.argv[1:] if args is None else args)
        takes_value = _option_strings(self)
        for word in argv:
            if word == "--":
                break
            flag = self._unknown_option(word, takes_value)
            if flag is not None:
                self.error(f"unrecognized option {flag} (options are never abbreviated)")
            flag = self._flag_with_ignored_value(word, takes_value)
            if flag is not None:
                self.error(f"argument {flag}: takes no value (the one given is not echoed)")
        return super().parse_known_args(argv, namespace)

    def parse_args(self, args: Iterable[str] | None = None, namespace: Any = None) -> Any:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            flags = [flag for word in extras if (flag := self._flag_part(word)) is not None]
            others = len(extras) - len(flags)
            shown = " ".join(flags)
            if others:
                words = f"{others} word{'s' if others > 1 else ''} (not echoed)"
                shown = f"{shown} and {words}" if shown else words
            self.error(f"unrecognized arguments: {shown}")
        return parsed

    def _flag_part(self, word: str) -> str | None:
        """The option name ``word`` spells (``--flag`` of ``--flag=value``,
        ``-x`` of ``-xVALUE``), or None when it does not look like an option:
        a name with a space in it is a value to argparse (and may be a secret)."""
        if len(word) < 2 or word[0] not in self.prefix_chars:
            return None
        if self._negative_number_matcher.match(word):
            return None
        if word[1] not in self.prefix_chars:  # a short option, maybe with its value attached
            return None if " " in word else word[:2]
        flag = word.partition("=")[0]
        return None if " " in flag or len(flag) < 3 else flag

    def _unknown_option(self, word: str, takes_value: dict[str, bool]) -> str | None:
        """The option ``word`` names when no parser here knows it, else None
        (a positional, a value, a negative number, a known option)."""
        flag = self._flag_part(word)
        return None if flag is None or flag in takes_value else flag

    def _flag_with_ignored_value(self, word: str, takes_value: dict[str, bool]) -> str | None:
        """The known option ``word`` names when it carries a value it takes
        none of (``--no-auth=X``, ``-hX``): argparse would quote the value."""
        flag = self._flag_part(word)
        if flag is None or word == flag or takes_value.get(flag, True):
            return None
        return flag

    def _get_value(self, action: argparse.Action, arg_string: str) -> Any:
        try:
            return super()._get_value(action, arg_string)
        except argparse.ArgumentError as exc:
            ours = isinstance(exc.__context__, argparse.ArgumentTypeError)
            if ours and (len(arg_string) < 3 or arg_string not in (exc.message or "")):
                raise  # a converter's own words, without the value
            name = getattr(action.type, "__name__", "")
            kind = name.strip("_").replace("_", " ") if name.isidentifier() else ""
            what = f"invalid {kind} value" if kind else "invalid value"
            raise argparse.ArgumentError(action, f"{what} (not echoed)") from None

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise argparse.ArgumentError(
                action, f"invalid choice (not echoed); choose from {choices}"
            )


def _option_strings(parser: argparse.ArgumentParser) -> dict[str, bool]:
    """Every option string of ``parser`` and of the parsers below it, and
    whether any action spelled so takes a value."""
    found: dict[str, bool] = {}
    for action in parser._actions:
        for option in action.option_strings:
            found[option] = found.get(option, False) or action.nargs != 0
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                for option, takes in _option_strings(sub).items():
                    found[option] = found.get(option, False) or takes
    return found


def redact_url(url: str) -> str:
    """``url`` fit for an error message: the userinfo of its authority (if
    any) replaced by ``***``; a text with an ``@`` it cannot place is not
    shown at all."""
    scheme, sep, rest = url.partition("://")
    if sep:
        end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        authority = rest[:end]
        if "@" in authority:
            rest = "***@" + authority.rpartition("@")[2] + rest[end:]
        url = scheme + sep + rest
    elif "@" in url:
        return "(a URL with an '@', not echoed)"
    return repr(url)


def url_problem(url: str, what: str) -> str | None:
    """Why ``url`` is no base URL ``http://HOST[:PORT][/PREFIX]`` (one line
    naming ``what``, never echoing credentials, a query or a fragment), or
    None when it is one."""
    parts: urllib.parse.SplitResult | None
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # a port that is no number (or out of range) raises
    except ValueError:
        parts = None
    if ("@" in url) if parts is None else ("@" in parts.netloc):
        return (
            f"{what} must not carry credentials (user:password@...); the URL is not echoed"
            " (give tokens in files or the environment)"
        )
    if "?" in url or "#" in url:
        return f"{what} must not carry a query or a fragment; the URL is not echoed"
    if parts is None:
        return f"{what} is not a valid URL (bad host or port): {redact_url(url)}"
    if parts.scheme != "http" or not parts.hostname:
        return f"{what} must be an http://HOST[:PORT] URL, got {redact_url(url)}"
    return None


def clean_secret(raw: bytes) -> bytes:
    """The token or secret in ``raw`` (a file's bytes, an environment
    value's) without the whitespace around it, if ``peersync`` and
    :class:`~peersync_server.PeerSyncClient` can send it: UTF-8 text (the
    command line reads it so), not empty, one line without control
    characters (a header value cannot carry them). Else ``ValueError`` whose
    message says why and never quotes the value."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text") from None
    text = text.strip()
    if not text:
        raise ValueError("is empty")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise ValueError(
            "has a control character inside (a line break, a tab, ...), which peersync"
            " cannot send; use one line of printable text"
        )
    return text.encode("utf-8")
