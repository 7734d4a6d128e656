"""Indexing with NumPy's semantics: ``x[...]`` (basic and advanced), ``set_subtensor``,
``inc_subtensor`` and ``take``."""

from __future__ import annotations

import numbers

import numpy as np

from flowc.graph.basic import Apply, Constant, Op, Variable
from flowc.graph.type import DISCRETE_DTYPES, INT_DTYPES, TensorType
from flowc.tensor import math, reduction
from flowc.tensor.basic import Shape, Shape_i, zeros_like
from flowc.tensor.elemwise import _sum_to_input, broadcast_static_shape
from flowc.tensor.var import TensorConstant, as_tensor_variable, constant

# An op's ``idx_list`` is the static structure of an index, one entry per item:
#   int             a constant integer
#   SYM             a symbolic integer scalar, the op's next extra input
#   (start, stop, step)  a slice; each part is None, an int or SYM (an extra input)
#   None            np.newaxis
#   INT_ARRAY       an integer array, an extra input (advanced indexing only)
#   BOOL_ARRAY      a boolean array, an extra input (advanced indexing only)
# Ellipsis is expanded into full slices when the index is parsed; dims past the
# last entry are taken whole. With advanced indexing an int is a 0-d index array
# (NumPy's rule), so a symbolic int there is an INT_ARRAY of 0 dims.
SYM, INT_ARRAY, BOOL_ARRAY = "i", "a", "b"
_INPUT_ENTRIES = (SYM, INT_ARRAY, BOOL_ARRAY)


def _is_slice(e) -> bool:
    return isinstance(e, tuple)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _takes_input(e) -> bool:
    return isinstance(e, str)


def _check_idx_list(idx_list, advanced: bool) -> tuple:
    out = []
    for e in idx_list:
        if isinstance(e, (numbers.Integral, np.integer)) and not isinstance(e, (bool, np.bool_)):
            e = int(e)
        elif _is_slice(e):
            if len(e) != 3 or not all(p is None or p == SYM or _is_int(p) for p in e):
                raise TypeError(
                    f"slice entry {e!r} must be (start, stop, step) of None, int or {SYM!r}"
                )
            e = tuple(int(p) if _is_int(p) else p for p in e)
            if e[2] == 0:
                raise ValueError("slice step cannot be zero")
        elif e is not None and e not in _INPUT_ENTRIES:
            raise TypeError(f"invalid index entry {e!r}")
        if not advanced and e in (INT_ARRAY, BOOL_ARRAY):
            raise TypeError("an array index needs AdvancedSubtensor, not Subtensor")
        if advanced and e == SYM:
            e = INT_ARRAY  # among index arrays a symbolic int is a 0-d index array
        out.append(e)
    return tuple(out)


def _n_inputs(idx_list) -> int:
    return sum(sum(p == SYM for p in e) if _is_slice(e) else _takes_input(e) for e in idx_list)


def _resolve(idx_list, values) -> list:
    """Pair each entry with its value: slices as (start, stop, step) with inputs put in."""
    it = iter(values)
    out = []
    for e in idx_list:
        if _is_slice(e):
            out.append((e, tuple(next(it) if p == SYM else p for p in e)))
        elif _takes_input(e):
            out.append((e, next(it)))
        else:
            out.append((e, e))
    return out


def _numpy_index(idx_list, values) -> tuple:
    """The NumPy index for the run-time ``values`` of the extra inputs."""
    idx = []
    for e, v in _resolve(idx_list, values):
        if _is_slice(e):
            idx.append(slice(*(None if p is None else int(p) for p in v)))
        elif e == SYM:
            idx.append(int(v))
        else:
            idx.append(v)
    return tuple(idx)


def _idx_str(idx_list) -> str:
    def part(p):
        return "" if p is None else str(p)

    items = []
    for e in idx_list:
        if e is None:
            items.append("newaxis")
        elif _is_slice(e):
            s = f"{part(e[0])}:{part(e[1])}"
            items.append(s if e[2] is None else f"{s}:{part(e[2])}")
        elif e == INT_ARRAY:
            items.append("[int]")
        elif e == BOOL_ARRAY:
            items.append("[bool]")
        else:
            items.append(str(e))
    return ", ".join(items)


def _check_index_inputs(op, idx_list, index) -> list:
    """Check the extra inputs against ``idx_list``: integer scalars, index arrays."""
    if len(index) != _n_inputs(idx_list):
        raise TypeError(f"{op} takes {_n_inputs(idx_list)} index inputs, got {len(index)}")
    index = [as_tensor_variable(v) for v in index]
    kinds = [SYM] * len(index)
    k = 0
    for e in idx_list:
        n = sum(p == SYM for p in e) if _is_slice(e) else int(_takes_input(e))
        if not _is_slice(e) and n:
            kinds[k] = e
        k += n
    for v, kind in zip(index, kinds, strict=True):
        if kind == BOOL_ARRAY:
            if v.dtype != "bool" or v.ndim == 0:
                raise TypeError(
                    f"{op}: a boolean index must be a bool array of 1 or more "
                    f"dims, got {v} of type {v.type}"
                )
        elif kind == INT_ARRAY:
            if v.dtype not in INT_DTYPES:
                raise TypeError(
                    f"{op}: an index array must be of integer dtype, got {v} of type {v.type}"
                )
        elif v.ndim != 0 or v.dtype not in INT_DTYPES:
            raise TypeError(f"{op}: an index must be an integer scalar, got {v} of type {v.type}")
    return index


def _check_index(op, idx_list, x, index) -> None:
    """Build-time checks: the number of indexed dims, and constant indices against static
    sizes (an IndexError naming the dim and its size)."""
    resolved = _resolve(idx_list, index)
    used = sum(v.ndim if e == BOOL_ARRAY else 1 for e, v in resolved if e is not None)
    if used > x.ndim:
        raise IndexError(
            f"too many indices for the {x.ndim}-d {x}: the index {op} uses {used} dims"
        )
    dim = 0
    for e, v in resolved:
        if e is None:
            continue
        if e == BOOL_ARRAY:
            want = x.type.shape[dim : dim + v.ndim]
            if any(
                a is not None and b is not None and a != b
                for a, b in zip(v.type.shape, want, strict=True)
            ):
                raise IndexError(
                    f"{op}: a boolean index of static shape {v.type.shape} "
                    f"does not match dims {dim}..{dim + v.ndim - 1} of {x} "
                    f"(static shape {x.type.shape})"
                )
            dim += v.ndim
            continue
        n = x.type.shape[dim]
        if n is not None:
            bad = None
            if _is_int(e) and not -n <= e < n:
                bad = e
            elif e == INT_ARRAY and isinstance(v, Constant) and v.data.size:
                lo, hi = int(v.data.min()), int(v.data.max())
                bad = lo if lo < -n else hi if hi >= n else None
            if bad is not None:
                raise IndexError(f"index {bad} is out of bounds for dim {dim} of {x} (size {n})")
        dim += 1


# ------------------------------------------------------------------ output shapes


def _index_shape(idx_list, index, x_dims, advanced, slice_len, array_shape, broadcast) -> list:
    """The dims of ``x[index]``, from per-case rules (static sizes or symbolic ones).

    Advanced indices (arrays, and ints among arrays) broadcast together; their dims
    replace them in place if they are adjacent, else they go first (NumPy's rule).
    """
    out, arrays, positions, adv_at = [], [], [], None
    dim = 0
    for k, (e, v) in enumerate(_resolve(idx_list, index)):
        if e is None:
            out.append(1)
        elif _is_slice(e):
            out.append(slice_len(x_dims[dim], v))
            dim += 1
        elif not advanced:
            dim += 1  # an integer drops its dim
        else:
            positions.append(k)
            adv_at = len(out) if adv_at is None else adv_at
            arrays.append(() if _is_int(e) else array_shape(e, v))
            dim += v.ndim if e == BOOL_ARRAY else 1
    out.extend(x_dims[dim:])
    if arrays:
        if positions != list(range(positions[0], positions[0] + len(positions))):
            adv_at = 0
        out[adv_at:adv_at] = broadcast(arrays)
    return out


def _static_slice_len(n, parts):
    start, stop, step = parts
    if start is None and stop is None and step in (None, 1, -1):
        return n
    if n is None or any(isinstance(p, Variable) for p in parts):
        return None
    return len(range(*slice(start, stop, step).indices(n)))


def _static_array_shape(e, v):
    if e == INT_ARRAY:
        return v.type.shape
    nnz = int(np.count_nonzero(v.data)) if isinstance(v, Constant) else None
    return (nnz,)


def _static_broadcast(shapes):
    ndim = max(len(s) for s in shapes)
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
    try:
        return broadcast_static_shape(padded, "index arrays")
    except ValueError as exc:
        raise IndexError(f"shape mismatch: {exc}") from None


def _static_shape(idx_list, x, index, advanced) -> tuple:
    return tuple(
        _index_shape(
            idx_list,
            index,
            x.type.shape,
            advanced,
            _static_slice_len,
            _static_array_shape,
            _static_broadcast,
        )
    )


# Symbolic size arithmetic that stays in Python while every operand is an int, so
# the shape graphs of constant slices are constants.


def _int64(v):
    if _is_int(v):
        return v
    return v if v.dtype == "int64" else math.cast(v, "int64")


def _add(a, b):
    if _is_int(a) and _is_int(b):
        return a + b
    if _is_int(a) and a == 0:
        return b
    if _is_int(b) and b == 0:
        return a
    return math.add(a, b)


def _sub(a, b):
    return _add(a, -b if _is_int(b) else math.neg(b))


def _max(a, b):
    return max(a, b) if _is_int(a) and _is_int(b) else math.maximum(a, b)


def _min(a, b):
    return min(a, b) if _is_int(a) and _is_int(b) else math.minimum(a, b)


def _where(cond, a, b):
    if isinstance(cond, bool):
        return a if cond else b
    a, b = (constant(np.int64(v)) if _is_int(v) else v for v in (a, b))
    return math.switch(cond, a, b)


def _negative(v):
    return v < 0 if _is_int(v) else math.lt(v, 0)


def _clip_bound(i, n, lo, hi):
    """A slice bound ``i`` made non-negative and clipped to [lo, hi], as Python does."""
    return _where(_negative(i), _max(_add(i, n), lo), _min(i, hi))


def _signed_slice_len(n, start, stop, step, positive: bool):
    if positive:
        start = 0 if start is None else _clip_bound(start, n, 0, n)
        stop = n if stop is None else _clip_bound(stop, n, 0, n)
        span, k = _sub(stop, start), step
    else:
        last = _sub(n, 1)
        start = last if start is None else _clip_bound(start, n, -1, last)
        stop = -1 if stop is None else _clip_bound(stop, n, -1, last)
        span, k = _sub(start, stop), (-step if _is_int(step) else math.neg(step))
    span = _max(span, 0)
    if _is_int(k) and k == 1:
        return span
    steps = _add(span, _sub(k, 1))
    return steps // k if _is_int(steps) and _is_int(k) else math.int_div(steps, k)


def _symbolic_slice_len(n, parts):
    start, stop, step = (None if p is None else _int64(p) for p in parts)
    step = 1 if step is None else step
    if _is_int(step):
        return _signed_slice_len(n, start, stop, step, step > 0)
    return _where(
        math.gt(step, 0),
        _signed_slice_len(n, start, stop, step, True),
        _signed_slice_len(n, start, stop, step, False),
    )


def _symbolic_broadcast(shapes):
    ndim = max(len(s) for s in shapes)
    out = []
    for axis in range(ndim):
        size = 1
        for s in shapes:
            d = s[axis - ndim + len(s)] if axis - ndim + len(s) >= 0 else 1
            if _is_int(d) and d == 1:
                continue
            # Sizes agree or are 1 (NumPy checks at run time): take the first not 1.
            size = d if _is_int(size) and size == 1 else _where(math.eq(size, 1), d, size)
        out.append(size)
    return tuple(out)


def _symbolic_shape(idx_list, index, index_shapes, x_dims, advanced) -> tuple:
    shapes = dict(zip(index, index_shapes, strict=True))

    def array_shape(e, v):
        if e == INT_ARRAY:
            return tuple(shapes[v])
        return (reduction.sum(v, dtype="int64"),)

    return tuple(
        _index_shape(
            idx_list, index, x_dims, advanced, _symbolic_slice_len, array_shape, _symbolic_broadcast
        )
    )


def _indexed_shape(x, idx, advanced) -> tuple:
    """The shape of ``x[idx]`` without copying ``x``'s values."""
    if not advanced:
        return np.shape(x[idx])
    return np.broadcast_to(np.zeros((), "int8"), x.shape)[idx].shape


def _index_error(op, exc, x):
    return IndexError(f"{op}: {exc} (indexing an array of shape {np.shape(x)})")


# -------------------------------------------------------------------- the ops


class Subtensor(Op):
    """``x[idx]`` with basic indexing (ints, slices, newaxis): a view of ``x``.

    ``idx_list`` is the static structure of the index (see the top of this module);
    its symbolic parts are the extra inputs after ``x``.
    """

    __props__ = ("idx_list",)
    view_map = {0: [0]}
    advanced = False

    def __init__(self, idx_list):
        self.idx_list = _check_idx_list(idx_list, self.advanced)

    def __str__(self):
        return f"{type(self).__name__}{{{_idx_str(self.idx_list)}}}"

    __repr__ = __str__

    def make_node(self, x, *index):
        x = as_tensor_variable(x)
        index = _check_index_inputs(self, self.idx_list, index)
        _check_index(self, self.idx_list, x, index)
        shape = _static_shape(self.idx_list, x, index, self.advanced)
        return Apply(self, [x, *index], [TensorType(x.dtype, shape)()])

    def perform(self, node, inputs, output_storage):
        x, *index = inputs
        try:
            out = x[_numpy_index(self.idx_list, index)]
        except IndexError as exc:
            raise _index_error(self, exc, x) from None
        output_storage[0][0] = np.asarray(out)  # a 0-d result comes back as a NumPy scalar

    def infer_shape(self, fgraph, node, input_shapes):
        x_dims, *index_shapes = input_shapes
        return [
            _symbolic_shape(self.idx_list, node.inputs[1:], index_shapes, x_dims, self.advanced)
        ]

    def grad(self, inputs, output_grads):
        x, *index = inputs
        none = [None] * len(index)
        if x.dtype in DISCRETE_DTYPES:
            return [None, *none]
        # The gradient is scattered back into zeros, accumulating repeated indices.
        inc = (AdvancedIncSubtensor if self.advanced else IncSubtensor)(self.idx_list)
        return [inc(zeros_like(x), output_grads[0], *index), *none]

    def R_op(self, inputs, eval_points):
        return [None if eval_points[0] is None else self(eval_points[0], *inputs[1:])]


class AdvancedSubtensor(Subtensor):
    """``x[idx]`` with advanced indexing (integer or boolean arrays, NumPy's rules): a copy.

    Ints in ``idx_list`` act as 0-d index arrays. A boolean index makes a dim of
    unknown size.
    """

    view_map = {}
    advanced = True


def _python_number(y) -> bool:
    return isinstance(y, (bool, numbers.Number)) and not isinstance(y, np.generic)


def _as_value(y, dtype, what):
    """``y`` as a variable of ``dtype``: Python numbers are converted as NumPy would;
    a float or complex array into an integer (or real) array is refused."""
    if isinstance(y, TensorConstant) and y.weak:
        y = y.data.item()
    if _python_number(y):
        try:
            return constant(np.array(y, dtype=dtype))
        except (OverflowError, TypeError, ValueError) as exc:
            raise TypeError(f"{what}: the value {y!r} does not fit the dtype {dtype}") from exc
    y = as_tensor_variable(y)
    if y.dtype == dtype:
        return y
    src, dst = np.dtype(y.dtype).kind, np.dtype(dtype).kind
    if (src in "fc" and dst in "biu") or (src == "c" and dst == "f"):
        raise TypeError(
            f"{what}: cannot put values of dtype {y.dtype} ({y}) into an array of "
            f"dtype {dtype}; cast them first"
        )
    return math.cast(y, dtype)


def _check_value_shape(what, y, target) -> None:
    if y.ndim > len(target):
        raise ValueError(
            f"{what}: the value {y} has {y.ndim} dims, more than the "
            f"{len(target)} of the indexed region"
        )
    for axis, (have, want) in enumerate(zip(y.type.shape, target[len(target) - y.ndim :])):
        if have is not None and have != 1 and want is not None and have != want:
            raise ValueError(
                f"{what}: the value {y} of static shape {y.type.shape} does not "
                f"broadcast to the indexed region's static shape {target} "
                f"(dim {axis} of the value)"
            )


class IncSubtensor(Op):
    """A copy of ``x`` with ``y`` added to (or, with ``set_instead_of_inc``, put in) the
    region ``x[idx]`` of basic indexing.

    ``y`` broadcasts to the region where its static size is 1, and is cast to ``x``'s
    dtype. The inputs are never modified.
    """

    __props__ = ("idx_list", "set_instead_of_inc", "inplace")
    advanced = False

    def __init__(self, idx_list, set_instead_of_inc=False, inplace=False):
        self.idx_list = _check_idx_list(idx_list, self.advanced)
        self.set_instead_of_inc = bool(set_instead_of_inc)
        # Set only by the in-place step: then x's buffer is updated and returned.
        self.inplace = bool(inplace)
        self.destroy_map = {0: [0]} if self.inplace else {}

    def __str__(self):
        name = type(self).__name__
        if self.set_instead_of_inc:
            name = name.replace("Inc", "Set")
        suffix = "_inplace" if self.inplace else ""
        return f"{name}{{{_idx_str(self.idx_list)}}}{suffix}"

    __repr__ = __str__

    def make_node(self, x, y, *index):
        x = as_tensor_variable(x)
        index = _check_index_inputs(self, self.idx_list, index)
        _check_index(self, self.idx_list, x, index)
        y = _as_value(y, x.dtype, str(self))
        _check_value_shape(str(self), y, _static_shape(self.idx_list, x, index, self.advanced))
        return Apply(self, [x, y, *index], [x.type()])

    def perform(self, node, inputs, output_storage):
        x, y, *index = inputs
        idx = _numpy_index(self.idx_list, index)
        out = x if self.inplace and x.flags.writeable else x.copy()
        try:
            target = _indexed_shape(out, idx, self.advanced)
        except IndexError as exc:
            raise _index_error(self, exc, x) from None
        static = node.inputs[1].type.shape
        lead = len(target) - y.ndim
        for axis, n in enumerate(y.shape):
            # Runtime broadcasting of a dim not statically 1 would break the gradient.
            if static[axis] != 1 and n != target[lead + axis]:
                raise ValueError(
                    f"{self}: a value of shape {y.shape} does not fit the indexed "
                    f"region of shape {target}; a dim broadcasts only where its "
                    f"static size is 1"
                )
        if self.set_instead_of_inc:
            out[idx] = y
        elif self.advanced:
            np.add.at(out, idx, y)  # repeated indices accumulate
        else:
            out[idx] += y
        output_storage[0][0] = out

    def infer_shape(self, fgraph, node, input_shapes):
        return [input_shapes[0]]

    def grad(self, inputs, output_grads):
        x, y, *index = inputs
        (gz,) = output_grads
        gx = gy = None
        if x.dtype not in DISCRETE_DTYPES:
            if self.set_instead_of_inc:
                zero = constant(np.zeros((), dtype=gz.dtype))
                gx = type(self)(self.idx_list, True)(gz, zero, *index)
            else:
                gx = gz
        if y.dtype not in DISCRETE_DTYPES:
            sub = (AdvancedSubtensor if self.advanced else Subtensor)(self.idx_list)
            gy = _sum_to_input(sub(gz, *index), y)
        return [gx, gy] + [None] * len(index)

    def R_op(self, inputs, eval_points):
        x, y, *index = inputs
        ex, ey = eval_points[:2]
        if ex is None and ey is None:
            return [None]
        # Linear in (x, y) together.
        ex = zeros_like(x) if ex is None else ex
        ey = zeros_like(y) if ey is None else ey
        return [self(ex, ey, *index)]


class AdvancedIncSubtensor(IncSubtensor):
    """``IncSubtensor`` for advanced indexing: increments at repeated indices accumulate
    (``np.add.at``); with ``set_instead_of_inc`` the last one wins, as in NumPy."""

    advanced = True


# ------------------------------------------------------------------- functions


def _int_part(item, what):
    """A slice bound or step: None, a Python int, or an int64 scalar variable."""
    if item is None:
        return None
    if isinstance(item, (bool, np.bool_)):
        raise TypeError(f"{what} must be an integer, got the boolean {item!r}")
    if isinstance(item, numbers.Integral):
        return int(item)
    if isinstance(item, Variable):
        v = as_tensor_variable(item)
        if v.ndim != 0 or v.dtype not in INT_DTYPES:
            raise TypeError(f"{what} must be an integer scalar, got {v} of type {v.type}")
        if isinstance(v, Constant):
            return int(v.data)
        return _int64(v)
    raise TypeError(
        f"{what} must be an int, None or an integer scalar variable, got "
        f"{type(item).__name__} {item!r}"
    )


def _index_variable(item, what):
    """An index entry that is not a slice, None or Ellipsis: (entry, input or None)."""
    if isinstance(item, (bool, np.bool_)):
        raise TypeError(
            f"{what}: a boolean scalar index is not supported; index with an "
            f"integer, or with a boolean array"
        )
    if isinstance(item, numbers.Integral):
        return int(item), None
    if isinstance(item, Variable):
        v = as_tensor_variable(item)
    elif isinstance(item, (list, tuple, np.ndarray)):
        try:
            v = as_tensor_variable(item)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{what}: {item!r} is not a valid index array") from exc
        if isinstance(item, (list, tuple)) and v.type.shape and 0 in v.type.shape:
            v = constant(np.asarray(v.data, dtype="int64"))  # x[[]] indexes with no ints
    else:
        raise TypeError(
            f"{what}: {type(item).__name__} {item!r} is not a valid index; use "
            f"ints, slices, None, Ellipsis, or integer or boolean arrays"
        )
    if v.dtype == "bool":
        if v.ndim == 0:
            raise TypeError(
                f"{what}: a boolean scalar index is not supported; index with an "
                f"integer, or with a boolean array"
            )
        return BOOL_ARRAY, v
    if v.dtype not in INT_DTYPES:
        raise TypeError(f"{what}: indices must be integers or booleans, got {v} of dtype {v.dtype}")
    if v.ndim:
        return INT_ARRAY, v
    if isinstance(v, Constant):
        return int(v.data), None
    return SYM, _int64(v)


def _parse_index(x, index):
    """``(advanced, idx_list, inputs)`` for ``x[index]``."""
    if not isinstance(index, tuple):
        index = (index,)
    entries, inputs, ellipsis_at, used = [], [], None, 0
    for pos, item in enumerate(index):
        what = f"index entry {pos} of {x}"
        if item is Ellipsis:
            if ellipsis_at is not None:
                raise IndexError(f"{what}: an index can only have a single ellipsis ('...')")
            ellipsis_at = len(entries)
        elif item is None:
            entries.append(None)
        elif isinstance(item, slice):
            parts = [
                _int_part(p, f"{what}: slice {name}")
                for p, name in zip((item.start, item.stop, item.step), ("start", "stop", "step"))
            ]
            if parts[2] == 0:
                raise ValueError(f"{what}: slice step cannot be zero")
            entries.append(tuple(SYM if isinstance(p, Variable) else p for p in parts))
            inputs.extend(p for p in parts if isinstance(p, Variable))
            used += 1
        else:
            entry, v = _index_variable(item, what)
            entries.append(entry)
            if v is not None:
                inputs.append(v)
            used += v.ndim if entry == BOOL_ARRAY else 1
    if used > x.ndim:
        raise IndexError(f"too many indices for the {x.ndim}-d {x}: the index uses {used} dims")
    if ellipsis_at is not None:
        entries[ellipsis_at:ellipsis_at] = [(None, None, None)] * (x.ndim - used)
    advanced = any(e in (INT_ARRAY, BOOL_ARRAY) for e in entries if _takes_input(e))
    if advanced:
        entries = [INT_ARRAY if e == SYM else e for e in entries]
    return advanced, tuple(entries), inputs


def getitem(x, index):
    """``x[index]`` with NumPy's semantics (``TensorVariable.__getitem__``).

    Basic indexing (ints, slices, None, Ellipsis; symbolic ints allowed) gives a
    ``Subtensor``; integer or boolean arrays (and lists) give an ``AdvancedSubtensor``.
    """
    x = as_tensor_variable(x)
    advanced, idx_list, inputs = _parse_index(x, index)
    if advanced:
        return AdvancedSubtensor(idx_list)(x, *inputs)
    if (
        len(idx_list) == 1
        and _is_int(idx_list[0])
        and x.owner is not None
        and isinstance(x.owner.op, Shape)
    ):
        # x.shape[i]: one size, a constant where it is static.
        src = x.owner.inputs[0]
        i = idx_list[0]
        if not -src.ndim <= i < src.ndim:
            raise IndexError(f"index {i} is out of bounds for dim 0 of {x} (size {src.ndim})")
        i %= src.ndim
        static = src.type.shape[i]
        return constant(np.int64(static)) if static is not None else Shape_i(i)(src)
    return Subtensor(idx_list)(x, *inputs)


def _indexing_node(x, what):
    node = getattr(x, "owner", None)
    if not isinstance(x, Variable) or node is None or not isinstance(node.op, Subtensor):
        raise TypeError(
            f"{what}: the first argument must be the result of indexing, as in "
            f"{what}(x[1:], y); got {x!r}" + (f" computed by {node.op}" if node is not None else "")
        )
    return node


def inc_subtensor(x, y, set_instead_of_inc=False):
    """``base`` with ``y`` added to the region ``x = base[idx]`` (Theano's API).

    Repeated advanced indices accumulate, as ``np.add.at``. ``y`` broadcasts to the
    region (where its static size is 1) and is cast to ``base``'s dtype.
    """
    what = "set_subtensor" if set_instead_of_inc else "inc_subtensor"
    node = _indexing_node(x, what)
    base, *index = node.inputs
    cls = AdvancedIncSubtensor if node.op.advanced else IncSubtensor
    return cls(node.op.idx_list, set_instead_of_inc)(base, _as_value(y, base.dtype, what), *index)


def set_subtensor(x, y):
    """``base`` with ``y`` put in the region ``x = base[idx]`` (Theano's API).

    Like ``base[idx] = y`` on a copy; the gradient w.r.t. ``y`` assumes no repeated
    indices.
    """
    return inc_subtensor(x, y, set_instead_of_inc=True)


def take(a, indices, axis=None):
    """Elements of ``a`` at ``indices`` along ``axis`` (None: of ``a`` flattened), as
    ``np.take``."""
    a = as_tensor_variable(a)
    if not isinstance(indices, Variable):
        indices = np.asarray(indices)
        if indices.size == 0 and indices.dtype.kind not in "biu":
            indices = indices.astype("int64")
    indices = as_tensor_variable(indices)
    if indices.dtype == "bool":
        indices = math.cast(indices, "int64")  # np.take reads booleans as 0 and 1
    if indices.dtype not in INT_DTYPES:
        raise TypeError(f"take: indices must be integers, got {indices} of dtype {indices.dtype}")
    if axis is None:
        if a.ndim != 1:
            from flowc.tensor import shape_ops

            a = shape_ops.flatten(a, 1)
        return getitem(a, indices)
    (axis,) = reduction.normalize_axis(axis, a.ndim, "take: axis")
    return getitem(a, (slice(None),) * axis + (indices,))


__all__ = [
    "AdvancedIncSubtensor",
    "AdvancedSubtensor",
    "IncSubtensor",
    "Subtensor",
    "getitem",
    "inc_subtensor",
    "set_subtensor",
    "take",
]
