"""Scenarios that found something, pinned as they were drawn then (later kinds
of fault add draws to every seed, so a seed number alone would drift)."""

from __future__ import annotations

from tests.sim.network import MS, LinkFaults, Partition
from tests.sim.scenario import Fault, Scenario

__all__ = ["ORPHAN_LOCK_1936", "RE_ENTERED_615", "REPORT_WHILE_RUNNING_7931", "WINNER_FLIP_15546"]


def _both(start: int, end: int) -> tuple[Partition, Partition]:
    return Partition(src="a", dst="b", start=start, end=end), Partition(
        src="b", dst="a", start=start, end=end
    )


#: b reconciled (a stepped down), then a was forced leader again, all between
#: two probes of each monitor: neither saw the pair leave the split brain.
RE_ENTERED_615 = Scenario(
    seed=615,
    roles=("leader", "follower"),
    link=LinkFaults(delay_ns=211141, jitter_ns=1 * MS, loss=0.0, until=3046 * MS),
    partitions=_both(1751902107, 2588978536),
    faults=(
        Fault(kind="pause", label="b", at=975893358, until=1629234875),
        Fault(kind="force", label="b", at=1844768615),
        Fault(kind="force", label="a", at=2715168291),
    ),
    faults_end=3046 * MS,
    host_delay_ns=0,
    command_chance=0.5,
)

#: Both start leader; b's monitor saw a win (equal sequences, lower label),
#: then a's saw b win (b had run more commands by then): each named the
#: other, and no one reconciled.
WINNER_FLIP_15546 = Scenario(
    seed=15546,
    roles=("leader", "leader"),
    link=LinkFaults(delay_ns=816852, jitter_ns=1 * MS, loss=0.03, until=3610 * MS),
    partitions=(*_both(982584394, 1388252753), *_both(687972253, 802396566)),
    faults=(
        Fault(kind="force", label="b", at=971268285),
        Fault(kind="force", label="a", at=2371175436),
    ),
    faults_end=3610 * MS,
    host_delay_ns=0,
    command_chance=0.5,
)

#: a's monitor reported a new split brain that a wins while a's previous
#: reconciler was still finishing (its releases held up by a partition).
REPORT_WHILE_RUNNING_7931 = Scenario(
    seed=7931,
    roles=("leader", "leader"),
    link=LinkFaults(delay_ns=998398, jitter_ns=60 * MS, loss=0.0, until=2076 * MS),
    partitions=_both(337416822, 956022439),
    faults=(Fault(kind="pause", label="a", at=1421644958, until=1876444346),),
    faults_end=2076 * MS,
    host_delay_ns=20 * MS,
    command_chance=0.2,
)

#: b is killed while its reconciler holds a's lock (TTL 30 s); a later split
#: brain cannot be healed until that lock runs out.
ORPHAN_LOCK_1936 = Scenario(
    seed=1936,
    roles=("leader", "follower"),
    link=LinkFaults(delay_ns=1210870, jitter_ns=60 * MS, loss=0.0, until=3641 * MS),
    partitions=_both(300096752, 1665331661),
    faults=(
        Fault(kind="pause", label="a", at=403072387, until=728884018),
        Fault(kind="force", label="a", at=1428537076),
        Fault(kind="crash", label="b", at=1906251345, until=2203607646),
        Fault(kind="pause", label="a", at=2966537109, until=3641 * MS),
        Fault(kind="force", label="b", at=3365783044),
    ),
    faults_end=3641 * MS,
    host_delay_ns=20 * MS,
    command_chance=0.2,
)
