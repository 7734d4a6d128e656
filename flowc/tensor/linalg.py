"""Products of tensors: ``dot``, ``matmul`` (``@``), ``tensordot``, ``batched_dot``, ``outer``.

``Dot`` covers vectors and matrices (BLAS through ``np.dot``); ``MatMul`` stacks of
matrices; ``TensorDot`` contractions over any axes. Gradients are products again.
"""

from __future__ import annotations

import numbers

import numpy as np

from flowc.graph.basic import Apply, Op
from flowc.graph.type import TensorType
from flowc.tensor.elemwise import _sum_to_input, broadcast_static_shape, dimshuffle
from flowc.tensor.var import as_tensor_variable


def _fmt(shape) -> str:
    return (
        "("
        + ", ".join("?" if s is None else str(s) for s in shape)
        + ("," if len(shape) == 1 else "")
        + ")"
    )


def _result_dtype(a, b) -> str:
    return np.result_type(a.dtype, b.dtype).name


def _add_terms(terms):
    terms = [t for t in terms if t is not None]
    if not terms:
        return None
    from flowc.tensor import math

    return terms[0] if len(terms) == 1 else math.add(*terms)


def _swap_last(x):
    """``x`` with its last two axes exchanged (the transpose of each matrix of a stack)."""
    nd = x.ndim
    return dimshuffle(x, (*range(nd - 2), nd - 1, nd - 2))


def _outer_vectors(x, y):
    return dimshuffle(x, (0, "x")) * dimshuffle(y, ("x", 0))


class _Bilinear(Op):
    """A product of its two inputs, linear in each: ``R_op`` is the product rule."""

    def R_op(self, inputs, eval_points):
        a, b = inputs
        va, vb = eval_points
        return [
            _add_terms([None if va is None else self(va, b), None if vb is None else self(a, vb)])
        ]


class Dot(_Bilinear):
    """``np.dot`` of two vectors or matrices: inner product, matrix-vector or matrix product.

    Both inputs are 1-d or 2-d; ``dot()`` sends scalars to ``mul`` and higher ranks to
    ``TensorDot``. The output dtype is NumPy's result type of the inputs.
    """

    __props__ = ()

    def make_node(self, a, b):
        a, b = as_tensor_variable(a), as_tensor_variable(b)
        for name, x in (("a", a), ("b", b)):
            if x.ndim not in (1, 2):
                raise TypeError(
                    f"Dot: input {name} must be 1-d or 2-d, got the {x.ndim}-d {x} "
                    f"(use flowc.tensor.dot, which handles every rank)"
                )
        inner_a, inner_b = a.type.shape[-1], b.type.shape[0]
        if inner_a is not None and inner_b is not None and inner_a != inner_b:
            raise ValueError(
                f"dot: the inner dims do not match: a has static shape {_fmt(a.type.shape)} "
                f"(last dim {inner_a}) and b has {_fmt(b.type.shape)} (first dim {inner_b})"
            )
        shape = a.type.shape[:-1] + b.type.shape[1:]
        return Apply(self, [a, b], [TensorType(_result_dtype(a, b), shape)()])

    def perform(self, node, inputs, output_storage):
        a, b = inputs
        if a.shape[-1] != b.shape[0]:
            raise ValueError(
                f"dot: shapes {a.shape} and {b.shape} are not aligned: dim {a.ndim - 1} of a "
                f"({a.shape[-1]}) != dim 0 of b ({b.shape[0]})"
            )
        output_storage[0][0] = np.asarray(np.dot(a, b), dtype=node.outputs[0].dtype)

    def infer_shape(self, fgraph, node, input_shapes):
        sa, sb = input_shapes
        return [tuple(sa[:-1]) + tuple(sb[1:])]

    def grad(self, inputs, output_grads):
        a, b = inputs
        (gz,) = output_grads
        if a.ndim == 1 and b.ndim == 1:  # z = sum_i a_i b_i
            ga, gb = gz * b, gz * a
        elif b.ndim == 1:  # z = A b
            ga, gb = _outer_vectors(gz, b), dot(a.T, gz)
        elif a.ndim == 1:  # z = a B
            ga, gb = dot(b, gz), _outer_vectors(a, gz)
        else:
            ga, gb = dot(gz, b.T), dot(a.T, gz)
        return [_sum_to_input(ga, a), _sum_to_input(gb, b)]


def dot(a, b):
    """``np.dot(a, b)``: scalars multiply, vectors and matrices take inner/matrix products,
    and an n-d ``a`` contracts its last axis with the second-to-last of ``b`` (or its only).

    >>> import flowc.tensor as T
    >>> x, y = T.dmatrix('x'), T.dvector('y')
    >>> T.dot(x, y).ndim
    1
    """
    a, b = as_tensor_variable(a), as_tensor_variable(b)
    if a.ndim == 0 or b.ndim == 0:
        from flowc.tensor import math

        return math.mul(a, b)
    if a.ndim <= 2 and b.ndim <= 2:
        return Dot()(a, b)
    return TensorDot((a.ndim - 1,), (max(b.ndim - 2, 0),))(a, b)


class MatMul(_Bilinear):
    """``np.matmul`` of stacks of matrices (both inputs at least 2-d).

    The leading (batch) dims broadcast where a static size is 1; an input of fewer dims
    is padded on the left with such dims. ``matmul()`` handles vectors and plain matrices.
    """

    __props__ = ()

    def make_node(self, a, b):
        a, b = as_tensor_variable(a), as_tensor_variable(b)
        for name, x in (("a", a), ("b", b)):
            if x.ndim < 2:
                raise TypeError(
                    f"MatMul: input {name} must be at least 2-d, got the "
                    f"{x.ndim}-d {x} (use flowc.tensor.matmul for vectors)"
                )
        nd = max(a.ndim, b.ndim)
        a = a if a.ndim == nd else dimshuffle(a, ("x",) * (nd - a.ndim) + tuple(range(a.ndim)))
        b = b if b.ndim == nd else dimshuffle(b, ("x",) * (nd - b.ndim) + tuple(range(b.ndim)))
        batch = broadcast_static_shape([a.type.shape[:-2], b.type.shape[:-2]], "matmul batch dims")
        inner_a, inner_b = a.type.shape[-1], b.type.shape[-2]
        if inner_a is not None and inner_b is not None and inner_a != inner_b:
            raise ValueError(
                f"matmul: the inner dims do not match: a has static shape "
                f"{_fmt(a.type.shape)} (last dim {inner_a}) and b has {_fmt(b.type.shape)} "
                f"(second-to-last dim {inner_b})"
            )
        shape = batch + (a.type.shape[-2], b.type.shape[-1])
        return Apply(self, [a, b], [TensorType(_result_dtype(a, b), shape)()])

    def perform(self, node, inputs, output_storage):
        a, b = inputs
        at, bt = node.inputs
        bad = a.shape[-1] != b.shape[-2]
        # NumPy would broadcast any run-time size 1; flowc only a static one.
        for axis in range(a.ndim - 2):
            if at.type.shape[axis] != 1 and bt.type.shape[axis] != 1:
                bad = bad or a.shape[axis] != b.shape[axis]
        if bad:
            raise ValueError(
                f"matmul: shapes {a.shape} and {b.shape} do not match (the last dim of a must "
                f"equal the second-to-last of b, and batch dims must be equal unless "
                f"declared of static size 1)"
            )
        output_storage[0][0] = np.asarray(np.matmul(a, b), dtype=node.outputs[0].dtype)

    def infer_shape(self, fgraph, node, input_shapes):
        sa, sb = input_shapes
        at, bt = node.inputs
        out = []
        for axis, static in enumerate(node.outputs[0].type.shape[:-2]):
            if static is not None:
                out.append(static)
            else:
                out.append(sb[axis] if at.type.shape[axis] == 1 else sa[axis])
        return [(*out, sa[-2], sb[-1])]

    def grad(self, inputs, output_grads):
        a, b = inputs
        (gz,) = output_grads
        ga = matmul(gz, _swap_last(b))
        gb = matmul(_swap_last(a), gz)
        return [_sum_to_input(ga, a), _sum_to_input(gb, b)]


def matmul(a, b):
    """``a @ b`` as ``np.matmul``: matrix products broadcast over leading dims; a 1-d ``a``
    is a row and a 1-d ``b`` a column, and that dim is removed from the result."""
    a, b = as_tensor_variable(a), as_tensor_variable(b)
    for name, x in (("a", a), ("b", b)):
        if x.ndim == 0:
            raise TypeError(f"matmul: input {name} ({x}) is 0-d; use * to multiply by a scalar")
    if a.ndim <= 2 and b.ndim <= 2:
        return Dot()(a, b)
    a_vec, b_vec = a.ndim == 1, b.ndim == 1
    if a_vec:
        a = dimshuffle(a, ("x", 0))
    if b_vec:
        b = dimshuffle(b, (0, "x"))
    out = MatMul()(a, b)
    nd = out.ndim
    if a_vec:
        out = dimshuffle(out, (*range(nd - 2), nd - 1))
    elif b_vec:
        out = dimshuffle(out, tuple(range(nd - 1)))
    return out


class TensorDot(_Bilinear):
    """``np.tensordot(a, b, (axes_a, axes_b))``: sum the products over paired axes.

    The output has the remaining axes of ``a`` then those of ``b``, each in order.
    ``axes_a`` and ``axes_b`` are tuples of non-negative ints of equal length.
    """

    __props__ = ("axes_a", "axes_b")

    def __init__(self, axes_a, axes_b):
        self.axes_a = tuple(int(i) for i in axes_a)
        self.axes_b = tuple(int(i) for i in axes_b)
        if len(self.axes_a) != len(self.axes_b):
            raise ValueError(f"TensorDot: axes {self.axes_a} and {self.axes_b} differ in length")

    def _free(self, a_ndim, b_ndim):
        return (
            [i for i in range(a_ndim) if i not in self.axes_a],
            [j for j in range(b_ndim) if j not in self.axes_b],
        )

    def make_node(self, a, b):
        a, b = as_tensor_variable(a), as_tensor_variable(b)
        for name, x, axes in (("a", a, self.axes_a), ("b", b, self.axes_b)):
            if any(i >= x.ndim for i in axes) or len(set(axes)) != len(axes):
                raise ValueError(
                    f"tensordot: axes {axes} are invalid for the {x.ndim}-d input {name} ({x})"
                )
        for i, j in zip(self.axes_a, self.axes_b, strict=True):
            sa, sb = a.type.shape[i], b.type.shape[j]
            if sa is not None and sb is not None and sa != sb:
                raise ValueError(
                    f"tensordot: dim {i} of a (static shape {_fmt(a.type.shape)}) has size {sa} "
                    f"but the paired dim {j} of b (static shape {_fmt(b.type.shape)}) has {sb}"
                )
        free_a, free_b = self._free(a.ndim, b.ndim)
        shape = tuple(a.type.shape[i] for i in free_a) + tuple(b.type.shape[j] for j in free_b)
        return Apply(self, [a, b], [TensorType(_result_dtype(a, b), shape)()])

    def perform(self, node, inputs, output_storage):
        a, b = inputs
        for i, j in zip(self.axes_a, self.axes_b, strict=True):
            if a.shape[i] != b.shape[j]:
                raise ValueError(
                    f"tensordot: shapes {a.shape} and {b.shape} do not match: dim {i} of a "
                    f"({a.shape[i]}) != dim {j} of b ({b.shape[j]})"
                )
        out = np.tensordot(a, b, axes=(list(self.axes_a), list(self.axes_b)))
        output_storage[0][0] = np.asarray(out, dtype=node.outputs[0].dtype)

    def infer_shape(self, fgraph, node, input_shapes):
        sa, sb = input_shapes
        free_a, free_b = self._free(len(sa), len(sb))
        return [tuple(sa[i] for i in free_a) + tuple(sb[j] for j in free_b)]

    def grad(self, inputs, output_grads):
        a, b = inputs
        (gz,) = output_grads
        free_a, free_b = self._free(a.ndim, b.ndim)
        nfa = len(free_a)
        # gz . b over b's free axes leaves a's free axes then b's paired axes (sorted):
        # move each back to where its partner sits in a.
        raw_a = TensorDot(range(nfa, gz.ndim), free_b)(gz, b)
        sorted_b = sorted(self.axes_b)
        pos_a = {i: k for k, i in enumerate(free_a)}
        pos_a.update(
            {i: nfa + sorted_b.index(j) for i, j in zip(self.axes_a, self.axes_b, strict=True)}
        )
        ga = dimshuffle(raw_a, [pos_a[i] for i in range(a.ndim)])
        # a . gz over a's free axes leaves a's paired axes (sorted) then b's free axes.
        raw_b = TensorDot(free_a, range(nfa))(a, gz)
        sorted_a = sorted(self.axes_a)
        nsum = len(self.axes_a)
        pos_b = {j: nsum + k for k, j in enumerate(free_b)}
        pos_b.update({j: sorted_a.index(i) for i, j in zip(self.axes_a, self.axes_b, strict=True)})
        gb = dimshuffle(raw_b, [pos_b[j] for j in range(b.ndim)])
        return [_sum_to_input(ga, a), _sum_to_input(gb, b)]


def _normalize_axes(axes, ndim, what):
    if isinstance(axes, (numbers.Integral, np.integer)):
        axes = [axes]
    out = []
    for i in axes:
        if not isinstance(i, (numbers.Integral, np.integer)):
            raise TypeError(f"tensordot: axes of {what} must be ints, got {axes!r}")
        if not -ndim <= i < ndim:
            raise ValueError(f"tensordot: axis {i} is out of range for the {ndim}-d {what}")
        out.append(int(i) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"tensordot: axes {axes!r} of {what} repeat an axis")
    return tuple(out)


def tensordot(a, b, axes=2):
    """``np.tensordot``: ``axes=n`` pairs the last n axes of ``a`` with the first n of ``b``;
    ``axes=(axes_a, axes_b)`` pairs the listed axes (ints or lists of ints, negatives allowed).
    """
    a, b = as_tensor_variable(a), as_tensor_variable(b)
    if isinstance(axes, (numbers.Integral, np.integer)):
        n = int(axes)
        if n < 0 or n > a.ndim or n > b.ndim:
            raise ValueError(
                f"tensordot: axes={n} needs 0 <= axes <= the ndim of both "
                f"inputs, got {a.ndim}-d and {b.ndim}-d"
            )
        axes_a, axes_b = tuple(range(a.ndim - n, a.ndim)), tuple(range(n))
    else:
        try:
            spec_a, spec_b = axes
        except (TypeError, ValueError):
            raise TypeError(
                f"tensordot: axes must be an int or a pair of axis lists, got {axes!r}"
            ) from None
        axes_a, axes_b = _normalize_axes(spec_a, a.ndim, "a"), _normalize_axes(spec_b, b.ndim, "b")
        if len(axes_a) != len(axes_b):
            raise ValueError(
                f"tensordot: {len(axes_a)} axes of a but {len(axes_b)} of b in {axes!r}"
            )
    if a.ndim <= 2 and b.ndim <= 2 and axes_a == (a.ndim - 1,) and axes_b == (0,):
        return Dot()(a, b)
    return TensorDot(axes_a, axes_b)(a, b)


def batched_dot(a, b):
    """Theano's batched dot: ``out[i] = dot(a[i], b[i])`` along the first (batch) dim.

    (B, n, m) x (B, m, k) -> (B, n, k); (B, n) x (B, n) -> (B,); (B, n, m) x (B, m) -> (B, n);
    higher ranks contract the last axis of ``a`` with axis 1 of ``b``.
    """
    a, b = as_tensor_variable(a), as_tensor_variable(b)
    for name, x in (("a", a), ("b", b)):
        if x.ndim < 2:
            raise TypeError(
                f"batched_dot: input {name} must have a batch dim and at least "
                f"one more (2-d or more), got the {x.ndim}-d {x}"
            )
    na, nb = a.type.shape[0], b.type.shape[0]
    if na is not None and nb is not None and na != nb:
        raise ValueError(f"batched_dot: batch sizes differ: {na} for a, {nb} for b")
    if a.ndim <= 3 and b.ndim <= 3:
        a3 = dimshuffle(a, (0, "x", 1)) if a.ndim == 2 else a
        b3 = dimshuffle(b, (0, 1, "x")) if b.ndim == 2 else b
        out = MatMul()(a3, b3)
        keep = [0] + ([1] if a.ndim == 3 else []) + ([2] if b.ndim == 3 else [])
        return dimshuffle(out, keep)
    # Any rank: broadcast a (B, i.., m, 1..) against b (B, 1.., m, j..) and sum over m.
    from flowc.tensor import reduction

    ra, rb = a.ndim - 2, b.ndim - 2
    a_exp = dimshuffle(a, (*range(a.ndim), *("x",) * rb))
    b_exp = dimshuffle(b, (0, *("x",) * ra, *range(1, b.ndim)))
    return reduction.sum(a_exp * b_exp, axis=ra + 1, dtype=_result_dtype(a, b))


def outer(x, y):
    """``np.outer``: ``out[i, j] = x[i] * y[j]``; inputs of other ranks are flattened."""
    x, y = as_tensor_variable(x), as_tensor_variable(y)
    if x.ndim != 1 or y.ndim != 1:
        from flowc.tensor.shape_ops import flatten

        x = x if x.ndim == 1 else flatten(x, 1)
        y = y if y.ndim == 1 else flatten(y, 1)
    return _outer_vectors(x, y)


__all__ = [
    "Dot",
    "MatMul",
    "TensorDot",
    "batched_dot",
    "dot",
    "matmul",
    "outer",
    "tensordot",
]
