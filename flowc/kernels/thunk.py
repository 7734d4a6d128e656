"""``Kernel``: a callable for one node. ``lower`` makes one per node in schedule order."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from flowc.graph.basic import Apply


class NanGuardError(FloatingPointError):
    """A node produced NaN or inf under ``mode='nanguard'``."""


@dataclasses.dataclass(frozen=True)
class Kernel:
    """What runs one ``node``: ``run(input values) -> output values``."""

    node: Apply
    run: Callable[[list], list]
    backend: str = "py"


def lower(fgraph, mode: str, order=None) -> list[Kernel]:
    """One kernel per node of ``fgraph``, in ``order`` (default: its topological order)."""
    guard = mode == "nanguard"
    nodes = fgraph.toposort() if order is None else order
    return [Kernel(node, _perform_thunk(node, guard)) for node in nodes]


def _perform_thunk(node: Apply, nan_guard: bool):
    perform = node.op.perform
    n_out = len(node.outputs)

    def run(inputs):
        storage = [[None] for _ in range(n_out)]
        perform(node, inputs, storage)
        outs = [s[0] for s in storage]
        if nan_guard:
            _check_finite(node, outs)
        return outs

    return run


def _check_finite(node, outs):
    for k, v in enumerate(outs):
        v = np.asarray(v)
        if v.dtype.kind in "fc" and not np.all(np.isfinite(v)):
            what = "NaN" if np.isnan(v).any() else "inf"
            raise NanGuardError(
                f"{node.op} produced {what} in output {k} (shape {v.shape}) "
                f"from inputs {[str(i) for i in node.inputs]}"
            )
