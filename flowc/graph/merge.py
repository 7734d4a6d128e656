"""Whole-graph passes that need no op knowledge: merging duplicates and folding constants."""

from __future__ import annotations

from flowc.config import config
from flowc.graph.basic import Constant, evaluate
from flowc.graph.rewrite import node_rewriter


def merge(fgraph):
    """Common-subexpression elimination: equal constants and equal applies become one.

    Two applies are equal when their ops are equal and their inputs are the same
    variables; merging in topological order makes equal subtrees collapse fully.
    """
    constants = {}
    for var in list(fgraph.variables):
        if isinstance(var, Constant) and var in fgraph.variables:
            key = var.signature()
            kept = constants.setdefault(key, var)
            if kept is not var:
                fgraph.replace(var, kept, reason="merge")
    seen = {}
    for node in list(fgraph.toposort()):
        if node not in fgraph.apply_nodes:
            continue
        key = (node.op, tuple(node.inputs))
        kept = seen.setdefault(key, node)
        if kept is not node:
            fgraph.replace_all(zip(node.outputs, kept.outputs, strict=True), reason="merge")
    return fgraph


def constant_folding(fgraph, max_bytes: int | None = None):
    """Replace every node whose inputs are all constants by its computed value.

    Outputs bigger than ``max_bytes`` (default ``config.constant_folding_max_bytes``)
    are left to be computed at run time, and so are ops that declare
    ``foldable = False`` (random draws) or write in place.
    """
    for node in list(fgraph.toposort()):
        if node in fgraph.apply_nodes:
            folded = _fold(node, max_bytes)
            if folded is not None:
                fgraph.replace_all(
                    zip(node.outputs, folded, strict=True), reason="constant_folding"
                )
    return fgraph


def _fold(node, max_bytes=None):
    """The constants that replace ``node``'s outputs, or None if it is not folded."""
    limit = config.constant_folding_max_bytes if max_bytes is None else max_bytes
    if not all(isinstance(i, Constant) for i in node.inputs):
        return None
    if getattr(node.op, "foldable", True) is False or node.op.destroy_map:
        return None
    if _static_nbytes(node) > limit:
        return None
    try:
        values = evaluate(node.outputs, {})
    except Exception:  # noqa: BLE001 - the error is raised again at run time
        return None
    if any(getattr(v, "nbytes", 0) > limit for v in values):
        return None
    return [o.type.make_constant(v) for o, v in zip(node.outputs, values, strict=True)]


@node_rewriter(None)
def local_constant_folding(fgraph, node):
    """f(constants) -> the constant it computes (up to config.constant_folding_max_bytes)"""
    return _fold(node)


def _static_nbytes(node) -> int:
    total = 0
    for o in node.outputs:
        shape = o.type.shape
        if any(s is None for s in shape):
            continue  # unknown until evaluated; checked on the value
        n = 1
        for s in shape:
            n *= s
        total += n * o.type.numpy_dtype.itemsize
    return total
