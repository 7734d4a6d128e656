"""Compile a whole function graph into ONE shared object whose drivers run it in a few calls.

``compile_function(fgraph)`` orders the nodes so that those with a C++ emitter
(``flowc.kernels.render``) gather into segments; each segment becomes one generated driver
function, and the nodes without an emitter run their Python ``perform`` between segments.
All kernels and drivers go into one translation unit: one compiler run through the cache.

Calling convention of a driver (``flowc_seg<k>``): one ``PyArrayObject*`` per segment
input, one per segment output, then an ``int64_t* shapes_out``. The driver reads the arrays'
data pointers, dims, strides and flags straight from NumPy's object layout (its stable
ABI; checked once per process before the first library is used), so a call costs no
Python work per array. Returns 0, ``NEED_ALLOC`` (1) or an error code (2 ValueError,
3 IndexError, 4 MemoryError) whose message ``flowc_last_error`` gives.

Output arrays are allocated in Python: ``np.empty`` with the shapes the previous call had.
The driver computes every shape in its prologue (shapes are dynamic), checks the inputs'
ranks, static sizes and broadcasting, and compares the outputs it was given; if one does not
fit it returns ``NEED_ALLOC``, is called once more with ``shapes_out`` to report the shapes,
and a third time with new arrays. While shapes stay the same, a segment is one ctypes call
(which releases the GIL). Intermediates live in one scratch arena per driver, allocated by
the first call and reused by the next ones (``release_scratch`` frees it). Outputs never
alias inputs, except a graph output that is a graph input.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import hashlib
import heapq
import os
import platform
from pathlib import Path

import numpy as np

from flowc.graph.basic import Apply, Constant, Variable
from flowc.graph.destroy import pure_view
from flowc.kernels import compiler
from flowc.kernels.render import (
    CPU,
    NodeContext,
    Segment,
    SplitBefore,
    Target,
    Unsupported,
    Val,
    _prod,
    copy_into,
    emitter_for,
)

__all__ = ["NEED_ALLOC", "CompiledFunction", "compile_function", "render_source"]

NEED_ALLOC = 1
_ERRORS = {2: ValueError, 3: IndexError, 4: MemoryError}
HEADER = Path(__file__).with_name("flowc_kernel.h")
_DRIVER = -1_000_000  # ``where`` of an error of the driver itself (scratch memory)


# ------------------------------------------------------------------- planning


@dataclasses.dataclass
class _CPart:
    segment: Segment
    outputs: list[Variable]


def _plan(fgraph, target: Target) -> list:
    """Steps in run order: ``_CPart`` segments and the Apply nodes that run in Python.

    A list scheduler over the graph that prefers nodes with an emitter, so they gather into
    as few segments as possible; ties go to the graph's topological order. Of those, the
    nodes that some Python node waits for come first; the others wait for the segment after
    the next Python node, so that a segment does not end with values (and view copies) that
    only later segments read.
    """
    order = fgraph.toposort()
    rank = {node: i for i, node in enumerate(order)}
    pending = {node: {v for v in node.inputs if v.owner in rank} for node in order}
    feeds_py = set()  # nodes that a node without an emitter depends on
    for node in reversed(order):
        if emitter_for(node.op) is None or any(
            client in feeds_py
            for out in node.outputs
            for client, _ in fgraph.clients.get(out, ())
            if client != "output"
        ):
            feeds_py.add(node)
    c_ready, py_ready = [], []

    def push(node):
        if emitter_for(node.op) is None:
            heapq.heappush(py_ready, (rank[node], node))
        else:
            heapq.heappush(c_ready, (node not in feeds_py, rank[node], node))

    for node in order:
        if not pending[node]:
            push(node)

    def done(node):
        for out in node.outputs:
            for client, _ in fgraph.clients.get(out, ()):
                if client != "output" and out in pending[client]:
                    pending[client].discard(out)
                    if not pending[client]:
                        push(client)

    steps: list = []
    seg: Segment | None = None

    def new_segment():
        return Segment(sum(isinstance(s, _CPart) for s in steps), target)

    def close():
        nonlocal seg
        if seg is not None and seg.nodes:
            steps.append(_CPart(seg, _segment_outputs(fgraph, seg)))
        seg = None

    while c_ready or py_ready:
        if py_ready and (not c_ready or c_ready[0][0]):  # nothing ready that Python waits for
            close()
            _, node = heapq.heappop(py_ready)
            steps.append(node)
            done(node)
            continue
        _, _, node = heapq.heappop(c_ready)
        seg = seg or new_segment()
        try:
            try:
                seg.emit(node)
            except SplitBefore:
                close()
                seg = new_segment()
                seg.emit(node)
        except Unsupported:
            heapq.heappush(py_ready, (rank[node], node))
            continue
        done(node)
    close()
    return steps


def _segment_outputs(fgraph, seg: Segment) -> list[Variable]:
    """Values made in ``seg`` that something outside it reads (or that the graph returns)."""
    inside = set(seg.nodes)
    outs = []
    for node in seg.nodes:
        for out in node.outputs:
            if any(c == "output" or c not in inside for c, _ in fgraph.clients.get(out, ())):
                outs.append(out)
    return outs


# ------------------------------------------------------------------- rendering


def _contiguous_strides(shape) -> tuple:
    strides, below = [], "1"
    for s in reversed(shape):
        strides.append(below)
        below = s if below == "1" else f"({s} * {below})"
    return tuple(reversed(strides))


def render_driver(seg: Segment, outputs: list[Variable]) -> tuple[str, list[str]]:
    """The driver function of ``seg`` (check inputs, compute shapes, fit the outputs, run the
    kernels), and the kernels that copy outputs which are views into their arrays."""
    n_in = len(seg.inputs)
    vals = [seg.vals[v] for v in outputs]
    params = [f"void* in{k}_" for k in range(n_in)]
    params += [f"void* out{k}_" for k in range(len(outputs))] + ["int64_t* shapes_out"]
    body = ["// inputs", *seg.input_code, "// shapes and checks", *seg.prologue]
    body.append("if (shapes_out) {")
    pos = 0
    for val in vals:
        for s in val.shape:
            body.append(f"  shapes_out[{pos}] = {s};")
            pos += 1
    body += ["  return FLOWC_NEED_ALLOC;", "}"]
    for k, val in enumerate(vals):
        body.append(f"const flowc_pyarray* out{k} = (const flowc_pyarray*)out{k}_;")
        if val.ndim:
            body.append(
                f"{{ const int64_t dims[] = {{{', '.join(val.shape)}}}; "
                f"if (!flowc_output_fits(out{k}, {val.ndim}, dims)) return FLOWC_NEED_ALLOC; }}"
            )
        else:
            body.append(f"if (!flowc_output_fits(out{k}, 0, nullptr)) return FLOWC_NEED_ALLOC;")
    # A buffer made for an output variable is that output's array; the rest are scratch.
    direct: dict[int, int] = {}
    for k, (var, val) in enumerate(zip(outputs, vals, strict=True)):
        if val.buffer and val.var is var:
            direct.setdefault(id(val), k)
    body += [
        "// memory: buffers whose lifetimes do not overlap share a slot",
        "size_t scratch_bytes = 0;",
    ]
    scratch = [b for b in seg.buffers if id(b) not in direct]
    for j, members in enumerate(_share_slots(seg, scratch, outputs)):
        body.append(f"size_t slot{j} = 0;")
        for b in members:
            body.append(
                f"{{ const size_t n = flowc_round64(sizeof({b.ctype}) * (size_t){b.size}); "
                f"if (n > slot{j}) slot{j} = n; }}"
            )
        body.append(f"const size_t slot{j}_at = scratch_bytes; scratch_bytes += slot{j};")
        body += [f"const size_t {b.name}_at = slot{j}_at;" for b in members]
    body += [
        f"flowc_scratch scratch(flowc_arena{seg.index}, scratch_bytes);",
        "if (scratch_bytes && !scratch.base)",
        f'  return flowc_fail(FLOWC_MEMORY_ERROR, {_DRIVER}, "cannot allocate %zu bytes of '
        f'scratch memory", scratch_bytes);',
    ]
    for b in seg.buffers:
        k = direct.get(id(b))
        where = f"out{k}->data" if k is not None else f"scratch.base + {b.name}_at"
        body.append(f"{b.ctype}* {b.name} = ({b.ctype}*)({where});")
    body += ["// run", *seg.run]
    ctx = NodeContext(seg, None, len(seg.nodes))
    for k, (var, val) in enumerate(zip(outputs, vals, strict=True)):
        if direct.get(id(val)) == k:
            continue
        ct = val.ctype
        name = f"o{k}"
        ctx.launch(f"// output {k}: a copy", f"{ct}* {name} = ({ct}*)out{k}->data;")
        dst = Val(
            name,
            val.dtype,
            val.static,
            "array",
            val.shape,
            _contiguous_strides(val.shape),
            var,
            True,
            _prod(val.shape),
        )
        copy_into(ctx, val, dst)
    body += ctx.run
    body.append("return FLOWC_OK;")
    inner = "".join(f"  {line}\n" for line in body)
    text = f'extern "C" int flowc_seg{seg.index}({", ".join(params)}) {{\n{inner}}}\n'
    return text, ctx.kernels


def _share_slots(seg: Segment, buffers: list[Val], outputs) -> list[list[Val]]:
    """Group scratch buffers into slots of disjoint lifetimes (linear scan in run order).

    A buffer lives from the node that writes it to the last node that reads it or any
    view of it (``view_map``/``destroy_map`` followed to the storage); one the segment
    returns lives to the end, when outputs are copied out. Two buffers share a slot only
    if one is written strictly after the other's last reader, so no kernel reads and
    writes the same memory through two names.
    """
    position = {node: t for t, node in enumerate(seg.nodes)}
    end = len(seg.nodes)

    def storage(v):
        while v.owner is not None and v.owner in position:
            op = v.owner.op
            src = op.view_map.get(v.index) or op.destroy_map.get(v.index)
            if not src:
                break
            v = v.owner.inputs[src[0]]
        return v

    last = {}
    for node in seg.nodes:
        for v in node.inputs:
            last[storage(v)] = position[node]
    for v in outputs:
        last[storage(v)] = end
    slots: list[tuple[int, list[Val]]] = []  # (last use of the slot's current tenant, members)
    for b in sorted(buffers, key=lambda b: position.get(getattr(b.var, "owner", None), -1)):
        born = position.get(b.var.owner, -1) if b.var is not None else -1
        dies = last.get(b.var, end) if b.var is not None else end
        for k, (busy_until, members) in enumerate(slots):
            if busy_until < born:
                slots[k] = (dies, [*members, b])
                break
        else:
            slots.append((dies, [b]))
    return [members for _, members in slots]


@functools.cache
def _header_digest() -> str:
    return hashlib.sha256(HEADER.read_bytes()).hexdigest()[:16]


@functools.cache
def _libmvec() -> bool:
    """Whether glibc's vector math library can be linked (x86-64 Linux)."""
    return (
        platform.system() == "Linux"
        and platform.machine() in ("x86_64", "AMD64")
        and bool(ctypes.util.find_library("mvec"))
    )


def render_source(parts: list[_CPart]) -> str:
    """The translation unit: the dialect header, every segment's kernels, then the drivers."""
    drivers, kernels = [], []
    for p in parts:
        text, copies = render_driver(p.segment, p.outputs)
        drivers.append(text)
        kernels += p.segment.kernels + copies
    blas = any(p.segment.needs_blas for p in parts)
    head = [
        "// Generated by flowc: kernels in the flowc dialect, and one driver per segment.",
        f"// flowc_kernel.h {_header_digest()}",  # the compile cache key follows the header
        f"#define FLOWC_PYOBJECT_HEAD {object.__basicsize__}",
    ]
    if _libmvec():
        head.append("#define FLOWC_USE_LIBMVEC 1")
    if blas:
        head += ["#define FLOWC_USE_CBLAS 1", '#include "cblas.h"']
    head += ['#include "flowc_kernel.h"', ""]
    error = (
        'extern "C" const char* flowc_last_error(int* where) {\n'
        "  *where = flowc_error_where;\n  return flowc_error_text;\n}\n"
    )
    arenas = [f"static flowc_arena flowc_arena{p.segment.index};" for p in parts]
    # Free the idle arenas (returns the bytes freed); count the blocks they allocated.
    release = " + ".join(f"flowc_arena_release(flowc_arena{p.segment.index})" for p in parts)
    allocs = " + ".join(f"flowc_arena{p.segment.index}.allocs" for p in parts)
    memory = (
        f'extern "C" size_t flowc_release_scratch() {{ return {release or "0"}; }}\n'
        f'extern "C" size_t flowc_scratch_allocs() {{ return {allocs or "0"}; }}\n'
    )
    return "\n".join([*head, *kernels, error, *arenas, memory, *drivers])


def _build_args(parts: list[_CPart]) -> dict:
    kw = {"include_dirs": [str(HEADER.parent)], "libraries": [], "library_dirs": [], "rpaths": []}
    if _libmvec():
        kw["libraries"].append("mvec")
    if any(p.segment.needs_blas for p in parts):
        for key, value in compiler.openblas_build_args().compile_kwargs().items():
            kw[key] = [*kw[key], *value]
    return kw


# ------------------------------------------------------------------- layout check

_layout_ok: bool | None = None


def _check_array_layout() -> None:
    """Check that NumPy arrays have the field offsets the drivers read (once per process)."""
    global _layout_ok
    if _layout_ok is None:
        _layout_ok = all(_layout_matches(a) for a in _probe_arrays())
    if not _layout_ok:
        raise RuntimeError(
            "flowc: this NumPy's array objects do not have the layout compiled drivers read; "
            "the compiled back end is unavailable (use mode='py')"
        )


def _probe_arrays():
    a = np.zeros((4, 6), dtype="float32")
    b = np.arange(7.0)
    b.setflags(write=False)
    return [a, a[:, ::2], a.T, b, np.zeros((), "int8")]


def _layout_matches(a: np.ndarray) -> bool:
    base = id(a) + object.__basicsize__
    data = ctypes.c_void_p.from_address(base).value or 0
    nd = ctypes.c_int.from_address(base + 8).value
    if data != a.__array_interface__["data"][0] or nd != a.ndim:
        return False
    if nd:
        dims = ctypes.c_void_p.from_address(base + 16).value
        strides = ctypes.c_void_p.from_address(base + 24).value
        if tuple((ctypes.c_int64 * nd).from_address(dims)) != a.shape:
            return False
        if tuple((ctypes.c_int64 * nd).from_address(strides)) != a.strides:
            return False
    flags = ctypes.c_int.from_address(base + 48).value
    return (
        bool(flags & 0x1) == a.flags.c_contiguous
        and bool(flags & 0x100) == a.flags.aligned
        and bool(flags & 0x400) == a.flags.writeable
    )


# ------------------------------------------------------------------- running


class _CStep:
    """One driver call: read input slots, allocate outputs, call, store output slots."""

    def __init__(self, lib, part: _CPart, slot_of):
        seg = part.segment
        self.name = f"flowc_seg{seg.index}"
        fn = getattr(lib, self.name)
        n_args = len(seg.inputs) + len(part.outputs)
        fn.argtypes = [ctypes.py_object] * n_args + [ctypes.POINTER(ctypes.c_int64)]
        fn.restype = ctypes.c_int
        self.fn = fn
        self.last_error = lib.flowc_last_error
        self.last_error.argtypes = [ctypes.POINTER(ctypes.c_int)]
        self.last_error.restype = ctypes.c_char_p
        self.nodes = list(seg.nodes)
        self.inputs = list(seg.inputs)
        self.in_slots = [slot_of(v) for v in seg.inputs]
        self.out_slots = [slot_of(v) for v in part.outputs]
        self.dtypes = [np.dtype(v.type.dtype) for v in part.outputs]
        self.ndims = [v.type.ndim for v in part.outputs]
        # The first guess at the output shapes: their static sizes (unknown ones 0).
        guess = [tuple(s or 0 for s in v.type.shape) for v in part.outputs]
        self.alloc = list(zip(guess, self.dtypes, strict=True))
        self.reads = seg.inputs

    def __call__(self, env: list) -> None:
        outs = self.call([env[s] for s in self.in_slots])
        for s, o in zip(self.out_slots, outs):
            env[s] = o

    def call(self, args: list) -> list[np.ndarray]:
        """The segment's outputs from its input arrays."""
        # The hot path: one allocation per output and one C call.
        outs = [np.empty(shape, dtype) for shape, dtype in self.alloc]
        rc = self.fn(*args, *outs, None)
        if rc:
            outs = self._again(rc, args, outs)
        return outs

    def _again(self, rc, args, outs):
        if rc == NEED_ALLOC:
            shapes = (ctypes.c_int64 * max(1, sum(self.ndims)))()
            rc = self.fn(*args, *outs, shapes)
            if rc == NEED_ALLOC:
                guess, pos = [], 0
                for nd in self.ndims:
                    guess.append(tuple(shapes[pos : pos + nd]))
                    pos += nd
                self.alloc = list(zip(guess, self.dtypes, strict=True))
                outs = [np.empty(s, d) for s, d in self.alloc]
                rc = self.fn(*args, *outs, None)
        if rc:
            self._raise(rc)
        return outs

    def _raise(self, rc):
        where = ctypes.c_int()
        text = (self.last_error(ctypes.byref(where)) or b"").decode(errors="replace")
        w = where.value
        if 0 <= w < len(self.nodes):
            node = self.nodes[w]
            subject = f"{node.op} (node {_short(node)})"
        elif 0 <= -1 - w < len(self.inputs):
            var = self.inputs[-1 - w]
            subject = f"input {var} of {var.type} to compiled segment {self.name}"
        else:
            subject = f"compiled segment {self.name}"
        if rc == NEED_ALLOC:
            raise RuntimeError(f"{subject}: the driver rejected the output arrays it asked for")
        raise _ERRORS.get(rc, RuntimeError)(f"{subject}: {text}")


def _short(node) -> str:
    text = str(node)
    return text if len(text) <= 200 else text[:197] + "..."


class _PyStep:
    """One node's Python ``perform``; outputs become ndarrays of exactly their dtype."""

    def __init__(self, node: Apply, slot_of):
        self.node = node
        self.perform = node.op.perform
        self.in_slots = [slot_of(v) for v in node.inputs]
        self.out_slots = [slot_of(v) for v in node.outputs]
        self.dtypes = [np.dtype(v.type.dtype) for v in node.outputs]
        self.reads = node.inputs

    def __call__(self, env: list) -> None:
        storage = [[None] for _ in self.out_slots]
        self.perform(self.node, [env[s] for s in self.in_slots], storage)
        for s, (v,), dt in zip(self.out_slots, storage, self.dtypes, strict=True):
            if type(v) is not np.ndarray or v.dtype != dt:
                v = np.asarray(v, dtype=dt)
            env[s] = v


class CompiledFunction:
    """``fgraph`` compiled: ``f(list of input arrays) -> list of output arrays``.

    ``fallback_ops`` names the ops that run their Python ``perform``; ``source`` is the
    generated C++; ``library`` the shared object (None when nothing is compiled).
    """

    def __init__(self, fgraph, steps: list, source: str, library: Path | None):
        self.fgraph = fgraph
        self.source = source
        self.library = library
        self.fallback_ops = sorted({str(s.op) for s in steps if isinstance(s, Apply)})
        self.n_segments = sum(isinstance(s, _CPart) for s in steps)
        slots: dict[Variable, int] = {}

        def slot_of(v):
            return slots.setdefault(v, len(slots))

        self._in_slots = [slot_of(v) for v in fgraph.inputs]
        self._in_checks = [(slot_of(v), np.dtype(v.type.dtype), v.type.ndim) for v in fgraph.inputs]
        lib = compiler.load_library(library) if library is not None else None
        self._memory = None
        if lib is not None:
            release, allocs = lib.flowc_release_scratch, lib.flowc_scratch_allocs
            release.restype = allocs.restype = ctypes.c_size_t
            release.argtypes = allocs.argtypes = []
            self._memory = (release, allocs)
        run = []
        for s in steps:
            run.append(_PyStep(s, slot_of) if isinstance(s, Apply) else _CStep(lib, s, slot_of))
        self._out_slots = [slot_of(v) for v in fgraph.outputs]
        constants = {v for step in run for v in step.reads if isinstance(v, Constant)}
        constants |= {v for v in fgraph.outputs if isinstance(v, Constant)}
        env = [None] * len(slots)
        for v in constants:
            env[slots[v]] = v.data
        self._env = env
        # Free each intermediate after its last reader, so big temporaries do not pile up.
        last = {}
        for i, step in enumerate(run):
            for s in step.in_slots:
                last[s] = i
        keep = set(self._in_slots) | set(self._out_slots) | {slots[v] for v in constants}
        frees = [[] for _ in run]
        for s, i in last.items():
            if s not in keep:
                frees[i].append(s)
        self._run = [(step, tuple(f)) for step, f in zip(run, frees, strict=True)]
        # Outputs returned as copies: constants, and views that Python ops make.
        self._copy = []
        for k, v in enumerate(fgraph.outputs):
            node = v.owner
            viewish = (
                node is not None
                and not any(isinstance(p, _CPart) and node in p.segment.nodes for p in steps)
                and (v.index in node.op.view_map or v.index in node.op.destroy_map)
            )
            if isinstance(v, Constant) or viewish:
                self._copy.append(k)
        self._direct = self._direct_call()

    def _direct_call(self):
        """(step, take, give) when the function is one segment that reads only graph inputs
        and returns only its own outputs: then a call skips the slot list. ``take`` picks
        the segment's inputs from the function's, ``give`` the function's outputs from the
        segment's (None: the same list)."""
        if len(self._run) != 1 or not isinstance(self._run[0][0], _CStep) or self._copy:
            return None
        step = self._run[0][0]
        ins, outs = [s for s, _, _ in self._in_checks], step.out_slots
        if not set(step.in_slots) <= set(ins) or not set(self._out_slots) <= set(outs):
            return None
        take = [ins.index(s) for s in step.in_slots]
        give = [outs.index(s) for s in self._out_slots]
        return (
            step,
            None if take == list(range(len(ins))) else take,
            None if give == list(range(len(outs))) else give,
        )

    def release_scratch(self) -> int:
        """Free the drivers' idle scratch arenas (the next call allocates them again);
        returns the bytes freed. Functions compiled from the same source share a library,
        and so share its arenas."""
        return self._memory[0]() if self._memory else 0

    @property
    def scratch_allocs(self) -> int:
        """How many scratch blocks the drivers' arenas have allocated so far: it stays put
        over calls whose shapes do not grow."""
        return self._memory[1]() if self._memory else 0

    def hot_call(self, single: bool = False):
        """A call specialised to this function's arity, or None where it has none.

        For a function that is one driver over its own inputs, returns ``hot(args)``: the
        outputs (the one array when ``single``) for a tuple of ndarrays that already have
        the declared dtypes and ranks, or None, the cue to take the general path. It is
        generated Python, so that a call is the checks, one ``np.empty`` per output and the
        ctypes call, with no loop or slot list (the W2 benchmark's few microseconds).
        """
        if self._direct is None or self._direct[1] is not None or self._direct[2] is not None:
            return None
        step = self._direct[0]
        xs = [f"x{k}" for k in range(len(self._in_checks))]
        os_ = [f"o{j}" for j in range(len(step.out_slots))]
        scope = {"ndarray": np.ndarray, "empty": np.empty, "step": step, "fn": step.fn}
        lines = ["def hot(args):", f"    if len(args) != {len(xs)}:", "        return None"]
        if xs:
            lines.append(f"    {', '.join(xs)}, = args")
        for k, (_, dtype, ndim) in enumerate(self._in_checks):
            scope[f"d{k}"] = dtype
            lines.append(
                f"    if type(x{k}) is not ndarray or x{k}.dtype is not d{k} "
                f"or x{k}.ndim != {ndim}:"
            )
            lines.append("        return None")
        lines.append("    alloc = step.alloc")
        lines += [f"    {o} = empty(*alloc[{j}])" for j, o in enumerate(os_)]
        lines.append(f"    rc = fn({', '.join(xs + os_)}, None)")
        result = os_[0] if single else f"[{', '.join(os_)}]"
        lines.append(f"    if not rc:\n        return {result}")
        again = f"step._again(rc, [{', '.join(xs)}], [{', '.join(os_)}])"
        lines.append(f"    return {again}[0]" if single else f"    return {again}")
        exec("\n".join(lines), scope)  # noqa: S102 - code generated from our own counts
        return scope["hot"]

    def __repr__(self):
        return (
            f"CompiledFunction({len(self._run)} steps, {self.n_segments} compiled segments, "
            f"fallback_ops={self.fallback_ops})"
        )

    def __call__(self, inputs) -> list[np.ndarray]:
        if len(inputs) != len(self._in_checks):
            raise TypeError(f"expected {len(self._in_checks)} input arrays, got {len(inputs)}")
        checked = []
        for k, x in enumerate(inputs):
            _, dtype, ndim = self._in_checks[k]
            if type(x) is not np.ndarray or x.dtype is not dtype or x.ndim != ndim:
                x = self._filter(k, x)
            checked.append(x)
        if self._direct is not None:
            step, take, give = self._direct
            outs = step.call(checked if take is None else [checked[i] for i in take])
            return outs if give is None else [outs[j] for j in give]
        env = self._env.copy()
        for (slot, _, _), x in zip(self._in_checks, checked):
            env[slot] = x
        for step, frees in self._run:
            step(env)
            for s in frees:
                env[s] = None
        outs = [env[s] for s in self._out_slots]
        for k in self._copy:
            outs[k] = np.array(outs[k], copy=True)
        return outs

    def _filter(self, k, x) -> np.ndarray:
        """Input ``k`` as an ndarray of its type in native byte order, or a clear error."""
        var = self.fgraph.inputs[k]
        x = var.type.filter(x, what=f"input {k} ({var})")
        if not x.dtype.isnative:
            x = x.astype(x.dtype.newbyteorder("="))
        return x


def compile_function(fgraph, target: Target = CPU) -> CompiledFunction:
    """Compile ``fgraph`` into one shared object (one compiler run, through the cache).

    >>> import flowc.tensor as T
    >>> from flowc.graph import FunctionGraph
    >>> x = T.dvector('x')
    >>> f = compile_function(FunctionGraph([x], [T.exp(x) * 2]))
    >>> f([np.zeros(3)])[0]
    array([2., 2., 2.])
    """
    steps = _plan(fgraph, target)
    parts = [s for s in steps if isinstance(s, _CPart)]
    source = render_source(parts)
    return CompiledFunction(fgraph, steps, source, _build(source, parts))


def _build(source: str, parts: list[_CPart]) -> Path | None:
    """The shared object of ``source`` (None when there is nothing to compile)."""
    if not parts:
        return None
    _check_array_layout()
    # libgomp reads its wait policy once, when it loads. Spinning idle workers starve
    # other threads wherever cores are shared (stream workers, other processes): measured
    # 4x slower reductions on a busy 2-core machine. Sleeping is the safe default.
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    return compiler.compile_shared(source, **_build_args(parts))


def compile_nodes(nodes: list[Apply], target: Target = CPU) -> list:
    """One driver per kind of node, all in one shared object: what a multi-stream (or
    budgeted) plan launches.

    Returns, per node, ``(step, take)``: the ``_CStep`` that runs it and the positions in
    ``node.inputs`` of its driver's inputs (literals and repeats are not passed); None for
    a node without an emitter, which runs its ``perform``. A driver writes every output
    into the arrays it is given, so outputs never alias inputs. Views (``pure_view``) are
    left to ``perform``, which makes them without copying. Nodes whose
    drivers render to the same text (the same op on the same types: the layers of a deep
    net) share one driver, so the compile grows with the kinds of nodes, not their number.
    """

    parts: dict[int, _CPart] = {}  # node position -> its own segment (inputs, messages)
    first: list[_CPart] = []  # the segment rendered for each kind, named after it
    texts: dict[str, int] = {}
    for k, node in enumerate(nodes):
        if pure_view(node.op):
            continue
        seg = Segment(0, target)
        try:
            seg.emit(node)
        except (Unsupported, SplitBefore):
            continue
        driver, kernels = render_driver(seg, list(node.outputs))
        code = "\n".join([driver, *seg.kernels, *kernels]).splitlines()
        key = "\n".join(line for line in code if not line.lstrip().startswith("//"))
        j = texts.setdefault(key, len(texts))  # comments name the node: not its kind
        if j == len(first):  # a new kind: emitted again under its own name
            seg = Segment(j, target)
            seg.emit(node)
            first.append(_CPart(seg, list(node.outputs)))
        seg.index = j  # the driver a node of this kind calls
        parts[k] = _CPart(seg, list(node.outputs))
    found = [None] * len(nodes)
    library = _build(render_source(first), first)
    if library is None:
        return found
    lib = compiler.load_library(library)
    for k, part in parts.items():
        take = tuple(nodes[k].inputs.index(v) for v in part.segment.inputs)
        found[k] = (_CStep(lib, part, lambda v: -1), take)
    return found
