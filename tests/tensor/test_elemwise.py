"""Elementwise ops: forward against NumPy, gradients by finite differences, infer_shape."""

import math

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from tests.optable import Case, check_forward, check_grad, check_shape

vec_erf = np.vectorize(math.erf, otypes=["float64"])
vec_erfc = np.vectorize(math.erfc, otypes=["float64"])
vec_gamma = np.vectorize(math.gamma, otypes=["float64"])
vec_lgamma = np.vectorize(math.lgamma, otypes=["float64"])


def normal(*shapes):
    return lambda rng: [rng.normal(size=s) for s in shapes]


def uniform(lo, hi, *shapes):
    return lambda rng: [rng.uniform(lo, hi, size=s) for s in shapes]


def _f(ref_dtype_of_first):
    """Cast a float64 reference back to the input's float dtype."""

    def wrap(fn):
        return lambda *xs: np.asarray(fn(*xs)).astype(xs[0].dtype)

    return wrap


def unary(name, sym, ref, make=None, grad=True, **kw):
    return Case(name, sym, ref, make or normal((3, 4)), grad=None if grad else (), **kw)


def same_dtype(fn):
    return lambda *xs: np.asarray(fn(*xs)).astype(xs[0].dtype)


UNARY = [
    unary("neg", T.neg, np.negative),
    unary("abs", abs, np.abs),
    unary("sign", T.sign, np.sign),
    unary("exp", T.exp, np.exp),
    unary("exp2", T.exp2, np.exp2),
    unary("expm1", T.expm1, np.expm1),
    unary("log", T.log, np.log, uniform(0.5, 3, (3, 4))),
    unary("log2", T.log2, np.log2, uniform(0.5, 3, (3, 4))),
    unary("log10", T.log10, np.log10, uniform(0.5, 3, (3, 4))),
    unary("log1p", T.log1p, np.log1p, uniform(-0.5, 3, (3, 4))),
    unary("sqrt", T.sqrt, np.sqrt, uniform(0.5, 3, (3, 4))),
    unary("sqr", T.sqr, np.square),
    unary("reciprocal", T.reciprocal, np.reciprocal, uniform(0.5, 3, (3, 4))),
    unary("sin", T.sin, np.sin),
    unary("cos", T.cos, np.cos),
    unary("tan", T.tan, np.tan, uniform(-1, 1, (3, 4))),
    unary("arcsin", T.arcsin, np.arcsin, uniform(-0.9, 0.9, (3, 4))),
    unary("arccos", T.arccos, np.arccos, uniform(-0.9, 0.9, (3, 4))),
    unary("arctan", T.arctan, np.arctan),
    unary("sinh", T.sinh, np.sinh),
    unary("cosh", T.cosh, np.cosh),
    unary("tanh", T.tanh, np.tanh),
    unary("arcsinh", T.arcsinh, np.arcsinh),
    unary("arccosh", T.arccosh, np.arccosh, uniform(1.5, 3, (3, 4))),
    unary("arctanh", T.arctanh, np.arctanh, uniform(-0.9, 0.9, (3, 4))),
    unary("erf", T.erf, same_dtype(vec_erf)),
    unary("erfc", T.erfc, same_dtype(vec_erfc)),
    unary("erfinv", T.erfinv, lambda x: x, uniform(-0.95, 0.95, (3, 4))),
    unary("gamma", T.gamma, same_dtype(vec_gamma), uniform(0.5, 4, (3, 4))),
    unary("gammaln", T.gammaln, same_dtype(vec_lgamma), uniform(0.5, 4, (3, 4))),
    unary("floor", T.floor, np.floor),
    unary("ceil", T.ceil, np.ceil),
    unary("round", T.round, np.round),
    unary("isnan", T.isnan, np.isnan, grad=False),
    unary("isinf", T.isinf, np.isinf, grad=False),
    unary("sigmoid", T.sigmoid, lambda x: (1 / (1 + np.exp(-x))).astype(x.dtype)),
    unary("softplus", T.softplus, lambda x: np.log1p(np.exp(x)).astype(x.dtype)),
]
# erfinv is checked through erf(erfinv(x)) == x.
UNARY = [
    c if c.name != "erfinv" else dataclass_replace(c, fn=lambda x: T.erf(T.erfinv(x)))
    for c in UNARY
    for dataclass_replace in [__import__("dataclasses").replace]
]

BINARY = [
    Case("add", lambda x, y: x + y, np.add, normal((3, 4), (3, 4))),
    Case("add_bcast_row", lambda x, y: x + y, np.add, normal((3, 4), (1, 4))),
    Case("add_bcast_rank", lambda x, y: x + y, np.add, normal((2, 3, 4), (4,))),
    Case(
        "add_3",
        lambda x, y, z: T.add(x, y, z),
        lambda x, y, z: x + y + z,
        normal((3, 1), (1, 4), (3, 4)),
    ),
    Case("sub", lambda x, y: x - y, np.subtract, normal((3, 4), (3, 1))),
    Case("mul", lambda x, y: x * y, np.multiply, normal((2, 3, 4), (2, 1, 4))),
    Case(
        "mul_3",
        lambda x, y, z: T.mul(x, y, z),
        lambda x, y, z: x * y * z,
        normal((3, 4), (3, 4), ()),
    ),
    Case(
        "true_div",
        lambda x, y: x / y,
        np.true_divide,
        lambda rng: [rng.normal(size=(3, 4)), rng.uniform(1, 2, size=(3, 4))],
    ),
    Case(
        "int_div",
        lambda x, y: x // y,
        np.floor_divide,
        lambda rng: [rng.normal(size=(3, 4)) * 5, rng.uniform(1, 2, size=(4,))],
    ),
    Case(
        "mod",
        lambda x, y: x % y,
        np.mod,
        lambda rng: [rng.uniform(0.1, 0.9, size=(3, 4)) + 3, rng.uniform(1, 2, size=(3, 4))],
    ),
    Case("pow", lambda x, y: x**y, np.power, uniform(0.5, 2, (3, 4), (3, 4))),
    Case("pow_const", lambda x: x**3, lambda x: x**3, normal((5,))),
    Case("maximum", T.maximum, np.maximum, normal((3, 4), (3, 4))),
    Case("minimum", T.minimum, np.minimum, normal((3, 4), (1, 4))),
    Case("scalar_vector", lambda x, y: x * y + x, lambda x, y: x * y + x, normal((), (5,))),
    Case(
        "switch",
        lambda c, a, b: T.switch(c > 0, a, b),
        lambda c, a, b: np.where(c > 0, a, b),
        normal((3, 4), (3, 4), (1, 4)),
        grad=(1, 2),
    ),
    Case("clip", lambda x: T.clip(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), normal((3, 4))),
    Case("empty", lambda x, y: T.exp(x) * y, lambda x, y: np.exp(x) * y, normal((0, 4), (1, 4))),
    Case("zero_d", lambda x, y: T.tanh(x) * y, lambda x, y: np.tanh(x) * y, normal((), ())),
]

COMPARE = [
    Case(name, fn, ref, normal((3, 4), (3, 4)), grad=())
    for name, fn, ref in [
        ("lt", lambda x, y: x < y, np.less),
        ("le", lambda x, y: x <= y, np.less_equal),
        ("gt", lambda x, y: x > y, np.greater),
        ("ge", lambda x, y: x >= y, np.greater_equal),
        ("eq", lambda x, y: T.eq(x, T.round(y)), lambda x, y: x == np.round(y)),
        ("neq", T.neq, np.not_equal),
        ("and", lambda x, y: (x > 0) & (y > 0), lambda x, y: (x > 0) & (y > 0)),
        ("or", lambda x, y: (x > 0) | (y > 0), lambda x, y: (x > 0) | (y > 0)),
        ("xor", lambda x, y: (x > 0) ^ (y > 0), lambda x, y: (x > 0) ^ (y > 0)),
        ("invert", lambda x, y: ~(x > y), lambda x, y: ~(x > y)),
    ]
]

INTS = [
    Case(
        f"int_{name}",
        fn,
        ref,
        lambda rng: [
            rng.integers(-9, 9, size=(3, 4)).astype("int32"),
            rng.integers(1, 5, size=(4,)).astype("int32"),
        ],
        dtypes=("float64",),
        grad=(),
    )
    for name, fn, ref in [
        ("add", lambda x, y: x + y, np.add),
        ("floordiv", lambda x, y: x // y, np.floor_divide),
        ("mod", lambda x, y: x % y, np.mod),
        ("truediv", lambda x, y: x / y, np.true_divide),
        ("bitand", lambda x, y: x & y, np.bitwise_and),
        ("invert", lambda x, y: ~x, lambda x, y: ~x),
        ("cast", lambda x, y: T.cast(x, "float32") * 1.5, lambda x, y: x.astype("float32") * 1.5),
        ("python_float", lambda x, y: x * 2.5, lambda x, y: x * 2.5),
        ("python_int", lambda x, y: x * 2, lambda x, y: x * 2),
    ]
]

ALL = UNARY + BINARY + COMPARE + INTS


@pytest.mark.parametrize("case", ALL, ids=str)
def test_forward(case):
    check_forward(case)


@pytest.mark.parametrize("case", [c for c in ALL if c.grad != ()], ids=str)
def test_grad(case):
    check_grad(case)


@pytest.mark.parametrize("case", ALL, ids=str)
def test_infer_shape(case):
    check_shape(case)


def test_float32_stays_float32_with_python_scalars():
    x = T.fvector("x")
    y = 2.5 * x + 1 - x / 3
    assert y.dtype == "float32"
    assert T.grad(y.sum(), x).dtype == "float32"


def test_runtime_broadcast_of_unknown_dim_is_refused():
    x, y = T.dmatrices("x", "y")
    f = flowc.function([x, y], x + y)
    with pytest.raises(ValueError, match="disagree along dim 1"):
        f(np.ones((2, 3)), np.ones((2, 1)))


def test_static_shapes_that_cannot_broadcast_fail_at_build_time():
    x = T.tensor("float64", shape=(2, 3))
    y = T.tensor("float64", shape=(2, 4))
    with pytest.raises(ValueError, match="do not broadcast"):
        x + y


def test_grad_through_cast_to_int_is_disconnected():
    x = T.dvector("x")
    with pytest.raises(flowc.autodiff.DisconnectedInputError):
        T.grad(T.cast(x, "int32").sum() * 1.0, x)


def test_prod_grad_with_zeros():
    from flowc.testing import verify_grad

    verify_grad(
        lambda x: x.prod(axis=1), [np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 1.0], [1.0, 2.0, 4.0]])]
    )
