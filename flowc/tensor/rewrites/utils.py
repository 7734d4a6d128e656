"""Small predicates shared by the tensor rewrites."""

from __future__ import annotations

from flowc.graph.basic import Constant
from flowc.tensor.elemwise import Elemwise


def scalar_op_of(var_or_node):
    """The scalar function of an Elemwise node (or of a variable's owner), else None."""
    node = getattr(var_or_node, "owner", var_or_node)
    if node is None or not isinstance(getattr(node, "op", None), Elemwise):
        return None
    return node.op.scalar_op


def constant_value(var):
    """The single value of a constant whose elements are all equal, else None."""
    if not isinstance(var, Constant) or var.data.size == 0:
        return None
    flat = var.data.reshape(-1)
    first = flat[0]
    if flat.size > 1 and not (flat == first).all():
        return None
    return first.item()


def single_client(fgraph, var) -> bool:
    """True when ``var`` is read by exactly one node and is not a graph output."""
    clients = fgraph.clients.get(var, [])
    return len(clients) == 1 and clients[0][0] != "output"


def fits(out, new):
    """``new`` as a replacement for ``out``: same dtype and a static shape it can stand for.

    Returns None when ``new`` would broadcast to a different shape than ``out`` has.
    """
    from flowc.tensor import math

    if new.ndim != out.ndim:
        return None
    if not all(o is None or o == n for o, n in zip(out.type.shape, new.type.shape, strict=True)):
        return None
    if any(n == 1 and o != 1 for o, n in zip(out.type.shape, new.type.shape, strict=True)):
        return None  # new would be broadcast where out is not
    if new.dtype != out.dtype:
        new = math.cast(new, out.dtype)
    return new
