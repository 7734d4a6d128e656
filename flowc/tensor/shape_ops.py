"""Shape ops with Theano's names and NumPy's semantics: reshape, flatten, transpose,
join, stack, split, tile, repeat, flip, broadcast_to, arange, eye, squeeze, expand_dims."""

from __future__ import annotations

import numbers

import numpy as np

from flowc import scalar as ps
from flowc.graph.basic import Apply, Constant, Op, Variable
from flowc.graph.type import DISCRETE_DTYPES, FLOAT_DTYPES, INT_DTYPES, TensorType, upcast
from flowc.tensor import math, reduction
from flowc.tensor.basic import (
    Shape,
    SpecifyShape,
    alloc,
    shape_tuple,
    specify_shape,
    zeros_like,
)
from flowc.tensor.basic import shape as shape_of
from flowc.tensor.elemwise import DimShuffle, Elemwise, _promote, dimshuffle
from flowc.tensor.var import TensorConstant, as_tensor_variable, constant

# ------------------------------------------------------------------ helpers


def _is_int(v) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def _static_int(s):
    """The value of the 0-d integer variable ``s`` when it is known at build time, else None."""
    if isinstance(s, Constant) and s.type.ndim == 0:
        return int(s.data)
    node = s.owner
    if (
        node is not None
        and isinstance(node.op, Elemwise)
        and isinstance(node.op.scalar_op, ps.Cast)
        and _widens(node.inputs[0].dtype, s.dtype)
    ):
        return _static_int(node.inputs[0])
    return None


def _widens(src: str, dst: str) -> bool:
    """True when casting integers of ``src`` to ``dst`` keeps every value."""
    return src in INT_DTYPES and dst in INT_DTYPES and np.can_cast(src, dst, "safe")


def _int_scalar(s, what: str, allow_negative=False):
    """``s`` as a Python int (when known) or an int64 0-d variable; refuses anything else."""
    if isinstance(s, np.ndarray) and s.ndim == 0 and s.dtype.name in INT_DTYPES:
        s = s.item()
    if _is_int(s):
        s = int(s)
        if s < 0 and not allow_negative:
            raise ValueError(f"{what} must be non-negative, got {s}")
        return s
    if not isinstance(s, Variable):
        raise TypeError(f"{what} must be an int or an integer scalar variable, got {s!r}")
    s = as_tensor_variable(s)
    if s.ndim != 0 or s.dtype not in INT_DTYPES:
        raise TypeError(f"{what} must be an integer scalar, got {s} of type {s.type}")
    value = _static_int(s)
    if value is not None:
        return _int_scalar(value, what, allow_negative)
    return s if s.dtype == "int64" else math.cast(s, "int64")


def _int_entries_vector(entries):
    """An int64 vector of ``entries`` (ints and int64 scalars): a constant when all are ints."""
    if all(isinstance(e, int) for e in entries):
        return constant(np.asarray(entries, dtype="int64").reshape(len(entries)))
    return stack([constant(np.int64(e)) if isinstance(e, int) else e for e in entries])


def _int_vector(v, what: str, length=None):
    """The symbolic vector ``v`` as int64, of static ``length`` when it is given.

    A vector whose length is unknown gets it asserted (checked at run time).
    """
    v = as_tensor_variable(v)
    if v.ndim != 1 or v.dtype not in INT_DTYPES:
        raise TypeError(f"{what} must be an integer vector, got {v} of type {v.type}")
    n = v.type.shape[0]
    if length is not None:
        if n is not None and n != length:
            raise ValueError(f"{what} has {n} entries, expected {length}")
        if n is None:
            v = specify_shape(v, (length,))
    elif n is None:
        raise ValueError(f"the length of {what} {v} is not known at build time; pass ndim")
    return v if v.dtype == "int64" else math.cast(v, "int64")


def vector_entries(v, build: bool):
    """The entries of the int vector ``v``: per entry an int if known at build time, else
    (``build``) a 0-d int64 variable or (not ``build``) None. None if the length is unknown.

    Looks through the graphs that ``stack``, ``concatenate`` and ``shape`` make, so that
    ``reshape(x, (n, 3))`` knows its second dim; other vectors are read one entry at a time.
    """
    if isinstance(v, Constant):
        return [int(e) for e in v.data]
    node = v.owner
    if node is not None:
        op = node.op
        if isinstance(op, Shape):
            y = node.inputs[0]
            return list(shape_tuple(y)) if build else list(y.type.shape)
        if isinstance(op, Join) and op.axis == 0:
            parts = [vector_entries(i, build) for i in node.inputs]
            if all(p is not None for p in parts):
                return [e for p in parts for e in p]
        if isinstance(op, DimShuffle) and op.pattern == ("x",):
            s = node.inputs[0]
            value = _static_int(s) if s.dtype in INT_DTYPES else None
            if value is not None or not build:
                return [value]
            return [s if s.dtype == "int64" else math.cast(s, "int64")]
        if isinstance(op, SpecifyShape) or (
            isinstance(op, Elemwise) and isinstance(op.scalar_op, ps.Cast)
        ):
            inner = node.inputs[0]
            if _widens(inner.dtype, v.dtype):
                parts = vector_entries(inner, build)
                if parts is not None:
                    return [
                        p if isinstance(p, int) or p is None else math.cast(p, "int64")
                        for p in parts
                    ]
    n = v.type.shape[0]
    if n is None:
        return None
    if not build:
        return [None] * n
    # Entry i as a dot with a one-hot constant: no dependence on indexing ops.
    eye_n = np.eye(n, dtype="int64")
    vec = v if v.dtype == "int64" else math.cast(v, "int64")
    return [reduction.sum(vec * constant(eye_n[i])) for i in range(n)]


def _prod(dims):
    """The product of ``dims`` (ints and int64 scalars): an int when all are ints."""
    out, sym = 1, None
    for d in dims:
        if isinstance(d, int):
            out *= d
        else:
            sym = d if sym is None else sym * d
    if sym is None:
        return out
    return sym if out == 1 else sym * out


def _sum(dims):
    """The sum of ``dims`` (ints and int64 scalars): an int when all are ints."""
    out, sym = 0, None
    for d in dims:
        if isinstance(d, int):
            out += d
        else:
            sym = d if sym is None else sym + d
    if sym is None:
        return out
    return sym if out == 0 else sym + out


def _axis(axis, ndim: int, what="axis") -> int:
    """One axis in ``[-ndim, ndim)`` as a non-negative int."""
    if not _is_int(axis):
        raise TypeError(f"{what} must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{what} {axis} is out of range for {ndim} dims")
    return int(axis) % ndim


def _shape_arg(shape, what: str, ndim=None, allow_minus_one=False):
    """A shape given as an int, a tuple/list of ints and int scalars, or an int vector,
    as an int64 vector of static length (``ndim`` is needed if that is not known)."""
    if isinstance(shape, np.ndarray) and shape.ndim <= 1:
        shape = shape.tolist() if shape.dtype.name in INT_DTYPES else shape
    if _is_int(shape) or (isinstance(shape, Variable) and shape.ndim == 0):
        shape = (shape,)
    if isinstance(shape, Variable):
        return _int_vector(shape, f"{what} shape", ndim)
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"{what}: shape must be a tuple of ints or an int vector, got {shape!r}")
    if ndim is not None and ndim != len(shape):
        raise ValueError(f"{what}: shape {tuple(shape)} has {len(shape)} entries but ndim={ndim}")
    entries = [_int_scalar(s, f"{what} shape entry", allow_negative=True) for s in shape]
    _check_entries([e if isinstance(e, int) else None for e in entries], what, allow_minus_one)
    return _int_entries_vector(entries)


def _check_entries(entries, what: str, allow_minus_one: bool) -> None:
    low = -1 if allow_minus_one else 0
    for e in entries:
        if e is not None and e < low:
            raise ValueError(
                f"{what}: invalid size {e} in shape "
                f"{tuple('?' if s is None else s for s in entries)}"
                + (" (only -1 may be negative)" if allow_minus_one else "")
            )
    if sum(e == -1 for e in entries) > 1:
        raise ValueError(
            f"{what}: only one -1 is allowed in the shape, got "
            f"{tuple('?' if s is None else s for s in entries)}"
        )


# ------------------------------------------------------------------ reshape


class Reshape(Op):
    """``x`` with the ``ndim`` sizes in the int vector ``shape`` (one may be -1), as NumPy."""

    __props__ = ("ndim",)
    view_map = {0: [0]}

    def __init__(self, ndim: int):
        self.ndim = int(ndim)

    def make_node(self, x, shape):
        x = as_tensor_variable(x)
        shape = as_tensor_variable(shape)
        if shape.ndim != 1 or shape.dtype not in INT_DTYPES:
            raise TypeError(f"reshape: shape must be an integer vector, got {shape.type}")
        if shape.type.shape[0] not in (None, self.ndim):
            raise ValueError(
                f"reshape: shape {shape} has {shape.type.shape[0]} entries, "
                f"expected ndim={self.ndim}"
            )
        entries = vector_entries(shape, build=False) or [None] * self.ndim
        static = _static_reshape(x.type.shape, entries)
        return Apply(self, [x, shape], [TensorType(x.dtype, static)()])

    def perform(self, node, inputs, output_storage):
        x, shape = inputs
        if len(shape) != self.ndim:
            raise ValueError(f"reshape: got a shape of {len(shape)} entries, expected {self.ndim}")
        shape = tuple(int(s) for s in shape)
        _check_entries(shape, "reshape", allow_minus_one=True)
        try:
            out = np.reshape(x, shape)
        except ValueError as exc:
            raise ValueError(
                f"reshape: cannot reshape an array of shape {x.shape} "
                f"({x.size} elements) into shape {shape}"
            ) from exc
        output_storage[0][0] = out

    def infer_shape(self, fgraph, node, input_shapes):
        xshp, _ = input_shapes
        static = node.outputs[0].type.shape
        if all(s is not None for s in static):
            return [static]
        entries = vector_entries(node.inputs[1], build=True)
        size = _prod(xshp)
        if -1 in entries:
            # The -1 entry holds what the others leave of the size.
            k = entries.index(-1)
            dims = list(entries)
            dims[k] = size // _prod(entries[:k] + entries[k + 1 :])
        else:
            # A symbolic entry may still be -1 at run time: then the product of all
            # entries is minus that of the others.
            total = _prod(entries)
            dims = [
                e if isinstance(e, int) else math.switch(math.eq(e, -1), size // (-total), e)
                for e in entries
            ]
        return [tuple(s if s is not None else d for s, d in zip(static, dims, strict=True))]

    def grad(self, inputs, output_grads):
        x, shape = inputs
        if x.dtype in DISCRETE_DTYPES:
            return [None, None]
        return [reshape(output_grads[0], shape_of(x), ndim=x.ndim), None]

    def R_op(self, inputs, eval_points):
        if eval_points[0] is None:
            return [None]
        return [self(eval_points[0], inputs[1])]


def _static_reshape(in_shape, entries) -> tuple:
    """The static output shape of reshaping ``in_shape`` to ``entries`` (ints or None)."""
    _check_entries(entries, "reshape", allow_minus_one=True)
    out = [e if e is None or e >= 0 else None for e in entries]
    known_in = all(s is not None for s in in_shape)
    if not known_in or any(e is None for e in entries):
        return tuple(out)
    total = int(np.prod(in_shape, dtype="int64"))
    if -1 in entries:
        k = entries.index(-1)
        rest = int(np.prod([e for i, e in enumerate(entries) if i != k], dtype="int64"))
        if rest == 0 or total % rest:
            raise ValueError(
                f"reshape: cannot reshape {in_shape} ({total} elements) into shape {tuple(entries)}"
            )
        out[k] = total // rest
    elif int(np.prod(entries, dtype="int64")) != total:
        raise ValueError(
            f"reshape: cannot reshape {in_shape} ({total} elements) into shape "
            f"{tuple(entries)} ({int(np.prod(entries, dtype='int64'))} elements)"
        )
    return tuple(out)


def reshape(x, shape, ndim=None):
    """``x`` reshaped to ``shape``: a tuple of ints and int scalars or an int vector
    (``ndim`` is then needed unless its length is static); one entry may be -1.

    >>> import numpy as np, flowc.tensor as T
    >>> x, n = T.dmatrix('x'), T.lscalar('n')
    >>> reshape(x, (n, 3)).type.shape
    (None, 3)
    >>> reshape(x, (2, -1)).eval({x: np.ones((3, 4))}).shape
    (2, 6)
    """
    x = as_tensor_variable(x)
    vec = _shape_arg(shape, "reshape", ndim, allow_minus_one=True)
    return Reshape(vec.type.shape[0])(x, vec)


def flatten(x, ndim=1):
    """``x`` with its first ``ndim - 1`` dims kept and the rest flattened into one."""
    x = as_tensor_variable(x)
    if not _is_int(ndim) or ndim < 1 or ndim > max(x.ndim, 1):
        raise ValueError(
            f"flatten: ndim must be an int in [1, {max(x.ndim, 1)}] for the "
            f"{x.ndim}-d {x}, got {ndim!r}"
        )
    if ndim == x.ndim:
        return x
    dims = shape_tuple(x)
    # The product rather than -1: NumPy cannot infer -1 next to a 0 size.
    return reshape(x, (*dims[: ndim - 1], _prod(dims[ndim - 1 :])))


# ------------------------------------------------------------------ dimshuffle helpers


def transpose(x, axes=None):
    """``x`` with its axes permuted (reversed by default), as ``np.transpose``."""
    x = as_tensor_variable(x)
    if axes is None:
        return dimshuffle(x, tuple(range(x.ndim))[::-1])
    axes = tuple(_axis(a, x.ndim, "transpose axis") for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(
            f"transpose: axes {axes} are not a permutation of the {x.ndim} dims of {x}"
        )
    return dimshuffle(x, axes)


def shape_padleft(x, n_ones=1):
    """``x`` with ``n_ones`` broadcastable dims added on the left."""
    x = as_tensor_variable(x)
    if not _is_int(n_ones) or n_ones < 0:
        raise ValueError(f"shape_padleft: n_ones must be a non-negative int, got {n_ones!r}")
    return dimshuffle(x, ("x",) * n_ones + tuple(range(x.ndim)))


def shape_padright(x, n_ones=1):
    """``x`` with ``n_ones`` broadcastable dims added on the right."""
    x = as_tensor_variable(x)
    if not _is_int(n_ones) or n_ones < 0:
        raise ValueError(f"shape_padright: n_ones must be a non-negative int, got {n_ones!r}")
    return dimshuffle(x, tuple(range(x.ndim)) + ("x",) * n_ones)


def shape_padaxis(x, axis):
    """``x`` with a broadcastable dim inserted at ``axis`` (in ``[-ndim-1, ndim]``)."""
    x = as_tensor_variable(x)
    axis = _axis(axis, x.ndim + 1, "shape_padaxis axis")
    pattern = list(range(x.ndim))
    pattern.insert(axis, "x")
    return dimshuffle(x, pattern)


def expand_dims(x, axis):
    """``x`` with broadcastable dims at ``axis`` (an int or a tuple), as ``np.expand_dims``."""
    x = as_tensor_variable(x)
    axes = (axis,) if not isinstance(axis, (tuple, list)) else tuple(axis)
    out_ndim = x.ndim + len(axes)
    axes = reduction.normalize_axis(axes, out_ndim, "expand_dims axis")
    dims = iter(range(x.ndim))
    return dimshuffle(x, ["x" if a in axes else next(dims) for a in range(out_ndim)])


def squeeze(x, axis=None):
    """``x`` without size-1 dims: all static-1 dims, or those of ``axis``, which must be 1
    (checked at run time where the size is not static)."""
    x = as_tensor_variable(x)
    if axis is None:
        return dimshuffle(x, [a for a, s in enumerate(x.type.shape) if s != 1])
    axes = reduction.normalize_axis(axis, x.ndim, "squeeze axis")
    for a in axes:
        size = x.type.shape[a]
        if size is not None and size != 1:
            raise ValueError(
                f"squeeze: cannot squeeze axis {a} of {x}: its size is {size}, "
                f"not 1 (type {x.type})"
            )
    x = specify_shape(x, tuple(1 if a in axes else None for a in range(x.ndim)))
    return dimshuffle(x, [a for a in range(x.ndim) if a not in axes])


def addbroadcast(x, *axes):
    """``x`` with the dims ``axes`` made broadcastable (static size 1, checked at run time)."""
    x = as_tensor_variable(x)
    axes = {_axis(a, x.ndim, "addbroadcast axis") for a in axes}
    for a in sorted(axes):
        if x.type.shape[a] not in (None, 1):
            raise ValueError(
                f"addbroadcast: dim {a} of {x} has static size "
                f"{x.type.shape[a]}; only a size-1 dim can be broadcastable"
            )
    return specify_shape(x, tuple(1 if a in axes else None for a in range(x.ndim)))


class Unbroadcast(Op):
    """``x`` with the static size-1 dims in ``axes`` made of unknown size (not broadcastable)."""

    __props__ = ("axes",)
    view_map = {0: [0]}

    def __init__(self, axes):
        self.axes = tuple(sorted(set(int(a) for a in axes)))

    def make_node(self, x):
        x = as_tensor_variable(x)
        if any(not 0 <= a < x.ndim for a in self.axes):
            raise ValueError(f"unbroadcast: axes {self.axes} out of range for the {x.ndim}-d {x}")
        shape = tuple(
            None if (a in self.axes and s == 1) else s for a, s in enumerate(x.type.shape)
        )
        return Apply(self, [x], [TensorType(x.dtype, shape)()])

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = inputs[0]

    def infer_shape(self, fgraph, node, input_shapes):
        return [input_shapes[0]]

    def grad(self, inputs, output_grads):
        (x,) = inputs
        if x.dtype in DISCRETE_DTYPES:
            return [None]
        # Back to the input's type: the gradient of a size-1 dim has size 1.
        return [
            specify_shape(
                output_grads[0],
                tuple(
                    1 if (a in self.axes and s == 1) else None for a, s in enumerate(x.type.shape)
                ),
            )
        ]

    def R_op(self, inputs, eval_points):
        return [None if eval_points[0] is None else self(eval_points[0])]


def unbroadcast(x, *axes):
    """``x`` with the dims ``axes`` no longer broadcastable (of unknown static size)."""
    x = as_tensor_variable(x)
    axes = {_axis(a, x.ndim, "unbroadcast axis") for a in axes}
    axes = {a for a in axes if x.type.shape[a] == 1}
    return Unbroadcast(axes)(x) if axes else x


def patternbroadcast(x, broadcastable):
    """``x`` with the broadcastable pattern ``broadcastable`` (a bool per dim)."""
    x = as_tensor_variable(x)
    broadcastable = tuple(bool(b) for b in broadcastable)
    if len(broadcastable) != x.ndim:
        raise ValueError(
            f"patternbroadcast: pattern {broadcastable} has {len(broadcastable)} "
            f"entries, {x} has {x.ndim} dims"
        )
    x = addbroadcast(x, *[a for a, b in enumerate(broadcastable) if b])
    return unbroadcast(x, *[a for a, b in enumerate(broadcastable) if not b])


# ------------------------------------------------------------------ join / split


class Join(Op):
    """The inputs (of one ndim) concatenated along ``axis``; dtypes promote as in NumPy."""

    __props__ = ("axis",)

    def __init__(self, axis: int):
        self.axis = int(axis)

    def make_node(self, *tensors):
        if not tensors:
            raise ValueError("join: needs at least one tensor")
        tensors = [as_tensor_variable(t) for t in tensors]
        ndims = [t.ndim for t in tensors]
        if len(set(ndims)) != 1:
            raise ValueError(
                f"join: all tensors must have the same number of dims, got ndims {ndims}"
            )
        ndim = ndims[0]
        if ndim == 0:
            raise ValueError("join: cannot join 0-d tensors (use stack)")
        if not 0 <= self.axis < ndim:
            raise ValueError(f"join: axis {self.axis} is out of range for {ndim} dims")
        shape = []
        for d in range(ndim):
            sizes = [t.type.shape[d] for t in tensors]
            if d == self.axis:
                shape.append(None if None in sizes else sum(sizes))
                continue
            known = {s for s in sizes if s is not None}
            if len(known) > 1:
                raise ValueError(
                    f"join: the tensors' sizes must agree outside axis {self.axis}, but dim "
                    f"{d} has static sizes {sorted(known)} (types {[t.type for t in tensors]})"
                )
            shape.append(known.pop() if known else None)
        dtype = upcast(*[t.dtype for t in tensors])
        return Apply(self, tensors, [TensorType(dtype, shape)()])

    def perform(self, node, inputs, output_storage):
        ref = inputs[0].shape
        for v in inputs:
            if any(v.shape[d] != ref[d] for d in range(len(ref)) if d != self.axis):
                raise ValueError(
                    f"join: the input shapes {[v.shape for v in inputs]} differ "
                    f"outside axis {self.axis}"
                )
        out = np.concatenate(inputs, axis=self.axis)
        output_storage[0][0] = np.asarray(out, dtype=node.outputs[0].dtype)

    def infer_shape(self, fgraph, node, input_shapes):
        out = []
        for d, static in enumerate(node.outputs[0].type.shape):
            if static is not None:
                out.append(static)
            elif d == self.axis:
                out.append(_sum([shp[d] for shp in input_shapes]))
            else:
                out.append(input_shapes[0][d])
        return [tuple(out)]

    def grad(self, inputs, output_grads):
        (gz,) = output_grads
        sizes = _int_entries_vector([shape_tuple(t)[self.axis] for t in inputs])
        parts = Split(len(inputs), self.axis).make_node(gz, sizes).outputs
        return [
            None if t.dtype in DISCRETE_DTYPES else p for t, p in zip(inputs, parts, strict=True)
        ]

    def R_op(self, inputs, eval_points):
        if all(v is None for v in eval_points):
            return [None]
        return [
            self(
                *[
                    zeros_like(x) if v is None else v
                    for x, v in zip(inputs, eval_points, strict=True)
                ]
            )
        ]


def join(axis, *tensors):
    """``tensors`` concatenated along ``axis`` (negative counts from the end)."""
    if not tensors:
        raise ValueError("join: needs at least one tensor")
    tensors = [as_tensor_variable(t) for t in tensors]
    if len(tensors) == 1:
        return tensors[0]
    ndims = [t.ndim for t in tensors]
    if len(set(ndims)) != 1:
        raise ValueError(f"join: all tensors must have the same number of dims, got ndims {ndims}")
    if ndims[0] == 0:
        raise ValueError("join: cannot join 0-d tensors (use stack)")
    return Join(_axis(axis, ndims[0], "join axis"))(*tensors)


def concatenate(tensor_list, axis=0):
    """``tensor_list`` joined along ``axis``, as ``np.concatenate``."""
    if not isinstance(tensor_list, (list, tuple)):
        raise TypeError(
            f"concatenate: expected a list or tuple of tensors, got {type(tensor_list).__name__}"
        )
    return join(axis, *tensor_list)


def stack(tensors, axis=0):
    """``tensors`` (of one shape) stacked along a new ``axis``, as ``np.stack``.

    Python numbers take the dtype of the other tensors, as in elementwise ops.
    """
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"stack: expected a list or tuple of tensors, got {type(tensors).__name__}")
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    tensors = _promote([as_tensor_variable(t) for t in tensors])
    ndims = [t.ndim for t in tensors]
    if len(set(ndims)) != 1:
        raise ValueError(f"stack: all tensors must have the same number of dims, got ndims {ndims}")
    axis = _axis(axis, ndims[0] + 1, "stack axis")
    return join(axis, *[shape_padaxis(t, axis) for t in tensors])


class Split(Op):
    """``x`` cut along ``axis`` into ``n_splits`` pieces of the sizes in an int vector."""

    __props__ = ("n_splits", "axis")

    def __init__(self, n_splits: int, axis: int):
        self.n_splits = int(n_splits)
        self.axis = int(axis)
        self.view_map = {i: [0] for i in range(self.n_splits)}

    def make_node(self, x, sizes):
        x = as_tensor_variable(x)
        sizes = as_tensor_variable(sizes)
        if x.ndim == 0 or not 0 <= self.axis < x.ndim:
            raise ValueError(f"split: axis {self.axis} is out of range for the {x.ndim}-d {x}")
        if sizes.ndim != 1 or sizes.dtype not in INT_DTYPES:
            raise TypeError(f"split: sizes must be an integer vector, got {sizes.type}")
        if sizes.type.shape[0] not in (None, self.n_splits):
            raise ValueError(f"split: {sizes.type.shape[0]} sizes given for {self.n_splits} splits")
        entries = vector_entries(sizes, build=False) or [None] * self.n_splits
        _check_entries(entries, "split", allow_minus_one=False)
        total = x.type.shape[self.axis]
        if total is not None and None not in entries and sum(entries) != total:
            raise ValueError(
                f"split: the sizes {entries} sum to {sum(entries)}, but axis "
                f"{self.axis} of {x} has size {total}"
            )
        outs = []
        for e in entries:
            shape = list(x.type.shape)
            shape[self.axis] = e
            outs.append(TensorType(x.dtype, shape)())
        return Apply(self, [x, sizes], outs)

    def perform(self, node, inputs, output_storage):
        x, sizes = inputs
        sizes = [int(s) for s in sizes]
        if len(sizes) != self.n_splits:
            raise ValueError(f"split: got {len(sizes)} sizes for {self.n_splits} splits")
        if any(s < 0 for s in sizes):
            raise ValueError(f"split: sizes must be non-negative, got {sizes}")
        if sum(sizes) != x.shape[self.axis]:
            raise ValueError(
                f"split: the sizes {sizes} sum to {sum(sizes)}, but axis "
                f"{self.axis} of the input (shape {x.shape}) has size "
                f"{x.shape[self.axis]}"
            )
        parts = np.split(x, np.cumsum(sizes)[:-1], axis=self.axis)
        for store, part in zip(output_storage, parts, strict=True):
            store[0] = part

    def infer_shape(self, fgraph, node, input_shapes):
        xshp, _ = input_shapes
        entries = vector_entries(node.inputs[1], build=True)
        out = []
        for o, e in zip(node.outputs, entries, strict=True):
            shp = list(xshp)
            static = o.type.shape[self.axis]
            shp[self.axis] = static if static is not None else e
            out.append(tuple(shp))
        return out

    def grad(self, inputs, output_grads):
        x, sizes = inputs
        if x.dtype in DISCRETE_DTYPES:
            return [None, None]
        outs = self.make_node(x, sizes).outputs
        gs = [zeros_like(o) if g is None else g for o, g in zip(outs, output_grads, strict=True)]
        return [join(self.axis, *gs), None]

    def R_op(self, inputs, eval_points):
        if eval_points[0] is None:
            return [None] * self.n_splits
        return list(self.make_node(eval_points[0], inputs[1]).outputs)


def split(x, splits_size, n_splits, axis=0):
    """``x`` cut along ``axis`` into ``n_splits`` pieces of sizes ``splits_size`` (a list of
    ints and int scalars, or an int vector); returns a list (Theano's signature)."""
    x = as_tensor_variable(x)
    if x.ndim == 0:
        raise ValueError(f"split: cannot split the 0-d {x}")
    axis = _axis(axis, x.ndim, "split axis")
    if not _is_int(n_splits) or n_splits < 1:
        raise ValueError(f"split: n_splits must be a positive int, got {n_splits!r}")
    if isinstance(splits_size, (tuple, list)) and len(splits_size) != n_splits:
        raise ValueError(f"split: {len(splits_size)} sizes given for {n_splits} splits")
    sizes = _shape_arg(splits_size, "split", n_splits)
    return list(Split(n_splits, axis).make_node(x, sizes).outputs)


# ------------------------------------------------------------------ flip, tile, broadcast_to


class Flip(Op):
    """``x`` with the order of its elements reversed along ``axis`` (a tuple)."""

    __props__ = ("axis",)
    view_map = {0: [0]}

    def __init__(self, axis):
        self.axis = tuple(int(a) for a in axis)

    def make_node(self, x):
        x = as_tensor_variable(x)
        if any(not 0 <= a < x.ndim for a in self.axis):
            raise ValueError(f"flip: axis {self.axis} out of range for the {x.ndim}-d {x}")
        return Apply(self, [x], [x.type()])

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = np.flip(inputs[0], self.axis)

    def infer_shape(self, fgraph, node, input_shapes):
        return [input_shapes[0]]

    def grad(self, inputs, output_grads):
        return [None if inputs[0].dtype in DISCRETE_DTYPES else self(output_grads[0])]

    def R_op(self, inputs, eval_points):
        return [None if eval_points[0] is None else self(eval_points[0])]


def flip(x, axis=None):
    """``x`` reversed along ``axis`` (None: every axis), as ``np.flip``."""
    x = as_tensor_variable(x)
    axes = reduction.normalize_axis(axis, x.ndim, "flip axis")
    return Flip(axes)(x) if axes else x


def _sizes_arg(sizes, what: str, ndim=None) -> list:
    """Non-negative sizes given as an int, a tuple of ints and int scalars, or an int vector
    (of static length, or ``ndim``), as a list of ints and int64 scalars."""
    if isinstance(sizes, Variable) and sizes.ndim == 1:
        return vector_entries(_int_vector(sizes, what, ndim), build=True)
    if not isinstance(sizes, (tuple, list)):
        sizes = (sizes,)
    if ndim is not None and len(sizes) != ndim:
        raise ValueError(f"{what} {tuple(sizes)} has {len(sizes)} entries but ndim={ndim}")
    return [_int_scalar(s, f"{what} entry") for s in sizes]


def tile(x, reps, ndim=None):
    """``x`` repeated ``reps`` times along each dim, as ``np.tile``: ``reps`` is an int, a
    tuple of ints and int scalars, or an int vector (of static length, or give ``ndim``)."""
    x = as_tensor_variable(x)
    reps = _sizes_arg(reps, "tile reps", ndim)
    d = max(x.ndim, len(reps))
    reps = [1] * (d - len(reps)) + reps
    x = shape_padleft(x, d - x.ndim)
    if all(isinstance(r, int) and r == 1 for r in reps):
        return x
    dims = shape_tuple(x)
    # Broadcast x of shape (s0, s1, ..) into (r0, s0, r1, s1, ..), then merge pairs of dims.
    pattern = [p for a in range(d) for p in ("x", a)]
    big = alloc(dimshuffle(x, pattern), *[v for r, s in zip(reps, dims) for v in (r, s)])
    return reshape(big, [_prod([r, s]) for r, s in zip(reps, dims)])


def broadcast_to(x, shape):
    """``x`` broadcast to ``shape``, as ``np.broadcast_to`` (a copy, not a view).

    As in elementwise ops, only static size-1 dims of ``x`` broadcast.
    """
    x = as_tensor_variable(x)
    sizes = _sizes_arg(shape, "broadcast_to")
    if len(sizes) < x.ndim:
        raise ValueError(
            f"broadcast_to: cannot broadcast the {x.ndim}-d {x} to the "
            f"{len(sizes)}-d shape {tuple(sizes)}"
        )
    lead = len(sizes) - x.ndim
    want = []
    for a, s in enumerate(x.type.shape):
        target = sizes[lead + a]
        if s is not None and s != 1 and isinstance(target, int) and s != target:
            raise ValueError(
                f"broadcast_to: {x} of static shape {x.type.shape} does not "
                f"broadcast to {tuple(sizes)} (dim {a})"
            )
        # A dim that is not static 1 must already have the target size.
        want.append(target if (s is None and isinstance(target, int)) else None)
    x = specify_shape(x, tuple(want))
    return alloc(x, *sizes)


# ------------------------------------------------------------------ repeat


class Repeat(Op):
    """Each element of ``x`` repeated along ``axis``: ``repeats`` is an int64 scalar, or a
    vector with one count per element along ``axis``."""

    __props__ = ("axis",)

    def __init__(self, axis: int):
        self.axis = int(axis)

    def make_node(self, x, repeats):
        x = as_tensor_variable(x)
        repeats = as_tensor_variable(repeats)
        if not 0 <= self.axis < x.ndim:
            raise ValueError(f"repeat: axis {self.axis} is out of range for the {x.ndim}-d {x}")
        if repeats.ndim > 1 or repeats.dtype not in INT_DTYPES:
            raise TypeError(
                f"repeat: repeats must be an integer scalar or vector, got {repeats.type}"
            )
        n = x.type.shape[self.axis]
        size = None
        if repeats.ndim == 1:
            length = repeats.type.shape[0]
            if n is not None and length is not None and length != n:
                raise ValueError(
                    f"repeat: {length} repeats for axis {self.axis} of {x}, which has size {n}"
                )
            if isinstance(repeats, Constant):
                _check_entries(list(repeats.data), "repeat", allow_minus_one=False)
                size = int(repeats.data.sum())
        else:
            r = _static_int(repeats)
            if r is not None:
                _check_entries([r], "repeat", allow_minus_one=False)
                size = None if n is None else n * r
        shape = list(x.type.shape)
        shape[self.axis] = size
        return Apply(self, [x, repeats], [TensorType(x.dtype, shape)()])

    def perform(self, node, inputs, output_storage):
        x, repeats = inputs
        if np.any(repeats < 0):
            raise ValueError(f"repeat: repeats must be non-negative, got {repeats}")
        if repeats.ndim == 1 and len(repeats) != x.shape[self.axis]:
            raise ValueError(
                f"repeat: {len(repeats)} repeats for axis {self.axis} of an "
                f"array of shape {x.shape}"
            )
        output_storage[0][0] = np.repeat(x, repeats, axis=self.axis)

    def infer_shape(self, fgraph, node, input_shapes):
        xshp, _ = input_shapes
        repeats = node.inputs[1]
        shp = list(xshp)
        static = node.outputs[0].type.shape[self.axis]
        if static is not None:
            shp[self.axis] = static
        elif repeats.ndim == 0:
            shp[self.axis] = _prod([xshp[self.axis], repeats])
        else:
            shp[self.axis] = reduction.sum(repeats)
        return [tuple(shp)]

    def grad(self, inputs, output_grads):
        x, repeats = inputs
        (gz,) = output_grads
        if x.dtype in DISCRETE_DTYPES:
            return [None, None]
        dims = list(shape_tuple(x))
        if repeats.ndim == 0:
            # Each input element owns a block of `repeats` consecutive outputs.
            split_dims = dims[: self.axis] + [dims[self.axis], repeats] + dims[self.axis + 1 :]
            return [reduction.sum(reshape(gz, split_dims), axis=self.axis + 1), None]
        return [RepeatGrad(self.axis)(gz, repeats, dims[self.axis]), None]


class RepeatGrad(Op):
    """The adjoint of ``Repeat`` with vector repeats: sums each run of ``repeats[i]``
    elements along ``axis`` of ``gz`` into one, giving ``n`` elements."""

    __props__ = ("axis",)

    def __init__(self, axis: int):
        self.axis = int(axis)

    def make_node(self, gz, repeats, n):
        gz = as_tensor_variable(gz)
        repeats = as_tensor_variable(repeats)
        n = _int_scalar(n, "repeat grad size")
        n = constant(np.int64(n)) if isinstance(n, int) else n
        shape = list(gz.type.shape)
        shape[self.axis] = _static_int(n)
        return Apply(self, [gz, repeats, n], [TensorType(gz.dtype, shape)()])

    def perform(self, node, inputs, output_storage):
        gz, repeats, n = inputs
        moved = np.moveaxis(gz, self.axis, 0)
        out = np.zeros((int(n),) + moved.shape[1:], dtype=gz.dtype)
        # reduceat sums runs starting at the given offsets; empty runs stay zero.
        nonempty = repeats > 0
        if np.any(nonempty):
            starts = (np.cumsum(repeats) - repeats)[nonempty]
            out[nonempty] = np.add.reduceat(moved, starts, axis=0)
        output_storage[0][0] = np.ascontiguousarray(np.moveaxis(out, 0, self.axis))

    def infer_shape(self, fgraph, node, input_shapes):
        shp = list(input_shapes[0])
        shp[self.axis] = node.inputs[2]
        return [tuple(shp)]

    def grad(self, inputs, output_grads):
        gz, repeats, n = inputs
        return [Repeat(self.axis)(output_grads[0], repeats), None, None]


def repeat(x, repeats, axis=None):
    """Each element of ``x`` repeated ``repeats`` times along ``axis`` (None: of the
    flattened ``x``), as ``np.repeat``; ``repeats`` is an int or an int vector."""
    x = as_tensor_variable(x)
    if axis is None:
        x, axis = flatten(x, 1), 0
    else:
        axis = _axis(axis, x.ndim, "repeat axis")
    if isinstance(repeats, (list, tuple, np.ndarray)):
        repeats = np.asarray(repeats)
        if repeats.dtype.name not in INT_DTYPES or repeats.ndim > 1:
            raise TypeError(
                f"repeat: repeats must be an int or a 1-d list of ints, got {repeats!r}"
            )
        repeats = constant(repeats.astype("int64"))
    elif not isinstance(repeats, Variable):
        repeats = _int_scalar(repeats, "repeat repeats")
        repeats = constant(np.int64(repeats))
    repeats = as_tensor_variable(repeats)
    if repeats.ndim > 1 or repeats.dtype not in INT_DTYPES:
        raise TypeError(f"repeat: repeats must be an integer scalar or vector, got {repeats.type}")
    if repeats.dtype != "int64":
        repeats = math.cast(repeats, "int64")
    if repeats.ndim == 1 and repeats.type.shape[0] == 1 and x.type.shape[axis] != 1:
        # One count for every element, as NumPy broadcasts it.
        repeats = reshape(repeats, ())
    return Repeat(axis)(x, repeats)


# ------------------------------------------------------------------ arange, eye


class ARange(Op):
    """``np.arange(start, stop, step)`` of ``dtype`` from three scalars."""

    __props__ = ("dtype",)

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype).name

    def make_node(self, start, stop, step):
        start, stop, step = (as_tensor_variable(v) for v in (start, stop, step))
        for name, v in (("start", start), ("stop", stop), ("step", step)):
            if v.ndim != 0 or v.dtype not in INT_DTYPES | FLOAT_DTYPES:
                raise TypeError(f"arange: {name} must be a real scalar, got {v} of type {v.type}")
        length = None
        if all(isinstance(v, Constant) for v in (start, stop, step)):
            if step.data == 0:
                raise ValueError("arange: step must not be zero")
            length = len(np.arange(start.data.item(), stop.data.item(), step.data.item()))
        return Apply(self, [start, stop, step], [TensorType(self.dtype, (length,))()])

    def perform(self, node, inputs, output_storage):
        start, stop, step = (v.item() for v in inputs)
        if step == 0:
            raise ValueError("arange: step must not be zero")
        output_storage[0][0] = np.arange(start, stop, step, dtype=self.dtype)

    def infer_shape(self, fgraph, node, input_shapes):
        static = node.outputs[0].type.shape[0]
        if static is not None:
            return [(static,)]
        start, stop, step = (math.cast(v, "float64") for v in node.inputs)
        # NumPy's length: ceil((stop - start) / step) computed in doubles, at least 0.
        n = math.cast(math.ceil((stop - start) / step), "int64")
        return [(math.maximum(n, 0),)]

    def grad(self, inputs, output_grads):
        start, stop, step = inputs
        (gz,) = output_grads
        if self.dtype not in FLOAT_DTYPES:
            return [None, None, None]
        # out[i] = start + i * step; the length does not change under small moves.
        n = shape_tuple(self(start, stop, step))[0]
        index = math.cast(arange(n), gz.dtype)
        grads = [reduction.sum(gz), zeros_like(stop), reduction.sum(gz * index)]
        return [
            None if v.dtype in DISCRETE_DTYPES else g for v, g in zip(inputs, grads, strict=True)
        ]


def _arange_dtype(values) -> str:
    """NumPy's dtype for ``np.arange`` of these scalars (Python numbers are weak)."""
    samples = []
    for v, sample in zip(values, (0, 1, 1), strict=True):
        if isinstance(v, TensorConstant) and v.weak:
            samples.append(type(v.data.item())(sample))
        else:
            samples.append(np.asarray(sample, dtype=v.dtype))
    return np.arange(*samples).dtype.name


def arange(start, stop=None, step=1, dtype=None):
    """Evenly spaced values in ``[start, stop)``, as ``np.arange`` (bounds may be symbolic
    scalars; the dtype follows NumPy's rules unless given)."""
    if stop is None:
        start, stop = 0, start
    values = [as_tensor_variable(v) for v in (start, stop, step)]
    for name, v in zip(("start", "stop", "step"), values, strict=True):
        if v.ndim != 0 or v.dtype not in INT_DTYPES | FLOAT_DTYPES:
            raise TypeError(f"arange: {name} must be a real scalar, got {v} of type {v.type}")
    if dtype is None:
        dtype = _arange_dtype(values)
    return ARange(dtype)(*values)


class Eye(Op):
    """An ``n`` by ``m`` array of ``dtype`` with ones on diagonal ``k``, as ``np.eye``."""

    __props__ = ("dtype",)

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype).name

    def make_node(self, n, m, k):
        n, m, k = (as_tensor_variable(v) for v in (n, m, k))
        for name, v in (("n", n), ("m", m), ("k", k)):
            if v.ndim != 0 or v.dtype not in INT_DTYPES:
                raise TypeError(f"eye: {name} must be an integer scalar, got {v.type}")
        shape = (_static_int(n), _static_int(m))
        return Apply(self, [n, m, k], [TensorType(self.dtype, shape)()])

    def perform(self, node, inputs, output_storage):
        n, m, k = (int(v) for v in inputs)
        if n < 0 or m < 0:
            raise ValueError(f"eye: sizes must be non-negative, got n={n}, m={m}")
        output_storage[0][0] = np.eye(n, m, k, dtype=self.dtype)

    def infer_shape(self, fgraph, node, input_shapes):
        n, m, _ = node.inputs
        return [
            tuple(
                s if s is not None else v
                for s, v in zip(node.outputs[0].type.shape, (n, m), strict=True)
            )
        ]

    def grad(self, inputs, output_grads):
        return [None, None, None]


def eye(n, m=None, k=0, dtype=None):
    """The ``n`` by ``m`` (default ``n``) identity, shifted to diagonal ``k``; ``n``, ``m``
    may be symbolic int scalars. ``dtype`` defaults to ``config.floatX``."""
    from flowc.config import config

    n = _int_scalar(n, "eye n")
    m = n if m is None else _int_scalar(m, "eye m")
    k = _int_scalar(k, "eye k", allow_negative=True)
    args = [constant(np.int64(v)) if isinstance(v, int) else v for v in (n, m, k)]
    return Eye(dtype or config.floatX)(*args)


def identity_like(x, dtype=None):
    """The identity of the shape of the matrix ``x``, of ``x``'s dtype by default."""
    x = as_tensor_variable(x)
    if x.ndim != 2:
        raise ValueError(f"identity_like: {x} is {x.ndim}-d, not a matrix")
    rows, cols = shape_tuple(x)
    return eye(rows, cols, dtype=dtype or x.dtype)


__all__ = [
    "ARange",
    "Eye",
    "Flip",
    "Join",
    "Repeat",
    "RepeatGrad",
    "Reshape",
    "Split",
    "Unbroadcast",
    "addbroadcast",
    "arange",
    "broadcast_to",
    "concatenate",
    "expand_dims",
    "eye",
    "flatten",
    "flip",
    "identity_like",
    "join",
    "patternbroadcast",
    "repeat",
    "reshape",
    "shape_padaxis",
    "shape_padleft",
    "shape_padright",
    "split",
    "squeeze",
    "stack",
    "tile",
    "transpose",
    "unbroadcast",
]
