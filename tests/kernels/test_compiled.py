"""The compiled back end: whole graphs in one shared object, checked against ``perform``.

Each graph of the table is compiled once per dtype (one source each, so a warm compile
cache makes the file fast) and run on contiguous, strided, Fortran-order and reversed
inputs; the reference is ``flowc.graph.evaluate``, the Python ``perform`` of every node.
"""

import ctypes
import dataclasses
import functools
import shutil
from collections.abc import Callable

import numpy as np
import pytest

import flowc.tensor as T
from flowc.graph import FunctionGraph, evaluate
from flowc.kernels import cache, compiler
from flowc.kernels.compiled import compile_function
from flowc.pipeline import PIPELINE, rewrite
from flowc.tensor.composite import Composite
from tests.concurrency import results_from_threads

pytestmark = pytest.mark.skipif(compiler.find_compiler() is None, reason="no C++ compiler")

NO_INPLACE = [name for name, _ in PIPELINE if name != "inplace"]


def tensor(dtype, shape, name):
    return T.tensor(dtype, shape, name=name)


@dataclasses.dataclass(eq=False)
class Graph:
    """A graph family: ``build(dtype) -> (inputs, outputs)``, ``make(rng, dtype) -> values``."""

    name: str
    build: Callable
    make: Callable
    dtypes: tuple
    fuse: bool = False  # run the rewrite pipeline (fusion, Gemm) before compiling

    def __str__(self):
        return self.name


def _values(rng, dtype, *shapes, lo=-3, hi=4):
    if dtype == "bool":
        return [rng.random(s) < 0.5 for s in shapes]
    if np.dtype(dtype).kind in "iu":
        return [rng.integers(lo, hi, size=s).astype(dtype) for s in shapes]
    return [rng.normal(size=s).astype(dtype) for s in shapes]


def _broadcast(dtype):
    x, r = tensor(dtype, (None, None), "x"), tensor(dtype, (1, None), "r")
    c, s = tensor(dtype, (None, 1), "c"), tensor(dtype, (), "s")
    outs = [x * r + c, (x - s) * c, T.maximum(x, r), T.lt(x, r), T.minimum(s, c)]
    if dtype.startswith("float"):
        outs += [T.exp(x) / (1 + abs(r)), T.switch(T.gt(x, 0), T.sqrt(abs(x)), c), x // c, x % r]
    else:
        outs += [x // (abs(r) + 1), x % 3, -x, abs(c) * s, x // c, x % r]
    return [x, r, c, s], outs


def _composite(dtype):
    x, y = tensor(dtype, (None, None), "x"), tensor(dtype, (1, None), "y")
    if dtype.startswith("float"):
        e = T.exp(-x * x)
        outs = [T.tanh(x * y + e) * T.nnet.sigmoid(y) - T.log1p(abs(x)), e * y]
    else:
        outs = [(x * y + x) // 3 - abs(x), T.maximum(x, y) * 2 - y]
    return [x, y], outs


AXES = [None, 0, 1, 2, (0, 1), (0, 2), (1, 2), -1]


def _reductions(dtype):
    x = tensor(dtype, (None, None, None), "x")
    outs = [T.sum(x, axis=a) for a in AXES]
    outs += [T.max(x, axis=a) for a in (None, 1, (0, 2))] + [T.min(x, axis=a) for a in (0, 2)]
    outs += [T.prod(x, axis=a) for a in (1, None)]
    outs += [T.argmax(x, axis=a) for a in (None, 0, 2)] + [T.argmin(x, axis=1)]
    outs += [T.all(x, axis=1), T.any(x, axis=(0, 2))]
    return [x], outs


def _softmax(dtype):
    x, t = tensor(dtype, (None, None), "x"), tensor(dtype, (None, None, None), "t")
    sm = T.nnet
    outs = [sm.softmax(x), sm.softmax(x, axis=0), sm.softmax(x, axis=None)]
    outs += [sm.logsoftmax(x), sm.logsoftmax(x, axis=0), sm.softmax(t, axis=1)]
    return [x, t], outs


def _make_softmax(rng, dtype):
    x, t = _values(rng, dtype, (3, 5), (2, 3, 4))
    x[1] *= 300  # large logits: the max shift keeps exp finite
    return [x, t]


def _dot(dtype):
    A, B = tensor(dtype, (None, None), "A"), tensor(dtype, (None, None), "B")
    v, w = tensor(dtype, (None,), "v"), tensor(dtype, (None,), "w")
    outs = [T.dot(A, B), T.dot(A, v), T.dot(w, A), T.dot(v, v), T.dot(A.T, w)]
    other = "float32" if dtype == "float64" else "float64"
    if dtype.startswith("float"):
        outs.append(T.dot(A, T.cast(B, other)))  # mixed dtypes: the plain loop, not BLAS
    return [A, B, v, w], outs


def _gemm(dtype):
    A, B = tensor(dtype, (None, None), "A"), tensor(dtype, (None, None), "B")
    C, v = tensor(dtype, (1, None), "C"), tensor(dtype, (None,), "v")
    return [A, B, C, v], [T.dot(A, B) * 2 + C, T.dot(A, v) - v[:3] * 0.5]


def _views(dtype):
    x, i = tensor(dtype, (None, None), "x"), tensor("int64", (), "i")
    outs = [x.T, x.dimshuffle("x", 1, 0), x[1:, ::-2], x[-1], x[1, 2], x[:, 1] * 2]
    outs += [x[i], x[i:, : i + 1], x[::2].sum(axis=0), T.shape(x), x.shape[1] * x[0, 0]]
    return [x, i], outs


def _alloc(dtype):
    x, n = tensor(dtype, (None, None), "x"), tensor("int64", (), "n")
    outs = [T.zeros_like(x), T.alloc(x[0], n, x.shape[1]), T.ones((2, x.shape[0]), dtype=dtype)]
    outs += [T.alloc(x[:, 0].dimshuffle(0, "x"), x.shape[0], n), T.fill(x, 7)]
    return [x, n], outs


def _fallback(dtype):
    x, y = tensor(dtype, (None, None), "x"), tensor(dtype, (None, None), "y")
    return [x, y], [T.cumsum(T.exp(x), axis=0) * y + 1, T.sum(x * y)]


def _scalars(dtype):
    a, b = tensor(dtype, (), "a"), tensor(dtype, (), "b")
    x = tensor(dtype, (None,), "x")
    return [a, b, x], [a * b + 1, T.exp(a) - b, T.sum(x) * a, x * b, T.maximum(a, b)]


GRAPHS = [
    Graph(
        "broadcast",
        _broadcast,
        lambda rng, d: _values(rng, d, (3, 4), (1, 4), (3, 1), ()),
        ("float64", "float32", "int64", "int8"),
    ),
    Graph(
        "composite",
        _composite,
        lambda rng, d: _values(rng, d, (3, 4), (1, 4)),
        ("float64", "float32", "int32"),
        fuse=True,
    ),
    Graph(
        "reductions",
        _reductions,
        lambda rng, d: _values(rng, d, (2, 3, 4)),
        ("float64", "float32", "int32", "bool"),
    ),
    Graph("softmax", _softmax, _make_softmax, ("float64", "float32")),
    Graph(
        "dot",
        _dot,
        lambda rng, d: _values(rng, d, (3, 4), (4, 5), (4,), (3,)),
        ("float64", "float32", "int32"),
    ),
    Graph(
        "gemm",
        _gemm,
        lambda rng, d: _values(rng, d, (3, 4), (4, 5), (1, 5), (4,)),
        ("float64", "float32"),
        fuse=True,
    ),
    Graph(
        "views",
        _views,
        lambda rng, d: [*_values(rng, d, (4, 5)), np.array(2)],
        ("float64", "int16"),
    ),
    Graph(
        "alloc",
        _alloc,
        lambda rng, d: [*_values(rng, d, (3, 4)), np.array(2)],
        ("float32", "int64"),
    ),
    Graph("fallback", _fallback, lambda rng, d: _values(rng, d, (3, 4), (3, 4)), ("float64",)),
    Graph("scalars", _scalars, lambda rng, d: _values(rng, d, (), (), (5,)), ("float64",)),
]


@functools.cache
def compiled(graph: Graph, dtype: str):
    ins, outs = graph.build(dtype)
    fg = FunctionGraph(ins, outs)
    if graph.fuse:
        fg = rewrite(fg, "fast_run", steps=NO_INPLACE)
    return fg, compile_function(fg)


def _same_values(kind, v):
    """``v``'s values in another memory layout."""
    if v.ndim == 0 or v.size == 0 or kind == "contiguous":
        return v
    if kind == "strided":
        return np.repeat(v, 2, axis=-1)[..., ::2]
    if kind == "fortran":
        return np.asfortranarray(v)
    return np.flip(np.flip(v).copy())  # "reversed": negative strides


def _tolerance(dtype):
    return {"float32": 1e-4, "float64": 1e-10}.get(dtype, 0)


def check_against_perform(fg, f, values, what=""):
    want = evaluate(fg.outputs, {v: x.copy() for v, x in zip(fg.inputs, values, strict=True)})
    before = [x.copy() for x in values]
    got = f(values)
    assert len(got) == len(fg.outputs)
    for k, (g, w, var) in enumerate(zip(got, want, fg.outputs, strict=True)):
        w = np.asarray(w)
        label = f"{what} output {k} ({var})"
        assert isinstance(g, np.ndarray), label
        assert g.dtype == w.dtype and g.shape == w.shape, (
            f"{label}: {g.dtype}{g.shape} != {w.dtype}{w.shape}"
        )
        tol = _tolerance(str(g.dtype))
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol, equal_nan=True, err_msg=label)
    for x, b in zip(values, before, strict=True):
        np.testing.assert_array_equal(x, b, err_msg=f"{what}: an input was modified")
    return got


# Each graph's first dtype always runs; the others compile one more source each (slow).
CASES = [
    pytest.param(g, d, id=f"{g}-{d}", marks=[pytest.mark.slow] if k else [])
    for g in GRAPHS
    for k, d in enumerate(g.dtypes)
]


@pytest.mark.parametrize("layout", ["contiguous", "strided", "fortran", "reversed"])
@pytest.mark.parametrize(("graph", "dtype"), CASES)
def test_matches_perform(graph, dtype, layout):
    fg, f = compiled(graph, dtype)
    values = graph.make(np.random.default_rng(0), dtype)
    values = [_same_values(layout, np.asarray(v)) for v in values]
    check_against_perform(fg, f, values, f"{graph}[{dtype}, {layout}]")


def test_fused_graph_is_one_composite_loop():
    fg, f = compiled(GRAPHS[1], "float32")
    ops = [n.op for n in fg.toposort()]
    assert any(isinstance(getattr(op, "scalar_op", None), Composite) for op in ops)
    assert f.fallback_ops == [] and f.n_segments == 1
    assert "flowc_tanh(" in f.source and "flowc_sigmoid(" in f.source


def test_gemm_graph_calls_blas():
    fg, f = compiled(GRAPHS[5], "float64")
    assert "Gemm" in [type(n.op).__name__ for n in fg.toposort()]
    assert "flowc_gemm(" in f.source and '#include "cblas.h"' in f.source
    fg, f = compiled(GRAPHS[4], "int32")
    assert "flowc_matmul_naive<" in f.source and "cblas" not in f.source


@pytest.mark.parametrize(
    ("name", "shapes"),
    [
        ("broadcast", [(0, 4), (1, 4), (0, 1), ()]),
        ("broadcast", [(3, 0), (1, 0), (3, 1), ()]),
        ("dot", [(0, 4), (4, 5), (4,), (0,)]),
        ("dot", [(3, 0), (0, 5), (0,), (3,)]),
        ("gemm", [(3, 4), (4, 0), (1, 0), (4,)]),
        ("composite", [(0, 4), (1, 4)]),
    ],
)
def test_empty_arrays(name, shapes):
    graph = next(g for g in GRAPHS if g.name == name)
    fg, f = compiled(graph, graph.dtypes[0])
    rng = np.random.default_rng(1)
    values = _values(rng, graph.dtypes[0], *shapes)
    got = check_against_perform(fg, f, values, f"{name} empty")
    assert any(g.size == 0 for g in got)


def test_empty_reductions():
    x = T.dtensor3("x")
    fg = FunctionGraph([x], [T.sum(x, axis=1), T.prod(x, axis=(0, 1)), T.sum(x), T.any(x, axis=1)])
    f = compile_function(fg)
    got = check_against_perform(fg, f, [np.ones((2, 0, 3))], "empty reductions")
    assert got[0].shape == (2, 3) and np.all(got[1] == 1)


def test_zero_d_and_size_one():
    fg, f = compiled(GRAPHS[-1], "float64")
    check_against_perform(fg, f, [np.array(0.5), np.array(-2.0), np.ones(1)], "scalars")
    check_against_perform(fg, f, [np.array(0.5), np.array(-2.0), np.ones(0)], "scalars empty")


@pytest.mark.parametrize(
    ("name", "shapes"),
    [
        ("broadcast", [(300, 200), (1, 200), (300, 1), ()]),
        ("composite", [(300, 200), (1, 200)]),
        ("reductions", [(40, 50, 60)]),
        ("softmax", [(300, 200), (20, 50, 60)]),
        ("dot", [(40, 30), (30, 50), (30,), (40,)]),  # int32: the plain loop, threaded
    ],
)
def test_large_arrays_take_the_threaded_loops(name, shapes):
    # Above FLOWC_PARALLEL_MIN elements the loops run on OpenMP threads.
    graph = next(g for g in GRAPHS if g.name == name)
    dtype = "int32" if name == "dot" else graph.dtypes[0]
    fg, f = compiled(graph, dtype)
    values = _values(np.random.default_rng(2), dtype, *shapes)
    check_against_perform(fg, f, values, f"{name} large")
    fortran = [np.asfortranarray(v) if v.ndim else v for v in values]
    check_against_perform(fg, f, fortran, f"{name} large F")


def test_symbolic_slices_follow_python():
    x, i, j, k = T.dmatrix("x"), T.lscalar("i"), T.lscalar("j"), T.lscalar("k")
    fg = FunctionGraph([x, i, j, k], [x[i:j:k], x[::k, 1], x[j:i:-1]])
    f = compile_function(fg)
    a = np.arange(30.0).reshape(6, 5)
    for ii, jj, kk in [(1, 5, 2), (-2, -6, -1), (0, 100, 3), (4, 1, -2), (-100, 100, 1)]:
        values = [a, np.array(ii), np.array(jj), np.array(kk)]
        check_against_perform(fg, f, values, f"slices {(ii, jj, kk)}")
    with pytest.raises(ValueError, match=r"slice step cannot be zero"):
        f([a, np.array(1), np.array(2), np.array(0)])


def test_integer_division_by_zero_gives_zero_as_numpy():
    p, q = T.lscalar("p"), T.lscalar("q")
    fg = FunctionGraph([p, q], [p // q, p % q, T.alloc(1.0, p % q)])
    f = compile_function(fg)
    with np.errstate(all="ignore"):
        check_against_perform(fg, f, [np.array(7), np.array(0)], "x // 0")
    check_against_perform(fg, f, [np.array(-7), np.array(2)], "-7 // 2")


def test_shapes_change_between_calls():
    fg, f = compiled(GRAPHS[0], "float64")
    for n, m in [(3, 4), (5, 2), (1, 7), (3, 4)]:
        values = _values(np.random.default_rng(n), "float64", (n, m), (1, m), (n, 1), ())
        check_against_perform(fg, f, values, f"shape {(n, m)}")


def test_shape_mismatch_raises_value_error_naming_the_node():
    fg, f = compiled(GRAPHS[0], "float64")
    values = _values(np.random.default_rng(0), "float64", (3, 4), (1, 5), (3, 1), ())
    with pytest.raises(ValueError, match=r"disagree along dim 1") as info:
        f(values)
    assert "mul" in str(info.value) and "(3, 4)" in str(info.value)
    # A declared broadcastable dim that is not of size 1 is caught at the boundary.
    values = _values(np.random.default_rng(0), "float64", (3, 4), (2, 4), (3, 1), ())
    with pytest.raises(ValueError, match=r"input r.*dim 0 has size 2, but its type says 1"):
        f(values)


def test_dot_mismatch_raises():
    fg, f = compiled(GRAPHS[4], "float64")
    values = _values(np.random.default_rng(0), "float64", (3, 4), (3, 5), (4,), (3,))
    with pytest.raises(ValueError, match=r"Dot .*not aligned"):
        f(values)


def test_index_out_of_range_raises_index_error():
    fg, f = compiled(GRAPHS[6], "float64")
    x = np.zeros((4, 5))
    with pytest.raises(IndexError, match=r"index 9 is out of bounds for axis 0 with size 4"):
        f([x, np.array(9)])
    with pytest.raises(IndexError):
        f([x, np.array(-5)])
    check_against_perform(*compiled(GRAPHS[6], "float64"), [x, np.array(-4)], "index -4")


def test_max_of_empty_axis_raises():
    x = T.dmatrix("x")
    f = compile_function(FunctionGraph([x], [T.max(x, axis=1), T.argmax(x, axis=0)]))
    with pytest.raises(ValueError, match=r"empty axis"):
        f([np.zeros((3, 0))])
    with pytest.raises(ValueError, match=r"empty axis"):
        f([np.zeros((0, 3))])


def test_alloc_negative_size_raises():
    fg, f = compiled(GRAPHS[7], "float32")
    with pytest.raises(ValueError, match=r"negative or too large size"):
        f([np.zeros((3, 4), "float32"), np.array(-1)])


def test_bad_inputs_raise_before_any_kernel():
    fg, f = compiled(GRAPHS[0], "float64")
    good = _values(np.random.default_rng(0), "float64", (3, 4), (1, 4), (3, 1), ())
    with pytest.raises(TypeError, match=r"expected 4 input arrays"):
        f(good[:3])
    with pytest.raises(TypeError, match=r"expected dtype float64"):
        f([good[0].astype("complex128"), *good[1:]])
    with pytest.raises(TypeError, match=r"2-d"):
        f([good[0][0], *good[1:]])
    # A lossless cast is accepted, as a Function's input filter does.
    check_against_perform(fg, f, [good[0].astype("float32").astype("float64"), *good[1:]])


def test_nan_and_inf_follow_numpy():
    x = T.dmatrix("x")
    outs = [T.max(x, axis=1), T.argmax(x, axis=1), T.argmin(x, axis=0), T.nnet.softmax(x)]
    outs += [T.maximum(x, 0), T.minimum(x, 1)]
    fg = FunctionGraph([x], outs)
    f = compile_function(fg)
    v = np.array([[1.0, np.nan, 3.0], [np.inf, 2.0, -np.inf], [np.nan, np.nan, 1.0]])
    check_against_perform(fg, f, [v], "nan/inf")


def test_outputs_never_alias_inputs():
    x = T.dmatrix("x")
    fg = FunctionGraph([x], [x.T, x[1:], x, T.constant(np.arange(3.0))])
    f = compile_function(fg)
    v = np.ones((3, 4))
    t, s, same, c = f([v])
    assert not np.shares_memory(t, v) and not np.shares_memory(s, v)
    assert same is v  # a graph output that is a graph input is that input
    np.testing.assert_array_equal(t, v.T)
    c[0] = 5  # a constant output is a copy, writable
    assert f([v])[3][0] == 0


def test_fallback_ops_and_segments():
    fg, f = compiled(GRAPHS[8], "float64")
    assert f.fallback_ops == ["CumOp{0, add, False}"]
    assert f.n_segments == 2
    assert f.source.count('extern "C" int flowc_seg') == 2
    half = T.dmatrix("x")
    g = compile_function(FunctionGraph([half], [T.cast(half, "float16") * 2]))
    assert g.fallback_ops == ["DimShuffle{x,x}", "cast_float16", "mul"] and g.library is None
    np.testing.assert_array_equal(g([np.ones((2, 2))])[0], np.full((2, 2), 2, "float16"))


def test_work_no_python_node_needs_waits_for_the_next_segment():
    # B.T * 2 is not needed by the Python node (cumsum); done before it, it would end a
    # segment as an output (a copy) only to be read after. It waits, so one driver remains.
    A, B = T.dmatrix("A"), T.dmatrix("B")
    t = B.T * 2.0
    fg = FunctionGraph([A, B], [T.dot(T.cumsum(A, axis=0), t) + t.sum()])
    f = compile_function(fg)
    assert f.fallback_ops == ["CumOp{0, add, False}"]
    assert f.n_segments == 1, f.source
    rng = np.random.default_rng(4)
    check_against_perform(fg, f, [rng.normal(size=(3, 4)), rng.normal(size=(5, 4))], "wait")


def test_a_split_for_a_scalar_made_by_a_kernel():
    # alloc's size is a kernel's result: the driver is split so the size is an input.
    x = T.lvector("x")
    n = T.sum(x)
    fg = FunctionGraph([x], [T.alloc(T.constant(1.5), n) * 2])
    f = compile_function(fg)
    assert f.n_segments == 2 and f.fallback_ops == []
    check_against_perform(fg, f, [np.array([1, 2, 3])], "split")


def test_one_compiler_run_and_one_library(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWC_CACHE_DIR", str(tmp_path / "cache"))
    cache.reset_memo()
    runs = []
    real = compiler._invoke

    def counting(cmd, cwd):
        runs.append(cmd)
        return real(cmd, cwd)

    monkeypatch.setattr(compiler, "_invoke", counting)
    x, y = T.dmatrix("x"), T.dmatrix("y")
    outs = [T.cumsum(T.exp(x), axis=0) * T.dot(x, y), T.nnet.softmax(x) + 7.25]
    fg = FunctionGraph([x, y], outs)
    f = compile_function(fg)
    assert len(runs) == 1 and f.n_segments == 2
    assert f.library.is_file() and tmp_path in f.library.parents
    check_against_perform(fg, f, _values(np.random.default_rng(0), "float64", (3, 4), (4, 4)))
    g = compile_function(fg)
    assert len(runs) == 1 and g.library == f.library  # the cache holds it
    cache.reset_memo()


def test_source_snapshot():
    x, y = T.fvector("x"), T.fvector("y")
    f = compile_function(FunctionGraph([x, y], [x * y + x]))
    src = f.source
    expected = [
        '#include "flowc_kernel.h"',
        "FLOWC_KERNEL void flowc_k0_0_map0_flat(const int64_t n, const float* FLOWC_RESTRICT x0, "
        "const float* FLOWC_RESTRICT x1, float* FLOWC_RESTRICT y0) {",
        "  FLOWC_PARALLEL_FOR(i, n) {",
        "    y0[i] = (float)(a0 * a1);",
        "    y0[i] = (float)(a0 + a1);",
        'extern "C" int flowc_seg0(void* in0_, void* in1_, void* out0_, int64_t* shapes_out) {',
        "  FLOWC_TRY(flowc_check_input(in0, -1, 1, sizeof(float)));",
        "  if (shapes_out) {",
        "  float* v3 = (float*)(out0->data);",  # the add writes straight into the output
        "    FLOWC_LAUNCH(flowc_k0_0_map0_flat, v2_size, v2_size, x0, x1, v2);",
    ]
    for line in expected:
        assert line in src.splitlines(), f"missing line {line!r} in\n{src}"
    assert src.count("FLOWC_KERNEL void") == 4  # a flat and a strided loop per node
    assert "scratch.base + v2_at" in src  # the product is an intermediate in scratch


def test_calls_from_threads_agree():
    fg, f = compiled(GRAPHS[1], "float64")
    rng = np.random.default_rng(3)
    inputs = [_values(rng, "float64", (50, 40), (1, 40)) for _ in range(4)]
    want = [f(v) for v in inputs]
    for runs, w in zip(results_from_threads(f, inputs, 20), want, strict=True):
        for g in runs:
            for a, b in zip(g, w, strict=True):
                np.testing.assert_array_equal(a, b)


def test_size_one_dims_may_have_any_stride():
    fg, f = compiled(GRAPHS[0], "float64")
    good = _values(np.random.default_rng(0), "float64", (3, 4), (1, 4), (3, 1), ())
    odd = np.lib.stride_tricks.as_strided(good[2].copy(), shape=(3, 1), strides=(8, 3))
    odd_row = np.lib.stride_tricks.as_strided(good[1].copy(), shape=(1, 4), strides=(5, 8))
    check_against_perform(fg, f, [good[0], odd_row, odd, good[3]], "odd strides")


def test_unaligned_input_is_refused_cleanly():
    fg, f = compiled(GRAPHS[0], "float64")
    good = _values(np.random.default_rng(0), "float64", (3, 4), (1, 4), (3, 1), ())
    raw = np.zeros(3 * 4 * 8 + 1, np.uint8)[1:].view("float64").reshape(3, 4)
    assert not raw.flags.aligned
    raw[...] = good[0]
    with pytest.raises(ValueError, match=r"not aligned"):
        f([raw, *good[1:]])


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc")
@pytest.mark.slow
def test_kernels_build_under_nvcc(tmp_path):
    """The same dialect compiles for CUDA: every kernel of the table, built by nvcc."""
    import subprocess

    from flowc.kernels.compiled import HEADER
    from flowc.kernels.render import Segment, SplitBefore, Target, Unsupported

    kernels = []
    for k, graph in enumerate(GRAPHS):
        fg, _ = compiled(graph, graph.dtypes[0])
        seg = Segment(k, Target("cuda", parallel_reductions=False, blas=False))
        for node in fg.toposort():
            try:
                seg.emit(node)
            except (Unsupported, SplitBefore):
                continue
        kernels += seg.kernels
    src = tmp_path / "k.cu"
    src.write_text('#include "flowc_kernel.h"\n' + "\n".join(kernels))
    cmd = ["nvcc", "-std=c++17", "-arch=sm_80", "-I", str(HEADER.parent), "-c", str(src)]
    proc = subprocess.run(
        [*cmd, "-o", str(tmp_path / "k.o")], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert len(kernels) > 20


def test_ctypes_functions_are_bound_once():
    fg, f = compiled(GRAPHS[0], "float64")
    step = f._run[0][0]
    assert step.fn.argtypes[-1] is ctypes.POINTER(ctypes.c_int64)
    assert step.fn.restype is ctypes.c_int
