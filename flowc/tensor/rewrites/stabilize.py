"""Stabilize: rewrites that turn overflow-prone forms into numerically stable ones.

``log(1 + x)``, ``exp(x) - 1``, logs of sigmoids, ``log(sum(exp(x)))``, ``log(softmax(x))`` and
the softmax cross-entropy become log1p, expm1, softplus, a max-shifted logsumexp, LogSoftmax and
one fused op. Their gradient graphs (``s * (g / s)``, ``exp(x) * g / sum(exp(x))``), built by
``grad`` from the unstable forms, are cancelled so that they stay finite as well.
"""

from __future__ import annotations

from flowc import scalar as ps
from flowc.autodiff import GradTransform
from flowc.graph.rewrite import equilibrium, node_rewriter
from flowc.graph.type import FLOAT_DTYPES
from flowc.tensor import math, reduction
from flowc.tensor.basic import Alloc, alloc
from flowc.tensor.elemwise import DimShuffle, Elemwise, dimshuffle
from flowc.tensor.nnet import CrossentropyCategorical1Hot, LogSoftmax, Softmax
from flowc.tensor.nnet_fused import crossentropy_softmax_1hot
from flowc.tensor.reduction import Reduce
from flowc.tensor.rewrites.utils import constant_value, fits, scalar_op_of

# ------------------------------------------------------------------ helpers


def _floats(*variables) -> bool:
    return all(v.dtype in FLOAT_DTYPES for v in variables)


def _args(var, scalar_op):
    """The inputs of ``var``'s node if it is an Elemwise of ``scalar_op``, else None."""
    return var.owner.inputs if scalar_op_of(var) == scalar_op else None


def _unary_arg(var, scalar_op):
    """``x`` when ``var`` is ``scalar_op(x)`` with ``x`` of ``var``'s dtype (no upcast)."""
    args = _args(var, scalar_op)
    if args is None or args[0].dtype != var.dtype:
        return None
    return args[0]


def _negate(var):
    """``-var``, without stacking a second negation on a negation."""
    inner = _args(var, ps.neg)
    return inner[0] if inner is not None else math.neg(var)


def _is_softmax(var) -> bool:
    return var.owner is not None and type(var.owner.op) is Softmax


def _fit(node, new):
    """The one-output replacement list for ``node``, or None if ``new`` cannot stand for it."""
    new = fits(node.outputs[0], new)
    return None if new is None else [new]


def _restore_pattern(axes, ndim):
    """The DimShuffle pattern that puts the reduced ``axes`` back as size-1 dims."""
    pattern, k = [], 0
    for a in range(ndim):
        if a in axes:
            pattern.append("x")
        else:
            pattern.append(k)
            k += 1
    return tuple(pattern)


def _keepdims_sum(var):
    """``(x, axes)`` when ``var`` is ``sum(x, axes, keepdims=True)``, else None."""
    if var.owner is None or not isinstance(var.owner.op, DimShuffle):
        return None
    total = var.owner.inputs[0]
    if total.owner is None or not isinstance(total.owner.op, Reduce):
        return None
    if total.owner.op.kind != "add":
        return None
    x = total.owner.inputs[0]
    axes = total.owner.op.axis
    if var.owner.op.pattern != _restore_pattern(axes, x.ndim):
        return None
    return x, axes


def _softmax_axis(axes, ndim):
    """Softmax's ``axis`` argument for normalizing over ``axes`` (False: no Softmax does)."""
    if len(axes) == 1:
        return axes[0]
    if tuple(axes) == tuple(range(ndim)):
        return None
    return False


def _max_shifted(x) -> bool:
    """True for ``a - max(a)`` forms (logsumexp's own, through its switch and DimShuffle):
    they cannot overflow, and rewriting their ``log(sum(exp(...)))`` again would not end."""
    args = _args(x, ps.sub)
    if args is None:
        return False
    a, m = args
    while m.owner is not None:
        op = m.owner.op
        if isinstance(op, Reduce):
            return op.kind == "maximum" and m.owner.inputs[0] is a
        if isinstance(op, (DimShuffle, GradTransform)):
            m = m.owner.inputs[0]
        elif scalar_op_of(m) == ps.switch:
            m = m.owner.inputs[2]
        else:
            return False
    return False


# ------------------------------------------------------------------ forward forms


@node_rewriter([Elemwise])
def local_log1p(fgraph, node):
    """log(1 + x) -> log1p(x) (the 1 on either side; log(1 + a + b) -> log1p(a + b))"""
    if scalar_op_of(node) != ps.log:
        return None
    (total,) = node.inputs
    terms = _args(total, ps.add)
    if terms is None or not _floats(total):
        return None
    ones = [k for k, t in enumerate(terms) if constant_value(t) == 1]
    if not ones:
        return None
    rest = [t for k, t in enumerate(terms) if k != ones[0]]
    if any(t.dtype != total.dtype for t in rest):
        return None  # the 1 upcasts x: 1 + x is computed wider than log1p(x) would be
    x = rest[0] if len(rest) == 1 else math.add(*rest)
    return _fit(node, math.log1p(x))


@node_rewriter([Elemwise])
def local_expm1(fgraph, node):
    """exp(x) - 1 -> expm1(x); also -1 + exp(x) + ... -> expm1(x) + ..."""
    op = scalar_op_of(node)
    out = node.outputs[0]
    if not _floats(out):
        return None
    if op == ps.sub:
        a, b = node.inputs
        x = _unary_arg(a, ps.exp)
        if x is None or constant_value(b) != 1 or a.dtype != out.dtype:
            return None
        return _fit(node, math.expm1(x))
    if op == ps.add:
        terms = node.inputs
        minus = [k for k, t in enumerate(terms) if constant_value(t) == -1]
        exps = [k for k, t in enumerate(terms) if _unary_arg(t, ps.exp) is not None]
        if not minus or not exps or terms[exps[0]].dtype != out.dtype:
            return None
        new = math.expm1(_unary_arg(terms[exps[0]], ps.exp))
        rest = [t for k, t in enumerate(terms) if k not in (minus[0], exps[0])]
        return _fit(node, math.add(new, *rest) if rest else new)
    return None


def _one_minus_sigmoid(var):
    """``x`` when ``var`` is ``1 - sigmoid(x)`` (no upcast), else None."""
    args = _args(var, ps.sub)
    if args is None or constant_value(args[0]) != 1:
        return None
    s = args[1]
    x = _unary_arg(s, ps.sigmoid)
    if x is None or s.dtype != var.dtype:
        return None
    return x


@node_rewriter([Elemwise])
def local_one_minus_sigmoid(fgraph, node):
    """1 - sigmoid(x) -> sigmoid(-x) (left to local_log_one_minus_sigmoid where only logs read
    it); 1 - sigmoid(x) rounds to 0 long before sigmoid(-x) underflows"""
    if scalar_op_of(node) != ps.sub or not _floats(node.outputs[0]):
        return None
    x = _one_minus_sigmoid(node.outputs[0])
    if x is None:
        return None
    clients = fgraph.clients.get(node.outputs[0], [])
    if clients and all(c != "output" and scalar_op_of(c) == ps.log for c, _ in clients):
        return None
    return _fit(node, math.sigmoid(_negate(x)))


@node_rewriter([Elemwise])
def local_log_sigmoid(fgraph, node):
    """log(sigmoid(x)) -> -softplus(-x)"""
    if scalar_op_of(node) != ps.log:
        return None
    (s,) = node.inputs
    x = _unary_arg(s, ps.sigmoid)
    if x is None or not _floats(x) or s.dtype != node.outputs[0].dtype:
        return None
    return _fit(node, math.neg(math.softplus(_negate(x))))


@node_rewriter([Elemwise])
def local_log_one_minus_sigmoid(fgraph, node):
    """log(1 - sigmoid(x)) -> -softplus(x)"""
    if scalar_op_of(node) != ps.log:
        return None
    (d,) = node.inputs
    x = _one_minus_sigmoid(d)
    if x is None or not _floats(x) or d.dtype != node.outputs[0].dtype:
        return None
    return _fit(node, math.neg(math.softplus(x)))


@node_rewriter([Elemwise])
def local_logsumexp(fgraph, node):
    """log(sum(exp(x), axis)) -> logsumexp(x, axis), max-shifted; also with keepdims
    (log(DimShuffle(sum(...))) -> DimShuffle(logsumexp(...)))"""
    if scalar_op_of(node) != ps.log:
        return None
    (total,) = node.inputs
    pattern = None
    if total.owner is not None and isinstance(total.owner.op, DimShuffle):
        pattern = total.owner.op.pattern
        total = total.owner.inputs[0]
    if total.owner is None or not isinstance(total.owner.op, Reduce):
        return None
    if total.owner.op.kind != "add":
        return None
    e = total.owner.inputs[0]
    x = _unary_arg(e, ps.exp)
    if x is None or not _floats(x) or total.dtype != x.dtype:
        return None
    if node.outputs[0].dtype != x.dtype or _max_shifted(x):
        return None
    new = reduction.logsumexp(x, axis=total.owner.op.axis)
    if pattern is not None:
        new = dimshuffle(new, pattern)
    return _fit(node, new)


@node_rewriter([Elemwise])
def local_log_softmax(fgraph, node):
    """log(softmax(x, axis)) -> logsoftmax(x, axis)"""
    if scalar_op_of(node) != ps.log:
        return None
    (sm,) = node.inputs
    if not _is_softmax(sm) or sm.dtype != node.outputs[0].dtype:
        return None
    return _fit(node, LogSoftmax(sm.owner.op.axis)(sm.owner.inputs[0]))


@node_rewriter([CrossentropyCategorical1Hot])
def local_crossentropy_softmax(fgraph, node):
    """categorical_crossentropy(softmax(x, axis=-1), labels) -> crossentropy_softmax_1hot(x,
    labels), which is logsumexp(x[i]) - x[i, labels[i]]"""
    coding, labels = node.inputs
    if not _is_softmax(coding):
        return None
    x = coding.owner.inputs[0]
    if x.ndim != 2 or not _floats(x) or x.dtype != node.outputs[0].dtype:
        return None
    if reduction.normalize_axis(coding.owner.op.axis, 2) != (1,):
        return None  # a softmax over columns or over everything is not a per-row one
    return _fit(node, crossentropy_softmax_1hot(x, labels))


# ------------------------------------------------------------------ gradient forms


def _underflows(s) -> bool:
    """True for outputs of exp, sigmoid and softmax: positive, but 0 in floating point far
    out on the left, where ``s * (g / s)`` (the gradient of ``log(s)``) gives nan, not ``g``."""
    return scalar_op_of(s) in (ps.exp, ps.sigmoid) or _is_softmax(s)


def _times(s, h, depth=0):
    """A form of ``s * h`` in which some ``g / s`` inside ``h`` became ``g``; None if none did.

    Goes through neg, add, sub, mul and a switch: the gradient of ``log(s)`` reaches the
    factor ``s`` of ``s``'s own gradient that way.
    """
    op = scalar_op_of(h)
    if op is None or depth > 8:
        return None
    args = h.owner.inputs
    if op == ps.true_div:
        return args[0] if args[1] is s else None
    if op == ps.neg:
        inner = _times(s, args[0], depth + 1)
        return None if inner is None else math.neg(inner)
    if op == ps.mul:
        for k, a in enumerate(args):
            inner = _times(s, a, depth + 1)
            if inner is not None:
                return math.mul(*args[:k], inner, *args[k + 1 :])
        return None
    if op in (ps.add, ps.sub):
        done = [_times(s, a, depth + 1) for a in args]
        if all(d is None for d in done):
            return None
        terms = [d if d is not None else math.mul(s, a) for a, d in zip(args, done, strict=True)]
        return math.add(*terms) if op == ps.add else math.sub(*terms)
    if op == ps.switch:
        cond, *branches = args
        done = [_times(s, b, depth + 1) for b in branches]
        if all(d is None for d in done):
            return None
        # s * 0 is 0 (s is finite or the original was nan anyway): a zero branch stays.
        new = [
            d if d is not None else (b if constant_value(b) == 0 else math.mul(s, b))
            for b, d in zip(branches, done, strict=True)
        ]
        return math.switch(cond, *new)
    return None


@node_rewriter([Elemwise])
def local_mul_cancel_div(fgraph, node):
    """s * (g / s) -> g for s an exp, sigmoid or softmax (also through neg, +, -, * and a
    switch around g / s), the gradient of log(s); where s underflows the original is nan"""
    if scalar_op_of(node) != ps.mul or not _floats(node.outputs[0]):
        return None
    terms = node.inputs
    for i, s in enumerate(terms):
        if not _underflows(s):
            continue
        for j, h in enumerate(terms):
            new = None if j == i else _times(s, h)
            if new is None:
                continue
            rest = [t for k, t in enumerate(terms) if k not in (i, j)]
            result = _fit(node, math.mul(new, *rest) if rest else new)
            if result is not None:
                return result
    return None


def _over_sum_exp(e, h, depth=0):
    """``(g, axes)`` when ``h`` is ``g / sum(e, axes, keepdims=True)`` (through Alloc and
    neg), so that ``e * h`` is ``softmax * g``; else None."""
    if h.owner is None or depth > 4:
        return None
    op = scalar_op_of(h)
    if op == ps.true_div:
        g, den = h.owner.inputs
        found = _keepdims_sum(den)
        if found is None or found[0] is not e:
            return None
        return g, found[1]
    if op == ps.neg:
        found = _over_sum_exp(e, h.owner.inputs[0], depth + 1)
        return None if found is None else (math.neg(found[0]), found[1])
    if isinstance(h.owner.op, Alloc):
        value, *shape = h.owner.inputs
        found = _over_sum_exp(e, value, depth + 1)
        if found is None:
            return None
        return alloc(math.cast(found[0], h.dtype), *shape), found[1]
    return None


def _shifted_softmax(x, axes):
    """``exp(x) / sum(exp(x), axes)`` shifted by the maximum (as Softmax does, for any axes);
    ``x - max`` is exact near the maximum, where ``x - logsumexp(x)`` would not be."""
    m = reduction.max(x, axis=axes, keepdims=True)
    e = math.exp(x - math.switch(math.isinf(m), 0, m))
    return e / reduction.sum(e, axis=axes, keepdims=True)


@node_rewriter([Elemwise])
def local_exp_over_sum_exp(fgraph, node):
    """exp(x) * (g / sum(exp(x), axis, keepdims)) -> softmax(x, axis) * g (the gradient of
    log(sum(exp(x))), where exp(x) / sum overflows to inf / inf); a max-shifted
    exp(x - max) / sum(...) for a sum over several but not all axes"""
    if scalar_op_of(node) != ps.mul or not _floats(node.outputs[0]):
        return None
    terms = node.inputs
    for i, e in enumerate(terms):
        x = _unary_arg(e, ps.exp)
        if x is None or not _floats(x):
            continue
        for j, h in enumerate(terms):
            found = None if j == i else _over_sum_exp(e, h)
            if found is None:
                continue
            g, axes = found
            axis = _softmax_axis(axes, x.ndim)
            if axis is False:  # several axes, not all: no Softmax op does it
                probs = _shifted_softmax(x, axes)
            else:
                probs = Softmax(axis)(x)
            rest = [t for k, t in enumerate(terms) if k not in (i, j)]
            result = _fit(node, math.mul(probs, g, *rest))
            if result is not None:
                return result
    return None


REWRITES = [
    local_log1p,
    local_expm1,
    local_one_minus_sigmoid,
    local_log_sigmoid,
    local_log_one_minus_sigmoid,
    local_logsumexp,
    local_log_softmax,
    local_crossentropy_softmax,
    local_mul_cancel_div,
    local_exp_over_sum_exp,
]


def run(fgraph):
    """The stabilize step: REWRITES to a fixed point."""
    return equilibrium(fgraph, REWRITES, name="stabilize")
