"""Arenas for a multi-stream plan: where each intermediate lives, and the runner that uses them.

``arena_layout`` is a pure function: given a plan and the bytes of each slot, it packs the
slots into one arena per device with ``plan_memory``, under the plan's own happens-before
order (each stream's sequence, plus an edge from every Record to the Waits of its event),
so that two values share bytes only if every use of one happens before the other is
written, whatever the streams' timing.

``ArenaRunner`` runs a plan with one compiled driver per node (``compile_nodes``): at the
first call for given input shapes it infers every shape, lays out the arenas and makes one
array view per slot; later calls with those shapes hand the drivers these views as their
outputs, so nothing is allocated but the function's outputs. Views (``view_map`` ops) run
their ``perform`` and keep the buffer they see alive; slots that other Python nodes read
or write stay out of the arenas (a ``perform`` may return its input), as do inputs,
outputs (and whatever an output is a view of) and cross-device copies.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading

import networkx as nx
import numpy as np

from flowc.graph.destroy import pure_view
from flowc.sched.executor import _launch, execute
from flowc.sched.memory import MemoryPlan, infer_shapes, plan_memory
from flowc.sched.plan import Copy, Launch, Record, Wait

ALIGNMENT = 64  # bytes: every arena buffer starts on a cache line (and a SIMD boundary)


def step_graph(plan) -> nx.DiGraph:
    """The happens-before DAG of ``plan``: nodes ``(stream index, step index)``."""
    G = nx.DiGraph()
    records, waits = {}, {}
    for p, program in enumerate(plan.streams):
        for i, step in enumerate(program.steps):
            G.add_node((p, i), step=step, device=program.device)
            if i:
                G.add_edge((p, i - 1), (p, i))
            if isinstance(step, Record):
                records[step.event] = (p, i)
            elif isinstance(step, Wait):
                waits.setdefault(step.event, []).append((p, i))
    for event, at in records.items():
        for w in waits.get(event, ()):
            G.add_edge(at, w)
    return G


@dataclasses.dataclass(frozen=True)
class ArenaSteps:
    """What a layout needs of a plan, whatever the sizes: the steps in a topological order
    of ``step_graph``, the buffers each reads and writes (views read as their root), the
    device of each buffer, the slots that exist before the plan, and what each step
    happens before."""

    order: tuple
    reads: dict
    writes: dict
    device: dict
    keep: frozenset
    reach: dict


def arena_steps(plan, root: dict | None = None) -> ArenaSteps:
    """``ArenaSteps`` of ``plan``. ``root`` maps a slot that is a view to the slot whose
    memory it sees: reading the view reads that buffer (which lives on until then), and
    making it writes no buffer."""
    root = root or {}
    G = step_graph(plan)
    order = tuple(nx.topological_sort(G))
    reads, writes, device = {}, {}, {}
    for n in order:
        step = G.nodes[n]["step"]
        if isinstance(step, Launch):
            reads[n] = tuple(root.get(s, s) for s in step.reads)
            writes[n] = tuple(s for s in step.writes if s not in root)
        elif isinstance(step, Copy):
            reads[n], writes[n] = (root.get(step.src, step.src),), (step.dst,)
        for s in writes.get(n, ()):
            device[s] = G.nodes[n]["device"]
    keep = frozenset({*plan.input_slots, *(s for s, _ in plan.constants)})
    reach = {n: nx.descendants(G, n) for n in G}
    return ArenaSteps(order, reads, writes, device, keep, reach)


def arena_layout(steps: ArenaSteps, sizes: dict) -> MemoryPlan:
    """Offsets of the slots in ``sizes`` (bytes; 0 or absent: not in an arena) in one arena
    per device, safe under any timing of the plan's streams."""
    every = steps.keep | {
        s for n in steps.order for s in (*steps.reads.get(n, ()), *steps.writes.get(n, ()))
    }
    return plan_memory(
        steps.order,
        steps.reads,
        steps.writes,
        {s: 0 if s in steps.keep else sizes.get(s, 0) for s in every},
        keep=steps.keep,
        happens_before=lambda a, b: b in steps.reach[a],
        device=lambda s: steps.device.get(s, "host"),
        alignment=ALIGNMENT,
    )


class ArenaRunner:
    """Runs ``plan`` with compiled per-node ``drivers`` writing into reused arenas.

    ``drivers[k]`` is ``(step, take)`` from ``compile_nodes`` for kernel ``k``, or None.
    ``layouts`` counts the arena layouts made so far (one per change of input shapes).
    """

    def __init__(self, fgraph, plan, kernels, drivers):
        self.fgraph = fgraph
        self.plan = plan
        self.kernels = kernels
        self.drivers = drivers
        self.layouts = 0
        self.arenas: dict = {}
        self._key = None
        self._views: dict = {}
        self._plain = functools.partial(self._launch, {})  # no arena: drivers allocate
        self._launch_in_arenas = self._plain
        self._lock = threading.Lock()
        self._expect = [
            None if d is None else [(np.dtype(v.type.dtype), v.type.ndim) for v in d[0].inputs]
            for d in drivers
        ]
        # The slots an arena may hold: written by a driver, and seen (directly or through
        # views that ``perform`` makes) only by drivers and copies, never returned.
        var_of, python_slots, self._root = {}, set(), {}
        launches = [s for p in plan.streams for s in p.steps if isinstance(s, Launch)]
        for step in sorted(launches, key=lambda s: s.kernel):  # kernels: a topological order
            node = kernels[step.kernel].node
            var_of.update(zip(step.writes, node.outputs, strict=True))
            if drivers[step.kernel] is not None:
                continue
            if pure_view(node.op):
                for j, (i,) in node.op.view_map.items():
                    source = step.reads[i]
                    self._root[step.writes[j]] = self._root.get(source, source)
            else:
                python_slots.update(step.reads)
                python_slots.update(step.writes)
        copies = {s.dst for p in plan.streams for s in p.steps if isinstance(s, Copy)}
        fixed = set(plan.input_slots) | set(plan.output_slots) | {s for s, _ in plan.constants}
        barred = {self._root.get(s, s) for s in fixed | python_slots | copies}
        self._arena_vars = {
            s: v for s, v in var_of.items() if s not in barred and s not in self._root
        }
        self._steps = arena_steps(plan, self._root)
        self._writes = {s.kernel: s.writes for s in launches if drivers[s.kernel] is not None}

    def __call__(self, values: list, trace: list | None = None) -> list:
        if not self._lock.acquire(blocking=False):  # another thread's call holds the arenas
            return execute(self.plan, self.kernels, values, trace, self._plain)
        try:
            self._layout(values)
            return execute(self.plan, self.kernels, values, trace, self._launch_in_arenas)
        finally:
            self._lock.release()

    def release(self) -> None:
        """Drop the arenas; the next call lays them out again."""
        with self._lock:
            self.arenas, self._views, self._key = {}, {}, None
            self._launch_in_arenas = self._plain  # it held views of the arenas

    def _launch(self, outputs, step, kernels, slots):
        """Run one Launch: its driver, into ``outputs[kernel]`` (arena views) where the
        layout has them, else into arrays the driver allocates; or its ``perform``."""
        driver = self.drivers[step.kernel]
        if driver is None:
            return _launch(step, kernels, slots)
        cstep, take = driver
        args = [slots[step.reads[i]] for i in take]
        for x, (dtype, ndim) in zip(args, self._expect[step.kernel], strict=True):
            if type(x) is not np.ndarray or x.dtype != dtype or x.ndim != ndim:
                return _launch(step, kernels, slots)  # perform takes what a driver cannot
        outs = outputs.get(step.kernel)
        if outs is None:
            outs = cstep.call(args)
        else:
            rc = cstep.fn(*args, *outs, None)
            if rc:  # shapes other than the layout's: fresh arrays
                outs = cstep._again(rc, args, list(outs))
        for s, v in zip(step.writes, outs, strict=True):
            slots[s] = v
        for s in step.frees:
            slots[s] = None

    def _layout(self, values) -> dict:
        """The arena views (slot -> array) for these inputs' shapes, laid out on a change."""
        key = tuple(np.shape(x) for x in values)
        if key == self._key:
            return self._views
        # Drop the old arenas (and every view of them) before making new ones.
        self.arenas, self._views, self._launch_in_arenas = {}, {}, self._plain
        try:
            shapes = infer_shapes(self.fgraph, dict(zip(self.fgraph.inputs, key, strict=True)))
        except Exception:  # noqa: BLE001 - data-dependent shapes: run without arenas
            shapes = {}
        sizes, types = {}, {}
        for s, v in self._arena_vars.items():
            if v in shapes:
                types[s] = (shapes[v], np.dtype(v.type.dtype))
                sizes[s] = math.prod(shapes[v]) * types[s][1].itemsize
        views = {}
        if sizes:
            layout = arena_layout(self._steps, sizes)
            for d, n in layout.arena_size.items():
                if not n:
                    continue
                raw = np.empty(n + ALIGNMENT, np.uint8)
                skip = -raw.ctypes.data % ALIGNMENT
                self.arenas[d] = raw[skip : skip + n]
            for s, (shape, dtype) in types.items():
                arena = self.arenas.get(self._steps.device[s])
                if arena is not None and sizes[s]:
                    views[s] = np.ndarray(shape, dtype, buffer=arena, offset=layout.offsets[s])
        # Per driver, its outputs' views, when the layout has all of them.
        outputs = {
            k: tuple(views[s] for s in writes)
            for k, writes in self._writes.items()
            if all(s in views for s in writes)
        }
        self.layouts += 1
        self._key, self._views = key, views
        self._launch_in_arenas = functools.partial(self._launch, outputs)
        return views
