"""The failover distributions of ``docs/failover.md``, measured in simulation.

Each measurement builds its own scenario (a LAN: 0.2 ms one way, up to 1 ms
of jitter unless said otherwise) and reads the role timeline the world keeps.
Random phases come from the seed, so every figure is reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs

from peersync_proto import Role
from tests.sim.network import MS, LinkFaults, Partition
from tests.sim.scenario import Fault, FaultKind, Scenario
from tests.sim.world import World

__all__ = [
    "Distribution",
    "crash_takeover",
    "false_takeovers",
    "hang_takeover",
    "partition_heal",
]

S = 1_000 * MS
LAN = LinkFaults(delay_ns=200_000, jitter_ns=1 * MS, until=2**62)
WARM = 1 * S  #: the pair has seen each other well before any fault


@attrs.frozen(kw_only=True, slots=True)
class Distribution:
    name: str
    samples_ns: tuple[int, ...]
    missing: int = 0  #: runs where the outcome never came

    def pct(self, p: float) -> int:
        xs = sorted(self.samples_ns)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]

    def row(self) -> str:
        ms = [v / MS for v in (self.pct(50), self.pct(99), max(self.samples_ns))]
        extra = f", {self.missing} never" if self.missing else ""
        return (
            f"| {self.name} | {len(self.samples_ns)}{extra} | "
            f"{ms[0]:.0f} ms | {ms[1]:.0f} ms | {ms[2]:.0f} ms |"
        )


def _scenario(seed: int, faults: Sequence[Fault], end: int, **kw: object) -> Scenario:
    fields: dict[str, object] = {
        "seed": seed,
        "roles": ("leader", "follower"),
        "link": LAN,
        "partitions": (),
        "faults": tuple(faults),
        "faults_end": end,
        "host_delay_ns": 0,
        "command_chance": 0.5,
    }
    fields.update(kw)
    return Scenario(**fields)  # type: ignore[arg-type]


def _promoted(world: World, label: str, after: int) -> int | None:
    for at, who, role, cause in world.roles:
        if who == label and role is Role.LEADER and at >= after and cause != "start":
            return at
    return None


def _takeover(kind: str, name: str, samples: int, seed: int) -> Distribution:
    rng = random.Random(seed)
    found: list[int] = []
    missing = 0
    for i in range(samples):
        at = WARM + rng.randrange(200 * MS)  # any phase of the probe period
        fault = Fault(kind=kind, label="a", at=at, until=at + 10 * S)
        world = World(_scenario(seed * 100_000 + i, [fault], at))
        world.run_until(at + 3 * S)
        took = _promoted(world, "b", at)
        if took is None:
            missing += 1
        else:
            found.append(took - at)
    return Distribution(name=name, samples_ns=tuple(found), missing=missing)


def crash_takeover(samples: int = 1000, seed: int = 1) -> Distribution:
    """Leader killed (its port refuses) -> the follower is leader."""
    return _takeover(FaultKind.CRASH, "crashed leader -> follower leader", samples, seed)


def hang_takeover(samples: int = 1000, seed: int = 2) -> Distribution:
    """Leader paused (SIGSTOP: the kernel still accepts) -> the follower is leader."""
    return _takeover(FaultKind.PAUSE, "hung leader -> follower leader", samples, seed)


def partition_heal(samples: int = 1000, seed: int = 3) -> Distribution:
    """A two-way partition of 1 to 3 s, then healed. Counted: the partitions
    long enough for the follower to take over (a split brain, both running
    commands); measured from the heal until one leader is left and the loser
    holds the winner's snapshot, for good."""
    rng = random.Random(seed)
    found: list[int] = []
    missing = 0
    for i in range(samples):
        start = WARM + rng.randrange(200 * MS)
        heal = start + rng.randrange(1 * S, 3 * S)
        cut = (
            Partition(src="a", dst="b", start=start, end=heal),
            Partition(src="b", dst="a", start=start, end=heal),
        )
        world = World(_scenario(seed * 100_000 + i, [], heal, partitions=cut, command_chance=1.0))
        world.run_until(heal + 5 * S)
        if world.checks.split_brain_at is None:
            continue  # too short for a takeover: nothing to heal
        a, b = world.nodes["a"], world.nodes["b"]
        leaders = [n for n in (a, b) if n.role is Role.LEADER]
        if len(leaders) != 1 or a.state != b.state:
            missing += 1
            continue
        last_change = max(at for at, *_ in world.roles)
        last_apply = max((at for at, _ in world.reconciled), default=0)
        found.append(max(last_change, last_apply, heal) - heal)
    return Distribution(
        name="partition healed -> one leader, equal state", samples_ns=tuple(found), missing=missing
    )


def false_takeovers(hours: float, *, jitter_ms: int, probe_loss: float, seed: int = 4) -> int:
    """Promotions in ``hours`` of a healthy pair: nothing fails, messages are
    only jittered (uniform in [0, jitter]) and a probe is lost with chance
    ``probe_loss`` (each of its two segments with the matching chance)."""
    segment = 1 - (1 - probe_loss) ** 0.5
    end = int(hours * 3600 * S)
    link = LinkFaults(delay_ns=200_000, jitter_ns=jitter_ms * MS, loss=segment, until=2**62)
    world = World(_scenario(seed, [], end, link=link))
    world.run_until(end)
    return sum(1 for _, _, role, cause in world.roles if role is Role.LEADER and cause != "start")
