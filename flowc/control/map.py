"""``Map``: evaluate an inner graph once per row of a sequence and stack the results."""

from __future__ import annotations

import numpy as np

from flowc.graph.basic import Apply, Constant, Op, evaluate, graph_inputs
from flowc.graph.type import TensorType


class Map(Op):
    """For each row ``s`` of the first input, the inner outputs with ``row := s``.

    The other inputs are the inner graph's free variables, passed unchanged.
    Used by ``jacobian``; not differentiable.
    """

    __props__ = ("row", "free", "outputs")

    def __init__(self, row, free, outputs):
        self.row = row
        self.free = tuple(free)
        self.outputs = tuple(outputs)

    def __str__(self):
        return f"Map{{{len(self.outputs)} outputs}}"

    def make_node(self, seq, *free):
        out_types = [TensorType(o.dtype, (None,) + o.type.shape)() for o in self.outputs]
        return Apply(self, [seq, *free], out_types)

    def perform(self, node, inputs, output_storage):
        seq, *free = inputs
        env = dict(zip(self.free, free, strict=True))
        rows = [evaluate(self.outputs, {**env, self.row: r}) for r in seq]
        for k, (store, var) in enumerate(zip(output_storage, node.outputs, strict=True)):
            if rows:
                store[0] = np.stack([np.asarray(r[k]) for r in rows]).astype(var.dtype)
            else:
                shape = (0,) + tuple(0 if s is None else s for s in self.outputs[k].type.shape)
                store[0] = np.zeros(shape, var.dtype)

    def grad(self, inputs, output_grads):
        raise NotImplementedError("Map (as used by jacobian/hessian) is not differentiable")


def map_rows(row, seq, outputs):
    """The stacked values of ``outputs`` for ``row`` set to each row of ``seq``."""
    free = [v for v in graph_inputs(outputs) if v is not row and not isinstance(v, Constant)]
    return (
        Map(row, free, outputs)(seq, *free)
        if len(outputs) > 1
        else [Map(row, free, outputs)(seq, *free)]
    )
