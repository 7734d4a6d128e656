"""Multi-stream plans run compiled drivers into arenas laid out by the static memory plan."""

import networkx as nx
import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc.graph.fg import FunctionGraph
from flowc.kernels import compiler, lower
from flowc.sched.arena import ALIGNMENT, arena_layout, step_graph
from flowc.sched.plan import Launch, make_plan
from tests.concurrency import results_from_threads
from tests.kernels.test_table_compiled import N_CHUNKS, _build

needs_cxx = pytest.mark.skipif(compiler.find_compiler() is None, reason="no C++ compiler")


def _random_fgraph(seed, n=16):
    rng = np.random.default_rng(seed)
    xs = [T.dvector(f"x{k}") for k in range(3)]
    vals = list(xs)
    for _ in range(n):
        a, b = (vals[i] for i in rng.integers(0, len(vals), 2))
        vals.append([a + b, a * b, T.exp(a) - b, T.tanh(a)][rng.integers(0, 4)])
    return FunctionGraph(xs, vals[-2:])


@pytest.mark.parametrize("seed", range(12))
def test_layout_never_overlaps_values_the_streams_may_hold_together(seed):
    """Brute force: bytes shared by two values imply a happens-before path from every use
    of one to the step writing the other, in the plan's own step graph."""
    rng = np.random.default_rng(seed)
    fg = _random_fgraph(seed)
    kernels = lower(fg, "py")
    where = [("cpu:0", 0), ("cpu:0", 1), ("cpu:1", 0), ("cpu:1", 1)]
    placement = {k: where[rng.integers(0, len(where))] for k in range(len(kernels))}
    plan = make_plan(fg, kernels, placement)
    sizes = {s: int(rng.integers(1, 5)) * 64 for s in range(plan.n_slots)}
    layout = arena_layout(plan, sizes)
    G = step_graph(plan)
    uses, writer, device = {}, {}, {}
    for n in G:
        step = G.nodes[n]["step"]
        if isinstance(step, Launch):
            for s in step.reads:
                uses.setdefault(s, []).append(n)
            for s in step.writes:
                uses.setdefault(s, []).append(n)
                writer[s] = n
                device[s] = G.nodes[n]["device"]
    placed = [s for s in writer if s in layout.offsets]
    assert placed
    for s in placed:
        assert layout.offsets[s] % ALIGNMENT == 0
        assert layout.offsets[s] + sizes[s] <= layout.arena_size[device[s]]
    for i, a in enumerate(placed):
        for b in placed[i + 1 :]:
            if device[a] != device[b]:
                continue
            lo_a, lo_b = layout.offsets[a], layout.offsets[b]
            if lo_a >= lo_b + sizes[b] or lo_b >= lo_a + sizes[a]:
                continue  # disjoint bytes

            def before(x, y):
                return all(u != writer[y] and nx.has_path(G, u, writer[y]) for u in uses[x])

            assert before(a, b) or before(b, a), (a, b)


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
    for _ in range(2):  # the second call runs in the arenas the first laid out
        got = f(*values)
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
