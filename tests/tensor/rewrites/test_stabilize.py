"""Stabilize: each rewrite's graph, its numbers against a float64 NumPy reference where the
unrewritten graph gives inf or nan (values and gradients, float64 and float32), the forms it
must leave alone, and the fused softmax cross-entropy op."""

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc.graph.fg import FunctionGraph
from flowc.tensor import nnet
from flowc.tensor.elemwise import Elemwise
from flowc.tensor.nnet_fused import CrossentropySoftmax1Hot, crossentropy_softmax_1hot
from flowc.tensor.rewrites import stabilize
from tests.optable import Case, check_forward, check_grad, check_shape

rng = np.random.default_rng(0)
FLOATS = ["float64", "float32"]


@pytest.fixture(autouse=True)
def _no_fusion(monkeypatch):
    # Fusion would hide the scalar functions these tests look for inside Composite nodes.
    import flowc.pipeline as pipeline

    monkeypatch.setitem(
        pipeline.MODES, "fast_run", tuple(n for n, _ in pipeline.PIPELINE if n != "fusion")
    )


def compiled(inputs, outputs):
    """The fast_run function and the unrewritten one."""
    return (
        flowc.function(inputs, outputs, mode="fast_run"),
        flowc.function(inputs, outputs, mode="none"),
    )


def ops(f):
    """Names of f's ops: the scalar function of an Elemwise, else the op's class name."""
    return [
        str(n.op.scalar_op) if isinstance(n.op, Elemwise) else type(n.op).__name__
        for n in f.fgraph.toposort()
    ]


def tol(dtype):
    return {"rtol": 1e-12, "atol": 1e-12} if dtype == "float64" else {"rtol": 2e-6, "atol": 1e-6}


def value_and_grad(x, cost_elems):
    """The elementwise result and the gradient of its sum with respect to ``x``."""
    return [cost_elems, T.grad(cost_elems.sum(), x)]


def assert_right(got, want, dtype):
    """``got`` is finite, of ``dtype`` and equal to the float64 reference ``want``."""
    assert np.all(np.isfinite(got))
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, **tol(dtype))


def assert_fixed(got, bad, want, dtype):
    """``bad`` (mode none) is not finite somewhere; ``got`` (fast_run) is finite and right."""
    assert not np.all(np.isfinite(bad)), "the unrewritten graph was expected to fail"
    assert_right(got, want, dtype)


def sigmoid64(x):
    return np.exp(-np.logaddexp(0, -x))


def lse64(x, axis, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


def softmax64(x, axis):
    return np.exp(x - lse64(x, axis, keepdims=True))


# ------------------------------------------------------------------ log1p and expm1
# These two lose precision rather than overflow: 1 + x rounds to 1 for tiny x, so log(1 + x)
# and exp(x) - 1 are 0. Under a sqrt the value is 0 and its gradient 1 / (2 sqrt(0)) is inf.
TINY = np.array([1e-20, 3e-15, 1e-10, 0.25, 3.0])


@pytest.mark.parametrize(
    "form",
    [lambda x: T.log(1 + x), lambda x: T.log(x + 1), lambda x: T.log(T.add(1.0, x))],
    ids=["1+x", "x+1", "add(1.0,x)"],
)
@pytest.mark.parametrize("dtype", FLOATS)
def test_log1p(form, dtype):
    x = T.vector("x", dtype=dtype)
    f, ref = compiled([x], value_and_grad(x, T.sqrt(form(x))))
    assert "log1p" in ops(f) and "log" not in ops(f)
    xv = TINY.astype(dtype)
    x64 = xv.astype("float64")
    want = np.sqrt(np.log1p(x64))
    want_grad = 1 / (2 * want * (1 + x64))
    (got, got_grad), (bad, bad_grad) = f(xv), ref(xv)
    assert bad[0] == 0  # mode none: sqrt(log(1)), not 1e-10
    assert_right(got, want, dtype)
    assert_fixed(got_grad, bad_grad, want_grad, dtype)


def test_log1p_of_a_longer_sum():
    x, y = T.dvectors("x", "y")
    f, ref = compiled([x, y], T.log(1 + x + y))
    assert ops(f).count("log1p") == 1 and "log" not in ops(f)
    a, b = rng.uniform(0, 1, size=4), rng.uniform(0, 1, size=4)
    np.testing.assert_allclose(f(a, b), np.log1p(a + b), rtol=1e-14)
    np.testing.assert_allclose(f(a, b), ref(a, b), rtol=1e-14)


@pytest.mark.parametrize(
    "form", [lambda x: T.exp(x) - 1, lambda x: -1 + T.exp(x)], ids=["exp-1", "-1+exp"]
)
@pytest.mark.parametrize("dtype", FLOATS)
def test_expm1(form, dtype):
    x = T.vector("x", dtype=dtype)
    f, ref = compiled([x], value_and_grad(x, T.sqrt(form(x))))
    # The gradient reads exp(x) (d expm1 = exp), so look at the value's graph alone.
    forward = ops(flowc.function([x], T.sqrt(form(x)), mode="fast_run"))
    assert "expm1" in forward and "exp" not in forward and "sub" not in forward
    xv = TINY.astype(dtype)
    x64 = xv.astype("float64")
    want = np.sqrt(np.expm1(x64))
    want_grad = np.exp(x64) / (2 * want)
    (got, got_grad), (bad, bad_grad) = f(xv), ref(xv)
    assert bad[0] == 0  # mode none: sqrt(1 - 1), not 1e-10
    assert_right(got, want, dtype)
    assert_fixed(got_grad, bad_grad, want_grad, dtype)


def test_expm1_keeps_other_terms():
    x, y = T.dvectors("x", "y")
    f, ref = compiled([x, y], T.exp(x) + y - 1)
    assert "expm1" in ops(f) and "exp" not in ops(f)
    a, b = rng.normal(size=5), rng.normal(size=5)
    np.testing.assert_allclose(f(a, b), np.expm1(a) + b, rtol=1e-13)
    np.testing.assert_allclose(f(a, b), ref(a, b), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ sigmoid
BIG = np.array([-1e4, -800.0, -40.0, -1.5, 0.0, 2.0, 40.0, 800.0, 1e4])


@pytest.mark.parametrize("dtype", FLOATS)
def test_log_sigmoid(dtype):
    x = T.vector("x", dtype=dtype)
    f, ref = compiled([x], value_and_grad(x, T.log(nnet.sigmoid(x))))
    assert "softplus" in ops(f) and "log" not in ops(f) and "true_div" not in ops(f)
    xv = BIG.astype(dtype)
    x64 = xv.astype("float64")
    (got, got_grad), (bad, bad_grad) = f(xv), ref(xv)
    assert_fixed(got, bad, -np.logaddexp(0, -x64), dtype)
    assert_fixed(got_grad, bad_grad, sigmoid64(-x64), dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_log_one_minus_sigmoid(dtype):
    x = T.vector("x", dtype=dtype)
    f, ref = compiled([x], value_and_grad(x, T.log(1 - nnet.sigmoid(x))))
    assert "softplus" in ops(f) and "log" not in ops(f) and "true_div" not in ops(f)
    xv = BIG.astype(dtype)
    x64 = xv.astype("float64")
    (got, got_grad), (bad, bad_grad) = f(xv), ref(xv)
    assert_fixed(got, bad, -np.logaddexp(0, x64), dtype)
    assert_fixed(got_grad, bad_grad, -sigmoid64(x64), dtype)


def test_log_one_minus_sigmoid_alone_is_one_softplus():
    # Without the gradient reading 1 - sigmoid(x), the log rewrite takes the whole form.
    x = T.dvector("x")
    f, ref = compiled([x], T.log(1 - nnet.sigmoid(x)))
    assert sorted(ops(f)) == ["neg", "softplus"]
    xv = rng.normal(size=6)
    np.testing.assert_allclose(f(xv), ref(xv), rtol=1e-13)


def test_one_minus_sigmoid_keeps_small_values():
    x = T.dvector("x")
    f, ref = compiled([x], 1 - nnet.sigmoid(x))
    assert ops(f) == ["neg", "sigmoid"]
    xv = np.array([40.0, 60.0, -3.0, 0.5])
    got, bad = f(xv), ref(xv)
    assert bad[0] == 0 and bad[1] == 0  # 1 - 1.0
    np.testing.assert_allclose(got, sigmoid64(-xv), rtol=1e-14)


# ------------------------------------------------------------------ logsumexp


def lse_input(dtype, shape):
    """Logits around +-1e4, the signs alternating along every axis (a checkerboard), so
    that every group reduced over mixes both: exp overflows and underflows in each."""
    local = np.random.default_rng(len(shape))  # independent of test order
    signs = np.indices(shape).sum(axis=0) % 2 if shape else np.zeros(())
    x = local.normal(size=shape) + np.where(signs == 0, 1e4, -1e4)
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize(
    ("shape", "axis"),
    [((3, 5), 1), ((3, 5), 0), ((3, 5), -1), ((3, 5), None), ((7,), 0), ((2, 3, 4), (0, 2))],
)
def test_logsumexp(dtype, keepdims, shape, axis):
    x = T.tensor(dtype, (None,) * len(shape), name="x")
    w = T.tensor(dtype, (None,) * len(shape), name="w")  # weights make the gradient nontrivial
    out = T.log(T.sum(T.exp(x), axis=axis, keepdims=keepdims))
    cost = T.sum(out * T.sum(w, axis=axis, keepdims=keepdims))
    f, ref = compiled([x, w], [out, T.grad(cost, x)])
    assert "Reduce" in ops(f)  # the max-shift
    assert not any(n.op == T.exp and n.inputs[0] is x for n in f.fgraph.toposort()), (
        "exp(x) is still computed unshifted"
    )
    xv, wv = lse_input(dtype, shape), rng.uniform(0.5, 1.5, size=shape).astype(dtype)
    x64, w64 = xv.astype("float64"), wv.astype("float64")
    axes = tuple(range(len(shape))) if axis is None else axis
    want = lse64(x64, axes, keepdims)
    want_grad = softmax64(x64, axes) * np.sum(w64, axis=axes, keepdims=True)
    (got, got_grad), (bad, bad_grad) = f(xv, wv), ref(xv, wv)
    assert_fixed(got, bad, want, dtype)
    assert_fixed(got_grad, bad_grad, want_grad, dtype)


def test_logsumexp_single_axis_gradient_uses_softmax():
    x = T.dmatrix("x")
    f, _ = compiled([x], T.grad(T.log(T.sum(T.exp(x), axis=1)).sum(), x))
    assert "Softmax" in ops(f) and "exp" not in ops(f)


def test_logsumexp_moderate_values_match_unrewritten():
    x = T.dmatrix("x")
    out = T.log(T.sum(T.exp(x), axis=0))
    f, ref = compiled([x], [out, T.grad(out.sum(), x)])
    xv = rng.normal(size=(4, 3))
    for got, want in zip(f(xv), ref(xv), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-13)


# ------------------------------------------------------------------ log softmax


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("shape", "axis"), [((3, 5), -1), ((3, 5), 0), ((3, 5), None), ((6,), 0)])
def test_log_softmax(dtype, shape, axis):
    x = T.tensor(dtype, (None,) * len(shape), name="x")
    w = T.tensor(dtype, (None,) * len(shape), name="w")
    out = T.log(nnet.softmax(x, axis=axis))
    f, ref = compiled([x, w], [out, T.grad(T.sum(w * out), x)])
    assert "LogSoftmax" in ops(f) and "log" not in ops(f) and "true_div" not in ops(f)
    xv, wv = lse_input(dtype, shape), rng.normal(size=shape).astype(dtype)
    x64, w64 = xv.astype("float64"), wv.astype("float64")
    axes = tuple(range(len(shape))) if axis is None else axis
    want = x64 - lse64(x64, axes, keepdims=True)
    want_grad = w64 - softmax64(x64, axes) * np.sum(w64, axis=axes, keepdims=True)
    (got, got_grad), (bad, bad_grad) = f(xv, wv), ref(xv, wv)
    assert_fixed(got, bad, want, dtype)
    assert_fixed(got_grad, bad_grad, want_grad, dtype)


# ------------------------------------------------------------------ cross-entropy


def ce_reference(x64, labels):
    n, k = x64.shape
    loss = np.mean(lse64(x64, 1) - x64[np.arange(n), labels])
    return loss, (softmax64(x64, 1) - np.eye(k)[labels]) / n


@pytest.mark.parametrize("dtype", FLOATS)
def test_crossentropy_of_softmax_with_labels_is_fused(dtype):
    x, y = T.matrix("x", dtype=dtype), T.lvector("y")
    cost = T.mean(nnet.categorical_crossentropy(nnet.softmax(x), y))
    f, ref = compiled([x, y], [cost, T.grad(cost, x)])
    assert "CrossentropySoftmax1Hot" in ops(f) and "CrossentropyCategorical1Hot" not in ops(f)
    xv, yv = lse_input(dtype, (4, 5)), np.array([0, 4, 2, 2])
    want, want_grad = ce_reference(xv.astype("float64"), yv)
    (got, got_grad), (bad, bad_grad) = f(xv, yv), ref(xv, yv)
    assert_fixed(got, bad, want, dtype)
    assert_fixed(got_grad, bad_grad, want_grad, dtype)


def test_crossentropy_forward_graph_has_no_softmax():
    x, y = T.dmatrix("x"), T.lvector("y")
    f, ref = compiled([x, y], nnet.categorical_crossentropy(nnet.softmax(x, axis=-1), y))
    assert ops(f) == ["CrossentropySoftmax1Hot"]
    xv, yv = rng.normal(size=(3, 4)), np.array([3, 0, 1])
    np.testing.assert_allclose(f(xv, yv), ref(xv, yv), rtol=1e-13)


@pytest.mark.parametrize("dtype", FLOATS)
def test_crossentropy_of_softmax_with_one_hot_rows(dtype):
    x, t = T.matrix("x", dtype=dtype), T.matrix("t", dtype=dtype)
    cost = T.mean(nnet.categorical_crossentropy(nnet.softmax(x), t))
    f, ref = compiled([x, t], [cost, T.grad(cost, x)])
    assert "LogSoftmax" in ops(f) and "log" not in ops(f)
    xv, yv = lse_input(dtype, (4, 5)), np.array([1, 1, 3, 0])
    tv = np.eye(5, dtype=dtype)[yv]
    want, want_grad = ce_reference(xv.astype("float64"), yv)
    (got, got_grad), (bad, bad_grad) = f(xv, tv), ref(xv, tv)
    assert_fixed(got, bad, want, dtype)
    assert_fixed(got_grad, bad_grad, want_grad, dtype)


def test_crossentropy_moderate_values_match_unrewritten():
    x, y = T.dmatrix("x"), T.lvector("y")
    cost = T.mean(nnet.categorical_crossentropy(nnet.softmax(x), y))
    f, ref = compiled([x, y], [cost, T.grad(cost, x)])
    xv, yv = rng.normal(size=(5, 3)), rng.integers(0, 3, size=5)
    for got, want in zip(f(xv, yv), ref(xv, yv), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------ gradients of log(exp(x))


def test_gradient_of_log_exp_is_cancelled():
    # canonicalize turns log(exp(x)) into x, but grad built (g / exp(x)) * exp(x) = 0 * inf.
    x = T.dvector("x")
    f, ref = compiled([x], T.grad(T.log(T.exp(x)).sum(), x))
    assert "true_div" not in ops(f) and "exp" not in ops(f)
    xv = np.array([-1e4, 0.0, 1e4])
    assert_fixed(f(xv), ref(xv), np.ones(3), "float64")


# ------------------------------------------------------------------ ordinary inputs

FORMS = {
    "log1p": lambda x: T.log(1 + T.abs(x)),
    "expm1": lambda x: T.exp(x) - 1,
    "log_sigmoid": lambda x: T.log(nnet.sigmoid(x)),
    "log_one_minus_sigmoid": lambda x: T.log(1 - nnet.sigmoid(x)),
    "logsumexp": lambda x: T.log(T.sum(T.exp(x), axis=0)),
    "log_softmax": lambda x: T.log(nnet.softmax(x)),
    "one_hot_crossentropy": lambda x: nnet.categorical_crossentropy(
        nnet.softmax(x), T.constant(np.eye(4)[[0, 3, 3]])
    ),
    "crossentropy": lambda x: nnet.categorical_crossentropy(
        nnet.softmax(x), T.constant(np.array([2, 0, 1]))
    ),
}


@pytest.mark.parametrize("name", FORMS)
def test_ordinary_inputs_give_the_unrewritten_numbers(name):
    x = T.dmatrix("x")
    out = FORMS[name](x)
    # Weights of the output's shape: (3, 4), one per column (logsumexp) or one per row.
    w = rng.normal(size=(3, 4) if out.ndim == 2 else 4 if name == "logsumexp" else 3)
    f, ref = compiled([x], [out, T.grad(T.sum(out * T.constant(w)), x)])
    xv = rng.normal(size=(3, 4))
    for got, want in zip(f(xv), ref(xv), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


# ------------------------------------------------------------------ what stays


def test_log_of_two_plus_x_is_left_alone():
    x = T.dvector("x")
    f, _ = compiled([x], [T.log(2 + x), T.exp(x) - 2])
    assert "log1p" not in ops(f) and "expm1" not in ops(f)


def test_integer_and_upcast_inputs_are_left_alone():
    i = T.lvector("i")
    x = T.fvector("x")
    f, ref = compiled([i, x], [T.log(1 + i), T.log(np.float64(1.0) + x)])
    assert "log1p" not in ops(f)
    iv, xv = np.array([0, 3, 9]), np.array([0.5, 2.0], dtype="float32")
    for got, want in zip(f(iv, xv), ref(iv, xv), strict=True):
        assert got.dtype == want.dtype == "float64"
        np.testing.assert_allclose(got, want, rtol=1e-14)


def test_integer_logsumexp_is_left_alone():
    i = T.lmatrix("i")
    f, ref = compiled([i], T.log(T.sum(T.exp(i), axis=1)))
    assert "Reduce" in ops(f) and ops(f).count("Reduce") == 1  # no max-shift was added
    iv = np.array([[0, 1, 2], [3, -1, 0]])
    np.testing.assert_allclose(f(iv), ref(iv), rtol=1e-14)


def test_crossentropy_of_column_softmax_is_not_fused():
    x, y = T.dmatrix("x"), T.lvector("y")
    f, ref = compiled([x, y], nnet.categorical_crossentropy(nnet.softmax(x, axis=0), y))
    assert "CrossentropyCategorical1Hot" in ops(f) and "CrossentropySoftmax1Hot" not in ops(f)
    xv, yv = rng.normal(size=(3, 3)), np.array([2, 0, 1])
    np.testing.assert_allclose(f(xv, yv), ref(xv, yv), rtol=1e-13)


def test_division_by_a_plain_variable_is_not_cancelled():
    # (g / y) * y is nan at y = 0; y may be 0 legitimately, so it is kept as written.
    g, y = T.dvectors("g", "y")
    f, _ = compiled([g, y], (g / y) * y)
    out = f(np.array([1.0, 2.0]), np.array([0.0, 4.0]))
    assert np.isnan(out[0]) and out[1] == pytest.approx(2.0)


def test_already_shifted_logsumexp_is_not_rewritten_again():
    x = T.dmatrix("x")
    f, ref = compiled([x], T.logsumexp(x, axis=1))
    assert ops(f).count("log") == 1 and ops(f).count("exp") == 1
    xv = rng.normal(size=(2, 4))
    np.testing.assert_allclose(f(xv), ref(xv), rtol=1e-14)


def test_rewriters_have_identities_and_run_alone():
    assert all(rw.__doc__ and "->" in rw.__doc__ for rw in stabilize.REWRITES)
    x = T.dvector("x")
    fg = FunctionGraph([x], [T.log(nnet.sigmoid(x))])
    stabilize.run(fg)
    names = [str(n.op.scalar_op) for n in fg.toposort()]
    assert "log" not in names and "softplus" in names


# ------------------------------------------------------------------ the fused op


def np_fused(x, y):
    x64 = x.astype("float64")
    if x.shape[0] == 0:
        return np.zeros(0, x.dtype)
    return (lse64(x64, 1) - x64[np.arange(len(y)), y]).astype(x.dtype)


def logits_and_labels(n, k, scale=1.0, transpose=False):
    def make(rng):
        x = scale * rng.normal(size=(k, n) if transpose else (n, k))
        return [x.T if transpose else x, rng.integers(0, k, size=n)]

    return make


FUSED = [
    Case("fused", crossentropy_softmax_1hot, np_fused, logits_and_labels(3, 5)),
    Case("fused_one_class", crossentropy_softmax_1hot, np_fused, logits_and_labels(4, 1),
         static_ones=False),
    Case("fused_transposed", crossentropy_softmax_1hot, np_fused,
         logits_and_labels(4, 3, transpose=True)),
    Case("fused_large", crossentropy_softmax_1hot, np_fused, logits_and_labels(3, 4, 1e4),
         grad=()),
    Case("fused_empty", crossentropy_softmax_1hot, np_fused, logits_and_labels(0, 4), grad=()),
]  # fmt: skip


@pytest.mark.parametrize("case", FUSED, ids=str)
def test_fused_forward(case):
    check_forward(case)


@pytest.mark.parametrize("case", [c for c in FUSED if c.grad != ()], ids=str)
def test_fused_grad(case):
    check_grad(case)


@pytest.mark.parametrize("case", FUSED, ids=str)
def test_fused_infer_shape(case):
    check_shape(case)


@pytest.mark.parametrize("dtype", FLOATS)
def test_fused_grad_is_stable_without_rewrites(dtype):
    x, y = T.matrix("x", dtype=dtype), T.lvector("y")
    cost = T.mean(crossentropy_softmax_1hot(x, y))
    f = flowc.function([x, y], [cost, T.grad(cost, x)], mode="none")
    xv, yv = lse_input(dtype, (3, 4)), np.array([3, 3, 0])
    want, want_grad = ce_reference(xv.astype("float64"), yv)
    got, got_grad = f(xv, yv)
    np.testing.assert_allclose(got, want, **tol(dtype))
    np.testing.assert_allclose(got_grad, want_grad, **tol(dtype))


def test_fused_bad_inputs():
    x, y = T.dmatrix("x"), T.lvector("y")
    with pytest.raises(TypeError, match="float"):
        crossentropy_softmax_1hot(T.lmatrix("i"), y)
    with pytest.raises(TypeError, match="matrix"):
        crossentropy_softmax_1hot(T.dvector("v"), y)
    with pytest.raises(TypeError, match="integers"):
        crossentropy_softmax_1hot(x, T.dvector("f"))
    with pytest.raises(TypeError, match="vector"):
        crossentropy_softmax_1hot(x, T.lmatrix("m"))
    with pytest.raises(ValueError, match="3 rows but there are 2 labels"):
        crossentropy_softmax_1hot(T.tensor("float64", (3, None)), T.tensor("int64", (2,)))
    with pytest.raises(ValueError, match="out of range"):
        crossentropy_softmax_1hot(T.tensor("float64", (None, 3)), T.constant(np.array([0, 3])))
    f = flowc.function([x, y], crossentropy_softmax_1hot(x, y))
    with pytest.raises(ValueError, match="out of range"):
        f(np.zeros((2, 3)), np.array([0, 5]))
    with pytest.raises(ValueError, match="out of range"):
        f(np.zeros((2, 3)), np.array([-1, 0]))
    with pytest.raises(ValueError, match="2 rows"):
        f(np.zeros((2, 3)), np.array([0, 1, 2]))
    assert CrossentropySoftmax1Hot() == CrossentropySoftmax1Hot()
