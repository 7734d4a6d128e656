"""In-place: let nodes overwrite an input that nothing else reads.

The last pipeline step. An ``Elemwise`` (fused ones included) whose output has the dtype and
broadcast pattern of one of its inputs writes its result into that input's buffer; an
``IncSubtensor`` that supports it updates ``x`` in place. ``flowc.graph.destroy`` decides what
is safe: never a graph input, constant, shared storage or output, nor a value read elsewhere.
"""

from __future__ import annotations

from flowc.graph.basic import Apply
from flowc.graph.destroy import destroy_handler
from flowc.tensor.blas import Gemm
from flowc.tensor.elemwise import Elemwise
from flowc.tensor.subtensor import IncSubtensor


def _remake_op(op, **changes):
    """``op`` with some of its ``__props__`` changed, or None if its class cannot take them."""
    props = {p: getattr(op, p) for p in op.__props__}
    if any(k not in props for k in changes):
        return None
    props.update(changes)
    try:
        return type(op)(**props)
    except TypeError:
        # A constructor whose parameters are not named after the props: pass them in order.
        try:
            return type(op)(*props.values())
        except TypeError:
            return None


def _elemwise_inplace(op, pattern: tuple):
    """``op`` with ``inplace_pattern=pattern``, or None if that cannot be built."""
    new = _remake_op(op, inplace_pattern=pattern)
    if new is None or tuple(getattr(new, "inplace_pattern", ())) != pattern:
        return None
    if dict(new.destroy_map) != {o: [i] for o, i in pattern}:
        return None
    return new


def _same_buffer_shape(inp, out) -> bool:
    """The input has exactly the output's buffer: same dtype, ndim and broadcast pattern."""
    return (
        inp.type.dtype == out.type.dtype
        and inp.type.ndim == out.type.ndim
        and inp.type.broadcastable == out.type.broadcastable
    )


def _replace_node(fgraph, node, new_op) -> None:
    new = Apply(new_op, list(node.inputs), [o.type.make_variable(o.name) for o in node.outputs])
    for old, out in zip(node.outputs, new.outputs, strict=True):
        fgraph.replace(old, out, reason="inplace")


def _try_elemwise(fgraph, handler, node) -> bool:
    """Pair each output with a distinct input it can overwrite (a fused node may have several)."""
    if node.op.inplace_pattern:
        return False
    pattern, used = [], set()
    for o, out in enumerate(node.outputs):
        for i, inp in enumerate(node.inputs):
            if i in used or not _same_buffer_shape(inp, out):
                continue
            if handler.can_destroy(fgraph, node, i):
                pattern.append((o, i))
                used.add(i)
                break
    if not pattern:
        return False
    new_op = _elemwise_inplace(node.op, tuple(pattern))
    if new_op is None:
        return False
    _replace_node(fgraph, node, new_op)
    return True


def _try_inplace_prop(fgraph, handler, node) -> bool:
    """An op with an ``inplace`` prop (inc/set_subtensor on ``x``, Gemm on ``C``) writing
    into its first input, when that input has exactly the output's buffer."""
    op = node.op
    if "inplace" not in getattr(op, "__props__", ()) or op.inplace:
        return False
    if not _same_buffer_shape(node.inputs[0], node.outputs[0]):
        return False
    if not handler.can_destroy(fgraph, node, 0):
        return False
    new_op = _remake_op(op, inplace=True)
    if new_op is None or dict(new_op.destroy_map) != {0: [0]}:
        return False
    _replace_node(fgraph, node, new_op)
    return True


def insert_inplace(fgraph):
    """Make nodes overwrite inputs that nothing else needs; returns ``fgraph``.

    Attaches a ``DestroyHandler`` (kept, so that later edits are tracked) and walks the
    nodes in topological order, so each node sees the in-place forms of those it reads.
    """
    handler = destroy_handler(fgraph)
    for node in list(fgraph.toposort()):
        if node not in fgraph.apply_nodes:
            continue
        if isinstance(node.op, Elemwise):
            _try_elemwise(fgraph, handler, node)
        elif isinstance(node.op, (IncSubtensor, Gemm)):
            _try_inplace_prop(fgraph, handler, node)
    handler.validate(fgraph)
    return fgraph


__all__ = ["insert_inplace"]
