"""Multi-stream plans run compiled drivers into arenas laid out by the static memory plan."""

import networkx as nx
import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc.graph.basic import evaluate
from flowc.graph.fg import FunctionGraph
from flowc.kernels import compile_nodes, compiler, lower
from flowc.sched.arena import ALIGNMENT, ArenaRunner, arena_layout, arena_steps, step_graph
from flowc.sched.plan import Launch, make_plan
from tests.concurrency import results_from_threads
from tests.kernels.test_table_compiled import N_CHUNKS, _build
from tests.optable import strided

needs_cxx = pytest.mark.skipif(compiler.find_compiler() is None, reason="no C++ compiler")


def _random_values(rng, xs, ops, n):
    """``xs`` and ``n`` values, each one of ``ops`` applied to two earlier values."""
    vals = list(xs)
    for _ in range(n):
        a, b = (vals[i] for i in rng.integers(0, len(vals), 2))
        vals.append(ops[rng.integers(0, len(ops))](a, b))
    return vals


VECTOR_OPS = [
    lambda a, b: a + b,
    lambda a, b: a * b,
    lambda a, b: T.exp(a) - b,
    lambda a, b: T.tanh(a),
]
# Square matrices: elementwise ops, products, and views (transposes, reversed rows).
MATRIX_OPS = [
    lambda a, b: T.tanh(a) + b,
    T.dot,
    lambda a, b: a.T,
    lambda a, b: a[::-1],
    lambda a, b: a * b.T,
]


def _placed_plan(rng, fg, where):
    kernels = lower(fg, "py")
    placement = {k: where[rng.integers(0, len(where))] for k in range(len(kernels))}
    return make_plan(fg, kernels, placement), kernels


def _assert_separated(plan, overlapping, root=None):
    """Brute force over the plan's own step graph: for every pair of slots whose memory
    overlaps, each use of one (directly or through a view, ``root``) has a path to the
    step that writes the other, or the other way round."""
    root = root or {}
    G = step_graph(plan)
    uses, writer = {}, {}
    for n in G:
        step = G.nodes[n]["step"]
        if isinstance(step, Launch):
            for s in (*step.reads, *step.writes):
                uses.setdefault(root.get(s, s), []).append(n)
            for s in step.writes:
                writer.setdefault(root.get(s, s), n)

    def before(x, y):
        return all(u != writer[y] and nx.has_path(G, u, writer[y]) for u in uses[x])

    checked = 0
    for a, b in overlapping:
        assert before(a, b) or before(b, a), (a, b)
        checked += 1
    return checked


@pytest.mark.parametrize("seed", range(12))
def test_layout_never_overlaps_values_the_streams_may_hold_together(seed):
    rng = np.random.default_rng(seed)
    xs = [T.dvector(f"x{k}") for k in range(3)]
    fg = FunctionGraph(xs, _random_values(rng, xs, VECTOR_OPS, 16)[-2:])
    where = [("cpu:0", 0), ("cpu:0", 1), ("cpu:1", 0), ("cpu:1", 1)]
    plan, _ = _placed_plan(rng, fg, where)
    sizes = {s: int(rng.integers(1, 5)) * 64 for s in range(plan.n_slots)}
    layout = arena_layout(arena_steps(plan), sizes)
    device = {
        s: p.device
        for p in plan.streams
        for st in p.steps
        if isinstance(st, Launch)
        for s in st.writes
    }
    placed = [s for s in device if s in layout.offsets]
    assert placed
    for s in placed:
        assert layout.offsets[s] % ALIGNMENT == 0
        assert layout.offsets[s] + sizes[s] <= layout.arena_size[device[s]]
    span = {s: (layout.offsets[s], layout.offsets[s] + sizes[s]) for s in placed}
    overlapping = [
        (a, b)
        for i, a in enumerate(placed)
        for b in placed[i + 1 :]
        if device[a] == device[b] and span[a][0] < span[b][1] and span[b][0] < span[a][1]
    ]
    _assert_separated(plan, overlapping)


@needs_cxx
@pytest.mark.parametrize("seed", range(8))
def test_arena_views_never_overlap_values_the_streams_may_hold_together(seed):
    """The runner's own layout, views included, checked on the arrays it hands out."""
    rng = np.random.default_rng(seed)
    xs = [T.dmatrix(f"x{k}") for k in range(2)]
    vals = _random_values(rng, xs, MATRIX_OPS, 14)
    fg = FunctionGraph(xs, [vals[-1], T.exp(vals[-2])])
    plan, kernels = _placed_plan(rng, fg, [("cpu:0", 0), ("cpu:0", 1), ("cpu:0", 2)])
    runner = ArenaRunner(fg, plan, kernels, compile_nodes([k.node for k in kernels]))
    values = [rng.normal(size=(6, 6)) for _ in fg.inputs]
    views = runner._layout(values)
    slots = sorted(views)
    overlapping = [
        (a, b)
        for i, a in enumerate(slots)
        for b in slots[i + 1 :]
        if np.shares_memory(views[a], views[b])
    ]
    _assert_separated(plan, overlapping, runner._root)
    want = evaluate(fg.outputs, dict(zip(fg.inputs, values, strict=True)))
    for _ in range(3):
        got = runner(values)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-12)


def _two_branch_step():
    x, W, V = T.dmatrix("x"), T.dmatrix("W"), T.dmatrix("V")
    a = T.tanh(T.dot(x, W))
    b = T.exp(-(T.dot(x, V) ** 2))
    return [x, W, V], [a.sum(axis=1) + b.sum(axis=1), T.dot(a.T, b)]


def _values(rng, n=20):
    return [rng.normal(size=(n, 12)), rng.normal(size=(12, 9)) * 0.3, rng.normal(size=(12, 9))]


@needs_cxx
def test_repeated_calls_reuse_the_arenas():
    ins, outs = _two_branch_step()
    ref = flowc.function(ins, outs, mode="py")
    with flowc.config.change(linker="c", devices="cpu:2", streams=2, schedule="heft"):
        f = flowc.function(ins, outs)
    assert len(f.plan.streams) > 1 and f._runner is not None and f.fallback_ops == []
    rng = np.random.default_rng(0)
    vals = _values(rng)
    first = f(*vals)
    arenas = {d: a.ctypes.data for d, a in f._runner.arenas.items()}
    assert f._runner.layouts == 1 and sum(a.nbytes for a in f._runner.arenas.values()) > 0
    for _ in range(4):
        got = f(*vals)
        for g, w, r in zip(got, first, ref(*vals), strict=True):
            np.testing.assert_array_equal(g, w)
            np.testing.assert_allclose(g, r, rtol=1e-12)
            assert not any(np.shares_memory(g, a) for a in f._runner.arenas.values())
    assert f._runner.layouts == 1  # laid out once for these shapes
    assert {d: a.ctypes.data for d, a in f._runner.arenas.items()} == arenas
    small = _values(rng, 3)
    for g, r in zip(f(*small), ref(*small), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-12)
    assert f._runner.layouts == 2  # new shapes, new layout
    f.free()
    assert f._runner.arenas == {}
    for g, r in zip(f(*vals), ref(*vals), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-12)


@needs_cxx
def test_concurrent_calls_of_one_function_agree():
    ins, outs = _two_branch_step()
    with flowc.config.change(linker="c", devices="cpu:2", streams=2, schedule="heft"):
        f = flowc.function(ins, outs)
    ref = flowc.function(ins, outs, mode="py")
    inputs = [_values(np.random.default_rng(k), 10 + k) for k in range(4)]
    want = [ref(*v) for v in inputs]
    for k, runs in enumerate(results_from_threads(lambda v: f(*v), inputs, 15)):
        for got in runs:
            for g, w in zip(got, want[k], strict=True):
                np.testing.assert_allclose(g, w, rtol=1e-12)


@needs_cxx
def test_a_failing_driver_on_a_stream_names_its_node():
    ins, outs = _two_branch_step()
    with flowc.config.change(linker="c", devices="cpu:2", streams=2, schedule="heft"):
        f = flowc.function(ins, outs)
    x, W, V = _values(np.random.default_rng(1))
    with pytest.raises(ValueError, match=r"Dot|dot|Gemm"):
        f(x, W[:5], V)  # inner dimensions disagree on one stream
    np.testing.assert_allclose(f(x, W, V)[1], f(x, W, V)[1])  # and it still runs


@needs_cxx
@pytest.mark.parametrize("chunk", range(N_CHUNKS["float64"]))
def test_op_table_on_four_devices_compiled(chunk):
    """The whole op table (float64) compiled per node on devices=cpu:4, streams=2."""
    cases, inputs, outputs, refs, owners = _build("float64", chunk)
    xs = [x for group, _ in inputs for x in group]
    values = [v for _, group in inputs for v in group]
    flags = dict(linker="c", cxx_flags="-O0", devices="cpu:4", streams=2, schedule="heft")
    with flowc.config.change(**flags):
        f = flowc.function(xs, outputs, on_unused_input="ignore")
    assert f._runner is not None and len(f.plan.streams) > 1
    # The second call runs in the arenas the first laid out; the third gets non-contiguous
    # views of the same values (the arenas' layout depends only on shapes).
    for args in (values, values, [strided(v) for v in values]):
        got = f(*args)
        for g, w, case in zip(got, refs, owners, strict=True):
            w = np.asarray(w)
            assert g.shape == w.shape, case
            np.testing.assert_allclose(
                g,
                w,
                rtol=case.rtol or 1e-10,
                atol=case.rtol or 1e-10,
                equal_nan=True,
                err_msg=str(case),
            )
    assert f._runner.layouts == 1


@needs_cxx
def test_alike_nodes_share_one_driver_and_errors_name_their_own_node():
    x = T.dmatrix("x")
    ws = [T.dmatrix(f"W{i}") for i in range(6)]
    h = x
    for w in ws:
        h = T.tanh(T.dot(h, w))
    fg = FunctionGraph([x, *ws], [h])
    nodes = fg.toposort()
    drivers = compile_nodes(nodes)
    names = {d[0].name for d in drivers if d is not None}
    assert len(nodes) == 12 and len(names) == 2  # one Dot driver, one tanh driver
    plan = make_plan(fg, lower(fg, "py"))
    runner = ArenaRunner(fg, plan, lower(fg, "py"), drivers)
    rng = np.random.default_rng(5)
    vals = [rng.normal(size=(3, 4)), *(rng.normal(size=(4, 4)) * 0.5 for _ in ws)]
    want = evaluate(fg.outputs, dict(zip(fg.inputs, vals, strict=True)))[0]
    np.testing.assert_allclose(runner(vals)[0], want, rtol=1e-12)
    vals[4] = rng.normal(size=(5, 4))  # W3 does not fit
    with pytest.raises(ValueError, match=r"W3"):
        runner(vals)
