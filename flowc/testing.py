"""Checks for op authors and users: ``verify_grad`` (finite differences) and
``check_infer_shape`` (symbolic shapes against computed ones)."""

from __future__ import annotations

import numpy as np

from flowc.graph.basic import Variable


class GradientError(AssertionError):
    """The symbolic gradient disagrees with finite differences."""


def _symbolic_like(values, static_ones=True):
    from flowc.tensor.var import tensor

    return [
        tensor(
            v.dtype, tuple(1 if (s == 1 and static_ones) else None for s in v.shape), name=f"in{k}"
        )
        for k, v in enumerate(values)
    ]


def verify_grad(
    fn,
    points,
    n_tests=2,
    rng=None,
    eps=None,
    tol=None,
    abs_tol=None,
    rel_tol=None,
    mode=None,
    static_ones=True,
):
    """Check the gradient of ``fn`` at ``points`` by central differences in random directions.

    ``fn`` maps symbolic inputs to an output (or a list); the cost is a random
    projection of the outputs. Everything is done in float64. Raises
    ``GradientError`` naming the mismatch.

    >>> import numpy as np, flowc.tensor as T
    >>> verify_grad(lambda x: T.exp(x).sum(), [np.array([0.1, 0.2])])
    """
    from flowc.autodiff import grad
    from flowc.function import function
    from flowc.tensor import math, reduction

    rng = np.random.default_rng(rng if rng is not None else 42)
    points = [np.array(p, dtype="float64") for p in points]
    eps = 1e-6 if eps is None else eps
    rel_tol = rel_tol if rel_tol is not None else (tol if tol is not None else 1e-4)
    abs_tol = abs_tol if abs_tol is not None else (tol if tol is not None else 1e-4)
    xs = _symbolic_like(points, static_ones)
    outs = fn(*xs)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    forward = function(xs, outs, mode=mode, on_unused_input="ignore")
    values = forward(*points)
    projections = [rng.uniform(0.5, 1.5, size=np.shape(v)) for v in values]
    cost = None
    for o, p in zip(outs, projections, strict=True):
        term = reduction.sum(math.cast(o, "float64") * p)
        cost = term if cost is None else cost + term
    cost_fn = function(xs, cost, mode=mode, on_unused_input="ignore")
    grads = grad(cost, xs, disconnected_inputs="ignore")
    grad_fn = function(xs, grads, mode=mode, on_unused_input="ignore")
    analytic = grad_fn(*points)
    for _ in range(n_tests):
        direction = [rng.normal(size=p.shape) for p in points]
        plus = cost_fn(*[p + eps * d for p, d in zip(points, direction, strict=True)])
        minus = cost_fn(*[p - eps * d for p, d in zip(points, direction, strict=True)])
        numeric = (float(plus) - float(minus)) / (2 * eps)
        symbolic = float(sum(np.sum(g * d) for g, d in zip(analytic, direction, strict=True)))
        err = abs(numeric - symbolic)
        if err > abs_tol + rel_tol * abs(numeric):
            raise GradientError(
                f"gradient mismatch: finite differences give {numeric:.8g}, the symbolic "
                f"gradient {symbolic:.8g} (abs error {err:.3g}, tolerance "
                f"{abs_tol:.1e} + {rel_tol:.1e}*|fd|) at points of shapes "
                f"{[p.shape for p in points]}"
            )


def check_infer_shape(outputs, inputs: list[Variable], values: list) -> None:
    """Assert that each output node's ``infer_shape`` gives the shapes it computes.

    ``outputs`` are variables computed from ``inputs``; the node that owns each
    is asked for its output shapes from the symbolic shapes of its own inputs.
    """
    from flowc.function import function
    from flowc.tensor.basic import shape_tuple
    from flowc.tensor.var import as_tensor_variable

    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    for out in outputs:
        node = out.owner
        if node is None:
            continue
        shapes = node.op.infer_shape(None, node, [shape_tuple(i) for i in node.inputs])
        want = shapes[out.index]
        if len(want) != out.ndim:
            raise AssertionError(
                f"{node.op}.infer_shape gives {len(want)} dims for a {out.ndim}-d output"
            )
        dims = [as_tensor_variable(d) for d in want]
        f = function(inputs, [out, *dims], on_unused_input="ignore", mode="none")
        got, *sizes = f(*values)
        inferred = tuple(int(s) for s in sizes)
        if inferred != np.shape(got):
            raise AssertionError(
                f"{node.op}.infer_shape gives {inferred}, the op computes shape {np.shape(got)}"
            )
        for axis, s in enumerate(out.type.shape):
            if s is not None and s != np.shape(got)[axis]:
                raise AssertionError(
                    f"{node.op}: static shape {out.type.shape} but the "
                    f"value has shape {np.shape(got)}"
                )


__all__ = ["GradientError", "check_infer_shape", "verify_grad"]
