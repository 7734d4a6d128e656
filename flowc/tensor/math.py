"""Elementwise functions with Theano's names, each an ``Elemwise`` of a scalar function."""

from __future__ import annotations

import numpy as np

from flowc import scalar as ps
from flowc.graph.type import DTYPES
from flowc.tensor.elemwise import Elemwise
from flowc.tensor.var import as_tensor_variable

# fmt: off
add = Elemwise(ps.add)
sub = Elemwise(ps.sub)
mul = Elemwise(ps.mul)
true_div = Elemwise(ps.true_div)
int_div = Elemwise(ps.int_div)
mod = Elemwise(ps.mod)
pow = Elemwise(ps.pow)
maximum = Elemwise(ps.maximum)
minimum = Elemwise(ps.minimum)
eq = Elemwise(ps.eq)
neq = Elemwise(ps.neq)
lt = Elemwise(ps.lt)
le = Elemwise(ps.le)
gt = Elemwise(ps.gt)
ge = Elemwise(ps.ge)
and_ = Elemwise(ps.and_)
or_ = Elemwise(ps.or_)
xor = Elemwise(ps.xor)
invert = Elemwise(ps.invert)
switch = Elemwise(ps.switch)
clip = Elemwise(ps.clip)
identity = Elemwise(ps.identity)
neg = Elemwise(ps.neg)
abs = Elemwise(ps.abs)
sign = Elemwise(ps.sign)
floor = Elemwise(ps.floor)
ceil = Elemwise(ps.ceil)
isnan = Elemwise(ps.isnan)
isinf = Elemwise(ps.isinf)
exp = Elemwise(ps.exp)
exp2 = Elemwise(ps.exp2)
expm1 = Elemwise(ps.expm1)
log = Elemwise(ps.log)
log2 = Elemwise(ps.log2)
log10 = Elemwise(ps.log10)
log1p = Elemwise(ps.log1p)
sqrt = Elemwise(ps.sqrt)
sqr = Elemwise(ps.sqr)
reciprocal = Elemwise(ps.reciprocal)
sin = Elemwise(ps.sin)
cos = Elemwise(ps.cos)
tan = Elemwise(ps.tan)
arcsin = Elemwise(ps.arcsin)
arccos = Elemwise(ps.arccos)
arctan = Elemwise(ps.arctan)
sinh = Elemwise(ps.sinh)
cosh = Elemwise(ps.cosh)
tanh = Elemwise(ps.tanh)
arcsinh = Elemwise(ps.arcsinh)
arccosh = Elemwise(ps.arccosh)
arctanh = Elemwise(ps.arctanh)
erf = Elemwise(ps.erf)
erfc = Elemwise(ps.erfc)
erfinv = Elemwise(ps.erfinv)
gamma = Elemwise(ps.gamma)
gammaln = Elemwise(ps.gammaln)
psi = Elemwise(ps.psi)
tri_gamma = Elemwise(ps.tri_gamma)
sigmoid = Elemwise(ps.sigmoid)
softplus = Elemwise(ps.softplus)
# fmt: on

# Theano and NumPy spellings of the same functions.
true_divide = divide = true_div
floor_div = floor_divide = int_div
power = pow
square = sqr
abs_ = absolute = abs
bitwise_and, bitwise_or, bitwise_xor, bitwise_not = and_, or_, xor, invert
digamma = psi
lgamma = gammaln
where = switch
not_equal, equal, less, less_equal, greater, greater_equal = neq, eq, lt, le, gt, ge


def cast(x, dtype):
    """``x`` converted to ``dtype`` ('floatX' means ``config.floatX``)."""
    from flowc.config import config

    x = as_tensor_variable(x)
    dtype = config.floatX if dtype == "floatX" else np.dtype(dtype).name
    if dtype not in DTYPES:
        raise TypeError(f"cast: unsupported dtype {dtype!r}")
    if x.dtype == dtype:
        return x
    return Elemwise(ps.Cast(dtype))(x)


def round(x, mode="half_to_even"):
    """Round to the nearest integer: ``half_to_even`` (NumPy) or ``half_away_from_zero``."""
    if mode == "half_to_even":
        return Elemwise(ps.round_half_to_even)(x)
    if mode == "half_away_from_zero":
        return Elemwise(ps.round_half_away_from_zero)(x)
    raise ValueError(f"round: mode must be half_to_even or half_away_from_zero, got {mode!r}")


__all__ = sorted(
    {name for name, v in list(globals().items()) if isinstance(v, Elemwise)} | {"cast", "round"}
)
