"""Reverse- and forward-mode differentiation of graphs: grad, Lop, Rop, jacobian, hessian.

Each op gives its own rule (``Op.grad``, ``Op.R_op``); this module walks the graph.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from flowc.graph.basic import Apply, Op, Variable, ancestors, clone_replace, io_toposort
from flowc.graph.type import DISCRETE_DTYPES, TensorType


def as_tensor_variable(x):
    # flowc.tensor imports this module: import it on first use, not at load time.
    from flowc.tensor.var import as_tensor_variable as convert

    return convert(x)


class DisconnectedInputError(ValueError):
    """``grad`` was asked for the gradient w.r.t. a variable the cost does not depend on."""


def _as_list(x):
    return (list(x), True) if isinstance(x, (list, tuple)) else ([x], False)


def grad(
    cost,
    wrt,
    consider_constant=None,
    disconnected_inputs="raise",
    known_grads=None,
    return_disconnected="zero",
):
    """Gradient of the scalar ``cost`` w.r.t. each variable of ``wrt`` (a variable or a list).

    ``consider_constant`` lists variables to treat as constants; ``known_grads``
    maps variables to gradients already known (``cost`` may then be None).
    ``disconnected_inputs`` says what to do for a ``wrt`` the cost does not depend
    on: 'raise', 'warn' or 'ignore' (the gradient is then zero, or None with
    ``return_disconnected='none'``). An integer ``wrt`` gets a zero gradient.

    >>> import flowc.tensor as T
    >>> x = T.dscalar('x')
    >>> float(grad(x ** 2, x).eval({x: 3.0}))
    6.0
    """
    if disconnected_inputs not in ("raise", "warn", "ignore"):
        raise ValueError(
            f"disconnected_inputs must be raise, warn or ignore, got {disconnected_inputs!r}"
        )
    seeds = {}
    if cost is not None:
        cost = as_tensor_variable(cost)
        if cost.ndim != 0:
            raise TypeError(
                f"grad: the cost must be a scalar (0-d), got {cost} with {cost.ndim} dims; "
                f"sum it, or use Lop/jacobian for a non-scalar expression"
            )
        if cost.dtype in DISCRETE_DTYPES:
            raise TypeError(f"grad: the cost {cost} is of integer dtype {cost.dtype}")
        from flowc.tensor.basic import ones_like

        seeds[cost] = ones_like(cost)
    for var, g in (known_grads or {}).items():
        var, g = as_tensor_variable(var), as_tensor_variable(g)
        if g.ndim != var.ndim:
            raise ValueError(f"known_grads: the gradient of {var} must have {var.ndim} dims")
        seeds[var] = g
    if not seeds:
        raise ValueError("grad: give a cost or known_grads")
    wrt_list, is_list = _as_list(wrt)
    wrt_list = [_check_wrt(w) for w in wrt_list]
    grads = _backprop(seeds, wrt_list, consider_constant or ())
    out = []
    for w in wrt_list:
        g = grads.get(w)
        if g is None:
            g = _disconnected(
                w, seeds, consider_constant or (), disconnected_inputs, return_disconnected
            )
        out.append(g)
    return out if is_list else out[0]


def _check_wrt(w):
    if not isinstance(w, Variable):
        raise TypeError(f"grad: wrt must be symbolic variables, got {type(w).__name__}")
    return w


def _disconnected(w, seeds, consider_constant, mode, return_disconnected):
    from flowc.config import config
    from flowc.tensor.basic import zeros_like

    reached = w in set(ancestors(list(seeds), consider_constant))
    zero_dtype = config.floatX if w.dtype in DISCRETE_DTYPES else w.dtype
    if w.dtype in DISCRETE_DTYPES and reached:
        return zeros_like(w, dtype=zero_dtype)
    msg = f"grad: the cost does not depend on {w} ({w.type}) through any differentiable path"
    if mode == "raise":
        raise DisconnectedInputError(
            msg + "; pass disconnected_inputs='ignore' or 'warn' to get a zero gradient"
        )
    if mode == "warn":
        warnings.warn(msg, stacklevel=3)
    return None if return_disconnected == "none" else zeros_like(w, dtype=zero_dtype)


def _backprop(seeds: dict, wrt: Sequence[Variable], consider_constant) -> dict:
    """Reverse accumulation from ``seeds`` (variable -> its gradient) back to ``wrt``."""
    from flowc.tensor import math
    from flowc.tensor.basic import zeros_like

    blocked = set(consider_constant)
    # Only nodes on a path from wrt to the seeds need their gradients taken.
    order = io_toposort(list(wrt) + list(blocked), list(seeds))
    depends = set(wrt)
    for node in order:
        if any(i in depends for i in node.inputs):
            depends.update(node.outputs)
    contributions: dict[Variable, list] = {v: [g] for v, g in seeds.items()}

    def total(v):
        parts = contributions.get(v)
        if not parts:
            return None
        g = parts[0] if len(parts) == 1 else math.add(*parts)
        if g.dtype != v.dtype and v.dtype not in DISCRETE_DTYPES:
            g = math.cast(g, v.dtype)
        contributions[v] = [g]
        return g

    for node in reversed(order):
        if not any(i in depends for i in node.inputs):
            continue
        out_grads = [total(o) for o in node.outputs]
        if all(g is None for g in out_grads):
            continue
        out_grads = [
            zeros_like(o) if g is None else g for o, g in zip(node.outputs, out_grads, strict=True)
        ]
        in_grads = node.op.grad(list(node.inputs), out_grads)
        if len(in_grads) != len(node.inputs):
            raise ValueError(
                f"{node.op}.grad returned {len(in_grads)} gradients for {len(node.inputs)} inputs"
            )
        for inp, g in zip(node.inputs, in_grads, strict=True):
            if g is None or inp not in depends:
                continue
            g = as_tensor_variable(g)
            if g.ndim != inp.ndim:
                raise ValueError(
                    f"{node.op}.grad gave a {g.ndim}-d gradient for the {inp.ndim}-d input {inp}"
                )
            contributions.setdefault(inp, []).append(g)
    return {w: total(w) for w in wrt if contributions.get(w)}


def Lop(f, wrt, eval_points, consider_constant=None, disconnected_inputs="raise"):  # noqa: N802
    """Vector-Jacobian product ``v^T J`` of ``f`` w.r.t. ``wrt`` for ``v = eval_points``."""
    f_list, _ = _as_list(f)
    v_list, _ = _as_list(eval_points)
    if len(f_list) != len(v_list):
        raise ValueError(f"Lop: {len(f_list)} expressions but {len(v_list)} eval_points")
    known = {}
    for fi, vi in zip(f_list, v_list, strict=True):
        fi, vi = as_tensor_variable(fi), as_tensor_variable(vi)
        if fi.ndim != vi.ndim:
            raise ValueError(f"Lop: eval point {vi} has {vi.ndim} dims, {fi} has {fi.ndim}")
        known[fi] = vi
    return grad(
        None,
        wrt,
        consider_constant=consider_constant,
        disconnected_inputs=disconnected_inputs,
        known_grads=known,
    )


def Rop(f, wrt, eval_points, disconnected_outputs="raise"):  # noqa: N802
    """Jacobian-vector product ``J v`` of ``f`` w.r.t. ``wrt`` for ``v = eval_points``."""
    from flowc.tensor.basic import zeros_like

    f_list, f_is_list = _as_list(f)
    wrt_list, _ = _as_list(wrt)
    v_list, _ = _as_list(eval_points)
    if len(wrt_list) != len(v_list):
        raise ValueError(f"Rop: {len(wrt_list)} wrt but {len(v_list)} eval_points")
    tangents: dict[Variable, Variable] = {}
    for w, v in zip(wrt_list, v_list, strict=True):
        v = as_tensor_variable(v)
        if v.ndim != w.ndim:
            raise ValueError(f"Rop: eval point {v} has {v.ndim} dims, {w} has {w.ndim}")
        tangents[w] = v
    f_list = [as_tensor_variable(x) for x in f_list]
    for node in io_toposort(wrt_list, f_list):
        points = [tangents.get(i) for i in node.inputs]
        if all(p is None for p in points):
            continue
        outs = node.op.R_op(list(node.inputs), points)
        for o, t in zip(node.outputs, outs, strict=True):
            if t is not None:
                tangents[o] = t
    result = []
    for fi in f_list:
        t = tangents.get(fi)
        if t is None:
            if disconnected_outputs == "raise":
                raise DisconnectedInputError(f"Rop: {fi} does not depend on {wrt_list}")
            t = zeros_like(fi)
        result.append(t)
    return result if f_is_list else result[0]


def transpose_grad_rop(op: Op, inputs, eval_points) -> list:
    """``J v`` for one op from its ``grad``: ``J v = d/du <grad(u), v>`` for any ``u``."""
    from flowc.tensor import math, reduction
    from flowc.tensor.basic import zeros_like

    node = op.make_node(*inputs)
    u = [o.type() for o in node.outputs]
    in_grads = op.grad(list(node.inputs), u)
    terms = [
        reduction.sum(g * v)
        for g, v in zip(in_grads, eval_points, strict=True)
        if g is not None and v is not None
    ]
    if not terms:
        return [None] * len(u)
    inner = terms[0] if len(terms) == 1 else math.add(*terms)
    jv = grad(inner, u, disconnected_inputs="ignore", return_disconnected="none")
    # The product is linear in u: setting u to zero removes it from the graph.
    zero = {ui: zeros_like(o) for ui, o in zip(u, node.outputs, strict=True)}
    return [None if j is None else clone_replace(j, zero) for j in jv]


def jacobian(expression, wrt, consider_constant=None, disconnected_inputs="raise"):
    """``d expression / d wrt``, of shape ``expression.shape + wrt.shape`` (per wrt).

    One row per element of ``expression``: the backward graph is built once and
    mapped over the rows of an identity matrix.
    """
    from flowc.control.map import map_rows
    from flowc.tensor import shape_ops
    from flowc.tensor.basic import shape, shape_tuple

    expression = as_tensor_variable(expression)
    wrt_list, is_list = _as_list(wrt)
    flat = shape_ops.flatten(expression, 1)
    u = TensorType(flat.dtype, (None,))("u")
    rows = Lop(flat, wrt_list, u, consider_constant, disconnected_inputs)
    seq = shape_ops.eye(shape_tuple(flat)[0], dtype=flat.dtype)
    outs = map_rows(u, seq, rows)
    results = []
    for w, o in zip(wrt_list, outs, strict=True):
        full = shape_ops.concatenate([shape(expression), shape(w)])
        results.append(shape_ops.reshape(o, full, ndim=expression.ndim + w.ndim))
    return results if is_list else results[0]


def hessian(cost, wrt, consider_constant=None, disconnected_inputs="raise"):
    """The Hessian of the scalar ``cost`` w.r.t. each ``wrt``: ``jacobian(grad(cost, w), w)``."""
    wrt_list, is_list = _as_list(wrt)
    out = []
    for w in wrt_list:
        g = grad(cost, w, consider_constant, disconnected_inputs)
        out.append(jacobian(g, w, consider_constant, disconnected_inputs))
    return out if is_list else out[0]


# ------------------------------------------------------------- gradient control


class GradTransform(Op):
    """Identity forward; the gradient is changed by ``kind`` (Theano's gradient tricks).

    'disconnected': no gradient flows; 'zero': a zero gradient flows;
    'clip': clipped to [a, b]; 'scale': multiplied by a.
    """

    __props__ = ("kind", "a", "b")
    view_map = {0: [0]}

    def __init__(self, kind, a=None, b=None):
        self.kind, self.a, self.b = kind, a, b

    def make_node(self, x):
        x = as_tensor_variable(x)
        return Apply(self, [x], [x.type()])

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = inputs[0]

    def infer_shape(self, fgraph, node, input_shapes):
        return [input_shapes[0]]

    def grad(self, inputs, output_grads):
        from flowc.tensor import math
        from flowc.tensor.basic import zeros_like

        (gz,) = output_grads
        if self.kind == "disconnected":
            return [None]
        if self.kind == "zero":
            return [zeros_like(inputs[0])]
        if self.kind == "clip":
            return [math.clip(gz, self.a, self.b)]
        return [gz * self.a]

    def R_op(self, inputs, eval_points):
        if self.kind in ("disconnected", "zero") or eval_points[0] is None:
            return [None]
        return [eval_points[0]]


def disconnected_grad(x):
    """``x``, through which no gradient flows (the input counts as disconnected)."""
    return GradTransform("disconnected")(x)


def zero_grad(x):
    """``x``, whose gradient is zero (the input stays connected)."""
    return GradTransform("zero")(x)


def grad_clip(x, lower_bound, upper_bound):
    """``x``, with the gradient flowing through it clipped to [lower_bound, upper_bound]."""
    if lower_bound > upper_bound:
        raise ValueError(f"grad_clip: lower bound {lower_bound} > upper bound {upper_bound}")
    return GradTransform("clip", float(lower_bound), float(upper_bound))(x)


def grad_scale(x, multiplier):
    """``x``, with the gradient flowing through it multiplied by ``multiplier``."""
    return GradTransform("scale", float(np.asarray(multiplier)))(x)


consider_constant = disconnected_grad
stop_gradient = disconnected_grad

__all__ = [
    "DisconnectedInputError",
    "Lop",
    "Rop",
    "consider_constant",
    "disconnected_grad",
    "grad",
    "grad_clip",
    "grad_scale",
    "hessian",
    "jacobian",
    "zero_grad",
]
