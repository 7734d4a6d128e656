"""Reductions and cumulative ops: forward against NumPy, gradients, infer_shape, errors."""

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from tests.optable import Case, check_forward, check_grad, check_shape


def normal(*shapes):
    return lambda rng: [rng.normal(size=s) for s in shapes]


def positive(*shapes):
    return lambda rng: [rng.uniform(0.5, 1.5, size=s) for s in shapes]


def _lse(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


AXES = [None, 0, 1, -1, (0, 2), (-1, 0)]
CASES = []
for axis in AXES:
    for keepdims in (False, True):
        tag = f"axis={axis},keep={keepdims}"
        CASES += [
            Case(
                f"sum[{tag}]",
                lambda x, a=axis, k=keepdims: x.sum(axis=a, keepdims=k),
                lambda x, a=axis, k=keepdims: np.sum(x, axis=a, keepdims=k),
                normal((2, 3, 4)),
            ),
            Case(
                f"prod[{tag}]",
                lambda x, a=axis, k=keepdims: x.prod(axis=a, keepdims=k),
                lambda x, a=axis, k=keepdims: np.prod(x, axis=a, keepdims=k),
                positive((2, 3, 4)),
            ),
            Case(
                f"max[{tag}]",
                lambda x, a=axis, k=keepdims: x.max(axis=a, keepdims=k),
                lambda x, a=axis, k=keepdims: np.max(x, axis=a, keepdims=k),
                normal((2, 3, 4)),
            ),
            Case(
                f"min[{tag}]",
                lambda x, a=axis, k=keepdims: T.min(x, axis=a, keepdims=k),
                lambda x, a=axis, k=keepdims: np.min(x, axis=a, keepdims=k),
                normal((2, 3, 4)),
            ),
            Case(
                f"mean[{tag}]",
                lambda x, a=axis, k=keepdims: T.mean(x, axis=a, keepdims=k),
                lambda x, a=axis, k=keepdims: np.mean(x, axis=a, keepdims=k),
                normal((2, 3, 4)),
            ),
            Case(
                f"var[{tag}]",
                lambda x, a=axis, k=keepdims: T.var(x, axis=a, keepdims=k),
                lambda x, a=axis, k=keepdims: np.var(x, axis=a, keepdims=k),
                normal((2, 3, 4)),
            ),
            Case(
                f"std[{tag}]",
                lambda x, a=axis, k=keepdims: T.std(x, axis=a, keepdims=k),
                lambda x, a=axis, k=keepdims: np.std(x, axis=a, keepdims=k),
                normal((2, 3, 4)),
            ),
            Case(
                f"logsumexp[{tag}]",
                lambda x, a=axis, k=keepdims: T.logsumexp(x, axis=a, keepdims=k),
                lambda x, a=axis, k=keepdims: _lse(x, a, k),
                normal((2, 3, 4)),
            ),
            Case(
                f"all[{tag}]",
                lambda x, a=axis, k=keepdims: T.all(x > 0, axis=a, keepdims=k),
                lambda x, a=axis, k=keepdims: np.all(x > 0, axis=a, keepdims=k),
                normal((2, 3, 4)),
                grad=(),
            ),
            Case(
                f"any[{tag}]",
                lambda x, a=axis, k=keepdims: T.any(x > 1, axis=a, keepdims=k),
                lambda x, a=axis, k=keepdims: np.any(x > 1, axis=a, keepdims=k),
                normal((2, 3, 4)),
                grad=(),
            ),
        ]
for axis in [None, 0, 1, -1]:
    CASES += [
        Case(
            f"argmax[axis={axis}]",
            lambda x, a=axis: T.argmax(x, axis=a),
            lambda x, a=axis: np.argmax(x, axis=a),
            normal((3, 5)),
            grad=(),
        ),
        Case(
            f"argmin[axis={axis}]",
            lambda x, a=axis: T.argmin(x, axis=a),
            lambda x, a=axis: np.argmin(x, axis=a),
            normal((3, 5)),
            grad=(),
        ),
        Case(
            f"argmax_keep[axis={axis}]",
            lambda x, a=axis: T.argmax(x, axis=a, keepdims=True),
            lambda x, a=axis: np.argmax(x, axis=a, keepdims=True),
            normal((3, 5)),
            grad=(),
        ),
        Case(
            f"cumsum[axis={axis}]",
            lambda x, a=axis: T.cumsum(x, axis=a),
            lambda x, a=axis: np.cumsum(x, axis=a),
            normal((3, 5)),
        ),
        Case(
            f"cumprod[axis={axis}]",
            lambda x, a=axis: T.cumprod(x, axis=a),
            lambda x, a=axis: np.cumprod(x, axis=a),
            positive((3, 5)),
        ),
    ]
CASES += [
    Case(
        "sum_int8",
        lambda x: x.sum(axis=0),
        lambda x: np.sum(x, axis=0),
        lambda rng: [rng.integers(-100, 100, size=(4, 3)).astype("int8")],
        grad=(),
    ),
    Case(
        "mean_int32",
        lambda x: x.mean(),
        lambda x: np.mean(x),
        lambda rng: [rng.integers(-100, 100, size=(4, 3)).astype("int32")],
        grad=(),
    ),
    Case(
        "sum_bool",
        lambda x: (x > 0).sum(axis=1),
        lambda x: np.sum(x > 0, axis=1),
        normal((4, 3)),
        grad=(),
    ),
    Case("sum_empty", lambda x: x.sum(axis=0), lambda x: np.sum(x, axis=0), normal((0, 3))),
    Case("prod_empty", lambda x: x.prod(), lambda x: np.prod(x), normal((0, 3))),
    Case("sum_0d", lambda x: x.sum(), lambda x: np.sum(x), normal(())),
    Case("sum_bcast_dim", lambda x: x.sum(axis=0), lambda x: np.sum(x, axis=0), normal((1, 3))),
    Case("mean_noncontig", lambda x: x.T.mean(axis=1), lambda x: x.T.mean(axis=1), normal((4, 6))),
    Case(
        "var_ddof1",
        lambda x: T.var(x, axis=1, ddof=1),
        lambda x: np.var(x, axis=1, ddof=1),
        normal((3, 5)),
    ),
    Case(
        "logsumexp_large",
        lambda x: T.logsumexp(x * 1e4, axis=1),
        lambda x: _lse(x * 1e4, axis=1),
        normal((3, 5)),
        grad=(),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward(case):
    check_forward(case)


@pytest.mark.parametrize("case", [c for c in CASES if c.grad != ()], ids=str)
def test_grad(case):
    check_grad(case)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_infer_shape(case):
    check_shape(case)


def test_logsumexp_gradient_is_finite_for_large_inputs():
    x = T.dvector("x")
    g = T.grad(T.logsumexp(x), x)
    value = g.eval({x: np.array([1e4, -1e4, 1e4 - 1.0])})
    assert np.all(np.isfinite(value))
    np.testing.assert_allclose(value.sum(), 1.0)


@pytest.mark.parametrize("axis", [3, -4, (0, 0), 1.5])
def test_bad_axis_is_refused(axis):
    x = T.tensor3("x")
    with pytest.raises((ValueError, TypeError), match="axis"):
        x.sum(axis=axis)


def test_max_of_empty_axis_raises_clearly():
    x = T.dmatrix("x")
    f = flowc.function([x], x.max(axis=0))
    with pytest.raises(ValueError, match="empty axis"):
        f(np.zeros((0, 3)))


def test_argmax_of_several_axes_is_refused():
    with pytest.raises(ValueError, match="takes one axis"):
        T.argmax(T.dmatrix(), axis=(0, 1))
