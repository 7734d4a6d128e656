"""T.nnet: softmax, logsoftmax, relu and the cross-entropies against NumPy, their gradients by
finite differences, infer_shape, error paths, and the MLP demo end to end."""

import importlib.util
import pathlib

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc.testing import verify_grad
from tests.optable import Case, check_forward, check_grad, check_shape

nnet = T.nnet


def normal(*shapes, scale=1.0):
    return lambda rng: [scale * rng.normal(size=s) for s in shapes]


def naive_softmax(x, axis=-1):
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def stable_softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(axis=axis, keepdims=True)


def stable_logsoftmax(x, axis=-1):
    xm = x - np.max(x, axis=axis, keepdims=True)
    return xm - np.log(np.exp(xm).sum(axis=axis, keepdims=True))


def probs_and_labels(n, k):
    # Unnormalized probabilities are fine: the cross-entropy only takes logs.
    return lambda rng: [rng.uniform(0.1, 1.0, size=(n, k)), rng.integers(0, k, size=n)]


def np_ce_int(p, y):
    return -np.log(p[np.arange(len(y)), y])


def onehot_rows(n, k):
    def make(rng):
        return [rng.uniform(0.1, 1.0, size=(n, k)), np.eye(k)[rng.integers(0, k, size=n)]]

    return make


def sig(x):
    return 1 / (1 + np.exp(-x))


SOFTMAX = [
    Case("softmax", nnet.softmax, naive_softmax, normal((3, 5))),
    Case(
        "softmax_axis0",
        lambda x: nnet.softmax(x, axis=0),
        lambda x: naive_softmax(x, 0),
        normal((3, 5)),
    ),
    Case("softmax_vector", nnet.softmax, naive_softmax, normal((7,))),
    Case(
        "softmax_3d_axis1",
        lambda x: nnet.softmax(x, axis=1),
        lambda x: naive_softmax(x, 1),
        normal((2, 3, 4)),
    ),
    Case(
        "softmax_3d_axis_neg2",
        lambda x: nnet.softmax(x, axis=-2),
        lambda x: naive_softmax(x, -2),
        normal((2, 3, 4)),
    ),
    Case(
        "softmax_axis_none",
        lambda x: nnet.softmax(x, axis=None),
        lambda x: naive_softmax(x, None),
        normal((3, 5)),
    ),
    Case("softmax_one_column", nnet.softmax, naive_softmax, normal((4, 1)), static_ones=False),
    Case("softmax_empty_rows", nnet.softmax, naive_softmax, normal((0, 5)), grad=()),
    Case("softmax_empty_axis", nnet.softmax, naive_softmax, normal((4, 0)), grad=()),
    Case("softmax_large", nnet.softmax, stable_softmax, normal((3, 5), scale=1e3), grad=()),
    Case(
        "softmax_int",
        nnet.softmax,
        lambda x: naive_softmax(x.astype("float64")),
        lambda rng: [rng.integers(-3, 3, size=(3, 5)).astype("int32")],
        dtypes=("float64",),
        grad=(),
    ),
]

LOGSOFTMAX = [
    Case("logsoftmax", nnet.logsoftmax, lambda x: np.log(naive_softmax(x)), normal((3, 5))),
    Case(
        "logsoftmax_axis0",
        lambda x: nnet.logsoftmax(x, axis=0),
        lambda x: np.log(naive_softmax(x, 0)),
        normal((3, 5)),
    ),
    Case("logsoftmax_vector", nnet.log_softmax, lambda x: np.log(naive_softmax(x)), normal((6,))),
    Case(
        "logsoftmax_3d_axis1",
        lambda x: nnet.logsoftmax(x, axis=1),
        lambda x: np.log(naive_softmax(x, 1)),
        normal((2, 3, 4)),
    ),
    Case(
        "logsoftmax_axis_none",
        lambda x: nnet.logsoftmax(x, axis=None),
        lambda x: np.log(naive_softmax(x, None)),
        normal((3, 5)),
    ),
    Case("logsoftmax_empty_axis", nnet.logsoftmax, lambda x: x.copy(), normal((4, 0)), grad=()),
    Case(
        "logsoftmax_large", nnet.logsoftmax, stable_logsoftmax, normal((3, 5), scale=1e3), grad=()
    ),
]

ACTIVATIONS = [
    Case("relu", nnet.relu, lambda x: np.maximum(x, 0), normal((3, 5))),
    Case(
        "relu_leaky",
        lambda x: nnet.relu(x, alpha=0.1),
        lambda x: np.where(x > 0, x, x * x.dtype.type(0.1)),
        normal((3, 5)),
    ),
    Case(
        "relu_int",
        nnet.relu,
        lambda x: np.maximum(x, 0),
        lambda rng: [rng.integers(-5, 5, size=(3, 5)).astype("int32")],
        dtypes=("float64",),
        grad=(),
    ),
    Case("sigmoid", nnet.sigmoid, lambda x: sig(x), normal((3, 5))),
    Case("softplus", nnet.softplus, lambda x: np.log1p(np.exp(x)), normal((3, 5))),
]

CROSSENTROPY = [
    Case("ce_int_labels", nnet.categorical_crossentropy, np_ce_int, probs_and_labels(4, 6)),
    Case(
        "ce_int32_labels",
        nnet.categorical_crossentropy,
        np_ce_int,
        lambda rng: [rng.uniform(0.1, 1, size=(5, 3)), rng.integers(0, 3, 5).astype("int32")],
    ),
    Case(
        "ce_onehot",
        nnet.categorical_crossentropy,
        lambda p, t: -np.sum(t * np.log(p), axis=1),
        onehot_rows(4, 6),
    ),
    Case(
        "ce_probability_rows",
        nnet.categorical_crossentropy,
        lambda p, t: -np.sum(t * np.log(p), axis=-1),
        lambda rng: [rng.uniform(0.1, 1, size=(2, 3, 4)), rng.uniform(0, 1, size=(2, 3, 4))],
    ),
    Case(
        "ce_of_softmax",
        lambda x, y: nnet.categorical_crossentropy(nnet.softmax(x), y).mean(),
        lambda x, y: np.mean(np_ce_int(naive_softmax(x), y)),
        lambda rng: [rng.normal(size=(5, 3)), rng.integers(0, 3, size=5)],
    ),
    Case("ce_empty", nnet.categorical_crossentropy, np_ce_int, probs_and_labels(0, 4), grad=()),
    Case(
        "binary_ce",
        nnet.binary_crossentropy,
        lambda o, t: -(t * np.log(o) + (1 - t) * np.log(1 - o)),
        lambda rng: [rng.uniform(0.1, 0.9, size=(3, 5)), rng.uniform(0, 1, size=(3, 5))],
    ),
    Case(
        "binary_ce_bcast_target",
        nnet.binary_crossentropy,
        lambda o, t: -(t * np.log(o) + (1 - t) * np.log(1 - o)),
        lambda rng: [rng.uniform(0.1, 0.9, size=(3, 5)), rng.uniform(0, 1, size=(1, 5))],
    ),
    Case(
        "sigmoid_binary_ce",
        nnet.sigmoid_binary_crossentropy,
        lambda x, t: -(t * np.log(sig(x)) + (1 - t) * np.log(1 - sig(x))),
        lambda rng: [3 * rng.normal(size=(3, 5)), rng.uniform(0, 1, size=(3, 5))],
    ),
    Case(
        "to_one_hot",
        lambda y: nnet.to_one_hot(y, 5),
        lambda y: np.eye(5)[y],
        lambda rng: [rng.integers(0, 5, size=7)],
        dtypes=("float64",),
        grad=(),
    ),
]

ALL = SOFTMAX + LOGSOFTMAX + ACTIVATIONS + CROSSENTROPY


@pytest.mark.parametrize("case", ALL, ids=str)
def test_forward(case):
    check_forward(case)


@pytest.mark.parametrize("case", [c for c in ALL if c.grad != ()], ids=str)
def test_grad(case):
    check_grad(case)


@pytest.mark.parametrize("case", ALL, ids=str)
def test_infer_shape(case):
    check_shape(case)


# ------------------------------------------------------------- softmax details


@pytest.mark.parametrize("fn", [nnet.softmax, nnet.logsoftmax])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_large_logits_stay_finite(fn, dtype):
    x = T.matrix("x", dtype=dtype)
    value = np.array([[1e3, -1e3, 0.0, 999.0], [-1e3, -1e3, -1e3, -999.0]], dtype=dtype)
    out = fn(x).eval({x: value})
    assert out.dtype == dtype
    assert np.all(np.isfinite(out))
    want = stable_softmax(value.astype("float64"))
    if fn is nnet.logsoftmax:
        want = stable_logsoftmax(value.astype("float64"))
    np.testing.assert_allclose(out, want, rtol=1e-6)


def test_large_logits_gradient_is_finite():
    x = T.dmatrix("x")
    y = T.lvector("y")
    cost = nnet.categorical_crossentropy(nnet.softmax(x), y).sum()
    g = T.grad(cost, x).eval({x: np.array([[1e3, 0.0, -1e3]]), y: np.array([0])})
    np.testing.assert_allclose(g, [[0.0, 0.0, 0.0]], atol=1e-12)
    # logsoftmax avoids log(0) where softmax underflows.
    g = T.grad(-nnet.logsoftmax(x).sum(), x)
    val = g.eval({x: np.array([[1e3, 0.0, -1e3]])})
    np.testing.assert_allclose(val, [[2.0, -1.0, -1.0]], atol=1e-12)


def test_softmax_rows_sum_to_one_on_non_contiguous_input():
    x = T.dmatrix("x")
    f = flowc.function([x], [nnet.softmax(x), nnet.logsoftmax(x, axis=0)])
    base = np.random.default_rng(1).normal(size=(6, 10))
    for value in (base.T, base[:, ::2], base[::-1]):
        sm, lsm = f(value)
        np.testing.assert_allclose(sm, naive_softmax(value), rtol=1e-12)
        np.testing.assert_allclose(sm.sum(axis=1), 1.0, rtol=1e-12)
        np.testing.assert_allclose(lsm, np.log(naive_softmax(value, 0)), rtol=1e-12)


@pytest.mark.parametrize("fn", [nnet.softmax, nnet.logsoftmax])
@pytest.mark.parametrize("axis", [-1, 0, None])
def test_rop_matches_finite_differences(fn, axis):
    rng = np.random.default_rng(2)
    x, v = T.dmatrices("x", "v")
    y = fn(x, axis=axis)
    jv = flowc.function([x, v], T.Rop(y, x, v))
    f = flowc.function([x], y)
    a, d = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    eps = 1e-6
    numeric = (f(a + eps * d) - f(a - eps * d)) / (2 * eps)
    np.testing.assert_allclose(jv(a, d), numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("fn", [nnet.softmax, nnet.logsoftmax])
def test_second_derivative(fn):
    w = np.random.default_rng(3).uniform(0.5, 1.5, size=(3, 4))
    verify_grad(
        lambda x: T.grad((fn(x) * w).sum(), x), [np.random.default_rng(4).normal(size=(3, 4))]
    )


def test_grad_dtype_float32():
    x = T.fmatrix("x")
    y = T.lvector("y")
    sm = nnet.softmax(x)
    cost = nnet.categorical_crossentropy(sm, y).mean()
    assert sm.dtype == cost.dtype == "float32"
    g = T.grad(cost, x)
    assert g.dtype == "float32"
    val = g.eval({x: np.zeros((2, 4), "float32"), y: np.array([1, 3])})
    want = (np.full((2, 4), 0.25) - np.eye(4)[[1, 3]]) / 2
    np.testing.assert_allclose(val, want, rtol=1e-6)


def test_softmax_ops_compare_by_axis():
    x = T.tensor3("x")
    assert nnet.softmax(x, axis=-1).owner.op == nnet.Softmax(2)
    assert nnet.softmax(x, axis=0).owner.op != nnet.Softmax(2)
    assert nnet.logsoftmax(x, axis=None).owner.op == nnet.LogSoftmax(None)


def test_reexports():
    assert nnet.sigmoid is T.sigmoid
    assert nnet.softplus is T.softplus
    assert set(nnet.__all__) >= {
        "softmax",
        "logsoftmax",
        "relu",
        "categorical_crossentropy",
        "binary_crossentropy",
        "sigmoid_binary_crossentropy",
    }


def test_sigmoid_binary_crossentropy_is_finite_for_large_logits():
    x, t = T.dvectors("x", "t")
    out = nnet.sigmoid_binary_crossentropy(x, t).eval(
        {x: np.array([1e3, -1e3, 1e3, -1e3]), t: np.array([1.0, 0.0, 0.0, 1.0])}
    )
    np.testing.assert_allclose(out, [0.0, 0.0, 1e3, 1e3], atol=1e-12)


def test_relu_int_keeps_dtype():
    assert nnet.relu(T.ivector()).dtype == "int32"
    assert nnet.relu(T.fvector(), alpha=0.2).dtype == "float32"


# --------------------------------------------------------------- cross-entropy


def test_categorical_crossentropy_int_matches_onehot():
    p, t = T.dmatrices("p", "t")
    y = T.lvector("y")
    f = flowc.function(
        [p, y, t], [nnet.categorical_crossentropy(p, y), nnet.categorical_crossentropy(p, t)]
    )
    rng = np.random.default_rng(5)
    probs = naive_softmax(rng.normal(size=(6, 4)))
    labels = rng.integers(0, 4, size=6)
    a, b = f(probs, labels, np.eye(4)[labels])
    np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(a, np_ce_int(probs, labels), rtol=1e-12)


def test_crossentropy_int_grad_with_zero_probabilities_elsewhere():
    p = T.dmatrix("p")
    y = T.lvector("y")
    g = T.grad(nnet.categorical_crossentropy(p, y).sum(), p)
    val = g.eval({p: np.array([[0.5, 0.0, 0.5], [0.0, 0.25, 0.75]]), y: np.array([0, 2])})
    np.testing.assert_allclose(val, [[-2.0, 0.0, 0.0], [0.0, 0.0, -1 / 0.75]])


@pytest.mark.parametrize("bad", [7, -1, 3])
def test_crossentropy_label_out_of_range_at_run_time(bad):
    p = T.dmatrix("p")
    y = T.lvector("y")
    f = flowc.function([p, y], nnet.categorical_crossentropy(p, y))
    with pytest.raises(ValueError, match=rf"label {bad} \(at position 1\) is out of range"):
        f(np.full((2, 3), 1 / 3), np.array([0, bad]))


def test_crossentropy_constant_label_out_of_range_at_build_time():
    p = T.tensor("float64", shape=(None, 3), name="p")
    with pytest.raises(ValueError, match="label 3"):
        nnet.categorical_crossentropy(p, [0, 3])
    with pytest.raises(ValueError, match="label -2"):
        nnet.categorical_crossentropy(T.dmatrix(), np.array([1, -2]))


def test_crossentropy_row_count_mismatch():
    p = T.dmatrix("p")
    y = T.lvector("y")
    f = flowc.function([p, y], nnet.categorical_crossentropy(p, y))
    with pytest.raises(ValueError, match="3 rows but there are 2 labels"):
        f(np.full((3, 4), 0.25), np.array([0, 1]))
    with pytest.raises(ValueError, match="3 rows but there are 2 labels"):
        nnet.categorical_crossentropy(
            T.tensor("float64", shape=(3, 4)), T.tensor("int64", shape=(2,))
        )


def test_crossentropy_wrong_ndim_and_dtype():
    with pytest.raises(ValueError, match="true_dist must have 2 dims"):
        nnet.categorical_crossentropy(T.dmatrix(), T.ltensor3())
    with pytest.raises(TypeError, match="integer class indices"):
        nnet.categorical_crossentropy(T.dmatrix(), T.dvector())
    with pytest.raises(TypeError, match="coding_dist must be a matrix"):
        nnet.categorical_crossentropy(T.dtensor3(), T.lmatrix())
    with pytest.raises(TypeError, match="coding_dist must be of a float dtype"):
        nnet.categorical_crossentropy(T.lmatrix(), T.lvector())
    with pytest.raises(ValueError, match="at least 1 dim"):
        nnet.categorical_crossentropy(T.dscalar(), T.dscalar())
    with pytest.raises(TypeError, match="class labels must be a vector"):
        nnet.crossentropy_categorical_1hot(T.dmatrix(), T.lmatrix())


def test_to_one_hot_errors_and_symbolic_class_count():
    y = T.lvector("y")
    k = T.lscalar("k")
    f = flowc.function([y, k], nnet.to_one_hot(y, k, dtype="int32"))
    out = f(np.array([2, 0]), 3)
    assert out.dtype == "int32"
    np.testing.assert_array_equal(out, [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match="label 3 .* out of range"):
        f(np.array([2, 3]), 3)
    with pytest.raises(TypeError, match="class labels must be integers"):
        nnet.to_one_hot(T.dvector(), 3)
    with pytest.raises(TypeError, match="nb_class must be an integer scalar"):
        nnet.to_one_hot(y, T.dscalar())
    assert nnet.to_one_hot(y, 4).type.shape == (None, 4)


def test_binary_crossentropy_rejects_integer_output():
    with pytest.raises(TypeError, match="output must be of a float dtype"):
        nnet.binary_crossentropy(T.lvector(), T.dvector())
    with pytest.raises(TypeError, match="logits must be of a float dtype"):
        nnet.sigmoid_binary_crossentropy(T.lvector(), T.dvector())


# ---------------------------------------------------------------- softmax errors


@pytest.mark.parametrize("fn", [nnet.softmax, nnet.logsoftmax])
def test_softmax_errors(fn):
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        fn(T.dmatrix(), axis=2)
    with pytest.raises(TypeError, match="axis must be an int or None"):
        fn(T.dmatrix(), axis=(0, 1))
    with pytest.raises(ValueError, match="at least 1 dim"):
        fn(T.dscalar())
    with pytest.raises(TypeError, match="real array"):
        fn(T.zvector())
    with pytest.raises(TypeError, match="float dtype"):
        (nnet.Softmax if fn is nnet.softmax else nnet.LogSoftmax)(-1)(T.lvector())
    with pytest.raises(ValueError, match="out of range"):
        (nnet.Softmax if fn is nnet.softmax else nnet.LogSoftmax)(1)(T.dvector())


# -------------------------------------------------------------------- the demo


def test_mlp_demo_reaches_90_percent():
    pytest.importorskip("sklearn")
    path = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "demo_mlp.py"
    spec = importlib.util.spec_from_file_location("demo_mlp", path)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    assert demo.main(epochs=4, quiet=True) >= 0.9
