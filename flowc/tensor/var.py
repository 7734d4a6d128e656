"""Tensor variables with Python operators, constants, and Theano's type constructors."""

from __future__ import annotations

import numbers

import numpy as np

from flowc.config import config
from flowc.graph.basic import Constant, Variable
from flowc.graph.type import TensorType


class _TensorOperators:
    """Operators and methods shared by tensor variables and constants (Theano's names)."""

    # NumPy defers to our reflected operators: np.ones(3) + x is a graph, not an
    # object array.
    __array_ufunc__ = None

    # --- arithmetic
    def __add__(self, other):
        return _m().add(self, other)

    def __radd__(self, other):
        return _m().add(other, self)

    def __sub__(self, other):
        return _m().sub(self, other)

    def __rsub__(self, other):
        return _m().sub(other, self)

    def __mul__(self, other):
        return _m().mul(self, other)

    def __rmul__(self, other):
        return _m().mul(other, self)

    def __truediv__(self, other):
        return _m().true_div(self, other)

    def __rtruediv__(self, other):
        return _m().true_div(other, self)

    def __floordiv__(self, other):
        return _m().int_div(self, other)

    def __rfloordiv__(self, other):
        return _m().int_div(other, self)

    def __mod__(self, other):
        return _m().mod(self, other)

    def __rmod__(self, other):
        return _m().mod(other, self)

    def __pow__(self, other):
        return _m().pow(self, other)

    def __rpow__(self, other):
        return _m().pow(other, self)

    def __neg__(self):
        return _m().neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _m().abs(self)

    # --- comparisons and logic (== stays identity, as in Theano: use eq/neq)
    def __lt__(self, other):
        return _m().lt(self, other)

    def __le__(self, other):
        return _m().le(self, other)

    def __gt__(self, other):
        return _m().gt(self, other)

    def __ge__(self, other):
        return _m().ge(self, other)

    def __and__(self, other):
        return _m().and_(self, other)

    def __rand__(self, other):
        return _m().and_(other, self)

    def __or__(self, other):
        return _m().or_(self, other)

    def __ror__(self, other):
        return _m().or_(other, self)

    def __xor__(self, other):
        return _m().xor(self, other)

    def __rxor__(self, other):
        return _m().xor(other, self)

    def __invert__(self):
        return _m().invert(self)

    def __matmul__(self, other):
        from flowc.tensor import linalg

        return linalg.matmul(self, other)

    def __rmatmul__(self, other):
        from flowc.tensor import linalg

        return linalg.matmul(other, self)

    def __bool__(self):
        raise TypeError(
            f"the truth value of symbolic variable {self} is unknown until it is "
            f"computed; use flowc.tensor.switch, or eq/neq for comparisons"
        )

    def __len__(self):
        raise TypeError(f"len() of symbolic variable {self}: use {self}.shape[0]")

    def __iter__(self):
        n = self.type.shape[0] if self.ndim else None
        if n is None:
            raise TypeError(f"cannot iterate over {self}: its first dim is not static")
        for i in range(n):
            yield self[i]

    def __getitem__(self, index):
        from flowc.tensor import subtensor

        return subtensor.getitem(self, index)

    # --- attributes
    @property
    def ndim(self) -> int:
        return self.type.ndim

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def broadcastable(self) -> tuple[bool, ...]:
        return self.type.broadcastable

    @property
    def shape(self):
        from flowc.tensor import basic

        return basic.shape(self)

    @property
    def size(self):
        from flowc.tensor import basic

        return basic.size(self)

    @property
    def T(self):
        return self.transpose()

    # --- methods
    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return self.dimshuffle(*(axes or range(self.ndim)[::-1]))

    def dimshuffle(self, *pattern):
        from flowc.tensor.elemwise import dimshuffle

        if len(pattern) == 1 and isinstance(pattern[0], (tuple, list)):
            pattern = tuple(pattern[0])
        return dimshuffle(self, pattern)

    def reshape(self, *shape, ndim=None):
        from flowc.tensor import shape_ops

        if len(shape) == 1 and not isinstance(shape[0], numbers.Integral):
            shape = shape[0]
        return shape_ops.reshape(self, shape, ndim=ndim)

    def flatten(self, ndim=1):
        from flowc.tensor import shape_ops

        return shape_ops.flatten(self, ndim)

    def squeeze(self, axis=None):
        from flowc.tensor import shape_ops

        return shape_ops.squeeze(self, axis)

    def astype(self, dtype):
        return _m().cast(self, dtype)

    def sum(self, axis=None, keepdims=False, dtype=None):
        return _r().sum(self, axis=axis, keepdims=keepdims, dtype=dtype)

    def prod(self, axis=None, keepdims=False, dtype=None):
        return _r().prod(self, axis=axis, keepdims=keepdims, dtype=dtype)

    def mean(self, axis=None, keepdims=False, dtype=None):
        return _r().mean(self, axis=axis, keepdims=keepdims, dtype=dtype)

    def var(self, axis=None, keepdims=False, ddof=0):
        return _r().var(self, axis=axis, keepdims=keepdims, ddof=ddof)

    def std(self, axis=None, keepdims=False, ddof=0):
        return _r().std(self, axis=axis, keepdims=keepdims, ddof=ddof)

    def max(self, axis=None, keepdims=False):
        return _r().max(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        return _r().min(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis=None, keepdims=False):
        return _r().argmax(self, axis=axis, keepdims=keepdims)

    def argmin(self, axis=None, keepdims=False):
        return _r().argmin(self, axis=axis, keepdims=keepdims)

    def all(self, axis=None, keepdims=False):
        return _r().all(self, axis=axis, keepdims=keepdims)

    def any(self, axis=None, keepdims=False):
        return _r().any(self, axis=axis, keepdims=keepdims)

    def cumsum(self, axis=None):
        return _r().cumsum(self, axis=axis)

    def cumprod(self, axis=None):
        return _r().cumprod(self, axis=axis)

    def dot(self, other):
        from flowc.tensor import linalg

        return linalg.dot(self, other)

    def clip(self, a_min, a_max):
        return _m().clip(self, a_min, a_max)

    def round(self):
        return _m().round(self)

    def copy(self, name=None):
        out = _m().identity(self)
        out.name = name
        return out

    def eval(self, inputs_to_values=None):
        """Compute this variable for the given ``{input: value}`` (compiled once, cached)."""
        from flowc.function import eval_variable

        return eval_variable(self, inputs_to_values or {})


def _m():
    from flowc.tensor import math

    return math


def _r():
    from flowc.tensor import reduction

    return reduction


class TensorVariable(_TensorOperators, Variable):
    """A symbolic n-d array."""

    __hash__ = Variable.__hash__


class TensorConstant(_TensorOperators, Constant):
    """A constant n-d array. ``weak`` marks a Python number: it takes its dtype from
    the other operands, as NumPy 2 does for Python scalars."""

    __hash__ = Variable.__hash__

    def __init__(self, type, data, name=None, weak=False):
        super().__init__(type, data, name=name)
        self.weak = weak

    def signature(self):
        return (*super().signature(), self.weak)


TensorType.variable_class = TensorVariable
TensorType.constant_class = TensorConstant


def constant(x, name=None, ndim=None, dtype=None) -> TensorConstant:
    """A constant holding ``x`` (a number, list or array)."""
    weak = isinstance(x, (bool, numbers.Number)) and not isinstance(x, np.generic)
    if dtype is None and weak:
        if isinstance(x, bool):
            dtype = "bool"
        elif isinstance(x, numbers.Integral):
            dtype = "int64"
        elif isinstance(x, numbers.Real):
            dtype = config.floatX
        else:
            dtype = "complex128"
    arr = np.asarray(x, dtype=dtype)
    if arr.dtype == object:
        raise TypeError(f"cannot make a constant of {type(x).__name__}: {x!r}")
    if arr.dtype.kind in "US":
        raise TypeError(f"cannot make a tensor constant of strings: {x!r}")
    if ndim is not None:
        if arr.ndim > ndim:
            raise ValueError(f"constant {x!r} has {arr.ndim} dims, more than ndim={ndim}")
        arr = arr.reshape((1,) * (ndim - arr.ndim) + arr.shape)
    return TensorConstant(TensorType(arr.dtype, arr.shape), arr, name=name, weak=weak)


def as_tensor_variable(x, name=None, ndim=None, dtype=None) -> TensorVariable:
    """``x`` as a tensor variable: variables pass through, data becomes a constant.

    A list holding variables is stacked.
    """
    if isinstance(x, Variable):
        if not isinstance(x.type, TensorType):
            raise TypeError(f"{x} is of type {x.type}, not a tensor")
        if ndim is not None and x.ndim != ndim:
            raise ValueError(f"{x} has {x.ndim} dims, expected {ndim}")
        return x
    if hasattr(x, "get_value") and hasattr(x, "container"):
        raise TypeError(f"{x!r} is not a flowc variable")
    if isinstance(x, (list, tuple)) and any(_holds_variable(e) for e in x):
        from flowc.tensor import shape_ops

        return shape_ops.stack([as_tensor_variable(e) for e in x])
    return constant(x, name=name, ndim=ndim, dtype=dtype)


def _holds_variable(x) -> bool:
    if isinstance(x, Variable):
        return True
    return isinstance(x, (list, tuple)) and any(_holds_variable(e) for e in x)


as_tensor = as_tensor_variable


# ------------------------------------------------------------ type constructors


def tensor(dtype=None, shape=None, name=None, *, ndim=None, broadcastable=None):
    """A symbolic tensor input: ``tensor("float32", shape=(None, 3), name="x")``."""
    if isinstance(dtype, str) and name is None and dtype not in _DTYPE_NAMES:
        dtype, name = None, dtype  # tensor("x", shape=...) as PyTensor allows
    if dtype == "floatX":
        dtype = config.floatX
    if broadcastable is not None:
        shape = tuple(1 if b else None for b in broadcastable)
    if shape is None:
        shape = (None,) * (ndim or 0)
    elif ndim is not None and ndim != len(shape):
        raise ValueError(f"shape {shape} does not have ndim={ndim}")
    return TensorType(dtype or config.floatX, shape).make_variable(name)


_DTYPE_NAMES = {
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128", "floatX",
}  # fmt: skip

_PREFIXES = {
    "b": "int8",
    "w": "int16",
    "i": "int32",
    "l": "int64",
    "f": "float32",
    "d": "float64",
    "c": "complex64",
    "z": "complex128",
}
_SHAPES = {
    "scalar": (),
    "vector": (None,),
    "matrix": (None, None),
    "row": (1, None),
    "col": (None, 1),
    "tensor3": (None,) * 3,
    "tensor4": (None,) * 4,
    "tensor5": (None,) * 5,
    "tensor6": (None,) * 6,
    "tensor7": (None,) * 7,
}


def _constructor(kind: str, dtype: str | None):
    shape = _SHAPES[kind]

    def make(name=None, dtype=dtype, shape=shape):
        return tensor(dtype or config.floatX, shape, name)

    make.__name__ = (dtype and next(p for p, d in _PREFIXES.items() if d == dtype) or "") + kind
    make.__doc__ = f"A symbolic {kind} of {dtype or 'config.floatX'}."
    return make


scalar, vector, matrix, row, col, tensor3, tensor4, tensor5, tensor6, tensor7 = (
    _constructor(k, None) for k in _SHAPES
)
_CONSTRUCTORS = {
    p + kind: _constructor(kind, dtype) for p, dtype in _PREFIXES.items() for kind in _SHAPES
}
globals().update(_CONSTRUCTORS)


def _plural(make):
    def many(*names):
        """Several inputs: ``dscalars('x', 'y')``, ``dscalars(2)`` or ``dscalars('x,y')``."""
        if len(names) == 1 and isinstance(names[0], int):
            return [make() for _ in range(names[0])]
        if len(names) == 1 and isinstance(names[0], str) and "," in names[0]:
            names = tuple(n.strip() for n in names[0].split(","))
        if len(names) == 1 and isinstance(names[0], (list, tuple)):
            names = tuple(names[0])
        return [make(n) for n in names]

    return many


_PLURALS = {
    (name[:-2] + "ices" if name.endswith("matrix") else name + "s"): _plural(make)
    for name, make in {**{k: globals()[k] for k in _SHAPES}, **_CONSTRUCTORS}.items()
}
globals().update(_PLURALS)

__all__ = [
    "TensorConstant",
    "TensorVariable",
    "as_tensor",
    "as_tensor_variable",
    "constant",
    "tensor",
    *_SHAPES,
    *_CONSTRUCTORS,
    *_PLURALS,
]
