"""Specialize: replace general forms by cheaper special ones (sqr, sqrt, GEMM...)."""

from __future__ import annotations

import numpy as np

from flowc import scalar as ps
from flowc.config import config
from flowc.graph.rewrite import equilibrium, node_rewriter
from flowc.graph.type import DISCRETE_DTYPES
from flowc.tensor import math
from flowc.tensor.basic import alloc
from flowc.tensor.elemwise import Elemwise
from flowc.tensor.rewrites.shape import shape_feature
from flowc.tensor.rewrites.utils import constant_value, fits, scalar_op_of

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


SPECIALIZE = [local_pow_specialize, local_mul_by_zero]


def run(fgraph):
    """The specialize step: SPECIALIZE to a fixed point."""
    return equilibrium(fgraph, SPECIALIZE, name="specialize")
