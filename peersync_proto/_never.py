"""``assert_never`` on every supported Python (typing has it from 3.11)."""

from __future__ import annotations

import sys

__all__ = ["assert_never"]

if sys.version_info >= (3, 11):
    from typing import assert_never
else:  # pragma: no cover - Python 3.10 only
    from typing import NoReturn

    def assert_never(value: NoReturn, /) -> NoReturn:
        """Statically unreachable: mypy proves the dispatch above it exhaustive."""
        raise AssertionError(f"unhandled value: {value!r}")
