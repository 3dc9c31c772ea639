"""Two engine cores, their monitors and reconcilers, on a simulated network.

One event queue and one integer clock (nanoseconds); no threads, no sockets,
no real time. Each engine runs inside an in-memory *host* that does what the
real server does with the core's outputs: sends and abandons probes, captures
and applies snapshots (at once or after a delay), persists ``FloorsRaised`` on
a simulated disk, heartbeats its status, executes commands while on air, and
runs a :class:`Reconciler` when its monitor sees a split brain that it wins.

Faults come from a :class:`~tests.sim.scenario.Scenario`. Every event is
followed by the contract 5 checks in :mod:`tests.sim.checks`.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import random
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

from peersync_proto import (
    AbandonCall,
    AbandonProbe,
    ApplySnapshot,
    BecomeLeader,
    Call,
    CallAnswered,
    CallFailed,
    CaptureSnapshot,
    Engine,
    EngineConfig,
    Floors,
    FloorsRaised,
    HostStatus,
    LabelClash,
    MonitorConfig,
    Output,
    ProbeAnswered,
    ProbeFailed,
    ProbeFailure,
    Reconciled,
    ReconcileFailed,
    Reconciler,
    ReconcilerConfig,
    ReconcileStep,
    Request,
    Response,
    Role,
    SendProbe,
    SnapshotApplied,
    SnapshotCaptured,
    SplitBrain,
    StepDown,
    Tick,
    canonical_json,
)
from peersync_proto._monitor import Relation
from peersync_proto._reconcile_events import ReconcileOutput
from tests.sim.checks import Checks, SimFailure
from tests.sim.network import MS, Network
from tests.sim.scenario import HEAL_NS, LABELS, FaultKind, Scenario

__all__ = ["HOST_TICK_NS", "RETRY_RECONCILE_NS", "Conn", "Node", "World"]

TOKEN = b"sim-token"
SECRET = b"sim-secret"
#: The host heartbeats (and, on air, may execute a command) every 100 ms.
HOST_TICK_NS = 100 * MS
#: A reconciler that failed while the split brain lasts is started again after this.
RETRY_RECONCILE_NS = 300 * MS
#: The control plane sits beside the engines, not across the peer link.
CONTROL_DELAY_NS = 1 * MS

Handler = Callable[..., None]


@attrs.define(slots=True)
class Conn:
    """One HTTP exchange: who asked, how to route the answer back."""

    caller: str  #: a label, or "cp" for the control plane
    caller_inc: int
    kind: str  #: "probe", "call" or "control"
    key: Any  #: probe id, (reconciler generation, call id), or None
    method: str
    path: str
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""


@attrs.define(slots=True)
class Node:
    """One engine machine: the process (engine, host, reconciler) and its disk."""

    label: str
    initial_role: Role
    up: bool = False
    paused: bool = False
    inc: int = 0  #: incarnation; events for an older one are dropped
    engine: Engine | None = None
    rec: Reconciler | None = None
    rec_gen: int = 0
    rec_retry_at: int | None = None
    rec_started_at: int = 0
    rec_again: bool = False  #: a split brain was reported while a reconciler ran
    backlog: list[tuple[Handler, tuple[Any, ...]]] = attrs.Factory(list)
    probes: set[int] = attrs.Factory(set)
    calls: set[tuple[int, int]] = attrs.Factory(set)
    incoming: dict[int, Conn] = attrs.Factory(dict)
    rid: int = 0
    wake_at: int | None = None
    stalled_until: int = 0  #: the engine loop is frozen until then
    clock: int = 0  #: this machine's monotonic clock reads world time + this
    role: Role = Role.FOLLOWER  #: as last observed
    # -- the disk: survives a crash --------------------------------------
    floors: Floors | None = None
    state: dict[str, Any] = attrs.Factory(dict)
    seq: int = 0
    program: str = "cam-0"
    applied: bytes = b""  #: the canonical state bytes of the last snapshot applied
    applied_at: int = -1
    last_led: int = -1  #: the last step at which it was leader


class World:
    """Runs one scenario. ``run()`` returns when the heal window ends."""

    def __init__(self, scenario: Scenario, *, monitor: MonitorConfig | None = None) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed ^ 0x5EED)
        self.net = Network(self.rng, scenario.link, scenario.partitions)
        self.monitor = monitor or MonitorConfig()
        self.now = 0
        self.queue: list[tuple[int, int, str | None, int | None, Handler, tuple[Any, ...]]] = []
        self.seq = 0
        self.trace: deque[tuple[int, str, str, Any]] = deque(maxlen=40)
        self.nodes = {
            label: Node(label=label, initial_role=Role(role), state={"seq": 0, "head": label})
            for label, role in zip(LABELS, scenario.roles, strict=True)
        }
        self.checks = Checks(self)
        #: (time, label, role, cause) for every role change, in order
        self.roles: list[tuple[int, str, Role, str]] = []
        self.reconciled: list[tuple[int, Reconciled]] = []
        self.failed: list[tuple[int, ReconcileFailed]] = []
        self.commands_until = scenario.faults_end
        self.heal_from = scenario.faults_end
        for node, clock in zip(self.nodes.values(), scenario.clocks, strict=True):
            node.clock = clock
            self._push(0, None, None, self._start, node.label)
        for fault in scenario.faults:
            if fault.kind == FaultKind.CRASH:
                self._push(fault.at, None, None, self._crash, fault.label)
                self._push(fault.until, None, None, self._start, fault.label)
            elif fault.kind == FaultKind.PAUSE:
                self._push(fault.at, None, None, self._pause, fault.label)
                self._push(fault.until, None, None, self._resume, fault.label)
            elif fault.kind == FaultKind.STALL:
                self._push(fault.at, None, None, self._stall, fault.label, fault.until)
            else:
                self._push(fault.at, None, None, self._force, fault.label)

    # -- the loop ------------------------------------------------------------
    def _push(self, at: int, label: str | None, inc: int | None, fn: Handler, *args: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, label, inc, fn, args))

    def run_until(self, until: int) -> None:
        queue, nodes = self.queue, self.nodes
        while queue and queue[0][0] <= until:
            at, _, label, inc, fn, args = heapq.heappop(queue)
            self.now = at
            if label is None:
                fn(*args)
                self.checks.after_step(None)
                continue
            node = nodes[label]
            if inc is not None and (inc != node.inc or not node.up):
                continue  # the process it was meant for is gone
            if node.paused:
                node.backlog.append((fn, args))
                continue
            fn(*args)
            self.after(node)
        self.now = until

    def after(self, node: Node) -> None:
        """Bookkeeping after a node moved: its role, its next wake, the checks."""
        engine = node.engine
        if engine is not None:
            role = node.role = engine.role
            if role is Role.LEADER:
                node.last_led = self.now
            deadline = engine.next_deadline()
            rec = node.rec
            if rec is not None:
                rd = rec.next_deadline()
                if rd is not None and (deadline is None or rd < deadline):
                    deadline = rd
            if deadline is not None:
                deadline -= node.clock  # the engine's clock -> the world's
            if node.rec_retry_at is not None and (deadline is None or node.rec_retry_at < deadline):
                deadline = node.rec_retry_at
            if deadline is not None and (node.wake_at is None or deadline < node.wake_at):
                node.wake_at = deadline
                self._push(max(deadline, self.now), node.label, node.inc, self._wake, node)
        self.checks.after_step(node)

    def run(self) -> None:
        """Faults, then the heal window, then the end-of-run checks.

        The 2 s window opens when the faults stop, or, when a reconciler died
        with a lock (its process was killed), when the last such lock runs out
        its TTL: until then no reconciler can take it (contract 3.5).
        """
        self.run_until(self.scenario.faults_end)
        self.heal_from = max(self.scenario.faults_end, self.checks.orphans_expire())
        self.run_until(self.heal_from + HEAL_NS)
        self.checks.at_end(self.heal_from)

    def settled_after(self) -> int:
        """How long after the heal window opened the last role change or reconcile came."""
        end = self.scenario.faults_end
        last = max([end] + [at for at, *_ in self.roles] + [at for at, _ in self.reconciled])
        return last - max(end, self.heal_from)

    def note(self, label: str, what: str, detail: Any = "") -> None:
        self.trace.append((self.now, label, what, detail))

    def fail(self, reason: str) -> SimFailure:
        return SimFailure(self, reason)

    # -- process faults -----------------------------------------------------
    def _start(self, label: str) -> None:
        node = self.nodes[label]
        node.inc += 1
        node.up, node.paused, node.wake_at, node.stalled_until = True, False, None, 0
        node.engine = Engine(
            EngineConfig(
                label=label, role=node.initial_role, api_token=TOKEN, control_plane_secret=SECRET
            ),
            now=self.now + node.clock,
            entropy=_Entropy(f"{self.scenario.seed}/{label}/{node.inc}"),
            floors=node.floors,
            monitor=self.monitor,
        )
        if node.floors is None:
            node.floors = Floors()  # the state dir exists from the first start on
        node.role = node.engine.role
        self.roles.append((self.now, label, node.role, "start"))
        self.note(label, "start", f"incarnation {node.inc} as {node.role.value}")
        self._host_tick(node)

    def _crash(self, label: str) -> None:
        node = self.nodes[label]
        self.note(label, "crash")
        for conn in node.incoming.values():
            self._refuse(label, conn, "reset")
        node.up, node.engine, node.rec = False, None, None
        node.incoming.clear()
        node.probes.clear()
        node.calls.clear()
        node.backlog.clear()
        node.rec_retry_at, node.wake_at = None, None
        self.checks.crashed(label)
        if node.role is Role.LEADER:
            self.roles.append((self.now, label, Role.FOLLOWER, "crash"))
        node.role = Role.FOLLOWER

    def _pause(self, label: str) -> None:
        self.note(label, "pause")
        self.nodes[label].paused = True

    def _resume(self, label: str) -> None:
        node = self.nodes[label]
        self.note(label, "resume", f"{len(node.backlog)} events waited")
        node.paused = False
        backlog, node.backlog = node.backlog, []
        for fn, args in backlog:
            if node.up:
                fn(*args)
        self.after(node)

    def _stall(self, label: str, until: int) -> None:
        node = self.nodes[label]
        if node.up:
            self.note(label, "stall", f"until {until / MS:.1f}ms")
            node.stalled_until = until

    def _force(self, label: str) -> None:
        self.note(label, "force-leader")
        conn = Conn(
            caller="cp",
            caller_inc=0,
            kind="control",
            key=None,
            method="POST",
            path="/api/peer/force-leader",
            headers=[(b"x-control-plane-secret", SECRET)],
        )
        self._push(self.now + CONTROL_DELAY_NS, label, None, self._arrive, label, conn)

    # -- the host: timers ---------------------------------------------------
    def _wake(self, node: Node) -> None:
        if node.wake_at is not None and node.wake_at > self.now:
            return  # superseded by a later reschedule
        node.wake_at = None
        engine = node.engine
        assert engine is not None
        now = self.now + node.clock
        deadline = engine.next_deadline()
        if deadline is not None and deadline <= now:
            self._engine_out(node, engine.handle(Tick(now=now)))
        rec = node.rec
        if rec is not None:
            rd = rec.next_deadline()
            if rd is not None and rd <= now:
                self._rec_out(node, rec.handle(Tick(now=now)))
        if node.rec_retry_at is not None and node.rec_retry_at <= self.now:
            node.rec_retry_at = None
            self._retry_reconcile(node)

    def _host_tick(self, node: Node) -> None:
        engine = node.engine
        assert engine is not None
        if self.now < node.stalled_until:  # frozen: no status, no commands
            self._push(self.now + HOST_TICK_NS, node.label, node.inc, self._host_tick, node)
            return
        if (
            engine.role is Role.LEADER
            and self.now < self.commands_until
            and self.rng.random() < self.scenario.command_chance
        ):
            node.seq += 1
            head = hashlib.sha256(f"{node.state['head']}/{node.label}/{node.seq}".encode())
            node.state = {"seq": node.seq, "head": head.hexdigest()[:16], "by": node.label}
            node.program = f"cam-{node.seq % 4}"
        self._engine_out(
            node,
            engine.handle(
                HostStatus(
                    now=self.now + node.clock,
                    program_source=node.program,
                    last_command_seq=node.seq,
                    last_executed_seq=node.seq,
                )
            ),
        )
        self._push(self.now + HOST_TICK_NS, node.label, node.inc, self._host_tick, node)

    # -- the host: the engine's outputs -------------------------------------
    def _engine_out(self, node: Node, outputs: tuple[Output, ...]) -> None:
        for out in outputs:
            if isinstance(out, Response):
                self._respond(node, out)
            elif isinstance(out, SendProbe):
                node.probes.add(out.probe_id)
                peer = "b" if node.label == "a" else "a"
                conn = Conn(
                    caller=node.label,
                    caller_inc=node.inc,
                    kind="probe",
                    key=out.probe_id,
                    method="GET",
                    path="/api/peer/health",
                    headers=[],
                )
                self._send(node.label, peer, conn)
            elif isinstance(out, AbandonProbe):
                node.probes.discard(out.probe_id)
                self.note(node.label, "probe missed", out.probe_id)
            elif isinstance(out, FloorsRaised):
                self.checks.floors(node, out)
                node.floors = Floors(
                    epoch=out.epoch, fencing_token=out.fencing_token, peer_epoch=out.peer_epoch
                )
            elif isinstance(out, CaptureSnapshot):
                self._capture(node, out)
            elif isinstance(out, ApplySnapshot):
                self.checks.apply_started(node, node.incoming[out.request_id])
                self._push(self._host_done_at(node), node.label, node.inc, self._applied, node, out)
            elif isinstance(out, (BecomeLeader, StepDown)):
                cause = out.cause.value
                role = Role.LEADER if isinstance(out, BecomeLeader) else Role.FOLLOWER
                self.roles.append((self.now, node.label, role, cause))
                self.note(node.label, type(out).__name__, f"epoch {out.epoch} {cause}")
            elif isinstance(out, SplitBrain):
                self.note(node.label, "split brain", f"winner {out.winner}")
                if out.winner != node.label:
                    pass
                elif node.rec is None or node.rec.outcome is not None:
                    self._start_reconcile(node)
                else:  # a reconciler runs already: check again once it ends
                    node.rec_again = True
            elif isinstance(out, LabelClash):
                raise self.fail(f"{node.label}: label clash reported between distinct labels")
            else:
                self.note(node.label, type(out).__name__)

    def _host_done_at(self, node: Node) -> int:
        """When a capture or apply started now completes (a frozen loop waits)."""
        d = self.scenario.host_delay_ns
        return max(self.now + (self.rng.randint(0, d) if d else 0), node.stalled_until)

    def _capture(self, node: Node, out: CaptureSnapshot) -> None:
        captured = SnapshotCaptured(
            now=self.now + node.clock,
            request_id=out.request_id,
            state=canonical_json(node.state),
            captured_at_us=1_700_000_000_000_000 + self.now // 1000,
            program_source=node.program,
            preview_source="cam-p",
            last_command_seq=node.seq,
            last_executed_seq=node.seq,
        )
        self._push(self._host_done_at(node), node.label, node.inc, self._captured, node, captured)

    def _captured(self, node: Node, captured: SnapshotCaptured) -> None:
        assert node.engine is not None
        event = attrs.evolve(captured, now=self.now + node.clock)
        self._engine_out(node, node.engine.handle(event))

    def _applied(self, node: Node, out: ApplySnapshot) -> None:
        snap = out.snapshot
        node.state = json.loads(snap.state)
        node.applied_at = self.now
        node.seq, node.program, node.applied = (
            snap.last_command_seq,
            snap.program_source,
            snap.state,
        )
        self.note(node.label, "applied", f"seq {snap.last_command_seq} from {snap.engine_label}")
        assert node.engine is not None
        done = SnapshotApplied(now=self.now + node.clock, request_id=out.request_id)
        self._engine_out(node, node.engine.handle(done))

    # -- the host: the reconciler -----------------------------------------
    def _start_reconcile(self, node: Node) -> None:
        node.rec_gen += 1
        node.rec_retry_at, node.rec_again = None, False
        node.rec_started_at = self.now
        node.rec = Reconciler(
            ReconcilerConfig(owner=f"peersync-{node.label}", ttl_ms=self.scenario.lock_ttl_ms),
            entropy=lambda n: self.rng.randbytes(n),
        )
        self.note(node.label, "reconciler", f"generation {node.rec_gen}")
        self._rec_out(node, node.rec.start(self.now + node.clock))

    def _retry_reconcile(self, node: Node) -> None:
        """Start again while the split brain lasts (as our monitor last saw
        it) and we still win it."""
        assert node.engine is not None
        mon = node.engine.view().monitor
        assert mon is not None
        if mon.relation is Relation.SPLIT_BRAIN and mon.episode[2] == node.label:
            self._start_reconcile(node)

    def _rec_out(self, node: Node, outputs: tuple[ReconcileOutput, ...]) -> None:
        gen = node.rec_gen
        for out in outputs:
            if isinstance(out, Call):
                node.calls.add((gen, out.call_id))
                headers = [(b"authorization", b"Bearer " + TOKEN), *out.headers]
                conn = Conn(
                    caller=node.label,
                    caller_inc=node.inc,
                    kind="call",
                    key=(gen, out.call_id),
                    method=out.method,
                    path=out.path,
                    headers=headers,
                    body=out.body,
                )
                self._send(node.label, out.target, conn)
            elif isinstance(out, AbandonCall):
                node.calls.discard((gen, out.call_id))
            elif isinstance(out, ReconcileStep):
                self.note(node.label, "reconcile", f"{out.step} {out.target or ''} {out.detail}")
            elif isinstance(out, Reconciled):
                self.note(node.label, "reconciled", out)
                self.checks.reconciled(node, out)
                self.reconciled.append((self.now, out))
                if node.rec_again:
                    node.rec_retry_at = self.now
            else:
                self.note(node.label, "reconcile failed", out)
                self.failed.append((self.now, out))
                node.rec_retry_at = self.now + (0 if node.rec_again else RETRY_RECONCILE_NS)

    # -- the wire -------------------------------------------------------------
    def _send(self, src: str, dst: str, conn: Conn) -> None:
        at = self.net.arrival(src, dst, self.now)
        self._push(at, dst, None, self._arrive, dst, conn)

    def _arrive(self, label: str, conn: Conn) -> None:
        """A request reaches machine ``label`` (dead, paused or running)."""
        node = self.nodes[label]
        if not node.up:
            self._refuse(label, conn, "refused")
            return
        engine = node.engine
        assert engine is not None
        node.rid += 1
        rid = node.rid
        node.incoming[rid] = conn
        outputs = engine.handle(
            Request(
                now=self.now + node.clock,
                request_id=rid,
                method=conn.method,
                target=conn.path,
                headers=conn.headers,
                body=conn.body,
            )
        )
        if conn.kind == "probe":
            self.checks.probe_answered_at_once(node, rid, outputs)
        self._engine_out(node, outputs)

    def _refuse(self, label: str, conn: Conn, why: str) -> None:
        if conn.kind == "control":
            self.note(label, "control plane", why)
            return
        at = self.net.arrival(label, conn.caller, self.now)
        self._push(at, conn.caller, conn.caller_inc, self._failed, conn, why)

    def _respond(self, node: Node, resp: Response) -> None:
        conn = node.incoming.pop(resp.request_id)
        self.checks.answered(node, conn, resp)
        if conn.kind == "control":
            self.note(node.label, "force-leader answered", resp.status)
            return
        at = self.net.arrival(node.label, conn.caller, self.now)
        self._push(at, conn.caller, conn.caller_inc, self._answered, conn, resp)

    def _answered(self, conn: Conn, resp: Response) -> None:
        node = self.nodes[conn.caller]
        assert node.engine is not None
        if conn.kind == "probe":
            if conn.key not in node.probes:
                return  # abandoned: its connection is closed
            node.probes.discard(conn.key)
            event = ProbeAnswered(
                now=self.now + node.clock, probe_id=conn.key, status=resp.status, body=resp.body
            )
            self._engine_out(node, node.engine.handle(event))
            return
        if conn.key not in node.calls or node.rec is None or conn.key[0] != node.rec_gen:
            return
        node.calls.discard(conn.key)
        answer = CallAnswered(
            now=self.now + node.clock, call_id=conn.key[1], status=resp.status, body=resp.body
        )
        self._rec_out(node, node.rec.handle(answer))

    def _failed(self, conn: Conn, why: str) -> None:
        node = self.nodes[conn.caller]
        assert node.engine is not None
        if conn.kind == "probe":
            if conn.key not in node.probes:
                return
            node.probes.discard(conn.key)
            self.note(node.label, "probe refused", conn.key)
            event = ProbeFailed(
                now=self.now + node.clock, probe_id=conn.key, failure=ProbeFailure.REFUSED
            )
            self._engine_out(node, node.engine.handle(event))
            return
        if conn.key not in node.calls or node.rec is None or conn.key[0] != node.rec_gen:
            return
        node.calls.discard(conn.key)
        self._rec_out(
            node,
            node.rec.handle(CallFailed(now=self.now + node.clock, call_id=conn.key[1], reason=why)),
        )


class _Entropy:
    """Distinct, reproducible bytes for one engine incarnation's lock ids."""

    def __init__(self, seed: str) -> None:
        self.seed = seed
        self.n = 0

    def __call__(self, size: int) -> bytes:
        self.n += 1
        return hashlib.sha256(f"{self.seed}/{self.n}".encode()).digest()[:size]
