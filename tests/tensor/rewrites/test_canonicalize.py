"""Canonicalize, shape inference and specialize: the graph each rewrite makes, and the numbers."""

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc.tensor.elemwise import DimShuffle, Elemwise

rng = np.random.default_rng(0)


def compiled(inputs, outputs, **kw):
    """The fast_run function and the unrewritten reference."""
    return (
        flowc.function(inputs, outputs, mode="fast_run", **kw),
        flowc.function(inputs, outputs, mode="none", **kw),
    )


def scalar_ops(f):
    """Names of the scalar functions in f's graph (a fused node contributes its name)."""
    return [str(n.op.scalar_op) for n in f.fgraph.toposort() if isinstance(n.op, Elemwise)]


def op_types(f):
    return [type(n.op).__name__ for n in f.fgraph.toposort()]


def same_numbers(f, ref, *values, rtol=1e-12):
    got, want = f(*values), ref(*values)
    if isinstance(got, list):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol)
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


@pytest.fixture(autouse=True)
def _no_fusion(monkeypatch):
    # Fusion would hide the canonical forms these tests inspect.
    import flowc.pipeline as pipeline

    monkeypatch.setitem(
        pipeline.MODES, "fast_run", tuple(n for n, _ in pipeline.PIPELINE if n != "fusion")
    )


def test_add_is_flattened_sorted_and_merged():
    x, y, z = T.dvectors("x", "y", "z")
    f, ref = compiled([x, y, z], [(x + y) + z, z + (y + x)])
    adds = [n for n in f.fgraph.toposort() if str(getattr(n.op, "scalar_op", "")) == "add"]
    assert len(adds) == 1 and len(adds[0].inputs) == 3  # one 3-input add, shared
    a = [rng.normal(size=4) for _ in range(3)]
    same_numbers(f, ref, *a)


def test_constants_are_folded_and_identities_dropped():
    x = T.dvector("x")
    f, ref = compiled([x], (x + 1) + 2 - 3 + x * 1)
    assert scalar_ops(f).count("mul") == 1  # x + x -> 2 * x, the constants cancel
    assert "sub" not in scalar_ops(f)
    same_numbers(f, ref, rng.normal(size=5))


def test_x_plus_x_becomes_two_x():
    x = T.dvector("x")
    f, ref = compiled([x], x + x)
    assert scalar_ops(f) == ["mul"]
    same_numbers(f, ref, rng.normal(size=3))


def test_mul_div_cancel():
    x, y = T.dvectors("x", "y")
    f, ref = compiled([x, y], (x * y) / y)
    assert scalar_ops(f) == []  # just x
    same_numbers(f, ref, rng.normal(size=3), rng.uniform(1, 2, size=3))


def test_negations():
    x, y = T.dvectors("x", "y")
    f, ref = compiled([x, y], [-(-x), x - (-y), x + (-y), -(x - y), 0 - x])
    ops = scalar_ops(f)
    assert ops.count("neg") == 1  # only 0 - x -> -x remains a negation
    assert "add" in ops and ops.count("sub") >= 2
    same_numbers(f, ref, rng.normal(size=3), rng.normal(size=3))


def test_exp_log_pairs():
    x = T.dvector("x")
    f, ref = compiled([x], [T.log(T.exp(x)), T.exp(T.log(x))])
    assert "exp" not in scalar_ops(f) and "log" not in scalar_ops(f)
    a = np.array([-1.0, 0.0, 2.0, 1e3])
    got = f(a)
    np.testing.assert_allclose(got[0], a)  # exact, even where exp overflows
    np.testing.assert_array_equal(np.isnan(got[1]), np.isnan(ref(a)[1]))
    np.testing.assert_allclose(got[1][1:3], [0.0, 2.0])


def test_dimshuffles_merge_and_lift():
    x = T.dmatrix("x")
    y = T.exp(x).T.T
    f, ref = compiled([x], y)
    assert not any(isinstance(n.op, DimShuffle) for n in f.fgraph.toposort())
    g, gref = compiled([x], (T.exp(x) + 1).T)
    order = f.fgraph.toposort()
    assert order  # exp remains
    ds = [n for n in g.fgraph.toposort() if isinstance(n.op, DimShuffle)]
    assert len(ds) == 1 and ds[0].inputs[0] is g.fgraph.inputs[0]  # lifted to the input
    same_numbers(g, gref, rng.normal(size=(2, 3)))


def test_useless_cast_and_alloc():
    x = T.fvector("x")
    f, ref = compiled([x], T.cast(T.cast(x, "float64"), "float32") * 2)
    assert [o for o in scalar_ops(f) if o.startswith("cast")] == []
    same_numbers(f, ref, rng.normal(size=3).astype("float32"))
    y = T.dmatrix("y")
    g, gref = compiled([y], T.alloc(y, y.shape[0], y.shape[1]) + 1)
    assert "Alloc" not in op_types(g)
    same_numbers(g, gref, rng.normal(size=(2, 3)))


def test_sum_of_alloc_never_builds_the_array():
    n = T.lscalar("n")
    c = T.dscalar("c")
    f, ref = compiled([c, n], T.alloc(c, n, 1000).sum())
    assert "Alloc" not in op_types(f)
    assert float(f(2.5, 3)) == float(ref(2.5, 3)) == 7500.0


def test_shape_only_graph_never_computes_the_tensor():
    x = T.dmatrix("x")
    y = T.dmatrix("y")
    z = T.dot(T.exp(x), y).sum(axis=0)
    f, ref = compiled([x, y], z.shape)
    types = op_types(f)
    assert "Dot" not in types and "Reduce" not in types
    assert "exp" not in scalar_ops(f)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 5))
    np.testing.assert_array_equal(f(a, b), [5])
    np.testing.assert_array_equal(ref(a, b), [5])


def test_gradient_shapes_come_from_the_inputs():
    x = T.dmatrix("x")
    w = T.dmatrix("w")
    cost = T.tanh(T.dot(x, w)).sum()
    f, ref = compiled([x, w], T.grad(cost, w))
    shape_is = [n for n in f.fgraph.toposort() if type(n.op).__name__ == "Shape_i"]
    assert all(n.inputs[0] in f.fgraph.inputs for n in shape_is)
    same_numbers(f, ref, rng.normal(size=(3, 4)), rng.normal(size=(4, 2)))


def test_pow_specialize():
    x = T.dvector("x")
    f, ref = compiled([x], [x**2, x**0.5, x**-1, x**1])
    ops = scalar_ops(f)
    assert "pow" not in ops
    assert {"sqr", "sqrt", "reciprocal"} <= set(ops)
    same_numbers(f, ref, rng.uniform(0.5, 2, size=4))


def test_mul_by_zero_only_when_safe():
    x = T.dvector("x")
    i = T.ivector("i")
    f, ref = compiled([x, i], [x * 0, i * 0])
    assert (
        len([n for n in f.fgraph.toposort() if str(getattr(n.op, "scalar_op", "")) == "mul"]) == 1
    )
    got = f(np.array([np.nan, 1.0]), np.array([1, 2], "int32"))
    assert np.isnan(got[0][0])  # NaN * 0 stays NaN by default
    with flowc.config.change(unsafe_mul_zero=True):
        g = flowc.function([x], x * 0)
    assert not any(
        isinstance(n.op, Elemwise) and str(n.op.scalar_op) == "mul" for n in g.fgraph.toposort()
    )


def test_rewrites_do_not_change_dtypes_of_outputs():
    x = T.fmatrix("x")
    out = (x + x) * 1.0 - (-x) + T.exp(T.log(x)) ** 2
    f, ref = compiled([x], out)
    a = rng.uniform(0.5, 2, size=(2, 3)).astype("float32")
    assert f(a).dtype == np.float32
    same_numbers(f, ref, a, rtol=1e-5)


def _gemms(f):
    return [n for n in f.fgraph.toposort() if type(n.op).__name__ == "Gemm"]


@pytest.mark.parametrize(
    "build",
    [
        lambda A, B, C, v, s: 2.0 * T.dot(A, B) + 0.5 * C,
        lambda A, B, C, v, s: C - s * T.dot(A, B),
        lambda A, B, C, v, s: T.dot(A, B) + C,
        lambda A, B, C, v, s: T.dot(A, B) + v,  # C broadcast: a bias row
        lambda A, B, C, v, s: C + T.dot(A, B) * s,
    ],
)
def test_dot_plus_scaled_matrix_becomes_gemm(build):
    A, B, C = T.dmatrices("A", "B", "C")
    v = T.dvector("v")
    s = T.dscalar("s")
    f, ref = compiled([A, B, C, v, s], build(A, B, C, v, s), on_unused_input="ignore")
    assert len(_gemms(f)) == 1
    assert "Dot" not in op_types(f)
    args = [
        rng.normal(size=(3, 4)),
        rng.normal(size=(4, 5)),
        rng.normal(size=(3, 5)),
        rng.normal(size=5),
        0.7,
    ]
    same_numbers(f, ref, *args)


def test_gemv_and_sgd_update_use_gemm():
    A = T.dmatrix("A")
    x = T.dvector("x")
    y = T.dvector("y")
    f, ref = compiled([A, x, y], y + 0.1 * T.dot(A, x))
    assert len(_gemms(f)) == 1
    same_numbers(f, ref, rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=3))
    W = flowc.shared(rng.normal(size=(4, 2)), name="W")
    X = T.dmatrix("X")
    cost = T.tanh(T.dot(X, W)).sum()
    step = flowc.function([X], cost, updates=[(W, W - 0.1 * T.grad(cost, W))])
    assert len([n for n in step.fgraph.toposort() if type(n.op).__name__ == "Gemm"]) == 1
    before = W.get_value()
    a = rng.normal(size=(3, 4))
    step(a)
    expected = before - 0.1 * a.T @ (1 - np.tanh(a @ before) ** 2)
    np.testing.assert_allclose(W.get_value(), expected, rtol=1e-12)


def test_gemm_gradient():
    from flowc.tensor.blas import gemm
    from flowc.testing import verify_grad

    verify_grad(
        lambda C, A, B: gemm(C, 0.5, A, B, 2.0),
        [rng.normal(size=(3, 2)), rng.normal(size=(3, 4)), rng.normal(size=(4, 2))],
    )


def test_useless_reshape_is_removed():
    x = T.dmatrix("x")
    f, ref = compiled([x], [T.exp(x).reshape(x.shape), T.exp(x).reshape((x.shape[0], -1))])
    types = op_types(f)
    assert types.count("Reshape") == 1  # the -1 form is kept: it is not known to be useless
    same_numbers(f, ref, rng.normal(size=(2, 3)))


def test_subtensor_is_lifted_through_elementwise_ops():
    x, y = T.dmatrices("x", "y")
    s = T.dscalar("s")
    f, ref = compiled([x, y, s], (T.exp(x) * y + s)[1:, 0])
    order = f.fgraph.toposort()
    subs = [n for n in order if type(n.op).__name__ == "Subtensor"]
    assert all(n.inputs[0] in f.fgraph.inputs for n in subs)  # indexing happens first
    same_numbers(f, ref, rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), 0.5)
    r = T.drow("r")
    g, gref = compiled([x, r], (x + r)[1:])  # a broadcast row is not indexed: kept as is
    same_numbers(g, gref, rng.normal(size=(3, 4)), rng.normal(size=(1, 4)))
