"""Scalar functions that ``Elemwise`` maps over arrays: name, NumPy kernel, dtype rule, gradient.

A ``ScalarOp`` is identified by its name (plus parameters such as a cast's dtype),
so the kernel back ends look up how to emit it by name, and the fusion pass builds
``Composite`` bodies out of them. Gradients are written with tensor operations and
are elementwise: ``Elemwise`` sums them over broadcast dims.
"""

from __future__ import annotations

import math as _pymath

import numpy as np

from flowc.graph.type import DISCRETE_DTYPES, FLOAT_DTYPES


class ScalarOp:
    """One elementwise function. ``nin`` is -1 for a variadic one (add, mul)."""

    __props__ = ("name",)

    def __init__(self, name, nin, impl, grad=None, dtype_rule="ufunc", linear=False):
        self.name = name
        self.nin = nin
        self.impl = impl
        self._grad = grad
        self.dtype_rule = dtype_rule
        self.linear = linear  # linear in every input (its R_op is itself)

    def __eq__(self, other):
        return type(self) is type(other) and self._props() == other._props()

    def __hash__(self):
        return hash((type(self), self._props()))

    def _props(self):
        return tuple(getattr(self, p) for p in self.__props__)

    def __reduce__(self):
        return (_by_name, self._props())

    def __str__(self):
        return self.name

    __repr__ = __str__

    def output_dtype(self, dtypes: list[str]) -> str:
        """NumPy's result dtype for these input dtypes."""
        if self.dtype_rule == "bool":
            return "bool"
        if self.dtype_rule == "float":
            return _float_dtype(np.result_type(*dtypes).name)
        if self.dtype_rule == "first":
            return dtypes[0]
        with np.errstate(all="ignore"):
            return self.impl(*(np.zeros(0, d) for d in dtypes)).dtype.name

    def __call__(self, *values):
        return self.impl(*values)

    def grad(self, inputs, output, gz) -> list:
        """Elementwise gradient w.r.t. each input; None where no gradient flows."""
        if self._grad is None:
            raise NotImplementedError(f"the scalar function {self.name} has no gradient")
        return list(self._grad(*inputs, output, gz))


class Cast(ScalarOp):
    """Conversion to ``dtype`` (float to int truncates toward zero, as NumPy does)."""

    __props__ = ("dtype",)

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype).name
        super().__init__(f"cast_{self.dtype}", 1, self._cast, dtype_rule="cast")

    def _cast(self, x):
        return np.asarray(x).astype(self.dtype)

    def output_dtype(self, dtypes):
        return self.dtype

    def grad(self, inputs, output, gz):
        (x,) = inputs
        if x.dtype in DISCRETE_DTYPES or self.dtype in DISCRETE_DTYPES:
            return [None]
        return [_m().cast(gz, x.dtype)]


def _float_dtype(dtype: str) -> str:
    """The float dtype NumPy computes a float function of ``dtype`` in."""
    return np.sqrt(np.zeros(0, dtype)).dtype.name


def _m():
    from flowc.tensor import math

    return math


# ------------------------------------------------------ special functions in NumPy


def _pyfunc(fn, fill):
    def safe(x):
        try:
            return fn(x)
        except ValueError:
            return fill
        except OverflowError:
            return _pymath.inf

    vec = np.frompyfunc(safe, 1, 1)

    def impl(x):
        x = np.asarray(x)
        dtype = _float_dtype(x.dtype.name)
        return np.asarray(vec(x.astype("float64")), dtype="float64").astype(dtype)

    return impl


_erf = _pyfunc(_pymath.erf, _pymath.nan)
_erfc = _pyfunc(_pymath.erfc, _pymath.nan)
_gamma = _pyfunc(_pymath.gamma, _pymath.nan)
_gammaln = _pyfunc(_pymath.lgamma, _pymath.inf)


def _erfinv(y):
    """Inverse error function: Giles' (2010) single-precision start, then Newton steps."""
    y = np.asarray(y)
    dtype = _float_dtype(y.dtype.name)
    y = y.astype("float64")
    with np.errstate(all="ignore"):
        w = -np.log((1.0 - y) * (1.0 + y))
        small = w < 5.0
        ws = w - 2.5
        wl = np.sqrt(w) - 3.0
        p_s, p_l = 2.81022636e-08, -0.000200214257
        for cs, cl in (
            (3.43273939e-07, 0.000100950558),
            (-3.5233877e-06, 0.00134934322),
            (-4.39150654e-06, -0.00367342844),
            (0.00021858087, 0.00573950773),
            (-0.00125372503, -0.0076224613),
            (-0.00417768164, 0.00943887047),
            (0.246640727, 1.00167406),
            (1.50140941, 2.83297682),
        ):
            p_s = cs + p_s * ws
            p_l = cl + p_l * wl
        x = np.where(small, p_s, p_l) * y
        erf = np.frompyfunc(_pymath.erf, 1, 1)
        for _ in range(2):
            err = np.asarray(erf(x), dtype="float64") - y
            x = x - err / (2.0 / np.sqrt(np.pi) * np.exp(-x * x))
        x = np.where(np.abs(y) == 1.0, np.copysign(np.inf, y), x)
        x = np.where(np.abs(y) > 1.0, np.nan, x)
    return x.astype(dtype)


def _digamma(x):
    """psi(x): recurrence up to x >= 10, then the asymptotic series; reflection for x < 0."""
    x = np.asarray(x)
    dtype = _float_dtype(x.dtype.name)
    x = x.astype("float64")
    with np.errstate(all="ignore"):
        neg = x < 0
        refl = np.where(neg, np.pi / np.tan(np.pi * x), 0.0)
        z = np.where(neg, 1.0 - x, x)
        acc = np.zeros_like(z)
        for _ in range(10):
            low = z < 10
            acc = acc - np.where(low, 1.0 / z, 0.0)
            z = np.where(low, z + 1.0, z)
        r = 1.0 / (z * z)
        series = (
            np.log(z)
            - 0.5 / z
            - r * (1 / 12 - r * (1 / 120 - r * (1 / 252 - r * (1 / 240 - r * (1 / 132)))))
        )
        out = acc + series - refl
        out = np.where((x <= 0) & (x == np.floor(x)), np.nan, out)
    return out.astype(dtype)


def _trigamma(x):
    """psi'(x): recurrence up to x >= 10, then the asymptotic series; reflection for x < 0."""
    x = np.asarray(x)
    dtype = _float_dtype(x.dtype.name)
    x = x.astype("float64")
    with np.errstate(all="ignore"):
        neg = x < 0
        z = np.where(neg, 1.0 - x, x)
        acc = np.zeros_like(z)
        for _ in range(10):
            low = z < 10
            acc = acc + np.where(low, 1.0 / (z * z), 0.0)
            z = np.where(low, z + 1.0, z)
        r = 1.0 / (z * z)
        series = 1 / z + r / 2 + r / z * (1 / 6 - r * (1 / 30 - r * (1 / 42 - r / 30)))
        out = acc + series
        out = np.where(neg, -out + (np.pi / np.sin(np.pi * x)) ** 2, out)
        out = np.where((x <= 0) & (x == np.floor(x)), np.nan, out)
    return out.astype(dtype)


def _sigmoid(x):
    x = np.asarray(x)
    x = x.astype(_float_dtype(x.dtype.name), copy=False)
    with np.errstate(over="ignore"):
        # exp of a non-positive number only: no overflow for large |x|.
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def _softplus(x):
    x = np.asarray(x)
    x = x.astype(_float_dtype(x.dtype.name), copy=False)
    return (np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))).astype(x.dtype)


def _round_half_away(x):
    return np.where(x >= 0, np.floor(x + 0.5), np.ceil(x - 0.5)).astype(np.asarray(x).dtype)


def _variadic(ufunc):
    def impl(*xs):
        if len(xs) == 1:
            return np.array(xs[0], copy=True)  # never alias the input
        out = xs[0]
        for x in xs[1:]:
            out = ufunc(out, x)
        return np.asarray(out)

    return impl


# ------------------------------------------------------------------ the table


def _zero(x):
    from flowc.tensor.basic import zeros_like

    return None if x.dtype in DISCRETE_DTYPES else zeros_like(x)


def _grad_mul(*args):
    *xs, out, gz = args
    grads = []
    for i in range(len(xs)):
        others = [y for j, y in enumerate(xs) if j != i]
        g = gz
        for y in others:
            g = g * y
        grads.append(g)
    return grads


def _pow_grad(x, y, out, gz):
    m = _m()
    gx = gz * y * x ** (y - 1)
    gy = gz * out * m.log(m.switch(m.eq(x, 0), 1, x))
    return [gx, gy]


_PI = float(np.pi)
_SQRT_PI = _pymath.sqrt(_PI)

SCALAR_OPS: dict[str, ScalarOp] = {}


def _def(name, nin, impl, grad=None, **kw) -> ScalarOp:
    op = ScalarOp(name, nin, impl, grad, **kw)
    SCALAR_OPS[name] = op
    return op


def _by_name(name):
    if name in SCALAR_OPS:
        return SCALAR_OPS[name]
    return Cast(name)  # a Cast pickles by its dtype


# fmt: off
add = _def("add", -1, _variadic(np.add), lambda *a: [a[-1]] * (len(a) - 2), linear=True)
mul = _def("mul", -1, _variadic(np.multiply), _grad_mul)
sub = _def("sub", 2, np.subtract, lambda x, y, o, gz: [gz, -gz], linear=True)
true_div = _def("true_div", 2, np.true_divide,
                lambda x, y, o, gz: [gz / y, -gz * o / y])
int_div = _def("int_div", 2, np.floor_divide, lambda x, y, o, gz: [_zero(x), _zero(y)])
mod = _def("mod", 2, np.mod,
           lambda x, y, o, gz: [gz, -gz * _m().int_div(x, y)] if x.dtype in FLOAT_DTYPES
           else [_zero(x), _zero(y)])
pow = _def("pow", 2, np.power, _pow_grad)
maximum = _def("maximum", 2, np.maximum, lambda x, y, o, gz: [
    gz * _m().cast(_m().ge(x, y), gz.dtype), gz * _m().cast(_m().lt(x, y), gz.dtype)])
minimum = _def("minimum", 2, np.minimum, lambda x, y, o, gz: [
    gz * _m().cast(_m().le(x, y), gz.dtype), gz * _m().cast(_m().gt(x, y), gz.dtype)])


def _cmp(name, impl):
    return _def(name, 2, impl, lambda x, y, o, gz: [_zero(x), _zero(y)], dtype_rule="bool")


eq = _cmp("eq", np.equal)
neq = _cmp("neq", np.not_equal)
lt = _cmp("lt", np.less)
le = _cmp("le", np.less_equal)
gt = _cmp("gt", np.greater)
ge = _cmp("ge", np.greater_equal)
and_ = _def("and_", 2, np.bitwise_and, lambda x, y, o, gz: [None, None])
or_ = _def("or_", 2, np.bitwise_or, lambda x, y, o, gz: [None, None])
xor = _def("xor", 2, np.bitwise_xor, lambda x, y, o, gz: [None, None])
invert = _def("invert", 1, np.invert, lambda x, o, gz: [None])
switch = _def("switch", 3, lambda c, a, b: np.where(c, a, b), lambda c, a, b, o, gz: [
    None, _m().switch(c, gz, 0), _m().switch(c, 0, gz)], dtype_rule="switch")
clip = _def("clip", 3, lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi),
            lambda x, lo, hi, o, gz: [
                gz * _m().cast(_m().ge(x, lo) & _m().le(x, hi), gz.dtype),
                gz * _m().cast(_m().lt(x, lo), gz.dtype),
                gz * _m().cast(_m().gt(x, hi), gz.dtype)])
identity = _def("identity", 1, lambda x: np.array(x, copy=True), lambda x, o, gz: [gz],
                linear=True)
neg = _def("neg", 1, np.negative, lambda x, o, gz: [-gz], linear=True)
abs = _def("abs", 1, np.abs, lambda x, o, gz: [gz * _m().sign(x)])
sign = _def("sign", 1, np.sign, lambda x, o, gz: [_zero(x)])
floor = _def("floor", 1, np.floor, lambda x, o, gz: [_zero(x)], dtype_rule="float")
ceil = _def("ceil", 1, np.ceil, lambda x, o, gz: [_zero(x)], dtype_rule="float")
round_half_to_even = _def("round_half_to_even", 1, np.round,
                          lambda x, o, gz: [_zero(x)], dtype_rule="first")
round_half_away_from_zero = _def("round_half_away_from_zero", 1, _round_half_away,
                                 lambda x, o, gz: [_zero(x)], dtype_rule="first")
isnan = _def("isnan", 1, np.isnan, lambda x, o, gz: [_zero(x)], dtype_rule="bool")
isinf = _def("isinf", 1, np.isinf, lambda x, o, gz: [_zero(x)], dtype_rule="bool")
exp = _def("exp", 1, np.exp, lambda x, o, gz: [gz * o])
exp2 = _def("exp2", 1, np.exp2, lambda x, o, gz: [gz * o * _pymath.log(2)])
expm1 = _def("expm1", 1, np.expm1, lambda x, o, gz: [gz * (o + 1)])
log = _def("log", 1, np.log, lambda x, o, gz: [gz / x])
log2 = _def("log2", 1, np.log2, lambda x, o, gz: [gz / (x * _pymath.log(2))])
log10 = _def("log10", 1, np.log10, lambda x, o, gz: [gz / (x * _pymath.log(10))])
log1p = _def("log1p", 1, np.log1p, lambda x, o, gz: [gz / (x + 1)])
sqrt = _def("sqrt", 1, np.sqrt, lambda x, o, gz: [gz * 0.5 / o])
sqr = _def("sqr", 1, np.square, lambda x, o, gz: [gz * 2 * x])
reciprocal = _def("reciprocal", 1, lambda x: np.true_divide(1, x),
                  lambda x, o, gz: [-gz * o * o], dtype_rule="float")
sin = _def("sin", 1, np.sin, lambda x, o, gz: [gz * _m().cos(x)])
cos = _def("cos", 1, np.cos, lambda x, o, gz: [-gz * _m().sin(x)])
tan = _def("tan", 1, np.tan, lambda x, o, gz: [gz * (1 + o * o)])
arcsin = _def("arcsin", 1, np.arcsin, lambda x, o, gz: [gz / _m().sqrt(1 - x * x)])
arccos = _def("arccos", 1, np.arccos, lambda x, o, gz: [-gz / _m().sqrt(1 - x * x)])
arctan = _def("arctan", 1, np.arctan, lambda x, o, gz: [gz / (1 + x * x)])
sinh = _def("sinh", 1, np.sinh, lambda x, o, gz: [gz * _m().cosh(x)])
cosh = _def("cosh", 1, np.cosh, lambda x, o, gz: [gz * _m().sinh(x)])
tanh = _def("tanh", 1, np.tanh, lambda x, o, gz: [gz * (1 - o * o)])
arcsinh = _def("arcsinh", 1, np.arcsinh, lambda x, o, gz: [gz / _m().sqrt(x * x + 1)])
arccosh = _def("arccosh", 1, np.arccosh, lambda x, o, gz: [gz / _m().sqrt(x * x - 1)])
arctanh = _def("arctanh", 1, np.arctanh, lambda x, o, gz: [gz / (1 - x * x)])
erf = _def("erf", 1, _erf, lambda x, o, gz: [gz * (2 / _SQRT_PI) * _m().exp(-x * x)],
           dtype_rule="float")
erfc = _def("erfc", 1, _erfc, lambda x, o, gz: [-gz * (2 / _SQRT_PI) * _m().exp(-x * x)],
            dtype_rule="float")
erfinv = _def("erfinv", 1, _erfinv, lambda x, o, gz: [gz * (_SQRT_PI / 2) * _m().exp(o * o)],
              dtype_rule="float")
gamma = _def("gamma", 1, _gamma, lambda x, o, gz: [gz * o * _m().psi(x)], dtype_rule="float")
gammaln = _def("gammaln", 1, _gammaln, lambda x, o, gz: [gz * _m().psi(x)],
               dtype_rule="float")
psi = _def("psi", 1, _digamma, lambda x, o, gz: [gz * _m().tri_gamma(x)], dtype_rule="float")
tri_gamma = _def("tri_gamma", 1, _trigamma, None, dtype_rule="float")
sigmoid = _def("sigmoid", 1, _sigmoid, lambda x, o, gz: [gz * o * (1 - o)],
               dtype_rule="float")
softplus = _def("softplus", 1, _softplus, lambda x, o, gz: [gz * _m().sigmoid(x)],
                dtype_rule="float")
# fmt: on

# The comparison functions (their outputs are bool), for the kernel back ends.
COMPARISONS = frozenset({eq, neq, lt, le, gt, ge})
