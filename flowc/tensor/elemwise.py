"""``Elemwise`` (a scalar function mapped over broadcast arrays) and ``DimShuffle``.

Broadcasting follows Theano and PyTensor: a dim broadcasts only where its static
size is 1 (``T.row``, ``dimshuffle('x', 0)``, a constant); two dims of unknown
size must agree at run time, and a mismatch raises a ValueError naming both shapes.
This keeps gradients free of run-time shape tests.
"""

from __future__ import annotations

import numpy as np

from flowc import scalar as ps
from flowc.graph.basic import Apply, Op
from flowc.graph.type import DISCRETE_DTYPES, TensorType, _fmt_shape
from flowc.tensor.var import TensorConstant, as_tensor_variable, constant


def broadcast_static_shape(shapes: list[tuple], what="inputs") -> tuple:
    """The static shape of broadcasting ``shapes`` (all of one ndim); None where unknown."""
    out = []
    for axis, dims in enumerate(zip(*shapes, strict=True)):
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ValueError(
                f"{what}: static shapes {[_fmt_shape(s) for s in shapes]} do not broadcast "
                f"(dim {axis} has sizes {sorted(known)})"
            )
        if known:
            out.append(known.pop())
        elif all(d == 1 for d in dims):
            out.append(1)
        else:
            out.append(None)
    return tuple(out)


class Elemwise(Op):
    """``scalar_op`` applied elementwise to inputs broadcast to a common shape.

    Inputs of fewer dims are padded on the left with broadcastable dims.
    ``inplace_pattern`` maps an output to an input it overwrites (set by the
    in-place pass, never by users).
    """

    __props__ = ("scalar_op", "inplace_pattern")

    def __init__(self, scalar_op: ps.ScalarOp, inplace_pattern=()):
        self.scalar_op = scalar_op
        self.inplace_pattern = tuple(inplace_pattern)
        self.destroy_map = {o: [i] for o, i in self.inplace_pattern}

    def __str__(self):
        s = str(self.scalar_op)
        return s if not self.inplace_pattern else f"{s}_inplace"

    def make_node(self, *inputs):
        nin = self.scalar_op.nin
        if nin != -1 and len(inputs) != nin:
            raise TypeError(f"{self.scalar_op} takes {nin} inputs, got {len(inputs)}")
        if nin == -1 and not inputs:
            raise TypeError(f"{self.scalar_op} needs at least one input")
        inputs = _promote([as_tensor_variable(x) for x in inputs], self.scalar_op)
        ndim = max(x.ndim for x in inputs)
        inputs = [
            x if x.ndim == ndim else dimshuffle(x, ("x",) * (ndim - x.ndim) + tuple(range(x.ndim)))
            for x in inputs
        ]
        shape = broadcast_static_shape([x.type.shape for x in inputs], str(self.scalar_op))
        dtype = self.scalar_op.output_dtype([x.dtype for x in inputs])
        return Apply(self, inputs, [TensorType(dtype, shape)()])

    def perform(self, node, inputs, output_storage):
        _check_runtime_broadcast(node, inputs)
        with np.errstate(all="ignore"):
            out = self.scalar_op.impl(*inputs)
        dtype = node.outputs[0].type.numpy_dtype
        out = np.asarray(out)
        if out.dtype != dtype:
            out = out.astype(dtype)
        if self.inplace_pattern:
            ((o, i),) = self.inplace_pattern
            target = inputs[i]
            if target.shape == out.shape and target.dtype == out.dtype:
                np.copyto(target, out)
                out = target
        output_storage[0][0] = out

    def infer_shape(self, fgraph, node, input_shapes):
        out = []
        for axis, static in enumerate(node.outputs[0].type.shape):
            if static is not None:
                out.append(static)
                continue
            # Every input of non-static size has the output's size along this axis.
            for x, shp in zip(node.inputs, input_shapes, strict=True):
                if x.type.shape[axis] != 1:
                    out.append(shp[axis])
                    break
            else:
                out.append(1)  # unreachable: all-broadcastable dims are static
        return [tuple(out)]

    def grad(self, inputs, output_grads):
        (gz,) = output_grads
        out = self(*inputs)
        grads = self.scalar_op.grad(inputs, out, gz)
        return [_sum_to_input(g, x) for g, x in zip(grads, inputs, strict=True)]

    def R_op(self, inputs, eval_points):
        if self.scalar_op.linear:
            if any(v is None for v in eval_points):
                from flowc.tensor.basic import zeros_like

                eval_points = [
                    zeros_like(x) if v is None else v
                    for x, v in zip(inputs, eval_points, strict=True)
                ]
            return [self(*eval_points)]
        # J v = sum_i f_i'(x) * v_i: the elementwise gradient rule with gz = v_i.
        out = self(*inputs)
        total = None
        for i, v in enumerate(eval_points):
            if v is None:
                continue
            term = self.scalar_op.grad(inputs, out, v)[i]
            if term is None:
                continue
            total = term if total is None else total + term
        if total is None:
            return [None]
        from flowc.tensor import math

        return [math.cast(total, out.dtype) if total.dtype != out.dtype else total]


def _promote(inputs, scalar_op=None):
    """Give Python-number constants the dtype NumPy 2 would (they are "weak").

    A number that does not fit the other operands' dtype is an error, unless NumPy
    accepts it for ``scalar_op`` (``uint8_array < -3`` is all False, ``/ -3`` is float).
    """
    strong = [x for x in inputs if not (isinstance(x, TensorConstant) and x.weak)]
    if not strong or len(strong) == len(inputs):
        return inputs
    strong_dtypes = [x.dtype for x in strong]
    out = []
    for x in inputs:
        if isinstance(x, TensorConstant) and x.weak:
            value = x.data.item()
            try:
                dtype = np.result_type(value, *strong_dtypes).name
                try:
                    x = constant(np.asarray(value, dtype=dtype))
                except OverflowError:
                    if not _numpy_accepts(scalar_op, inputs, x):
                        raise
                    x = constant(np.asarray(value))
            except OverflowError as exc:
                raise TypeError(
                    f"the Python number {value!r} does not fit the dtypes "
                    f"{strong_dtypes} it is combined with"
                ) from exc
            x.weak = True
        out.append(x)
    return out


def _numpy_accepts(scalar_op, inputs, weak) -> bool:
    """Whether NumPy computes ``scalar_op`` with the Python number of ``weak`` as it is."""
    if scalar_op is None:
        return False
    args = [weak.data.item() if x is weak else np.zeros(1, x.dtype) for x in inputs]
    try:
        with np.errstate(all="ignore"):
            scalar_op.impl(*args)
    except (OverflowError, TypeError, ValueError):
        return False
    return True


def _check_runtime_broadcast(node, inputs):
    out_shape = node.outputs[0].type.shape
    if len(inputs) < 2:
        return
    for axis in range(len(out_shape)):
        sizes = {
            v.shape[axis]
            for x, v in zip(node.inputs, inputs, strict=True)
            if x.type.shape[axis] != 1
        }
        if len(sizes) > 1 or (
            sizes and out_shape[axis] is not None and out_shape[axis] not in sizes
        ):
            shapes = [v.shape for v in inputs]
            raise ValueError(
                f"{node.op}: input shapes {shapes} disagree along dim {axis}; a dim "
                f"broadcasts only where its static size is 1 (use a row/col type, "
                f"dimshuffle('x', ...) or addbroadcast)"
            )
        if not sizes:
            for v in inputs:
                if v.shape[axis] != 1:
                    raise ValueError(
                        f"{node.op}: dim {axis} was declared of size 1 but has "
                        f"shapes {[w.shape for w in inputs]}"
                    )


def _sum_to_input(g, x):
    """The gradient ``g`` as ``x``'s: summed over the leading dims ``x`` lacks and the dims
    it was broadcast along (static 1), in ``x``'s dtype and static shape; None for an
    integer ``x``."""
    if g is None:
        return None
    if x.dtype in DISCRETE_DTYPES:
        return None
    from flowc.tensor import math, reduction

    g = as_tensor_variable(g)
    if g.ndim > x.ndim:
        g = reduction.sum(g, axis=tuple(range(g.ndim - x.ndim)))
    axes = tuple(
        a
        for a, (xb, gb) in enumerate(zip(x.broadcastable, g.broadcastable, strict=True))
        if xb and not gb
    )
    if axes:
        g = reduction.sum(g, axis=axes, keepdims=True)
    if g.dtype != x.dtype:
        g = math.cast(g, x.dtype)
    if g.type == x.type or x.type.is_super(g.type):
        return g
    from flowc.tensor.basic import specify_shape

    return specify_shape(g, x.type.shape)


class DimShuffle(Op):
    """Permute dims, drop broadcastable ones and insert new ones ('x').

    ``pattern`` lists input axes in output order, with 'x' for a new size-1 dim;
    input dims not listed are dropped and must be of static size 1.
    """

    __props__ = ("input_ndim", "pattern")
    view_map = {0: [0]}

    def __init__(self, input_ndim: int, pattern):
        pattern = tuple(p if p == "x" else int(p) for p in pattern)
        axes = [p for p in pattern if p != "x"]
        if len(set(axes)) != len(axes):
            raise ValueError(f"dimshuffle pattern {pattern} repeats an axis")
        if any(not 0 <= a < input_ndim for a in axes):
            raise ValueError(f"dimshuffle pattern {pattern} is out of range for ndim {input_ndim}")
        self.input_ndim = input_ndim
        self.pattern = pattern
        self.drop = tuple(a for a in range(input_ndim) if a not in axes)
        self.shuffle = tuple(axes)

    def __str__(self):
        return f"DimShuffle{{{','.join(map(str, self.pattern))}}}"

    def make_node(self, x):
        x = as_tensor_variable(x)
        if x.ndim != self.input_ndim:
            raise TypeError(f"{self} expects a {self.input_ndim}-d input, got {x.ndim}-d {x}")
        for a in self.drop:
            if x.type.shape[a] != 1:
                raise ValueError(
                    f"dimshuffle{self.pattern} drops dim {a} of {x}, which is not of "
                    f"static size 1 (its type is {x.type})"
                )
        shape = tuple(1 if p == "x" else x.type.shape[p] for p in self.pattern)
        return Apply(self, [x], [TensorType(x.dtype, shape)()])

    def perform(self, node, inputs, output_storage):
        (x,) = inputs
        if any(x.shape[a] != 1 for a in self.drop):
            raise ValueError(f"{self}: dropped dims of {x.shape} are not of size 1")
        y = np.transpose(x, self.shuffle + self.drop).reshape(
            tuple(1 if p == "x" else x.shape[p] for p in self.pattern)
        )
        output_storage[0][0] = y

    def infer_shape(self, fgraph, node, input_shapes):
        (shp,) = input_shapes
        return [tuple(1 if p == "x" else shp[p] for p in self.pattern)]

    def grad(self, inputs, output_grads):
        (x,) = inputs
        (gz,) = output_grads
        if x.dtype in DISCRETE_DTYPES:
            return [None]
        # Undo: drop the inserted dims, put the kept axes back, re-insert dropped ones.
        from flowc.tensor.basic import specify_shape

        kept = [p for p in self.pattern if p != "x"]
        gz = specify_shape(gz, tuple(1 if p == "x" else None for p in self.pattern))
        g = dimshuffle(gz, [i for i, p in enumerate(self.pattern) if p != "x"])
        back = [kept.index(a) if a in kept else "x" for a in range(self.input_ndim)]
        return [dimshuffle(g, back)]

    def R_op(self, inputs, eval_points):
        return [None if eval_points[0] is None else self(eval_points[0])]


def dimshuffle(x, pattern):
    """``x`` with its dims rearranged by Theano's pattern, e.g. ``('x', 1, 0)``."""
    x = as_tensor_variable(x)
    pattern = tuple(pattern)
    if pattern == tuple(range(x.ndim)):
        return x
    return DimShuffle(x.ndim, pattern)(x)


__all__ = ["DimShuffle", "Elemwise", "broadcast_static_shape", "dimshuffle"]
