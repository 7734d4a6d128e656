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


def arena_layout(plan, sizes: dict, root: dict | None = None) -> MemoryPlan:
    """Offsets of the slots in ``sizes`` (bytes; 0 or absent: not in an arena) in one arena
    per device, safe under any timing of the plan's streams.

    ``root`` maps a slot that is a view to the slot whose memory it sees: reading the view
    reads that buffer (which lives on until then), and making it writes no buffer.
    """
    root = root or {}
    G = step_graph(plan)
    order = list(nx.topological_sort(G))
    reach = {n: nx.descendants(G, n) for n in G}
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
    keep = {*plan.input_slots, *(s for s, _ in plan.constants)}
    every = keep | {s for n in order for s in (*reads.get(n, ()), *writes.get(n, ()))}
    return plan_memory(
        order,
        reads,
        writes,
        {s: sizes.get(s, 0) if s not in keep else 0 for s in every},
        keep=keep,
        happens_before=lambda a, b: b in reach[a],
        device=lambda s: device.get(s, "host"),
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

    def __call__(self, values: list, trace: list | None = None) -> list:
        if not self._lock.acquire(blocking=False):  # another thread's call holds the arenas
            return execute(self.plan, self.kernels, values, trace, self._launcher({}))
        try:
            views = self._layout(values)
            return execute(self.plan, self.kernels, values, trace, self._launcher(views))
        finally:
            self._lock.release()

    def release(self) -> None:
        """Drop the arenas; the next call lays them out again."""
        with self._lock:
            self.arenas, self._views, self._key = {}, {}, None

    def _launcher(self, views):
        return functools.partial(self._launch, views)

    def _launch(self, views, step, kernels, slots):
        driver = self.drivers[step.kernel]
        if driver is None:
            return _launch(step, kernels, slots)
        cstep, take = driver
        args = [slots[step.reads[i]] for i in take]
        for x, (dtype, ndim) in zip(args, self._expect[step.kernel], strict=True):
            if type(x) is not np.ndarray or x.dtype != dtype or x.ndim != ndim:
                return _launch(step, kernels, slots)  # perform takes what a driver cannot
        outs = [views.get(s) for s in step.writes]
        if any(o is None for o in outs):
            outs = cstep.call(args)
        else:
            rc = cstep.fn(*args, *outs, None)
            if rc:  # shapes other than the layout's: fresh arrays
                outs = cstep._again(rc, args, outs)
        for s, v in zip(step.writes, outs, strict=True):
            slots[s] = v
        for s in step.frees:
            slots[s] = None

    def _layout(self, values) -> dict:
        key = tuple(np.shape(x) for x in values)
        if key == self._key:
            return self._views
        self.arenas, self._views = {}, {}  # free the old arenas before making new ones
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
            layout = arena_layout(self.plan, sizes, self._root)
            device = {s: d for p in self.plan.streams for s in _written(p) for d in [p.device]}
            for d, n in layout.arena_size.items():
                if not n:
                    continue
                raw = np.empty(n + ALIGNMENT, np.uint8)
                skip = -raw.ctypes.data % ALIGNMENT
                self.arenas[d] = raw[skip : skip + n]
            for s, (shape, dtype) in types.items():
                arena = self.arenas.get(device[s])
                if arena is None or sizes[s] == 0:
                    continue
                views[s] = np.ndarray(shape, dtype, buffer=arena, offset=layout.offsets[s])
        self.layouts += 1
        self._key, self._views = key, views
        return views


def _written(program):
    return [s for step in program.steps if isinstance(step, Launch) for s in step.writes]
