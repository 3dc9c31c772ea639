"""Code blocks in docs run as tests: a doc that drifts from the code fails."""

from __future__ import annotations

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
#: Docs whose examples need a live server run under their own test with a
#: fixture that provides it (tests/client/test_client_docs.py, ...).
OWN_HARNESS = {"client.md"}
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks() -> list[tuple[str, str]]:
    found = []
    for path in sorted(DOCS.rglob("*.md")):
        if path.name in OWN_HARNESS:
            continue
        for n, match in enumerate(BLOCK.finditer(path.read_text(encoding="utf-8")), 1):
            found.append((f"{path.relative_to(DOCS)}#{n}", match.group(1)))
    return found


def test_the_api_doc_has_a_runnable_example() -> None:
    assert any(name.startswith("api.md") for name, _ in python_blocks())


@pytest.mark.parametrize("name,code", python_blocks(), ids=[n for n, _ in python_blocks()])
def test_doc_block_runs(name: str, code: str) -> None:
    exec(compile(code, name, "exec"), {"__name__": "__doc_example__"})


def test_operations_doc_lists_every_server_flag() -> None:
    """Each flag of ``peersync-server`` has a row in the flag table of
    docs/operations.md (a flag added without its row fails here)."""
    from peersync_server.__main__ import _parser

    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(--[a-z0-9-]+)", text, re.M))
    flags = {
        opt
        for action in _parser()._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt != "--help"
    }
    assert flags - rows == set(), f"flags missing from docs/operations.md: {sorted(flags - rows)}"
