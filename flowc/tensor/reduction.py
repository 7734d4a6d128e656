"""Reductions over axes (sum, prod, max, min, all, any, argmax, argmin), the statistics
built from them (mean, var, std, logsumexp), and cumulative sums and products."""

from __future__ import annotations

import builtins
import numbers

import numpy as np

from flowc.graph.basic import Apply, Op
from flowc.graph.type import DISCRETE_DTYPES, TensorType
from flowc.tensor import math
from flowc.tensor.basic import alloc, shape_tuple
from flowc.tensor.elemwise import dimshuffle
from flowc.tensor.var import as_tensor_variable, constant


def normalize_axis(axis, ndim: int, what="axis") -> tuple[int, ...]:
    """``axis`` (None, an int or a tuple, negatives allowed) as a sorted tuple."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (numbers.Integral, np.integer)):
        axis = (axis,)
    if not isinstance(axis, (tuple, list)):
        raise TypeError(f"{what} must be None, an int or a tuple of ints, got {axis!r}")
    out = []
    for a in axis:
        if not isinstance(a, (numbers.Integral, np.integer)):
            raise TypeError(f"{what} must be an int or a tuple of ints, got {axis!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"{what} {a} is out of range for an array of {ndim} dims")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{what} {axis!r} repeats an axis")
    return tuple(sorted(out))


_REDUCERS = {
    "add": np.sum,
    "mul": np.prod,
    "maximum": np.max,
    "minimum": np.min,
    "and": np.all,
    "or": np.any,
}


class Reduce(Op):
    """Reduce ``axis`` with ``kind`` (add, mul, maximum, minimum, and, or); dims dropped.

    ``dtype`` is the accumulator and output dtype (NumPy's default when built by
    ``sum``/``prod``: int64 for small ints, unchanged for floats).
    """

    __props__ = ("kind", "axis", "dtype")

    def __init__(self, kind: str, axis: tuple[int, ...], dtype: str):
        if kind not in _REDUCERS:
            raise ValueError(f"unknown reduction {kind!r}")
        self.kind = kind
        self.axis = tuple(axis)
        self.dtype = dtype

    def __str__(self):
        return f"{self.kind.capitalize() if self.kind != 'add' else 'Sum'}{{{self.axis}}}"

    def make_node(self, x):
        x = as_tensor_variable(x)
        if builtins.any(a >= x.ndim for a in self.axis):
            raise ValueError(f"{self}: axis out of range for the {x.ndim}-d {x}")
        shape = tuple(s for a, s in enumerate(x.type.shape) if a not in self.axis)
        return Apply(self, [x], [TensorType(self.dtype, shape)()])

    def perform(self, node, inputs, output_storage):
        (x,) = inputs
        reducer = _REDUCERS[self.kind]
        if self.kind in ("maximum", "minimum") and builtins.any(x.shape[a] == 0 for a in self.axis):
            raise ValueError(
                f"{self}: cannot take the {self.kind} over an empty axis of "
                f"an array of shape {x.shape}"
            )
        kw = {"dtype": self.dtype} if self.kind in ("add", "mul") else {}
        out = reducer(x, axis=self.axis, **kw)
        output_storage[0][0] = np.asarray(out, dtype=self.dtype)

    def infer_shape(self, fgraph, node, input_shapes):
        (shp,) = input_shapes
        return [tuple(s for a, s in enumerate(shp) if a not in self.axis)]

    def grad(self, inputs, output_grads):
        (x,) = inputs
        (gz,) = output_grads
        if x.dtype in DISCRETE_DTYPES or self.kind in ("and", "or"):
            return [None]
        g = _restore_axes(gz, self.axis, x.ndim)
        if self.kind == "add":
            g = alloc(g, *shape_tuple(x))
        elif self.kind == "mul":
            g = g * _prod_grad_factor(x, self.axis)
        else:
            out = _restore_axes(self(x), self.axis, x.ndim)
            g = g * math.cast(math.eq(x, out), g.dtype)
        return [math.cast(g, x.dtype) if g.dtype != x.dtype else g]

    def R_op(self, inputs, eval_points):
        if eval_points[0] is None:
            return [None]
        if self.kind == "add":
            return [self(eval_points[0])]
        return super().R_op(inputs, eval_points)


def _restore_axes(g, axis, ndim):
    """Put back the reduced ``axis`` of ``g`` as broadcastable dims."""
    pattern, k = [], 0
    for a in range(ndim):
        if a in axis:
            pattern.append("x")
        else:
            pattern.append(k)
            k += 1
    return dimshuffle(g, pattern)


def _prod_grad_factor(x, axis):
    """d prod / d x_i = product of the others, correct where x holds zeros."""
    zero = math.eq(x, 0)
    n_zeros = _restore_axes(sum(zero, axis=axis), axis, x.ndim)
    p_nonzero = _restore_axes(prod(math.switch(zero, 1, x), axis=axis), axis, x.ndim)
    no_zero = p_nonzero / math.switch(zero, 1, x)
    return math.switch(
        math.eq(n_zeros, 0), no_zero, math.switch(math.eq(n_zeros, 1) & zero, p_nonzero, 0)
    )


def _reduce(kind, x, axis, keepdims, dtype):
    x = as_tensor_variable(x)
    axes = normalize_axis(axis, x.ndim)
    out = (
        Reduce(kind, axes, dtype)(x)
        if axes
        else (math.cast(x, dtype) if kind in ("add", "mul") else x)
    )
    return _restore_axes(out, axes, x.ndim) if keepdims else out


def _acc_dtype(x, dtype):
    if dtype is not None:
        return np.dtype(dtype).name
    return np.sum(np.zeros(0, as_tensor_variable(x).dtype)).dtype.name


def sum(x, axis=None, keepdims=False, dtype=None):
    """Sum over ``axis`` (None: all), as ``np.sum``."""
    return _reduce("add", x, axis, keepdims, _acc_dtype(x, dtype))


def prod(x, axis=None, keepdims=False, dtype=None):
    """Product over ``axis`` (None: all), as ``np.prod``."""
    return _reduce("mul", x, axis, keepdims, _acc_dtype(x, dtype))


def max(x, axis=None, keepdims=False):
    """Maximum over ``axis``; the gradient goes to every maximal element."""
    x = as_tensor_variable(x)
    return _reduce("maximum", x, axis, keepdims, x.dtype)


def min(x, axis=None, keepdims=False):
    """Minimum over ``axis``; the gradient goes to every minimal element."""
    x = as_tensor_variable(x)
    return _reduce("minimum", x, axis, keepdims, x.dtype)


def all(x, axis=None, keepdims=False):
    """True where every element along ``axis`` is nonzero."""
    return _reduce("and", math.neq(x, 0), axis, keepdims, "bool")


def any(x, axis=None, keepdims=False):
    """True where some element along ``axis`` is nonzero."""
    return _reduce("or", math.neq(x, 0), axis, keepdims, "bool")


def _count(x, axes):
    n = constant(np.int64(1))
    shp = shape_tuple(x)
    for a in axes:
        n = n * shp[a]
    return n


def mean(x, axis=None, keepdims=False, dtype=None):
    """Arithmetic mean over ``axis``; integers average in float64, as NumPy does."""
    x = as_tensor_variable(x)
    if dtype is None:
        dtype = np.mean(np.zeros(1, x.dtype)).dtype.name
    axes = normalize_axis(axis, x.ndim)
    total = sum(x, axis=axes, keepdims=keepdims, dtype=dtype)
    return math.true_div(total, math.cast(_count(x, axes), dtype))


def var(x, axis=None, keepdims=False, ddof=0):
    """Variance over ``axis`` with ``ddof`` delta degrees of freedom, as ``np.var``."""
    x = as_tensor_variable(x)
    axes = normalize_axis(axis, x.ndim)
    centered = x - mean(x, axis=axes, keepdims=True)
    sq = sum(math.sqr(centered), axis=axes, keepdims=keepdims)
    return math.true_div(sq, math.cast(_count(x, axes) - ddof, sq.dtype))


def std(x, axis=None, keepdims=False, ddof=0):
    """Standard deviation over ``axis``, as ``np.std``."""
    return math.sqrt(var(x, axis=axis, keepdims=keepdims, ddof=ddof))


def logsumexp(x, axis=None, keepdims=False):
    """``log(sum(exp(x)))`` over ``axis``, shifted by the maximum so it cannot overflow."""
    from flowc.autodiff import disconnected_grad

    x = as_tensor_variable(x)
    axes = normalize_axis(axis, x.ndim)
    m = disconnected_grad(max(x, axis=axes, keepdims=True))
    m = math.switch(math.isinf(m), 0, m)
    out = math.log(sum(math.exp(x - m), axis=axes, keepdims=True)) + m
    if not keepdims:
        out = dimshuffle(out, [a for a in range(x.ndim) if a not in axes])
    return out


class Argmax(Op):
    """Index of the maximum (or minimum, ``kind='min'``) along one axis, int64."""

    __props__ = ("axis", "kind")

    def __init__(self, axis: int | None, kind="max"):
        self.axis = axis
        self.kind = kind

    def make_node(self, x):
        x = as_tensor_variable(x)
        shape = (
            ()
            if self.axis is None
            else tuple(s for a, s in enumerate(x.type.shape) if a != self.axis)
        )
        return Apply(self, [x], [TensorType("int64", shape)()])

    def perform(self, node, inputs, output_storage):
        (x,) = inputs
        if x.size == 0 or (self.axis is not None and x.shape[self.axis] == 0):
            raise ValueError(f"arg{self.kind} of an empty axis (shape {x.shape})")
        fn = np.argmax if self.kind == "max" else np.argmin
        output_storage[0][0] = np.asarray(fn(x, axis=self.axis), dtype="int64")

    def infer_shape(self, fgraph, node, input_shapes):
        (shp,) = input_shapes
        return [() if self.axis is None else tuple(s for a, s in enumerate(shp) if a != self.axis)]

    def grad(self, inputs, output_grads):
        return [None]

    def R_op(self, inputs, eval_points):
        return [None]


def _arg(kind, x, axis, keepdims):
    x = as_tensor_variable(x)
    if axis is None:
        out = Argmax(None, kind)(x)
        return dimshuffle(out, ["x"] * x.ndim) if keepdims else out
    axes = normalize_axis(axis, x.ndim)
    if len(axes) != 1:
        raise ValueError(f"arg{kind} takes one axis or None, got {axis!r}")
    out = Argmax(axes[0], kind)(x)
    return _restore_axes(out, axes, x.ndim) if keepdims else out


def argmax(x, axis=None, keepdims=False):
    """Index of the maximum along ``axis`` (None: of the flattened array)."""
    return _arg("max", x, axis, keepdims)


def argmin(x, axis=None, keepdims=False):
    """Index of the minimum along ``axis`` (None: of the flattened array)."""
    return _arg("min", x, axis, keepdims)


class CumOp(Op):
    """Cumulative ``kind`` ('add' or 'mul') along ``axis``; ``reverse`` runs from the end."""

    __props__ = ("axis", "kind", "reverse")

    def __init__(self, axis: int, kind="add", reverse=False):
        self.axis = int(axis)
        self.kind = kind
        self.reverse = bool(reverse)

    def make_node(self, x):
        x = as_tensor_variable(x)
        if not 0 <= self.axis < x.ndim:
            raise ValueError(f"cum{self.kind}: axis {self.axis} out of range for {x}")
        dtype = _acc_dtype(x, None)
        return Apply(self, [x], [TensorType(dtype, x.type.shape)()])

    def perform(self, node, inputs, output_storage):
        (x,) = inputs
        fn = np.cumsum if self.kind == "add" else np.cumprod
        dtype = node.outputs[0].dtype
        if self.reverse:
            flipped = np.flip(x, self.axis)
            out = np.flip(fn(flipped, axis=self.axis, dtype=dtype), self.axis)
        else:
            out = fn(x, axis=self.axis, dtype=dtype)
        output_storage[0][0] = np.ascontiguousarray(out)

    def infer_shape(self, fgraph, node, input_shapes):
        return [input_shapes[0]]

    def grad(self, inputs, output_grads):
        (x,) = inputs
        (gz,) = output_grads
        if x.dtype in DISCRETE_DTYPES:
            return [None]
        back = CumOp(self.axis, "add", not self.reverse)
        if self.kind == "add":
            return [back(gz)]
        # d/dx_i of cumprod: sum over j >= i of gz_j * out_j / x_i (x without zeros).
        out = self(x)
        return [back(gz * out) / x]

    def R_op(self, inputs, eval_points):
        if eval_points[0] is None:
            return [None]
        if self.kind == "add":
            return [self(eval_points[0])]
        return super().R_op(inputs, eval_points)


def _cum(kind, x, axis):
    x = as_tensor_variable(x)
    if axis is None:
        from flowc.tensor.shape_ops import flatten

        x, axis = flatten(x, 1), 0
    (a,) = normalize_axis(axis, x.ndim)
    return CumOp(a, kind)(x)


def cumsum(x, axis=None):
    """Cumulative sum along ``axis`` (None: of the flattened array), as ``np.cumsum``."""
    return _cum("add", x, axis)


def cumprod(x, axis=None):
    """Cumulative product along ``axis``; its gradient assumes ``x`` has no zeros."""
    return _cum("mul", x, axis)


__all__ = [
    "Argmax",
    "CumOp",
    "Reduce",
    "all",
    "any",
    "argmax",
    "argmin",
    "cumprod",
    "cumsum",
    "logsumexp",
    "max",
    "mean",
    "min",
    "normalize_axis",
    "prod",
    "std",
    "sum",
    "var",
]
