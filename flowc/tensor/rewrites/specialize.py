"""Specialize: replace general forms by cheaper special ones (sqr, sqrt, GEMM...)."""

from __future__ import annotations

import numpy as np

from flowc import scalar as ps
from flowc.config import config
from flowc.graph.rewrite import equilibrium, node_rewriter
from flowc.graph.type import DISCRETE_DTYPES
from flowc.tensor import math
from flowc.tensor.basic import alloc
from flowc.tensor.elemwise import Elemwise, dimshuffle
from flowc.tensor.rewrites.shape import shape_feature
from flowc.tensor.rewrites.utils import constant_value, fits, scalar_op_of, single_client

_POWERS = {2: math.sqr, 0.5: math.sqrt, -1: math.reciprocal, 1: lambda x: x}


@node_rewriter([Elemwise])
def local_pow_specialize(fgraph, node):
    """x ** 2 -> sqr(x); x ** 0.5 -> sqrt(x); x ** -1 -> reciprocal(x); x ** 1 -> x"""
    if scalar_op_of(node) != ps.pow:
        return None
    x, y = node.inputs
    value = constant_value(y)
    if value not in _POWERS or isinstance(value, bool):
        return None
    if value == -1 and x.dtype in DISCRETE_DTYPES:
        return None  # integer ** -1 is an error in NumPy, not a float reciprocal
    return [fits(node.outputs[0], _POWERS[value](x))]


@node_rewriter([Elemwise])
def local_mul_by_zero(fgraph, node):
    """x * 0 -> zeros (integers always; floats only with config.unsafe_mul_zero: NaN * 0 is NaN)"""
    if scalar_op_of(node) != ps.mul:
        return None
    out = node.outputs[0]
    if out.dtype not in DISCRETE_DTYPES and not config.unsafe_mul_zero:
        return None
    if not any(constant_value(i) == 0 for i in node.inputs):
        return None
    dims = shape_feature(fgraph).shape_of(out)
    return [alloc(np.zeros((), out.dtype), *dims)]


def _scaled_dot(var):
    """``(alpha, Dot node)`` when ``var`` is ``dot(A, B)`` or ``alpha * dot(A, B)``."""
    from flowc.tensor.linalg import Dot

    owner = var.owner
    if owner is not None and isinstance(owner.op, Dot):
        a, b = owner.inputs
        if a.ndim == 2 and b.ndim in (1, 2):
            return 1.0, owner
    if scalar_op_of(var) == ps.mul and len(owner.inputs) == 2:
        for k in (0, 1):
            scale, other = owner.inputs[k], owner.inputs[1 - k]
            if all(scale.broadcastable) and other.owner is not None:
                found = _scaled_dot(other)
                if found is not None and found[0] == 1.0:
                    return dimshuffle(scale, ()) if scale.ndim else scale, found[1]
    return None


def _scaled(var):
    """``(beta, C)`` when ``var`` is ``beta * C`` with a scalar ``beta``, else ``(1, var)``."""
    if scalar_op_of(var) == ps.mul and len(var.owner.inputs) == 2:
        for k in (0, 1):
            scale = var.owner.inputs[k]
            if all(scale.broadcastable) and not all(var.owner.inputs[1 - k].broadcastable):
                return (dimshuffle(scale, ()) if scale.ndim else scale), var.owner.inputs[1 - k]
    return 1.0, var


@node_rewriter([Elemwise])
def local_dot_to_gemm(fgraph, node):
    """beta * C + alpha * dot(A, B) -> Gemm(C, alpha, A, B, beta) (also with -, and GEMV)"""
    from flowc.tensor.blas import gemm

    op = scalar_op_of(node)
    if op not in (ps.add, ps.sub) or len(node.inputs) != 2:
        return None
    out = node.outputs[0]
    if out.dtype not in ("float32", "float64"):
        return None
    for k in (1, 0) if op == ps.add else (1,):
        found = _scaled_dot(node.inputs[k])
        if found is None or not single_client(fgraph, node.inputs[k]):
            continue
        alpha, dot_node = found
        beta, C = _scaled(node.inputs[1 - k])
        if op == ps.sub:
            alpha = -alpha if isinstance(alpha, float) else math.neg(alpha)
        A, B = dot_node.inputs
        if C.ndim != dot_node.outputs[0].ndim:
            return None
        new = gemm(C, math.cast(alpha, out.dtype), A, B, math.cast(beta, out.dtype))
        return [fits(out, new)]
    return None


SPECIALIZE = [local_pow_specialize, local_mul_by_zero, local_dot_to_gemm]


def run(fgraph):
    """The specialize step: SPECIALIZE to a fixed point."""
    return equilibrium(fgraph, SPECIALIZE, name="specialize")
