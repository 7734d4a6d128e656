"""Emitters for the ops that read class labels: ``OneHot`` and the fused softmax
cross-entropy ``CrossentropySoftmax1Hot`` (the loss of a classifier and its gradient).

Labels are data, so their range is checked where the driver runs, before any kernel reads
them: a serial scan on the host that fails with the message ``perform`` gives. A target
whose arrays the host cannot read (``Target.host_memory`` False: CUDA) leaves these ops to
their Python ``perform``.
"""

from __future__ import annotations

from flowc.kernels.render import (
    FLOATS,
    NodeContext,
    Unsupported,
    Val,
    _indent,
    _strided_params,
    ctype,
    register,
)
from flowc.tensor.nnet import OneHot
from flowc.tensor.nnet_fused import CrossentropySoftmax1Hot


def _check_labels(ctx: NodeContext, labels: Val, n_classes: str, what: str) -> None:
    """Run lines that fail on the first label outside ``[0, n_classes)``."""
    i, lab = ctx.fresh("li"), ctx.fresh("lv")
    ctx.launch(
        f"for (int64_t {i} = 0; {i} < {labels.shape[0]}; ++{i}) {{",
        f"  const int64_t {lab} = (int64_t){labels.ptr}[{i} * {labels.strides[0]}];",
        f"  if ({lab} < 0 || {lab} >= {n_classes})",
        f'    return flowc_fail(FLOWC_VALUE_ERROR, {ctx.where}, "{what}: label %lld (at '
        f'position %lld) is out of range; labels must lie in [0, %lld)", (long long){lab}, '
        f"(long long){i}, (long long)({n_classes}));",
        "}",
    )


def _labels(ctx: NodeContext, i: int) -> Val:
    if not ctx.target.host_memory:
        raise Unsupported("labels checked on the host")
    labels = ctx.val(i)
    ctype(labels.dtype)
    return labels


@register(OneHot)
def emit_one_hot(ctx: NodeContext) -> None:
    """Rows of zeros with a one at each label's column."""
    labels = _labels(ctx, 0)
    k = ctx.scalar_val(1)
    ctx.check(
        f"{k.name} >= 0", "to_one_hot: nb_class must be >= 0, got %lld", f"(long long){k.name}"
    )
    y = ctx.buffer(0, [labels.shape[0], f"(int64_t){k.name}"])
    _check_labels(ctx, labels, y.shape[1], "to_one_hot")
    name = ctx.kernel_name("onehot")
    params = [
        "const int64_t n",
        "const int64_t k",
        f"const {labels.ctype}* FLOWC_RESTRICT labels",
        "const int64_t ls",
        f"{y.ctype}* FLOWC_RESTRICT y",
    ]
    body = [
        f"{y.ctype}* FLOWC_RESTRICT row = y + i * k;",
        f"FLOWC_SIMD_FOR(j, k) row[j] = ({y.ctype})0;",
        f"row[(int64_t)labels[i * ls]] = ({y.ctype})1;",
    ]
    ctx.kernel(
        f"FLOWC_KERNEL void {name}({', '.join(params)}) {{\n"
        f"  FLOWC_PARALLEL_ROWS(i, n) {{\n{_indent(body, 4)}  }}\n}}\n"
    )
    args = [y.shape[0], y.shape[1], labels.ptr, labels.strides[0], y.name]
    ctx.launch(f"FLOWC_LAUNCH({name}, {y.size}, {', '.join(args)});")


@register(CrossentropySoftmax1Hot)
def emit_crossentropy_softmax_1hot(ctx: NodeContext) -> None:
    """Per row, relative to its max (0 if not finite): ``log(sum(exp(x - m))) - (x[label] -
    m)``, the cross-entropy of the softmax without forming it."""
    x = ctx.val(0)
    if x.dtype not in FLOATS or x.kind != "array":
        raise Unsupported(f"crossentropy_softmax_1hot of {x.dtype} {x.kind}")
    labels = _labels(ctx, 1)
    ctx.check(
        f"{labels.shape[0]} == {x.shape[0]}",
        "crossentropy_softmax_1hot: x has %lld rows but there are %lld labels",
        f"(long long){x.shape[0]}",
        f"(long long){labels.shape[0]}",
    )
    y = ctx.buffer(0, [x.shape[0]])
    _check_labels(ctx, labels, x.shape[1], "crossentropy_softmax_1hot")
    t = x.ctype
    name = ctx.kernel_name("xent")
    params = _strided_params(x) + [
        f"const {labels.ctype}* FLOWC_RESTRICT labels",
        "const int64_t ls",
        f"{t}* FLOWC_RESTRICT y",
    ]
    body = [
        f"const {t}* FLOWC_RESTRICT p = x + i * s0;",
        f"{t} m = -INFINITY;",
        "for (int64_t j = 0; j < n1; ++j) m = flowc_max(m, p[j * s1]);",
        "if (flowc_isinf(m) || m != m) m = 0;",
        f"{t} sum = 0;",
        "FLOWC_SIMD_SUM(sum)",
        "for (int64_t j = 0; j < n1; ++j) sum += flowc_exp(p[j * s1] - m);",
        "y[i] = flowc_log(sum) - (p[(int64_t)labels[i * ls] * s1] - m);",
    ]
    ctx.kernel(
        f"FLOWC_KERNEL void {name}({', '.join(params)}) {{\n"
        f"  FLOWC_PARALLEL_ROWS(i, n0) {{\n{_indent(body, 4)}  }}\n}}\n"
    )
    args = [x.ptr, *x.shape, *x.strides, labels.ptr, labels.strides[0], y.name]
    ctx.launch(f"FLOWC_LAUNCH({name}, {x.shape[0]} * {x.shape[1]}, {', '.join(args)});")
