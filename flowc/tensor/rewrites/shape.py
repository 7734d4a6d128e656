"""Shape inference over a graph: ``x.shape`` becomes a computation on the inputs' shapes,
so a graph that needs only a shape never computes the tensor."""

from __future__ import annotations

from flowc.graph.rewrite import node_rewriter
from flowc.tensor.basic import Shape, Shape_i
from flowc.tensor.var import as_tensor_variable


class ShapeFeature:
    """Memoized symbolic shapes of the variables of one FunctionGraph.

    ``shape_of(v)`` is a tuple with a Python int (static) or an int64 scalar
    variable per dim, computed from the ops' ``infer_shape`` back to the graph's
    inputs; an op without ``infer_shape`` contributes ``Shape_i`` of its output.
    """

    def __init__(self):
        self.memo = {}
        self.fgraph = None

    def on_attach(self, fgraph):
        self.fgraph = fgraph

    def shape_of(self, var) -> tuple:
        memo = self.memo
        stack = [var]
        while stack:
            v = stack[-1]
            if v in memo:
                stack.pop()
                continue
            node = v.owner
            if node is not None:
                missing = [i for i in node.inputs if i not in memo]
                if missing:
                    stack.extend(missing)
                    continue
            stack.pop()
            self._infer(v)
        return memo[var]

    def _infer(self, v):
        node = v.owner
        if node is None:
            self.memo[v] = _fallback(v)
            return
        try:
            shapes = node.op.infer_shape(self.fgraph, node, [self.memo[i] for i in node.inputs])
        except NotImplementedError:
            shapes = None
        for k, o in enumerate(node.outputs):
            if shapes is None:
                self.memo[o] = _fallback(o)
                continue
            self.memo[o] = tuple(
                static if static is not None else _as_dim(d)
                for static, d in zip(o.type.shape, shapes[k], strict=True)
            )


def _fallback(v):
    return tuple(s if s is not None else Shape_i(i)(v) for i, s in enumerate(v.type.shape))


def _as_dim(d):
    if isinstance(d, int):
        return d
    d = as_tensor_variable(d)
    if d.dtype != "int64":
        from flowc.tensor.math import cast

        d = cast(d, "int64")
    return d


def shape_feature(fgraph) -> ShapeFeature:
    """The ShapeFeature of ``fgraph``, attached on first use."""
    f = fgraph.get_feature(ShapeFeature)
    if f is None:
        f = ShapeFeature()
        fgraph.attach_feature(f)
    return f


@node_rewriter([Shape_i])
def local_shape_i_to_input_shapes(fgraph, node):
    """Shape_i(i)(f(x)) -> the i-th dim of f's inferred shape, computed from x's shape"""
    (x,) = node.inputs
    if x.owner is None:
        return None
    dim = shape_feature(fgraph).shape_of(x)[node.op.i]
    if dim is node.outputs[0] or (
        not isinstance(dim, int)
        and dim.owner is not None
        and dim.owner.op == node.op
        and dim.owner.inputs[0] is x
    ):
        return None
    return [as_tensor_variable(dim) if not isinstance(dim, int) else _int64(dim)]


@node_rewriter([Shape])
def local_shape_to_dims(fgraph, node):
    """Shape(x) -> stack of x's dims (each from the inputs' shapes)"""
    (x,) = node.inputs
    if x.ndim == 0:
        return [as_tensor_variable(_int64_vector([]))]
    from flowc.tensor.shape_ops import stack

    dims = shape_feature(fgraph).shape_of(x)
    return [stack([_int64(d) if isinstance(d, int) else d for d in dims])]


def _int64(d):
    import numpy as np

    from flowc.tensor.var import constant

    return constant(np.int64(d))


def _int64_vector(values):
    import numpy as np

    return np.asarray(values, dtype="int64")


REWRITES = [local_shape_i_to_input_shapes, local_shape_to_dims]
