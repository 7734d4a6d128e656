"""The static memory plan: liveness over an order, in-place reuse, and one arena per device.

A *step* reads and writes *values* of known byte sizes; a value lives from the step that
writes it to its last reader. Values whose lifetimes the plan's happens-before order
separates share bytes of one arena per device, packed best-fit in decreasing size order.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable, Mapping

import numpy as np

from flowc.graph.basic import Constant, evaluate


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Where every value lives: ``offsets[v]`` bytes into the arena of its device.

    ``arena_size[d]`` is the size of device ``d``'s arena, ``peak_bytes`` their sum and
    ``lower_bound`` the sum over devices of the most bytes live at one step of the order
    (no packing of these buffers can do better), ``ratio = peak_bytes / lower_bound``.
    ``inplace[o] = x``: output ``o`` is written into the buffer of its input ``x``.
    ``live[v] = (first, last)``: the steps (indices into the order) ``v`` is live for.
    """

    offsets: dict
    arena_size: dict
    peak_bytes: int
    lower_bound: int
    ratio: float
    inplace: dict
    live: dict


def liveness(order, reads, writes, sizes, keep=()) -> dict:
    """The live interval ``(first, last)`` of each value: the indices in ``order`` of the
    step that writes it and of its last reader (a value never read dies where it is born).

    ``reads[step]`` and ``writes[step]`` list values, ``sizes[value]`` gives bytes. Values
    in ``keep`` (graph inputs, outputs, shared storage) live for the whole plan.

    >>> liveness(["f", "g"], {"g": ["a"]}, {"f": ["a"], "g": ["b"]}, {"a": 8, "b": 8})
    {'a': (0, 1), 'b': (1, 1)}
    """
    keep = frozenset(keep)
    last_step = max(len(order) - 1, 0)
    first: dict = {}
    last: dict = {}
    for t, step in enumerate(order):
        for v in reads.get(step, ()):
            _check_known(v, sizes, step)
            if v not in first and v not in keep:
                raise ValueError(
                    f"liveness: value {v!r} is read by step {step!r} before any step writes "
                    f"it; list values that exist before the plan (inputs) in keep"
                )
            last[v] = t
        for v in writes.get(step, ()):
            _check_known(v, sizes, step)
            if v in first:
                raise ValueError(f"liveness: value {v!r} is written twice (by step {step!r})")
            first[v] = t
    span = {v: (t, last.get(v, t)) for v, t in first.items()}
    span.update({v: (0, last_step) for v in keep})
    return span


def _check_known(v, sizes, step):
    if v not in sizes:
        raise ValueError(f"step {step!r} uses the value {v!r}, which has no entry in sizes")


def plan_memory(
    order,
    reads,
    writes,
    sizes,
    keep=(),
    *,
    may_inplace=None,
    happens_before: Callable | None = None,
    device=None,
    alignment: int = 1,
) -> MemoryPlan:
    """Pack the values of ``order`` into one arena per device; see ``liveness`` for the inputs.

    In place: a step writes an output into the buffer of an input when it is that input's
    last reader (every other reader happens before it), ``may_inplace`` allows it (a
    callable ``(step, input) -> bool`` or a set of ``(step, input)`` pairs; None: never),
    the sizes and devices match and neither value is in ``keep`` (dtypes, where they
    matter, are for ``may_inplace`` to check).

    Two buffers may share bytes only if every step using one happens before the step that
    writes the other: ``happens_before(a, b)`` (default: ``a`` comes first in ``order``,
    right for one stream). For several streams, steps with no event path between them are
    concurrent, so a buffer freed on one stream is reused by another only after a step
    that happens after the free. ``happens_before`` must hold along every data dependency.
    ``device`` maps a value to its device (a dict or a callable; default one device, 0).
    Offsets are multiples of ``alignment``; sizes are rounded up to it.

    Buffers are placed greedily, each into the smallest gap left by the buffers it
    conflicts with (best fit), else on top of them: once in decreasing size order (the
    "greedy by size" of Pisarchyk and Lee 2020, "Efficient Memory Management for Deep
    Neural Net Inference", used by TensorFlow Lite), once in order of first use; the
    smaller arena wins.

    >>> order = ["f", "g", "h"]
    >>> reads = {"g": ["a"], "h": ["b"]}
    >>> writes = {"f": ["a"], "g": ["b"], "h": ["c"]}
    >>> plan = plan_memory(order, reads, writes, {"a": 8, "b": 8, "c": 8})
    >>> plan.offsets["a"] == plan.offsets["c"], plan.peak_bytes, plan.lower_bound
    (True, 16, 16)
    """
    if not isinstance(alignment, int) or alignment < 1:
        raise ValueError(f"plan_memory: alignment must be a positive int, got {alignment!r}")
    keep = frozenset(keep)
    span = liveness(order, reads, writes, sizes, keep)
    pos = {step: t for t, step in enumerate(order)}
    if device is None:
        dev = _zero
    elif isinstance(device, Mapping):
        dev = lambda v: device.get(v, 0)  # noqa: E731
    else:
        dev = device
    if may_inplace is None:
        allowed = _never
    elif callable(may_inplace):
        allowed = may_inplace
    else:
        pairs = frozenset(may_inplace)
        allowed = lambda step, v: (step, v) in pairs  # noqa: E731
    before = happens_before or (lambda a, b: pos[a] < pos[b])
    users = defaultdict(list)
    writer = {}
    for step in order:
        for v in dict.fromkeys([*reads.get(step, ()), *writes.get(step, ())]):
            users[v].append(step)
        for v in writes.get(step, ()):
            writer[v] = step

    # In place: an output takes over the buffer of an input read for the last time.
    home = {v: v for v in span}
    inplace = {}
    for step in order:
        taken = set()
        for o in writes.get(step, ()):
            if o in keep:
                continue
            for x in dict.fromkeys(reads.get(step, ())):
                if (
                    x in keep
                    or home[x] in taken
                    or sizes[x] != sizes[o]
                    or dev(x) != dev(o)
                    or span[x][1] != pos[step]
                    or not allowed(step, x)
                    or not all(before(u, step) for u in users[x] if u != step)
                ):
                    continue
                home[o] = home[x]
                inplace[o] = x
                taken.add(home[x])
                break

    buffers = defaultdict(list)
    for v in span:
        buffers[home[v]].append(v)
    size = {b: -(-sizes[b] // alignment) * alignment for b in buffers}
    start = {b: min(span[v][0] for v in vs) for b, vs in buffers.items()}
    end = {b: max(span[v][1] for v in vs) for b, vs in buffers.items()}
    steps_of = {b: [u for v in vs for u in users[v]] for b, vs in buffers.items()}

    def precedes(a, b) -> bool:  # every use of buffer a happens before b is first written
        w = writer.get(b)
        return w is not None and all(u != w and before(u, w) for u in steps_of[a])

    # Kept buffers conflict with everything: they go at the bottom of their arena, one
    # after the other, and the rest is packed above them.
    floor, offset_kept = defaultdict(int), {}
    for b in sorted((b for b in buffers if b in keep), key=lambda b: -size[b]):
        offset_kept[b] = floor[dev(b)]
        floor[dev(b)] += size[b]
    # Conflicts among the others: overlapping live intervals or, given happens_before,
    # lifetimes it does not separate (every pair is then checked).
    free = sorted((b for b in buffers if b not in keep and size[b]), key=lambda b: start[b])
    nbrs = {b: [] for b in free}
    for k, a in enumerate(free):
        for b in free[k + 1 :]:
            if happens_before is None and start[b] > end[a]:
                break
            if dev(a) != dev(b):
                continue
            if happens_before is None or not (precedes(a, b) or precedes(b, a)):
                nbrs[a].append(b)
                nbrs[b].append(a)

    load = defaultdict(lambda: [0] * (len(order) + 2))
    for b in buffers:
        load[dev(b)][start[b]] += size[b]
        load[dev(b)][end[b] + 1] -= size[b]
    bound = {d: int(max(np.cumsum(delta))) for d, delta in load.items()}

    def place(ranked) -> dict:
        # Best fit below a roof (the device's lower bound, or the arena so far); a buffer
        # in the gap under the roof hangs from it, so that neighbours in time alternate
        # between the bottom and the top (a chain then packs exactly into its bound).
        offset, height = dict(offset_kept), dict(floor)
        for b in ranked:
            d, n = dev(b), size[b]
            busy = sorted((offset[c], offset[c] + size[c]) for c in nbrs[b] if c in offset)
            roof = max(bound[d], height.get(d, 0))
            gaps, top = [], floor[d]
            for lo, hi in busy:
                if lo - top >= n:
                    gaps.append((top, lo))
                top = max(top, hi)
            if roof - top >= n:
                gaps.append((top, roof))
            if not gaps:
                offset[b] = top
            else:
                lo, hi = min(gaps, key=lambda g: (g[1] - g[0], g[0]))
                offset[b] = hi - n if hi == roof and lo > floor[d] else lo
            height[d] = max(height.get(d, 0), offset[b] + n)
        return offset

    # Two greedy placements, the smaller arena wins: by decreasing size (best on most
    # graphs) and by first use (best on chains).
    index = {b: k for k, b in enumerate(buffers)}
    best = None
    for rank in (
        lambda b: (-size[b], start[b], index[b]),
        lambda b: (start[b], -size[b], index[b]),
    ):
        offset = place(sorted(free, key=rank))
        arena = defaultdict(int)
        for b, off in offset.items():
            arena[dev(b)] = max(arena[dev(b)], off + size[b])
        if best is None or sum(arena.values()) < sum(best[1].values()):
            best = offset, arena
    offset, arena = best
    peak = sum(arena.values())
    total_bound = sum(bound.values())
    return MemoryPlan(
        offsets={v: offset.get(home[v], 0) for v in span},
        arena_size=dict(arena),
        peak_bytes=int(peak),
        lower_bound=int(total_bound),
        ratio=peak / total_bound if total_bound else 1.0,
        inplace=inplace,
        live=span,
    )


def _zero(v):
    return 0


def _never(step, v):
    return False


# ------------------------------------------------------------ FunctionGraph adapter


def _storage_root(node, j, root_of):
    """The value whose buffer output ``j`` of ``node`` uses: an input's for views and in-place."""
    op = node.op
    ins = (getattr(op, "destroy_map", None) or {}).get(j) or (
        getattr(op, "view_map", None) or {}
    ).get(j)
    return root_of(node.inputs[ins[0]]) if ins else None


def fgraph_buffers(fgraph, order, shapes) -> dict:
    """The ``plan_memory`` arguments of ``fgraph`` run in ``order`` (its Apply nodes).

    Values are variables. A view (``view_map``) or an in-place output (``destroy_map``)
    lives in its input's buffer, so reading it reads that buffer. ``shapes`` maps
    variables to concrete shapes (see ``infer_shapes``); a variable whose static type shape
    is complete needs none. Graph inputs, outputs and constants are kept.
    Use as ``plan_memory(**fgraph_buffers(fgraph, order, shapes))``.
    """
    order = list(order)
    _check_order(fgraph, order)
    root = {}

    def root_of(v):
        return root.get(v, v)

    for node in order:
        for j, o in enumerate(node.outputs):
            r = _storage_root(node, j, root_of)
            if r is not None:
                root[o] = r
    reads = {n: list(dict.fromkeys(root_of(i) for i in n.inputs)) for n in order}
    writes = {n: [o for o in n.outputs if o not in root] for n in order}
    constants = {i for n in order for i in n.inputs if isinstance(i, Constant)}
    constants |= {o for o in fgraph.outputs if isinstance(o, Constant)}
    keep = {root_of(v) for v in [*fgraph.inputs, *fgraph.outputs]} | constants
    values = set(keep) | {o for outs in writes.values() for o in outs}
    sizes = {v: nbytes(v, shapes) for v in values}
    return dict(order=order, reads=reads, writes=writes, sizes=sizes, keep=keep)


def _check_order(fgraph, order) -> None:
    pos = {n: k for k, n in enumerate(order)}
    if len(pos) != len(order) or set(order) != fgraph.apply_nodes:
        raise ValueError("order must list every Apply node of the graph exactly once")
    for n in order:
        for i in n.inputs:
            if i.owner is not None and pos[i.owner] > pos[n]:
                raise ValueError(f"order is not topological: {n} comes before {i.owner}")


def nbytes(v, shapes) -> int:
    """Bytes of variable ``v`` of the concrete shape ``shapes[v]`` (or its static shape)."""
    if isinstance(v, Constant):
        return int(v.data.nbytes)
    shape = shapes.get(v)
    if shape is None:
        shape = v.type.shape
        if any(s is None for s in shape):
            raise ValueError(
                f"no concrete shape for {v} ({v.type}); give it in shapes "
                f"(infer_shapes computes all of them from the inputs' shapes)"
            )
    return int(np.dtype(v.type.dtype).itemsize * math.prod(shape))


def naive_peak(fgraph, shapes) -> int:
    """The bytes of a plan that keeps every value alive (no reuse at all), for comparison."""
    args = fgraph_buffers(fgraph, fgraph.toposort(), shapes)
    return sum(args["sizes"].values())


def infer_shapes(fgraph, shapes) -> dict:
    """Concrete shapes of all variables of ``fgraph``, from ``shapes`` of (at least) its inputs.

    Each op's ``infer_shape`` runs on integer shapes; a dimension it returns as a
    symbolic expression (of constants, or of shape queries like ``Shape_i`` whose values
    follow from the shapes) is evaluated.

    >>> import flowc.tensor as T
    >>> from flowc.graph.fg import FunctionGraph
    >>> x, y = T.matrix("x"), T.matrix("y")
    >>> fg = FunctionGraph([x, y], [T.dot(x, y).sum(axis=0)])
    >>> infer_shapes(fg, {fg.inputs[0]: (2, 3), fg.inputs[1]: (3, 5)})[fg.outputs[0]]
    (5,)
    """
    from flowc.tensor.basic import Shape, Shape_i

    out = {v: tuple(int(d) for d in s) for v, s in shapes.items()}
    known = {}  # values of small integer results, which later dimensions may read
    for v in fgraph.inputs:
        if v not in out:
            if any(s is None for s in v.type.shape):
                raise ValueError(f"infer_shapes: no shape given for the input {v} ({v.type})")
            out[v] = tuple(v.type.shape)
    for node in fgraph.toposort():
        for i in node.inputs:
            if isinstance(i, Constant):
                out.setdefault(i, i.data.shape)
                known.setdefault(i, i.data)
        if any(o not in out for o in node.outputs):
            try:
                dims = node.op.infer_shape(None, node, [out[i] for i in node.inputs])
            except NotImplementedError:
                dims = [o.type.shape for o in node.outputs]
            for o, ds in zip(node.outputs, dims, strict=True):
                if o not in out:
                    out[o] = tuple(_concrete(d, known, o) for d in ds)
        small = all(o.dtype.startswith(("int", "uint")) and o.ndim <= 1 for o in node.outputs)
        if isinstance(node.op, Shape_i):
            known[node.outputs[0]] = np.int64(out[node.inputs[0]][node.op.i])
        elif isinstance(node.op, Shape):
            known[node.outputs[0]] = np.array(out[node.inputs[0]], dtype="int64")
        elif small and all(i in known for i in node.inputs):
            known.update(zip(node.outputs, evaluate(node.outputs, known), strict=True))
    return out


def _concrete(d, known, v) -> int:
    if d is None:
        raise ValueError(f"infer_shapes: {v} ({v.type}) has no inferable shape; give it in shapes")
    if isinstance(d, (int, np.integer)):
        return int(d)
    try:
        return int(evaluate([d], known)[0])
    except ValueError as exc:
        raise ValueError(
            f"infer_shapes: the shape of {v} depends on values, not only on shapes "
            f"({exc}); give it in shapes"
        ) from exc


__all__ = [
    "MemoryPlan",
    "fgraph_buffers",
    "infer_shapes",
    "liveness",
    "naive_peak",
    "nbytes",
    "plan_memory",
]
