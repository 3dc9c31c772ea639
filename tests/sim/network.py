"""The simulated network: delay, jitter, loss and partitions, from a seed.

Messages ride TCP-like connections, so a lost segment is not gone: it is
retransmitted after the retransmission timeout (200 ms, doubling), which makes
it late. A probe with a 150 ms deadline therefore misses; a reconciler call
with a 5 s timeout is only delayed. A segment sent across a partition is
retransmitted until the partition heals and arrives a retransmission interval
after that. All times are integer nanoseconds; nothing here reads a clock.
"""

from __future__ import annotations

import random

import attrs

__all__ = ["MS", "RTO_NS", "LinkFaults", "Network", "Partition"]

MS = 1_000_000
#: Linux's minimum retransmission timeout; each further loss doubles it.
RTO_NS = 200 * MS


@attrs.frozen(kw_only=True, slots=True)
class Partition:
    """Messages from ``src`` to ``dst`` sent in ``[start, end)`` are held."""

    src: str
    dst: str
    start: int
    end: int


@attrs.frozen(kw_only=True, slots=True)
class LinkFaults:
    """Per-message faults while they are on (``until``, exclusive)."""

    delay_ns: int = 200_000  #: one-way base latency
    jitter_ns: int = 0  #: extra latency drawn uniformly in [0, jitter_ns]
    loss: float = 0.0  #: chance that a segment is lost (and retransmitted)
    until: int = 0  #: jitter and loss apply to messages sent before this instant


class Network:
    """Computes when a message sent now from ``src`` arrives at ``dst``."""

    def __init__(
        self, rng: random.Random, faults: LinkFaults, partitions: tuple[Partition, ...] = ()
    ) -> None:
        self._rng = rng
        self.faults = faults
        self.partitions = partitions

    def partitioned(self, src: str, dst: str, now: int) -> Partition | None:
        for p in self.partitions:
            if p.src == src and p.dst == dst and p.start <= now < p.end:
                return p
        return None

    def arrival(self, src: str, dst: str, now: int) -> int:
        """The instant a segment sent at ``now`` is delivered. A local message
        (``src == dst``) is delivered at once."""
        if src == dst:
            return now
        f, rng = self.faults, self._rng
        at = now
        held = self.partitioned(src, dst, at)
        while held is not None:
            # Retransmitted until the partition is gone: it lands a fraction of
            # a retransmission interval after the heal.
            at = held.end + rng.randrange(RTO_NS)
            held = self.partitioned(src, dst, at)
        if f.loss:
            # Each transmission sent while faults are on may be lost; the
            # retransmission follows one RTO later, doubling each time.
            rto = RTO_NS
            while at < f.until and rng.random() < f.loss:
                at += rto
                rto *= 2
        faulty = at < f.until
        jitter = rng.randint(0, f.jitter_ns) if faulty and f.jitter_ns else 0
        return at + f.delay_ns + jitter
