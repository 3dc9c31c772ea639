"""Render every machine's transition table into docs/state-tables.md."""

from __future__ import annotations

import pathlib
import sys

from peersync_proto._tables import render_markdown

TARGET = pathlib.Path(__file__).resolve().parent.parent / "docs" / "state-tables.md"


def main() -> int:
    TARGET.write_text(render_markdown(), encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
