"""The argument parser of every shipped command line: options are spelled in
full, and a word after an option we do not know is never echoed.

argparse takes any unique prefix of a long option for the option, so
``--api-token SECRET`` was read as ``--api-token-file SECRET`` and the "cannot
read" error printed SECRET. ``allow_abbrev=False`` alone does not close it:
``--api-token SECRET`` is then "unrecognized arguments: --api-token SECRET",
and before a command name SECRET is taken for the command ("invalid choice:
'SECRET'"). So each parser (sub-parsers included: argparse makes them of the
parent's class) first looks for an option that neither it nor any parser
below it knows, and refuses it by name alone before parsing anything; and
words left over at the end are counted, not echoed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["StrictParser"]


class StrictParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` with ``allow_abbrev=False`` that never echoes
    the value of an unknown option (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})

    def parse_known_args(
        self, args: Iterable[str] | None = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        argv = list(sys.argv[1:] if args is None else args)
        known = _option_strings(self)
        for word in argv:
            if word == "--":
                break
            flag = self._unknown_option(word, known)
            if flag is not None:
                self.error(f"unrecognized option {flag} (options are never abbreviated)")
        return super().parse_known_args(argv, namespace)

    def parse_args(self, args: Iterable[str] | None = None, namespace: Any = None) -> Any:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            flags = [word.partition("=")[0] for word in extras if word.startswith("-")]
            others = len(extras) - len(flags)
            shown = " ".join(flags)
            if others:
                words = f"{others} word{'s' if others > 1 else ''} (not echoed)"
                shown = f"{shown} and {words}" if shown else words
            self.error(f"unrecognized arguments: {shown}")
        return parsed

    def _unknown_option(self, word: str, known: set[str]) -> str | None:
        """The option ``word`` names when no parser here knows it, else None
        (a positional, a value, a negative number, a known option)."""
        if len(word) < 2 or word[0] not in self.prefix_chars or " " in word:
            return None
        if self._negative_number_matcher.match(word):
            return None
        flag = word.partition("=")[0]
        if flag in known or (word[1] not in self.prefix_chars and word[:2] in known):
            return None  # --flag=value, or a short option with its value attached
        return flag


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of ``parser`` and of the parsers below it."""
    found: set[str] = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _option_strings(sub)
    return found
