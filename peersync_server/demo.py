"""``make demo``: two real engines fail over and heal a split brain, narrated.

``python -m peersync_server.demo`` starts two ``peersync-server`` processes on
loopback (``a`` leader, ``b`` follower, a generated API token in a temp dir),
each watching the other through a fault proxy the demo controls, seeds each
with a different state over the API, then walks the timeline, measuring each
step: both healthy; ``kill -9`` of the leader and the follower's takeover; the
old leader restarted over its state directory comes back follower; a
partition (both proxies blackhole) and the split brain it causes; the heal,
the reconcile, one leader and equal states.

Exit status 0 when every step held; otherwise 1 and the failing step named on
stderr (with the tail of both engines' logs). The demo only signals processes
it started, by PID, and removes its temp dir and children whatever happens.
See docs/quickstart.md.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

from peersync_proto import Role

from ._cli_parser import StrictParser
from ._pair import EnginePair, PairError

__all__ = ["DemoFailed", "main", "run_demo"]

#: The whole demo must finish within this (issue 4).
DEMO_LIMIT_S = 30.0
#: How long a takeover may take before its step fails (the targets are 0.4 s
#: for a crash and 0.8 s for a hang; this leaves room for a loaded machine).
TAKEOVER_LIMIT_S = 5.0


class DemoFailed(Exception):
    def __init__(self, step: str, why: str) -> None:
        super().__init__(f"step {step!r} failed: {why}")
        self.step = step


class _Narrator:
    def __init__(self, out: Callable[[str], None]) -> None:
        self._out = out
        self._t0 = time.monotonic()

    def say(self, step: str, text: str) -> None:
        self._out(f"[{time.monotonic() - self._t0:6.2f} s] {step:<10} {text}")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._t0


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _require(step: str, ok: bool, why: str) -> None:
    if not ok:
        raise DemoFailed(step, why)


def _roles_line(pair: EnginePair) -> str:
    parts = []
    for label, health in pair.roles().items():
        if health is None:
            parts.append(f"{label}: no answer")
        else:
            parts.append(
                f"{label}: {health.role.value} epoch {health.epoch} seq {health.last_command_seq}"
            )
    return ", ".join(parts)


def run_demo(pair: EnginePair, say: _Narrator) -> None:
    step = "start"
    try:
        pair.start(a_role="leader", b_role="follower")
        pair.wait_log("b", "peer up", timeout=5)
        pair.wait_log("a", "peer up", timeout=5)
        say.say(step, f"a (leader) on :{pair.a.port}, b (follower) on :{pair.b.port}")
        say.say(step, "each watches the other through a fault proxy, and both logged 'peer up'")

        step = "seed"
        sum_a = pair.seed(
            "a", {"scene": "opening", "lower_third": "Live from A"}, seq=1200, program="cam-1"
        )
        sum_b = pair.seed(
            "b", {"scene": "standby", "lower_third": "Backup B"}, seq=1100, program="cam-2"
        )
        _require(step, sum_a != sum_b, "the two seeded states have the same checksum")
        say.say(step, f"a holds {sum_a[:19]}..., b holds {sum_b[:19]}... (different states)")

        step = "healthy"
        for _ in range(10):
            leaders = pair.leaders()
            _require(step, leaders == ["a"], f"expected a alone to lead, saw {leaders}")
            time.sleep(0.1)
        say.say(step, f"1 s of 5 Hz probing, no change: {_roles_line(pair)}")

        step = "kill -9"
        a_pid = pair.a.pid
        killed_at = time.monotonic()
        pair.a.kill9()
        pair.wait_role("b", Role.LEADER, timeout=TAKEOVER_LIMIT_S)
        took = time.monotonic() - killed_at
        say.say(step, f"kill -9 {a_pid} (leader a): b took over in {_ms(took)}")
        pair.wait_log("b", "peer down", timeout=2)
        evidence = [line for line in pair.b.log().splitlines() if "peer down" in line][-1]
        say.say(step, "b's log: " + evidence.split("peersync.failover ", 1)[-1])

        step = "restart"
        ups_before = pair.a.log().count("peer up")
        took = pair.start_engine("a", role="leader")  # a fresh engine only: ignored
        pair.wait_log("a", "peer up", timeout=5, count=ups_before + 1)
        health = pair.a.health()
        _require(step, health is not None and health.role is Role.FOLLOWER, "a is not follower")
        _require(step, pair.leaders() == ["b"], f"expected b alone to lead, saw {pair.leaders()}")
        say.say(
            step,
            f"a restarted (--role leader) over its state dir in {_ms(took)}: {_roles_line(pair)}",
        )

        step = "partition"
        pair.partition()
        cut_at = time.monotonic()
        pair.wait_role("a", Role.LEADER, timeout=TAKEOVER_LIMIT_S)
        took = time.monotonic() - cut_at
        leaders = pair.leaders()
        _require(step, leaders == ["a", "b"], f"expected a split brain, saw leaders {leaders}")
        say.say(step, f"both proxies blackhole: a saw b down and took over in {_ms(took)}")
        say.say(step, f"split brain: {_roles_line(pair)}")

        step = "heal"
        pair.heal()
        healed_at = time.monotonic()

        def settled() -> tuple[str, str] | None:
            leaders = pair.leaders()
            if len(leaders) != 1:
                return None
            a, b = pair.checksum("a"), pair.checksum("b")
            return (leaders[0], a) if a is not None and a == b else None

        (leader, checksum), took = pair.wait_for("one leader, equal states", settled, timeout=8)
        # The apply (what we just saw) comes before the winner logs the outcome.
        pair.wait_log(leader, "reconcile: finished", timeout=3)
        winner_log = pair.engine(leader).log()
        outcome = [line for line in winner_log.splitlines() if "reconcile: finished" in line]
        _require(step, bool(outcome), f"no reconcile outcome in {leader}'s log")
        say.say(step, f"proxies pass again: one leader ({leader}) and equal states in {_ms(took)}")
        say.say(step, outcome[-1].split("peersync.failover ", 1)[-1])
        say.say(step, f"both hold {checksum[:19]}...: {_roles_line(pair)}")
        _require(step, time.monotonic() - healed_at < 8, "the heal took too long")
    except PairError as exc:
        raise DemoFailed(step, str(exc)) from None


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def main(argv: Sequence[str] | None = None) -> int:
    parser = StrictParser(prog="python -m peersync_server.demo", description=__doc__)
    parser.parse_args(argv)
    say = _Narrator(lambda line: print(line, flush=True))
    pair: EnginePair | None = None
    try:
        pair = EnginePair.create()
        run_demo(pair, say)
        _require("total", say.elapsed < DEMO_LIMIT_S, f"took {say.elapsed:.1f} s")
        say.say("done", f"every step held in {say.elapsed:.1f} s")
        return 0
    except DemoFailed as exc:
        print(f"demo FAILED: {exc}", file=sys.stderr, flush=True)
        if pair is not None:
            for engine in (pair.a, pair.b):
                print(f"  engine {engine.label} log (tail):", file=sys.stderr)
                print(_tail(engine.log()), file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("demo interrupted", file=sys.stderr)
        return 130
    finally:
        if pair is not None:
            pair.close()


if __name__ == "__main__":
    sys.exit(main())
