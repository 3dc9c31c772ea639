"""Regenerate tests/vectors/*.expected.jsonl from the scenarios.

Run it only after a deliberate behaviour change, then read the diff: the
expected files are the cross-language conformance suite.
"""

from __future__ import annotations

import pathlib
import sys

from peersync_proto.replay import run_scenario

VECTORS = pathlib.Path(__file__).resolve().parent.parent / "tests" / "vectors"


def main() -> int:
    for scenario in sorted(VECTORS.glob("*.scenario.jsonl")):
        out = run_scenario(scenario.read_text(encoding="utf-8").splitlines())
        target = scenario.with_name(scenario.name.replace(".scenario.", ".expected."))
        target.write_text("".join(line + "\n" for line in out), encoding="utf-8")
    print(f"updated {VECTORS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
