"""A seed's scenario: the whole fault schedule, drawn up front.

Drawing every fault before the run starts keeps a seed's faults independent
of how the engines behave, and lets a failing seed print what it was made of.
"""

from __future__ import annotations

import random

import attrs

from tests.sim.network import MS, LinkFaults, Partition

__all__ = ["HEAL_NS", "Fault", "FaultKind", "Scenario", "draw_scenario"]

#: Contract 5 / issue 4: once faults stop and both engines are up, the pair
#: settles (one leader, equal state after a split brain) within 2 s.
HEAL_NS = 2_000 * MS
LABELS = ("a", "b")


class FaultKind:
    CRASH = "crash"  #: process killed at ``at``, restarted from disk at ``until``
    PAUSE = "pause"  #: SIGSTOP at ``at``, SIGCONT at ``until``
    FORCE = "force"  #: the control plane forces ``label`` leader at ``at``
    #: the engine loop freezes at ``at`` (no status, no capture or apply done)
    #: while its HTTP side still answers (peer health says ``stalled``)
    STALL = "stall"


@attrs.frozen(kw_only=True, slots=True)
class Fault:
    kind: str
    label: str
    at: int
    until: int = 0

    def describe(self) -> str:
        span = f"-{self.until / MS:.1f}ms" if self.until else ""
        return f"{self.kind} {self.label} @{self.at / MS:.1f}ms{span}"


@attrs.frozen(kw_only=True, slots=True)
class Scenario:
    seed: int
    roles: tuple[str, str]  #: initial roles of a and b ("leader"/"follower")
    link: LinkFaults
    partitions: tuple[Partition, ...]
    faults: tuple[Fault, ...]
    faults_end: int  #: nothing is injected from here on; commands stop too
    host_delay_ns: int  #: capture and apply take up to this long
    command_chance: float  #: a leader executes a command on a host tick with this chance
    lock_ttl_ms: int = 30_000  #: the TTL the engines' reconcilers ask for
    #: each machine's monotonic clock reads world time plus this (machines
    #: booted at different times): nothing may compare instants across them
    clocks: tuple[int, int] = (0, 0)

    def describe(self) -> list[str]:
        lk = self.link
        lines = [
            f"seed {self.seed}: roles a={self.roles[0]} b={self.roles[1]}, "
            f"delay {lk.delay_ns / MS:.2f}ms jitter {lk.jitter_ns / MS:.1f}ms "
            f"loss {lk.loss:.3f}, host delay {self.host_delay_ns / MS:.1f}ms, "
            f"lock TTL {self.lock_ttl_ms}ms, commands {self.command_chance}, "
            f"faults end @{self.faults_end / MS:.0f}ms",
        ]
        lines += [
            f"  partition {p.src}->{p.dst} @{p.start / MS:.1f}-{p.end / MS:.1f}ms"
            for p in self.partitions
        ]
        lines += ["  " + f.describe() for f in self.faults]
        return lines


def _span(rng: random.Random, start: int, end: int, longest: int) -> tuple[int, int]:
    at = rng.randrange(start, end - 10 * MS)
    return at, min(end, at + rng.randrange(10 * MS, longest))


def draw_scenario(seed: int) -> Scenario:
    """A few simulated seconds of faults on two engines, from ``seed``."""
    rng = random.Random(seed)
    roles = rng.choice(
        [("leader", "follower")] * 6
        + [("follower", "leader")] * 2
        + [("follower", "follower"), ("leader", "leader")]
    )
    faults_end = rng.randrange(1_500, 4_000) * MS
    start = 300 * MS  # let the pair see each other once first
    link = LinkFaults(
        delay_ns=rng.randrange(50_000, 2 * MS),
        jitter_ns=rng.choice([0, 1 * MS, 5 * MS, 20 * MS, 60 * MS]),
        loss=rng.choice([0.0, 0.0, 0.01, 0.03, 0.1]),
        until=faults_end,
    )
    partitions: list[Partition] = []
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        begin, end = _span(rng, start, faults_end, 2_000 * MS)
        two_way = rng.random() < 0.6
        src, dst = rng.choice([("a", "b"), ("b", "a")])
        partitions.append(Partition(src=src, dst=dst, start=begin, end=end))
        if two_way:
            partitions.append(Partition(src=dst, dst=src, start=begin, end=end))
    faults: list[Fault] = []
    busy: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        kind = rng.choice([FaultKind.CRASH, FaultKind.PAUSE])
        label = rng.choice(LABELS)
        at, until = _span(rng, start, faults_end, 1_500 * MS)
        if any(at < e and s < until for s, e in busy[label]):
            continue  # one process fault at a time per engine
        busy[label].append((at, until))
        faults.append(Fault(kind=kind, label=label, at=at, until=until))
    for _ in range(rng.choice([0, 0, 1, 2])):
        faults.append(
            Fault(
                kind=FaultKind.FORCE, label=rng.choice(LABELS), at=rng.randrange(start, faults_end)
            )
        )
    host_delay_ns = rng.choice([0, 0, 1 * MS, 20 * MS])
    command_chance = rng.choice([0.2, 0.5, 1.0])
    # Drawn last, so the draws above (and the seeds pinned in tests) keep
    # their meaning as kinds of fault are added.
    for _ in range(rng.choice([0, 0, 0, 1])):
        label = rng.choice(LABELS)
        at, until = _span(rng, start, faults_end, 1_500 * MS)
        if not any(at < e and s < until for s, e in busy[label]):
            busy[label].append((at, until))
            faults.append(Fault(kind=FaultKind.STALL, label=label, at=at, until=until))
    faults.sort(key=lambda f: (f.at, f.label, f.kind))
    return Scenario(
        seed=seed,
        roles=roles,
        link=link,
        partitions=tuple(partitions),
        faults=tuple(faults),
        faults_end=faults_end,
        host_delay_ns=host_delay_ns,
        command_chance=command_chance,
        lock_ttl_ms=rng.choice([1_000, 2_000, 30_000, 30_000]),
        clocks=(rng.randrange(10**15), rng.randrange(10**15)),
    )
