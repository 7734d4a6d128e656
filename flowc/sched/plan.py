"""``ExecutionPlan``: plain data saying what each stream does, in order, on which slots.

A slot holds one value. Each stream is a list of steps: ``Launch`` a kernel,
``Record`` or ``Wait`` on an event, ``Copy`` a value between devices. ``make_plan``
builds the plan from an order (and optionally a placement) of the graph's nodes;
the executor only walks it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle

from flowc.graph.basic import Constant


@dataclasses.dataclass(frozen=True)
class Launch:
    """Run kernel ``kernel`` on slots ``reads``, store into ``writes``, then drop ``frees``."""

    kernel: int
    reads: tuple[int, ...]
    writes: tuple[int, ...]
    frees: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class Record:
    """Mark event ``event`` as reached on this stream."""

    event: int


@dataclasses.dataclass(frozen=True)
class Wait:
    """Block this stream (only this one) until event ``event`` is recorded."""

    event: int


@dataclasses.dataclass(frozen=True)
class Copy:
    """Copy the value in slot ``src`` into slot ``dst`` (a transfer between devices)."""

    src: int
    dst: int


Step = Launch  # the serial plan's only kind of step


@dataclasses.dataclass(frozen=True)
class StreamProgram:
    """The ordered steps of one stream of one device."""

    device: str
    stream: int
    steps: tuple


@dataclasses.dataclass(frozen=True)
class ExecutionPlan:
    """Slots, their bindings, and one program per stream. Plain data: printable, hashable,
    picklable."""

    n_slots: int
    input_slots: tuple[int, ...]
    constants: tuple[tuple[int, object], ...]
    output_slots: tuple[int, ...]
    streams: tuple[StreamProgram, ...]
    n_events: int = 0
    # (kernel index or copy label, device, stream, start, finish) estimated by the
    # scheduler, in seconds from the start of a call; empty for a serial plan.
    estimates: tuple = ()

    @property
    def steps(self) -> tuple:
        """All steps of a one-stream plan (the common case)."""
        if len(self.streams) != 1:
            raise ValueError("plan.steps is for one-stream plans; use plan.streams")
        return self.streams[0].steps

    def counts(self) -> dict:
        kinds = {"launch": Launch, "record": Record, "wait": Wait, "copy": Copy}
        return {
            name: sum(isinstance(s, cls) for p in self.streams for s in p.steps)
            for name, cls in kinds.items()
        }

    def summary(self) -> str:
        c = self.counts()
        lines = [
            f"{len(self.streams)} streams, {self.n_slots} slots, {self.n_events} events, "
            f"{c['copy']} copies"
        ]
        for p in self.streams:
            n = sum(isinstance(s, Launch) for s in p.steps)
            lines.append(f"  {p.device} stream {p.stream}: {n} kernels, {len(p.steps)} steps")
        return "\n".join(lines)

    def to_chrome_trace(self, path, kernels=None, profile=None) -> int:
        """Write a Chrome/Perfetto trace (see ``sched.trace.to_chrome_trace``)."""
        from flowc.sched.trace import to_chrome_trace

        return to_chrome_trace(self, path, kernels, profile)

    def draw(self, path, kernels=None, profile=None, memory=None, title=None):
        """Write a Gantt chart PNG of the streams (see ``sched.trace.draw``)."""
        from flowc.sched.trace import draw

        return draw(self, path, kernels, profile, memory, title)

    def digest(self) -> str:
        """A hash of the plan's structure (ranks compare it at start-up)."""
        shape = (
            self.n_slots,
            self.input_slots,
            self.output_slots,
            self.streams,
            self.n_events,
            tuple(s for s, _ in self.constants),
        )
        return hashlib.sha256(pickle.dumps(shape)).hexdigest()[:16]


def make_plan(fgraph, kernels, placement=None) -> ExecutionPlan:
    """The plan of ``kernels`` (one per node of ``fgraph``, in a valid order).

    ``placement`` maps a kernel index to ``(device, stream)``; by default every
    kernel runs on one stream. An edge between two streams becomes a Record on the
    producer's stream and a Wait on the consumer's, once per (value, stream); an
    intermediate is dropped after its last reader when all readers share a stream.
    """
    slot, slot_of, input_slots, constants = _slots(fgraph, kernels)
    where = {k: (placement or {}).get(k, ("cpu:0", 0)) for k in range(len(kernels))}
    producer = {o: k for k, kern in enumerate(kernels) for o in kern.node.outputs}
    programs: dict = {}
    events: dict = {}  # (value, producer stream) -> event id
    waited: set = set()  # (event, consumer stream)
    for k, kern in enumerate(kernels):
        here = where[k]
        steps = programs.setdefault(here, [])
        for v in dict.fromkeys(kern.node.inputs):
            p = producer.get(v)
            if p is None or where[p] == here:
                continue
            ev = events.get(v)
            if ev is None:
                ev = events[v] = len(events)
                programs[where[p]].insert(_after(programs[where[p]], p), Record(ev))
            if (ev, here) not in waited:
                waited.add((ev, here))
                steps.append(Wait(ev))
        steps.append(
            Launch(
                k,
                tuple(slot_of(v) for v in kern.node.inputs),
                tuple(slot_of(v) for v in kern.node.outputs),
            )
        )
    outputs = tuple(slot_of(v) for v in fgraph.outputs)
    keep = {*input_slots, *outputs, *(s for s, _ in constants)}
    streams = tuple(
        StreamProgram(d, s, tuple(p))
        for (d, s), p in zip(
            sorted(programs),
            _with_frees([programs[key] for key in sorted(programs)], keep),
            strict=True,
        )
    )
    if not streams:
        streams = (StreamProgram("cpu:0", 0, ()),)
    return ExecutionPlan(len(slot), input_slots, tuple(constants), outputs, streams, len(events))


def _slots(fgraph, kernels):
    """``(slot, slot_of, input_slots, constants)``: the slot numbering both plan builders
    start from (inputs first, then the constants kernels read or the graph returns)."""
    slot: dict = {}

    def slot_of(key):
        return slot.setdefault(key, len(slot))

    input_slots = tuple(slot_of(v) for v in fgraph.inputs)
    constants = []
    for v in [i for k in kernels for i in k.node.inputs] + list(fgraph.outputs):
        if isinstance(v, Constant) and v not in slot:
            constants.append((slot_of(v), v.data))
    return slot, slot_of, input_slots, constants


def _with_frees(programs: list[list], keep: set) -> list[list]:
    """``programs`` (step lists, one per stream) with each Launch dropping the slots it is
    the last reader of, where every reader is on its stream (so "last" is certain), and
    the outputs nobody reads; never a slot in ``keep`` (inputs, outputs, constants)."""
    readers: dict = {}
    for p, steps in enumerate(programs):
        for i, step in enumerate(steps):
            reads = (
                step.reads
                if isinstance(step, Launch)
                else (step.src,)
                if isinstance(step, Copy)
                else ()
            )
            for s in dict.fromkeys(reads):
                readers.setdefault(s, []).append((p, i))
    frees: dict = {}
    for s, at in readers.items():
        if s not in keep and len({p for p, _ in at}) == 1:
            frees.setdefault(max(at), []).append(s)
    out = []
    for p, steps in enumerate(programs):
        new = []
        for i, step in enumerate(steps):
            if isinstance(step, Launch):
                dead = [s for s in step.writes if s not in readers and s not in keep]
                step = dataclasses.replace(step, frees=(*frees.get((p, i), ()), *dead))
            new.append(step)
        out.append(new)
    return out


def _after(steps, kernel) -> int:
    """The position just after the Launch of ``kernel`` in ``steps``."""
    for i, s in enumerate(steps):
        if isinstance(s, Launch) and s.kernel == kernel:
            return i + 1
    raise ValueError(f"kernel {kernel} is not on this stream")


def plan_from_schedule(fgraph, kernels, H) -> ExecutionPlan:
    """The plan of a placed, synchronized scheduling graph ``H`` (see ``sched.sync``).

    Integer nodes of ``H`` are kernel indices; ``("copy", u, k, device)`` nodes copy
    output ``k`` of kernel ``u`` to ``device``, and readers there use the copy. An
    edge with an ``event`` is a Record after its source and a Wait before its target.
    """
    from flowc.sched.strategies import schedule_order

    slot, slot_of, input_slots, constants = _slots(fgraph, kernels)
    copied = {(n[1], n[2], n[3]): n for n in H if isinstance(n, tuple)}
    producer = {o: k for k, kern in enumerate(kernels) for o in kern.node.outputs}

    def read_slot(v, dev):
        p = producer.get(v)
        if p is not None and (p, v.index, dev) in copied:
            return slot_of(("copy", v, dev))
        return slot_of(v)

    programs, names = [], []
    for (dev, stream), nodes in sorted(schedule_order(H).items(), key=lambda kv: str(kv[0])):
        steps = []
        for n in nodes:
            steps += [Wait(d["event"]) for _, _, d in H.in_edges(n, data=True) if "event" in d]
            if isinstance(n, tuple):
                _, u, k, dst = n
                v = kernels[u].node.outputs[k]
                steps.append(Copy(slot_of(v), slot_of(("copy", v, dst))))
            else:
                node = kernels[n].node
                steps.append(
                    Launch(
                        n,
                        tuple(read_slot(v, dev) for v in node.inputs),
                        tuple(slot_of(v) for v in node.outputs),
                    )
                )
            events = sorted({d["event"] for _, _, d in H.out_edges(n, data=True) if "event" in d})
            steps += [Record(e) for e in events]
        programs.append(steps)
        names.append((str(dev), stream))
    outputs = tuple(slot_of(v) for v in fgraph.outputs)
    keep = {*input_slots, *outputs, *(s for s, _ in constants)}
    programs = [
        StreamProgram(d, s, tuple(steps))
        for (d, s), steps in zip(names, _with_frees(programs, keep), strict=True)
    ]
    estimates = tuple(
        (
            n if not isinstance(n, tuple) else f"copy {n[1]}.{n[2]} to {n[3]}",
            str(d["slot"][0]),
            d["slot"][1],
            d["start"],
            d["finish"],
        )
        for n, d in sorted(H.nodes(data=True), key=lambda nd: (nd[1]["start"], str(nd[0])))
    )
    return ExecutionPlan(
        len(slot),
        input_slots,
        tuple(constants),
        outputs,
        tuple(programs),
        H.graph.get("events", 0),
        estimates,
    )


def device_slots(devices: str, streams: int) -> list[tuple[str, int]]:
    """``(device, stream)`` pairs for a ``devices`` flag such as ``'cpu:4'``."""
    kind, _, count = devices.partition(":")
    if kind != "cpu" or not count.isdigit() or int(count) < 1:
        raise ValueError(f"devices must look like 'cpu:N' with N >= 1, got {devices!r}")
    if streams < 1:
        raise ValueError(f"streams must be >= 1, got {streams}")
    return [(f"cpu:{d}", s) for d in range(int(count)) for s in range(streams)]


def schedule_plan(fgraph, kernels, strategy: str, slots, cost_model=None) -> ExecutionPlan:
    """Place ``kernels`` on ``slots`` with ``strategy``, insert sync, and build the plan.

    ``cost_model`` (a ``sched.cost.CostModel``) gives node times; measured ones come
    from ``CostModel.from_profile``.
    """
    from flowc.sched.dag import build_dag
    from flowc.sched.strategies import STRATEGIES, schedule
    from flowc.sched.sync import insert_sync

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown schedule {strategy!r}; use one of {sorted(STRATEGIES)}")
    if len(slots) == 1 and strategy in ("serial", "heft", "critical_path"):
        return make_plan(fgraph, kernels)
    G = build_dag(fgraph, cost_model)
    for i in G:
        pinned = G.nodes[i]["node"].tag.get("device")
        if pinned is not None:
            G.nodes[i]["pin"] = pinned
    H, _, _ = insert_sync(schedule(G, slots, strategy))
    return plan_from_schedule(fgraph, kernels, H)
