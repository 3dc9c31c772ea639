"""Long fuzz runs: ``make fuzz SECONDS=N`` (``python -m fuzz.run --seconds N``).

Runs every harness of ``fuzz/`` (the same checks ``make test`` runs briefly)
round after round, each round with a fresh seed, splitting the time between
them; a failure prints the shrunk example and the seed, exits 1, and belongs
in a regular test (see ``fuzz/corpus/`` for the wire harness).

``--atheris NAME`` hands one core harness to atheris instead (coverage-guided;
optional: ``pip install atheris``, never a runtime dependency), through
Hypothesis's ``fuzz_one_input``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, seed, settings

from fuzz import test_core_json, test_core_sequences, test_wire_bytes
from fuzz.wire_rig import fuzz_server

ROUND_EXAMPLES = 300
#: name -> (check, keyword, strategy): the checks the tests run, unbounded here.
CORE: dict[str, tuple[Callable[..., None], str, Any]] = {
    "core_json": (test_core_json.check, "sc", test_core_json.scenario()),
    "core_sequences": (test_core_sequences.run_sequence, "seq", test_core_sequences.SEQUENCES),
}


def _test(check: Callable[..., None], keyword: str, strategy: Any, examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )(given(**{keyword: strategy})(check))


def _round(
    check: Callable[..., None], keyword: str, strategy: Any, round_seed: int, **kwargs: Any
) -> None:
    seed(round_seed)(_test(check, keyword, strategy, ROUND_EXAMPLES))(**kwargs)


def run(seconds: float, only: list[str]) -> int:
    names = only or [*CORE, "wire_bytes"]
    rng = random.Random()
    per = seconds / len(names)
    for name in names:
        deadline = time.monotonic() + per
        if name == "wire_bytes":
            with fuzz_server() as pair:
                wire = functools.partial(
                    _round, test_wire_bytes.check_hostile, "data", test_wire_bytes.hostile,
                    wire=pair,
                )  # fmt: skip
                rounds = _loop(name, wire, deadline, rng)
        else:
            rounds = _loop(name, functools.partial(_round, *CORE[name]), deadline, rng)
        print(f"{name}: {rounds} rounds x {ROUND_EXAMPLES} examples, no failure", flush=True)
    return 0


def _loop(name: str, call: Callable[[int], None], deadline: float, rng: random.Random) -> int:
    rounds = 0
    while rounds == 0 or time.monotonic() < deadline:
        round_seed = rng.randrange(1 << 32)
        try:
            call(round_seed)
        except BaseException:
            print(f"{name}: FAILED with seed {round_seed}", file=sys.stderr, flush=True)
            raise
        rounds += 1
    return rounds


def run_atheris(name: str, argv: list[str]) -> None:
    atheris: Any = importlib.import_module("atheris")  # optional: see the module docstring
    atheris.instrument_all()  # coverage feedback from peersync_proto (already imported)
    test = _test(*CORE[name], examples=10**9)
    atheris.Setup([sys.argv[0], *argv], test.hypothesis.fuzz_one_input)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--only", action="append", default=[], choices=[*CORE, "wire_bytes"])
    parser.add_argument("--atheris", choices=sorted(CORE))
    args, rest = parser.parse_known_args(argv)
    if args.atheris:
        run_atheris(args.atheris, rest)
        return 0
    return run(args.seconds, args.only)


if __name__ == "__main__":
    sys.exit(main())
