"""Whole-graph passes that need no op knowledge: merging duplicates and folding constants."""

from __future__ import annotations

from flowc.graph.basic import Constant, evaluate


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


def constant_folding(fgraph, max_bytes: int):
    """Replace every node whose inputs are all constants by its computed value.

    Outputs bigger than ``max_bytes`` are left to be computed at run time, and so
    are ops that declare ``foldable = False`` (random draws) or write in place.
    """
    for node in list(fgraph.toposort()):
        if node not in fgraph.apply_nodes:
            continue
        if not all(isinstance(i, Constant) for i in node.inputs):
            continue
        if getattr(node.op, "foldable", True) is False or node.op.destroy_map:
            continue
        if _static_nbytes(node) > max_bytes:
            continue
        try:
            values = evaluate(node.outputs, {})
        except Exception:  # noqa: BLE001 - an error is left to happen at run time
            continue
        if any(v.nbytes > max_bytes for v in values):
            continue
        folded = [o.type.make_constant(v) for o, v in zip(node.outputs, values, strict=True)]
        fgraph.replace_all(zip(node.outputs, folded, strict=True), reason="constant_folding")
    return fgraph


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
