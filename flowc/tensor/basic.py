"""Shape queries and array creation: ``shape``, ``Shape_i``, ``specify_shape``, ``alloc``."""

from __future__ import annotations

import numpy as np

from flowc.graph.basic import Apply, Constant, Op, Variable
from flowc.graph.type import DISCRETE_DTYPES, TensorType
from flowc.tensor.var import as_tensor_variable, constant


class Shape(Op):
    """The shape of its input, as an int64 vector."""

    def make_node(self, x):
        x = as_tensor_variable(x)
        return Apply(self, [x], [TensorType("int64", (x.ndim,))()])

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = np.asarray(inputs[0].shape, dtype="int64")

    def infer_shape(self, fgraph, node, input_shapes):
        return [(node.inputs[0].ndim,)]

    def grad(self, inputs, output_grads):
        return [None]

    def R_op(self, inputs, eval_points):
        return [None]


class Shape_i(Op):  # noqa: N801 (Theano's name)
    """The size of dim ``i`` of its input, as an int64 scalar."""

    __props__ = ("i",)

    def __init__(self, i: int):
        self.i = int(i)

    def make_node(self, x):
        x = as_tensor_variable(x)
        if not 0 <= self.i < x.ndim:
            raise ValueError(f"Shape_i({self.i}) of the {x.ndim}-d {x}")
        return Apply(self, [x], [TensorType("int64", ())()])

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = np.asarray(inputs[0].shape[self.i], dtype="int64")

    def infer_shape(self, fgraph, node, input_shapes):
        return [()]

    def grad(self, inputs, output_grads):
        return [None]

    def R_op(self, inputs, eval_points):
        return [None]


def shape(x):
    """The symbolic shape of ``x`` (an int64 vector; ``shape(x)[i]`` is one size)."""
    return Shape()(as_tensor_variable(x))


def shape_tuple(x) -> tuple:
    """The shape of ``x`` as a tuple of Python ints (static) or int64 scalars."""
    x = as_tensor_variable(x)
    return tuple(s if s is not None else Shape_i(i)(x) for i, s in enumerate(x.type.shape))


def size(x):
    """The number of elements of ``x``, as an int64 scalar."""
    from flowc.tensor import math

    out = constant(np.int64(1))
    for s in shape_tuple(x):
        out = math.mul(out, s)
    return out


class SpecifyShape(Op):
    """Asserts a static shape: ``shape`` gives a size per dim, None keeps the input's."""

    __props__ = ("shape",)
    view_map = {0: [0]}

    def __init__(self, shape):
        self.shape = tuple(None if s is None else int(s) for s in shape)

    def make_node(self, x):
        x = as_tensor_variable(x)
        if len(self.shape) != x.ndim:
            raise ValueError(f"specify_shape{self.shape} of the {x.ndim}-d {x}")
        out = []
        for axis, (want, have) in enumerate(zip(self.shape, x.type.shape, strict=True)):
            if want is not None and have is not None and want != have:
                raise ValueError(f"{x} has static size {have} in dim {axis}, not {want}")
            out.append(have if want is None else want)
        return Apply(self, [x], [TensorType(x.dtype, out)()])

    def perform(self, node, inputs, output_storage):
        (x,) = inputs
        for axis, want in enumerate(self.shape):
            if want is not None and x.shape[axis] != want:
                raise ValueError(f"specify_shape: expected shape {self.shape}, got {x.shape}")
        output_storage[0][0] = x

    def infer_shape(self, fgraph, node, input_shapes):
        (shp,) = input_shapes
        return [tuple(s if w is None else w for s, w in zip(shp, self.shape, strict=True))]

    def grad(self, inputs, output_grads):
        return [output_grads[0]]

    def R_op(self, inputs, eval_points):
        return [None if eval_points[0] is None else self(eval_points[0])]


def specify_shape(x, shape):
    """``x`` with the static sizes in ``shape`` (None: unchanged), checked at run time."""
    x = as_tensor_variable(x)
    shape = tuple(shape)
    if all(w is None or w == s for w, s in zip(shape, x.type.shape, strict=True)):
        return x
    return SpecifyShape(shape)(x)


def _as_size(s, what="size"):
    """A dim size: a Python int stays an int, anything else an int64 scalar variable."""
    if isinstance(s, (int, np.integer)):
        if s < 0:
            raise ValueError(f"{what} {s} is negative")
        return int(s)
    s = as_tensor_variable(s)
    if s.ndim != 0 or s.dtype not in DISCRETE_DTYPES:
        raise TypeError(f"{what} must be an integer scalar, got {s} of type {s.type}")
    if isinstance(s, Constant):
        return int(s.data)
    from flowc.tensor import math

    return s if s.dtype == "int64" else math.cast(s, "int64")


class Alloc(Op):
    """An array of the given shape filled by broadcasting ``value`` into it."""

    def make_node(self, value, *shape):
        value = as_tensor_variable(value)
        sizes = [_as_size(s, "alloc size") for s in shape]
        if value.ndim > len(sizes):
            raise ValueError(f"alloc: value {value} has more dims than the shape {shape}")
        inputs = [value] + [
            as_tensor_variable(np.int64(s)) if isinstance(s, int) else s for s in sizes
        ]
        static = [s if isinstance(s, int) else None for s in sizes]
        for axis, v in enumerate(value.type.shape):
            full = static[axis + len(sizes) - value.ndim]
            if v is not None and v != 1 and full is not None and v != full:
                raise ValueError(
                    f"alloc: value of static shape {value.type.shape} does not "
                    f"broadcast to {tuple(static)}"
                )
        return Apply(self, inputs, [TensorType(value.dtype, static)()])

    def perform(self, node, inputs, output_storage):
        value, *shape = inputs
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ValueError(f"alloc: negative size in shape {shape}")
        lead = len(shape) - np.ndim(value)
        for axis, (static, size) in enumerate(
            zip(node.inputs[0].type.shape, np.shape(value), strict=True)
        ):
            if static != 1 and size != shape[lead + axis]:
                # Only static size-1 dims broadcast, so that the gradient knows what to sum.
                raise ValueError(
                    f"alloc: value of shape {np.shape(value)} does not match "
                    f"shape {shape} in dim {lead + axis} (only dims of static "
                    f"size 1 broadcast)"
                )
        try:
            out = np.empty(shape, dtype=node.outputs[0].dtype)
            out[...] = value
        except ValueError as exc:
            raise ValueError(
                f"alloc: value of shape {np.shape(value)} does not broadcast to shape {shape}"
            ) from exc
        output_storage[0][0] = out

    def infer_shape(self, fgraph, node, input_shapes):
        return [tuple(node.inputs[1:])]

    def grad(self, inputs, output_grads):
        value, *shape = inputs
        (gz,) = output_grads
        from flowc.tensor.elemwise import _sum_to_input

        return [_sum_to_input(gz, value)] + [None] * len(shape)

    def R_op(self, inputs, eval_points):
        if eval_points[0] is None:
            return [None]
        return [self(eval_points[0], *inputs[1:])]


def alloc(value, *shape):
    """An array of ``shape`` filled with ``value`` (broadcast), like ``np.full``."""
    if len(shape) == 1 and isinstance(shape[0], (list, tuple)):
        shape = tuple(shape[0])
    return Alloc()(value, *shape)


def _like_shape(x):
    x = as_tensor_variable(x)
    return x, shape_tuple(x)


def zeros_like(x, dtype=None):
    """Zeros of the shape (and by default the dtype) of ``x``."""
    x, shp = _like_shape(x)
    return alloc(np.zeros((), dtype or x.dtype), *shp)


def ones_like(x, dtype=None):
    """Ones of the shape (and by default the dtype) of ``x``."""
    x, shp = _like_shape(x)
    return alloc(np.ones((), dtype or x.dtype), *shp)


def fill(model, value):
    """``value`` broadcast to the shape of ``model`` (Theano's ``fill``)."""
    model, shp = _like_shape(model)
    value = as_tensor_variable(value)
    return alloc(value, *shp)


second = fill


def zeros(shape, dtype=None):
    """Zeros of ``shape`` (ints or int scalars) and ``dtype`` (default ``config.floatX``)."""
    from flowc.config import config

    if isinstance(shape, (int, np.integer, Variable)):
        shape = (shape,)
    return alloc(np.zeros((), dtype or config.floatX), *shape)


def ones(shape, dtype=None):
    """Ones of ``shape`` (ints or int scalars) and ``dtype`` (default ``config.floatX``)."""
    from flowc.config import config

    if isinstance(shape, (int, np.integer, Variable)):
        shape = (shape,)
    return alloc(np.ones((), dtype or config.floatX), *shape)


__all__ = [
    "Alloc",
    "Shape",
    "Shape_i",
    "SpecifyShape",
    "alloc",
    "fill",
    "ones",
    "ones_like",
    "second",
    "shape",
    "shape_tuple",
    "size",
    "specify_shape",
    "zeros",
    "zeros_like",
]
