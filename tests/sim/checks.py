"""Contract section 5, checked after every step of a simulation.

The lock rules are checked against an independent model of each engine's
lock built only from the answers the engine gave (grants, refreshes,
releases and their TTLs), never from the engine's own view of itself:

1. at most one lock id is live on an engine at any instant (a grant while the
   model holds another live id fails, and so does a 409 while it holds none);
2. a snapshot apply starts only under a live lock of the caller's id;
3. a refresh or release answered 200 names the live id, a 404 never does;
4. fencing tokens rise by exactly one per grant, restarts included; epochs
   and persisted floors never go backwards on an engine, restarts included;
5. every peer health request is answered 200 in the same step, whatever the
   engine is doing (snapshot transfers included);
6. at the end: exactly one leader, and after a split brain the loser holds
   the winner's snapshot.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from peersync_proto import FloorsRaised, Output, Reconciled, Response, Role, canonical_json
from tests.sim.network import MS

if TYPE_CHECKING:
    from tests.sim.world import Conn, Node, World

__all__ = ["Checks", "SimFailure", "replay_command"]

LOCK_PATH = "/api/sync/reconcile-lock"


def replay_command(seed: int) -> str:
    return f"make sim SEEDS=1 FIRST={seed}   (or: .venv/bin/python -m tests.sim --seed {seed})"


class SimFailure(AssertionError):
    """A broken rule: the reason, the scenario, the last events, the replay."""

    def __init__(self, world: World, reason: str) -> None:
        self.seed = world.scenario.seed
        self.reason = reason
        lines = [f"seed {self.seed}: {reason} (at {world.now / MS:.3f} ms)"]
        lines += world.scenario.describe()
        lines.append(f"last {len(world.trace)} events:")
        for at, label, what, detail in world.trace:
            lines.append(f"  {at / MS:10.3f} ms  {label:<2} {what} {detail}")
        lines.append("replay: " + replay_command(self.seed))
        super().__init__("\n".join(lines))


class Checks:
    def __init__(self, world: World) -> None:
        self.world = world
        #: per engine: live lock id -> expiry (ns), from the engine's answers
        self.locks: dict[str, dict[str, int]] = {"a": {}, "b": {}}
        self.tokens = {"a": 0, "b": 0}
        self.epochs = {"a": 0, "b": 0}
        #: canonical state bytes of every snapshot each engine served
        self.served: dict[str, set[bytes]] = {"a": set(), "b": set()}
        self.split_brain_at: int | None = None  #: last instant both were leader

    # -- every step ----------------------------------------------------------
    def after_step(self, node: Node | None) -> None:
        world = self.world
        if node is not None and node.engine is not None:
            epoch = node.engine.epoch
            if epoch < self.epochs[node.label]:
                raise world.fail(
                    f"{node.label}: epoch went back from {self.epochs[node.label]} to {epoch}"
                )
            self.epochs[node.label] = epoch
        a, b = world.nodes["a"], world.nodes["b"]
        if a.role is Role.LEADER and b.role is Role.LEADER:
            self.split_brain_at = world.now

    def crashed(self, label: str) -> None:
        self.locks[label].clear()  # the lock lives in the process's memory

    def floors(self, node: Node, out: FloorsRaised) -> None:
        old = node.floors
        if old is not None and (out.epoch < old.epoch or out.fencing_token < old.fencing_token):
            raise self.world.fail(f"{node.label}: floors went back: {old} -> {out}")

    def _live(self, label: str) -> dict[str, int]:
        now = self.world.now
        live = self.locks[label]
        for lock_id in [k for k, exp in live.items() if now >= exp]:
            del live[lock_id]
        return live

    def probe_answered_at_once(self, node: Node, rid: int, outputs: tuple[Output, ...]) -> None:
        for out in outputs:
            if isinstance(out, Response) and out.request_id == rid:
                if out.status != 200:
                    raise self.world.fail(f"{node.label}: peer health answered {out.status}")
                return
        raise self.world.fail(f"{node.label}: peer health not answered in the same step")

    def apply_started(self, node: Node, conn: Conn) -> None:
        given = dict(conn.headers).get(b"x-reconcile-lock-id", b"").decode()
        if given not in self._live(node.label):
            raise self.world.fail(f"{node.label}: snapshot apply started without its lock held")
        peer = "b" if node.label == "a" else "a"
        state = canonical_json(json.loads(conn.body)["state"])
        if state not in self.served[peer]:
            raise self.world.fail(f"{node.label}: applied a snapshot its peer never served")

    def answered(self, node: Node, conn: Conn, resp: Response) -> None:
        label, world, path, status = node.label, self.world, conn.path, resp.status
        if path == "/api/peer/health" and status != 200:
            raise world.fail(f"{label}: peer health answered {status}")
        if path == "/api/sync/state" and conn.method == "GET" and status == 200:
            self.served[label].add(canonical_json(json.loads(resp.body)["state"]))
        if not path.startswith(LOCK_PATH):
            return
        live = self._live(label)
        doc = json.loads(resp.body)
        if path == LOCK_PATH and conn.method == "POST":
            if status == 200:
                if live:
                    raise world.fail(f"{label}: a second lock granted while one is live")
                token = doc["fencingToken"]
                if token != self.tokens[label] + 1:
                    raise world.fail(f"{label}: fencing token {token} after {self.tokens[label]}")
                self.tokens[label] = token
                live[doc["lockId"]] = world.now + doc["expiresMs"] * MS
            elif status == 409 and not live:
                raise world.fail(f"{label}: acquire refused 409 while no lock is live")
            return
        lock_id = path[len(LOCK_PATH) + 1 :]
        if status == 200 and lock_id not in live:
            raise world.fail(f"{label}: {conn.method} of a lock id that is not live answered 200")
        if status == 404 and lock_id in live:
            raise world.fail(f"{label}: {conn.method} of the live lock id answered 404")
        if status == 200 and conn.method == "PUT":
            live[lock_id] = world.now + doc["expiresMs"] * MS
        elif status == 200:
            del live[lock_id]

    def reconciled(self, node: Node, out: Reconciled) -> None:
        loser = self.world.nodes[out.loser]
        if loser.applied_at < node.rec_started_at or loser.applied not in self.served[out.winner]:
            raise self.world.fail(
                f"{node.label}: reconciled, but {out.loser} applied no snapshot "
                f"{out.winner} served since the reconciler started"
            )

    def orphans_expire(self) -> int:
        """When the last live lock that no running reconciler holds runs out."""
        held: set[str] = set()
        for node in self.world.nodes.values():
            if node.rec is not None and node.rec.outcome is None:
                held |= {lock.lock_id for lock in node.rec.view().locks}
        return max(
            (
                exp
                for label in self.locks
                for lid, exp in self._live(label).items()
                if lid not in held
            ),
            default=0,
        )

    # -- at the end ------------------------------------------------------------
    def at_end(self, heal_from: int) -> None:
        world = self.world
        faults_end = world.scenario.faults_end
        nodes = list(world.nodes.values())
        if not all(n.up and not n.paused for n in nodes):
            raise world.fail("an engine is not running at the end")
        leaders = [n for n in nodes if n.role is Role.LEADER]
        if len(leaders) != 1:
            raise world.fail(
                f"{len(leaders)} leaders {(world.now - heal_from) / MS:.0f} ms "
                "after the faults stopped"
            )
        leader = leaders[0]
        follower = next(n for n in nodes if n is not leader)
        sb = self.split_brain_at
        if sb is None:
            return
        if sb >= faults_end and follower.applied_at < sb:
            raise world.fail("a split brain after the faults ended was never reconciled")
        if follower.applied_at >= sb and follower.last_led <= follower.applied_at:
            # The split brain ended with an apply, and the loser has not led
            # since: it holds exactly the snapshot the winner served (commands
            # the winner ran after its GET, before the faults ended, may follow).
            if canonical_json(follower.state) != follower.applied:
                raise world.fail(f"{follower.label} changed after its last apply")
            if follower.applied not in self.served[leader.label]:
                raise world.fail(f"{follower.label} does not hold a snapshot {leader.label} served")
