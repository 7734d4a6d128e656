"""Shape queries, alloc and its relatives, DimShuffle, and the special functions psi/trigamma."""

import math

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from tests.optable import Case, check_forward, check_grad, check_shape


def normal(*shapes):
    return lambda rng: [rng.normal(size=s) for s in shapes]


CASES = [
    Case("alloc_scalar", lambda v: T.alloc(v, 3, 4), lambda v: np.full((3, 4), v), normal(())),
    Case(
        "alloc_row",
        lambda v: T.alloc(v, 2, 3, 4),
        lambda v: np.broadcast_to(v, (2, 3, 4)),
        normal((1, 4)),
    ),
    Case(
        "alloc_symbolic",
        lambda v, m: T.alloc(v, m.shape[1], m.shape[0]),
        lambda v, m: np.full((m.shape[1], m.shape[0]), v),
        normal((), (2, 5)),
        grad=(0,),
    ),
    Case("zeros_like", lambda x: T.zeros_like(x) + x, lambda x: x, normal((3, 2))),
    Case("ones_like", lambda x: T.ones_like(x) * x, lambda x: x, normal((3, 2))),
    Case(
        "fill",
        lambda x, v: T.fill(x, v),
        lambda x, v: np.full(x.shape, v),
        normal((2, 5), ()),
        grad=(1,),
    ),
    Case(
        "zeros_ones",
        lambda x: T.zeros((x.shape[0], 3)) + T.ones(3) + x.sum(),
        lambda x: np.zeros((x.shape[0], 3)) + 1 + x.sum(),
        normal((4,)),
    ),
    Case(
        "shape",
        lambda x: T.shape(x),
        lambda x: np.asarray(x.shape, "int64"),
        normal((3, 5)),
        grad=(),
    ),
    Case(
        "shape_i",
        lambda x: x.shape[1] * 2,
        lambda x: np.int64(x.shape[1] * 2),
        normal((3, 5)),
        grad=(),
    ),
    Case("size", lambda x: x.size, lambda x: np.int64(x.size), normal((3, 5)), grad=()),
    Case(
        "specify_shape",
        lambda x: T.specify_shape(x, (3, None)) * 2,
        lambda x: x * 2,
        normal((3, 5)),
    ),
    Case(
        "dimshuffle_transpose",
        lambda x: x.dimshuffle(2, 0, 1),
        lambda x: np.transpose(x, (2, 0, 1)),
        normal((2, 3, 4)),
    ),
    Case(
        "dimshuffle_newaxis",
        lambda x: x.dimshuffle("x", 1, "x", 0),
        lambda x: x.T[None, :, None, :],
        normal((2, 3)),
    ),
    Case("dimshuffle_drop", lambda x: x.dimshuffle(0, 2), lambda x: x[:, 0, :], normal((3, 1, 4))),
    Case(
        "psi",
        T.psi,
        lambda x: np.vectorize(_digamma_ref)(x).astype(x.dtype),
        lambda rng: [rng.uniform(-3.7, 6, size=(3, 4))],
        grad_tol=1e-3,
    ),
    Case(
        "tri_gamma",
        T.tri_gamma,
        lambda x: np.vectorize(_trigamma_ref)(x).astype(x.dtype),
        lambda rng: [rng.uniform(0.3, 6, size=(3, 4))],
        grad=(),
    ),
]


def _digamma_ref(x, h=1e-5):
    return (math.lgamma(x + h) - math.lgamma(x - h)) / (2 * h)


def _trigamma_ref(x, h=1e-4):
    return (_digamma_ref(x + h) - _digamma_ref(x - h)) / (2 * h)


for c in CASES:
    if c.name in ("psi", "tri_gamma"):
        c.rtol = 1e-5


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward(case):
    check_forward(case)


@pytest.mark.parametrize("case", [c for c in CASES if c.grad != ()], ids=str)
def test_grad(case):
    check_grad(case)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_infer_shape(case):
    check_shape(case)


def test_psi_known_values():
    x = T.dvector("x")
    got = T.psi(x).eval({x: np.array([1.0, 0.5, 10.0])})
    euler = 0.5772156649015329
    np.testing.assert_allclose(got[:2], [-euler, -euler - 2 * math.log(2)], rtol=1e-12)
    assert np.isnan(T.psi(x).eval({x: np.array([0.0, -2.0])})).all()


def test_alloc_refuses_runtime_broadcast_of_unknown_dims():
    v = T.dvector("v")
    f = flowc.function([v], T.alloc(v, 2, 3))
    with pytest.raises(ValueError, match="only dims of static size 1 broadcast"):
        f(np.ones(1))
    with pytest.raises(ValueError, match="does not broadcast"):
        T.alloc(T.constant(np.ones(4)), 2, 3)


def test_specify_shape_checks_at_run_time():
    x = T.dmatrix("x")
    f = flowc.function([x], T.specify_shape(x, (2, None)))
    with pytest.raises(ValueError, match="specify_shape"):
        f(np.ones((3, 3)))


def test_dimshuffle_errors():
    x = T.dmatrix("x")
    with pytest.raises(ValueError, match="not of static size 1"):
        x.dimshuffle(0)
    with pytest.raises(ValueError, match="repeats"):
        x.dimshuffle(0, 0)
    with pytest.raises(ValueError, match="out of range"):
        x.dimshuffle(0, 2)


def test_alloc_size_must_be_an_integer_scalar():
    with pytest.raises(TypeError, match="integer scalar"):
        T.alloc(1.0, T.dscalar())
    with pytest.raises(ValueError, match="negative"):
        T.alloc(1.0, -1)
