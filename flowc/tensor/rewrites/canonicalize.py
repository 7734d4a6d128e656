"""Canonicalize: put expressions in one normal form so that equal things look equal.

Flattened and sorted sums and products, constants folded, ``x + x -> 2 * x``,
negations pushed into subtractions, inverse pairs cancelled, useless shape ops
removed, and DimShuffle and Subtensor lifted through elementwise ops.
"""

from __future__ import annotations

import numpy as np

from flowc import scalar as ps
from flowc.graph.basic import Constant
from flowc.graph.merge import local_constant_folding
from flowc.graph.rewrite import equilibrium, node_rewriter, pattern_rewriter
from flowc.tensor import math
from flowc.tensor.basic import Alloc, Shape_i, alloc
from flowc.tensor.elemwise import DimShuffle, Elemwise, dimshuffle
from flowc.tensor.reduction import Reduce
from flowc.tensor.rewrites import shape as shape_rewrites
from flowc.tensor.rewrites.shape import shape_feature
from flowc.tensor.rewrites.utils import constant_value, fits, scalar_op_of, single_client
from flowc.tensor.shape_ops import Reshape, vector_entries
from flowc.tensor.subtensor import Subtensor
from flowc.tensor.var import constant


def _flatten_operands(fgraph, node, scalar_op):
    """The operands of nested ``scalar_op`` nodes (each read only here), in order."""
    out, changed = [], False
    for i in node.inputs:
        if (
            scalar_op_of(i) == scalar_op
            and single_client(fgraph, i)
            and (i.type.shape == node.outputs[0].type.shape)
        ):
            out.extend(i.owner.inputs)
            changed = True
        else:
            out.append(i)
    return out, changed


def _canonical_order(operands):
    """Constants first, then the rest in a stable order, so that a+b and b+a merge."""
    consts = [v for v in operands if isinstance(v, Constant)]
    rest = sorted((v for v in operands if not isinstance(v, Constant)), key=lambda v: v.id)
    return consts, rest


def _fold(consts, ufunc, dtype):
    if len(consts) <= 1:
        return consts, False
    value = consts[0].data
    for c in consts[1:]:
        value = ufunc(value, c.data)
    return [constant(np.asarray(value, dtype=dtype))], True


@node_rewriter([Elemwise])
def local_add_canonical(fgraph, node):
    """add(add(a, b), c) -> add(a, b, c); constants folded first; + 0 dropped; x + x -> 2 * x"""
    if scalar_op_of(node) != ps.add:
        return None
    out = node.outputs[0]
    operands, changed = _flatten_operands(fgraph, node, ps.add)
    consts, rest = _canonical_order(operands)
    consts, folded = _fold(consts, np.add, out.dtype)
    changed |= folded
    if consts and constant_value(consts[0]) == 0 and rest:
        consts, changed = [], True
    counts = {}
    for v in rest:
        counts[v] = counts.get(v, 0) + 1
    if any(n > 1 for n in counts.values()):
        rest = [v if n == 1 else math.mul(n, v) for v, n in counts.items()]
        changed = True
    new_inputs = consts + rest
    if not changed and new_inputs == node.inputs:
        return None
    if len(new_inputs) == 1:
        return [fits(out, new_inputs[0])]
    return [fits(out, math.add(*new_inputs))]


@node_rewriter([Elemwise])
def local_mul_canonical(fgraph, node):
    """mul(mul(a, b), c) -> mul(a, b, c); constants folded first; * 1 dropped; -1 * x -> -x"""
    if scalar_op_of(node) != ps.mul:
        return None
    out = node.outputs[0]
    operands, changed = _flatten_operands(fgraph, node, ps.mul)
    consts, rest = _canonical_order(operands)
    consts, folded = _fold(consts, np.multiply, out.dtype)
    changed |= folded
    value = constant_value(consts[0]) if consts else None
    if consts and value == 1 and rest:
        consts, changed = [], True
    if consts and value == -1 and rest and out.dtype not in ("bool",):
        new = math.neg(rest[0] if len(rest) == 1 else math.mul(*rest))
        return [fits(out, new)]
    new_inputs = consts + rest
    if not changed and new_inputs == node.inputs:
        return None
    if len(new_inputs) == 1:
        return [fits(out, new_inputs[0])]
    return [fits(out, math.mul(*new_inputs))]


@node_rewriter([Elemwise])
def local_mul_div_cancel(fgraph, node):
    """mul(x, y, z) / y -> mul(x, z)"""
    if scalar_op_of(node) != ps.true_div:
        return None
    num, den = node.inputs
    if scalar_op_of(num) != ps.mul or den not in num.owner.inputs:
        return None
    rest = list(num.owner.inputs)
    rest.remove(den)
    new = rest[0] if len(rest) == 1 else math.mul(*rest)
    return [fits(node.outputs[0], new)]


@node_rewriter([Elemwise])
def local_neg_forms(fgraph, node):
    """x - c -> x + (-c); x - (-y) -> x + y; x + (-y) -> x - y; -(a - b) -> b - a"""
    op = scalar_op_of(node)
    out = node.outputs[0]
    if op == ps.neg:
        (x,) = node.inputs
        if scalar_op_of(x) == ps.sub and single_client(fgraph, x):
            a, b = x.owner.inputs
            return [fits(out, math.sub(b, a))]
    elif op == ps.sub:
        a, b = node.inputs
        if (
            isinstance(b, Constant)
            and out.dtype not in ("bool",)
            and (not out.dtype.startswith("uint"))
        ):
            # a - c -> a + (-c), so the constant folds with others in the sum.
            return [fits(out, math.add(a, constant(np.negative(b.data))))]
        if scalar_op_of(b) == ps.neg:
            return [fits(out, math.add(a, b.owner.inputs[0]))]
        if constant_value(a) == 0:
            return [fits(out, math.neg(b))]
    elif op == ps.add and len(node.inputs) == 2:
        a, b = node.inputs
        if scalar_op_of(b) == ps.neg:
            return [fits(out, math.sub(a, b.owner.inputs[0]))]
        if scalar_op_of(a) == ps.neg:
            return [fits(out, math.sub(b, a.owner.inputs[0]))]
    return None


local_log_exp = pattern_rewriter((math.log, (math.exp, "x")), "x", name="local_log_exp")
local_exp_log = pattern_rewriter(
    (math.exp, (math.log, "x")),
    lambda b: math.switch(math.ge(b["x"], 0), b["x"], np.nan),  # NaN stays NaN for x < 0
    name="local_exp_log",
)
local_double_neg = pattern_rewriter((math.neg, (math.neg, "x")), "x", name="local_double_neg")


@node_rewriter([DimShuffle])
def local_dimshuffle_of_dimshuffle(fgraph, node):
    """DimShuffle(DimShuffle(x)) -> one DimShuffle; the identity DimShuffle -> x"""
    (x,) = node.inputs
    pattern = node.op.pattern
    if pattern == tuple(range(x.ndim)):
        return [x]
    if not isinstance(getattr(x.owner, "op", None), DimShuffle):
        return None
    inner = x.owner.op.pattern
    merged = tuple("x" if p == "x" else inner[p] for p in pattern)
    return [dimshuffle(x.owner.inputs[0], merged)]


@node_rewriter([DimShuffle])
def local_dimshuffle_lift(fgraph, node):
    """DimShuffle(f(a, b)) -> f(DimShuffle(a), DimShuffle(b)) for elementwise f"""
    (x,) = node.inputs
    if not isinstance(getattr(x.owner, "op", None), Elemwise) or not single_client(fgraph, x):
        return None
    if x.owner.op.inplace_pattern:
        return None
    pattern = node.op.pattern
    new_inputs = [dimshuffle(i, pattern) for i in x.owner.inputs]
    new = x.owner.op.make_node(*new_inputs).outputs[0]
    return [fits(node.outputs[0], new)]


@node_rewriter([Elemwise])
def local_useless_cast(fgraph, node):
    """cast(x, dtype of x) -> x; cast(cast(x, wider), t) -> cast(x, t)"""
    op = scalar_op_of(node)
    if not isinstance(op, ps.Cast):
        return None
    (x,) = node.inputs
    if x.dtype == op.dtype:
        return [x]
    inner = scalar_op_of(x)
    if isinstance(inner, ps.Cast):
        src = x.owner.inputs[0]
        if np.can_cast(src.dtype, inner.dtype, "safe"):
            return [math.cast(src, op.dtype)]
    return None


@node_rewriter([Alloc])
def local_useless_alloc(fgraph, node):
    """alloc(x, *shape of x) -> x"""
    value, *shape = node.inputs
    out = node.outputs[0]
    if value.ndim != out.ndim:
        return None
    for axis, s in enumerate(shape):
        static = value.type.shape[axis]
        same = (static is not None and static == constant_value(s)) or (
            s.owner is not None and s.owner.op == Shape_i(axis) and s.owner.inputs[0] is value
        )
        if not same:
            return None
    return [fits(out, value)]


@node_rewriter([Reduce])
def local_sum_of_alloc(fgraph, node):
    """sum(alloc(c, *shape), axis) -> alloc(c * prod(shape[axis]), *other dims) for scalar c"""
    if node.op.kind != "add":
        return None
    (x,) = node.inputs
    if not isinstance(getattr(x.owner, "op", None), Alloc):
        return None
    value, *shape = x.owner.inputs
    if value.ndim and not all(value.broadcastable):
        return None
    scalar = dimshuffle(value, ()) if value.ndim else value
    count = constant(np.int64(1))
    for a in node.op.axis:
        count = count * shape[a]
    total = math.cast(scalar, node.op.dtype) * math.cast(count, node.op.dtype)
    kept = [s for a, s in enumerate(shape) if a not in node.op.axis]
    return [fits(node.outputs[0], alloc(total, *kept))]


def _same_dim(a, b) -> bool:
    """True when two dims (ints or int64 scalars) are known to be equal."""
    if a is b:
        return True
    ca = a if isinstance(a, int) else constant_value(a)
    cb = b if isinstance(b, int) else constant_value(b)
    if ca is not None or cb is not None:
        return ca == cb
    na, nb = a.owner, b.owner
    return (
        na is not None
        and nb is not None
        and na.op == nb.op
        and isinstance(na.op, Shape_i)
        and na.inputs[0] is nb.inputs[0]
    )


@node_rewriter([Reshape])
def local_useless_reshape(fgraph, node):
    """reshape(x, shape of x) -> x"""
    x, shape = node.inputs
    out = node.outputs[0]
    if x.ndim != out.ndim:
        return None
    entries = vector_entries(shape, build=True)
    if entries is None:
        return None
    dims = shape_feature(fgraph).shape_of(x)
    if all(_same_dim(a, b) for a, b in zip(dims, entries, strict=True)):
        return [fits(out, x)]
    return None


@node_rewriter([Subtensor])
def local_subtensor_lift(fgraph, node):
    """f(a, b)[idx] -> f(a[idx], b[idx]) for elementwise f (scalars are left as they are)"""
    if type(node.op) is not Subtensor:
        return None  # advanced indexing copies: lifting it could duplicate work
    x, *index = node.inputs
    if not isinstance(getattr(x.owner, "op", None), Elemwise) or not single_client(fgraph, x):
        return None
    if x.owner.op.inplace_pattern:
        return None
    new_inputs = []
    for i in x.owner.inputs:
        if all(i.broadcastable):
            new_inputs.append(dimshuffle(i, ()))  # a scalar: Elemwise broadcasts it again
        elif i.type.shape == x.type.shape:
            new_inputs.append(node.op(i, *index))
        else:
            return None  # a partly broadcast input would need its own index
    new = x.owner.op.make_node(*new_inputs).outputs[0]
    return [fits(node.outputs[0], new)]


CANONICALIZE = [
    local_constant_folding,
    local_add_canonical,
    local_mul_canonical,
    local_mul_div_cancel,
    local_neg_forms,
    local_log_exp,
    local_exp_log,
    local_double_neg,
    local_dimshuffle_of_dimshuffle,
    local_dimshuffle_lift,
    local_useless_cast,
    local_useless_alloc,
    local_sum_of_alloc,
    local_useless_reshape,
    local_subtensor_lift,
    *shape_rewrites.REWRITES,
]


def run(fgraph):
    """The canonicalize step: CANONICALIZE to a fixed point."""
    return equilibrium(fgraph, CANONICALIZE, name="canonicalize")
