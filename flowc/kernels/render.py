"""The C++ renderer: a per-op emit table that writes each node as kernels in the flowc dialect
(``flowc_kernel.h``) plus the driver lines that compute its shape, check it and launch it."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import numpy as np

from flowc import scalar as ps
from flowc.graph.basic import Apply, Constant, Variable
from flowc.tensor.basic import Alloc, Shape, Shape_i, SpecifyShape
from flowc.tensor.blas import Gemm
from flowc.tensor.composite import Composite, ScalarConstant
from flowc.tensor.elemwise import DimShuffle, Elemwise
from flowc.tensor.linalg import Dot
from flowc.tensor.nnet import LogSoftmax, Softmax
from flowc.tensor.reduction import Argmax, Reduce, normalize_axis
from flowc.tensor.subtensor import Subtensor

__all__ = [
    "CPU",
    "CTYPES",
    "EMITTERS",
    "SCALAR_C",
    "Segment",
    "SplitBefore",
    "Target",
    "Unsupported",
    "Val",
    "c_literal",
    "emitter_for",
    "register",
    "scalar_expr",
]

CTYPES = {
    "bool": "bool",
    "int8": "int8_t",
    "int16": "int16_t",
    "int32": "int32_t",
    "int64": "int64_t",
    "uint8": "uint8_t",
    "uint16": "uint16_t",
    "uint32": "uint32_t",
    "uint64": "uint64_t",
    "float32": "float",
    "float64": "double",
}
FLOATS = frozenset({"float32", "float64"})


class Unsupported(Exception):  # noqa: N818 (a signal to the planner, not an error)
    """The node has no C++ emitter for its op or dtypes: it runs its Python ``perform``."""


class SplitBefore(Exception):  # noqa: N818
    """The node needs a scalar that a kernel of the current segment computes."""


@dataclasses.dataclass(frozen=True)
class Target:
    """What generated code may use: the capability flags of a back end."""

    name: str = "cpu"
    parallel_reductions: bool = True  # OpenMP reduction clauses (a GPU needs block reductions)
    blas: bool = True  # cblas for float32/float64 matrix products
    host_memory: bool = True  # the driver may read buffers (False: they are device memory)


CPU = Target()


def ctype(dtype: str) -> str:
    try:
        return CTYPES[dtype]
    except KeyError:
        raise Unsupported(f"no C type for dtype {dtype}") from None


def c_literal(value, dtype: str) -> str:
    """``value`` as a C literal of ``dtype`` (exact: floats print their shortest repr)."""
    ct = ctype(dtype)
    if dtype == "bool":
        return "true" if bool(value) else "false"
    if dtype.startswith(("int", "uint")):
        v = int(value)
        if dtype == "int64" and v == -(2**63):
            return "INT64_MIN"
        return f"({ct}){v}{'ULL' if dtype.startswith('u') else 'LL'}"
    v = float(value)
    if v != v:
        return f"({ct})NAN"
    if v in (float("inf"), float("-inf")):
        return f"({ct})({'-' if v < 0 else ''}INFINITY)"
    return f"({ct}){v!r}"


# ------------------------------------------------------------------ scalar functions

# ScalarOp name -> C expression over its arguments {0}, {1}, ..., each already converted to
# the type the function computes in; add and mul fold their template over any arity.
SCALAR_C = {
    "add": "({0} + {1})",
    "mul": "({0} * {1})",
    "sub": "({0} - {1})",
    "true_div": "({0} / {1})",
    "int_div": "flowc_floordiv({0}, {1})",
    "mod": "flowc_mod({0}, {1})",
    "pow": "flowc_pow({0}, {1})",
    "maximum": "flowc_max({0}, {1})",
    "minimum": "flowc_min({0}, {1})",
    "eq": "({0} == {1})",
    "neq": "({0} != {1})",
    "lt": "({0} < {1})",
    "le": "({0} <= {1})",
    "gt": "({0} > {1})",
    "ge": "({0} >= {1})",
    "and_": "({0} & {1})",
    "or_": "({0} | {1})",
    "xor": "({0} ^ {1})",
    "invert": "flowc_invert({0})",
    "switch": "({0} ? {1} : {2})",
    "clip": "flowc_min(flowc_max({0}, {1}), {2})",
    "identity": "{0}",
    "neg": "(-{0})",
    "abs": "flowc_abs({0})",
    "sign": "flowc_sign({0})",
    "floor": "flowc_floor({0})",
    "ceil": "flowc_ceil({0})",
    "round_half_to_even": "flowc_rint({0})",
    "round_half_away_from_zero": "flowc_round({0})",
    "isnan": "flowc_isnan({0})",
    "isinf": "flowc_isinf({0})",
    "sqr": "({0} * {0})",
    "reciprocal": "flowc_reciprocal({0})",
    **{
        name: f"flowc_{name}({{0}})"
        for name in (
            "exp exp2 expm1 log log2 log10 log1p sqrt sin cos tan arcsin arccos arctan sinh "
            "cosh tanh arcsinh arccosh arctanh erf erfc erfinv gamma gammaln psi tri_gamma "
            "sigmoid softplus"
        ).split()
    },
}
# Functions whose C versions take float and double only (the rest also have integer ones).
_FLOAT_ONLY = frozenset(
    "pow floor ceil exp exp2 expm1 log log2 log10 log1p sqrt sin cos tan arcsin arccos arctan "
    "sinh cosh tanh arcsinh arccosh arctanh erf erfc sigmoid softplus".split()
)


def _arg_dtypes(op: ps.ScalarOp, dtypes: list[str], out: str) -> list[str]:
    """The dtype each argument is converted to before ``op`` computes (NumPy's loop type)."""
    if op in ps.COMPARISONS:
        common = np.result_type(*dtypes).name
        return [common] * len(dtypes)
    if op.name == "switch":
        return ["bool", out, out]
    if op.name in ("isnan", "isinf"):
        return list(dtypes)
    return [out] * len(dtypes)


def scalar_expr(op: ps.ScalarOp, args: list[str], dtypes: list[str], out: str) -> str:
    """C expression of ``op`` on ``args`` (of ``dtypes``), of the C type of ``out``."""
    ct = ctype(out)
    if isinstance(op, ps.Cast):
        ctype(dtypes[0])
        return f"({ct})({args[0]})"
    template = SCALAR_C.get(op.name)
    if template is None or isinstance(op, Composite):
        raise Unsupported(f"no C expression for the scalar function {op.name}")
    conv = _arg_dtypes(op, dtypes, out)
    if op.name in _FLOAT_ONLY and any(d not in FLOATS for d in conv):
        raise Unsupported(f"{op.name} computes in {conv}; the C version needs floats")
    cargs = [
        a if d == c else f"({ctype(c)}){a}" for a, d, c in zip(args, dtypes, conv, strict=True)
    ]
    if op.nin == -1:
        expr = cargs[0]
        for a in cargs[1:]:
            expr = template.format(expr, a)
        if len(cargs) == 1:
            expr = f"({expr})"
    else:
        expr = template.format(*cargs)
    return f"({ct}){expr}"


def loop_body(scalar_op, in_dtypes: list[str], out_dtypes: list[str]) -> Callable:
    """``body(arg names) -> (lines, output expressions)`` for one element of an Elemwise.

    A Composite becomes one statement per step, each cast to the step's dtype exactly as
    separate nodes would be. Raises Unsupported up front if any step cannot be written.
    """
    for d in (*in_dtypes, *out_dtypes):
        ctype(d)
    if isinstance(scalar_op, Composite):
        comp = scalar_op
        step_dtypes = comp.step_dtypes(in_dtypes)

        def body(args):
            regs, kinds, lines = list(args), list(in_dtypes), []
            for k, ((op, refs), dt) in enumerate(zip(comp.steps, step_dtypes, strict=True)):
                a = [
                    c_literal(r.value, r.dtype) if isinstance(r, ScalarConstant) else regs[r]
                    for r in refs
                ]
                ad = [r.dtype if isinstance(r, ScalarConstant) else kinds[r] for r in refs]
                lines.append(f"const {ctype(dt)} t{k} = {scalar_expr(op, a, ad, dt)};")
                regs.append(f"t{k}")
                kinds.append(dt)
            return lines, [regs[o] for o in comp.outputs]

    else:

        def body(args):
            return [], [scalar_expr(scalar_op, list(args), in_dtypes, out_dtypes[0])]

    body([f"a{k}" for k in range(len(in_dtypes))])  # raises Unsupported now, not later
    return body


def _cast_body(in_dtype: str, out_dtype: str) -> Callable:
    ctype(in_dtype)
    ct = ctype(out_dtype)
    return lambda args: ([], [args[0] if in_dtype == out_dtype else f"({ct})({args[0]})"])


# ------------------------------------------------------------------------ values


@dataclasses.dataclass(eq=False)
class Val:
    """A value inside a driver: where its elements are, as C expressions.

    ``array``: ``name`` is the data pointer, ``shape``/``strides`` one expression per dim
    (strides in elements). ``scalar``: ``name`` is a local holding the single element.
    ``var`` is the variable this storage was made for (None for views and aliases);
    ``buffer`` marks storage the driver allocates (scratch or a caller's output array).
    """

    name: str
    dtype: str
    static: tuple
    kind: str
    shape: tuple
    strides: tuple
    var: Variable | None = None
    buffer: bool = False
    size: str = ""  # C name of the element count (buffers)

    @property
    def ndim(self) -> int:
        return len(self.static)

    @property
    def ctype(self) -> str:
        return CTYPES[self.dtype]

    @property
    def ptr(self) -> str:
        return self.name if self.kind == "array" else f"(&{self.name})"

    @property
    def item(self) -> str:
        return self.name if self.kind == "scalar" else f"{self.name}[0]"


def _scalar_val(name, dtype, static, var=None) -> Val:
    nd = len(static)
    return Val(name, dtype, tuple(static), "scalar", ("1",) * nd, ("0",) * nd, var)


def _prod(exprs) -> str:
    exprs = [e for e in exprs if e != "1"]
    return " * ".join(exprs) if exprs else "1"


def _shape_fmt(vals) -> tuple[str, list[str]]:
    """printf format and arguments showing the shapes of ``vals``."""
    parts, args = [], []
    for v in vals:
        dims = ["%lld"] * v.ndim
        parts.append("(" + ", ".join(dims) + ("," if v.ndim == 1 else "") + ")")
        args += [f"(long long){s}" for s in v.shape]
    return ", ".join(parts), args


def _contiguous(v: Val) -> str:
    """C condition: ``v`` is C-contiguous (dims of size <= 1 may have any stride)."""
    if v.buffer:
        return "true"  # the driver allocates buffers contiguous
    conds, expected = [], "1"
    for d in reversed(range(v.ndim)):
        if v.static[d] != 1:
            conds.append(f"({v.shape[d]} <= 1 || {v.strides[d]} == {expected})")
        expected = v.shape[d] if expected == "1" else f"({v.shape[d]} * {expected})"
    return " && ".join(conds) or "true"


def _indent(lines, n) -> str:
    pad = " " * n
    return "".join(pad + line + "\n" if line else "\n" for line in lines)


# ------------------------------------------------------------------- the segment


class Segment:
    """The nodes of one driver function: their values, prologue, run lines and kernels.

    Each value is a ``Val``. Shapes and scalars are computed in the driver's prologue, before
    any kernel runs, so the driver knows every output's shape first. An emitter raises
    ``Unsupported`` for a node it cannot write (the node then runs its Python ``perform``)
    and ``SplitBefore`` when it needs as a scalar (a size, an index) a value that only a
    kernel of this segment computes: the caller starts a new segment, where it is an input.
    """

    def __init__(self, index: int, target: Target = CPU):
        self.index = index
        self.target = target
        self.nodes: list[Apply] = []
        self.inputs: list[Variable] = []
        self.input_code: list[str] = []
        self.vals: dict[Variable, Val] = {}
        self.prologue: list[str] = []
        self.run: list[str] = []
        self.kernels: list[str] = []
        self.buffers: list[Val] = []
        self.needs_blas = False
        self._names = itertools.count()

    def fresh(self, base="v") -> str:
        return f"{base}{next(self._names)}"

    def emit(self, node: Apply) -> None:
        """Add ``node``; raises Unsupported or SplitBefore, leaving the segment unchanged."""
        emit = emitter_for(node.op)
        if emit is None:
            raise Unsupported(f"no emitter for {type(node.op).__name__}")
        ctx = NodeContext(self, node, len(self.nodes))
        emit(ctx)
        ctx.commit()

    def lookup(self, var: Variable, ctx: NodeContext) -> Val:
        """The Val of ``var``: made here, or a new input of the segment (or a literal)."""
        val = self.vals.get(var) or ctx.new_vals.get(var)
        if val is not None:
            return val
        dtype, static = var.type.dtype, var.type.shape
        ct = ctype(dtype)
        name = self.fresh("c" if isinstance(var, Constant) else "x")
        if isinstance(var, Constant) and var.data.size == 1:
            val = _scalar_val(name, dtype, static, var)
            ctx.new_code.append(f"{ct} {name} = {c_literal(var.data.reshape(-1)[0], dtype)};")
        else:
            k = len(self.inputs) + len(ctx.new_inputs)
            ctx.new_inputs.append(var)
            arr = f"in{k}"
            code = [
                f"const flowc_pyarray* {arr} = (const flowc_pyarray*){arr}_;",
                f"FLOWC_TRY(flowc_check_input({arr}, {-1 - k}, {len(static)}, sizeof({ct})));",
            ]
            if not static:
                val = _scalar_val(name, dtype, static, var)
                code.append(f"{ct} {name} = *(const {ct}*){arr}->data;")
            else:
                nd = len(static)
                shape = tuple(f"{name}_n{d}" for d in range(nd))
                strides = tuple(f"{name}_s{d}" for d in range(nd))
                val = Val(name, dtype, static, "array", shape, strides, var)
                code.append(f"{ct}* {name} = ({ct}*){arr}->data;")
                for d in range(nd):
                    code.append(f"const int64_t {shape[d]} = {arr}->dims[{d}];")
                    code.append(
                        f"const int64_t {strides[d]} = {shape[d]} > 1 ? "
                        f"{arr}->strides[{d}] / (int64_t)sizeof({ct}) : 0;"
                    )
                for d, s in enumerate(static):
                    if s is not None:
                        code.append(
                            f"if ({shape[d]} != {s}) return flowc_fail(FLOWC_VALUE_ERROR, "
                            f'{-1 - k}, "dim {d} has size %lld, but its type says {s}", '
                            f"(long long){shape[d]});"
                        )
            ctx.new_code.extend(code)
        ctx.new_vals[var] = val
        return val


class NodeContext:
    """What an emitter writes through: its node's inputs as Vals, and the code it adds.

    Nothing reaches the segment until ``commit``, so a failed emitter leaves no trace.
    """

    def __init__(self, seg: Segment, node: Apply | None, where: int):
        self.seg = seg
        self.node = node
        self.where = where
        self.target = seg.target
        self.new_vals: dict[Variable, Val] = {}
        self.new_inputs: list[Variable] = []
        self.new_code: list[str] = []
        self.prologue: list[str] = []
        self.run: list[str] = []
        self.kernels: list[str] = []
        self.buffers: list[Val] = []
        self.outs: dict[int, Val] = {}
        self.needs_blas = False
        self._kernel_ids = itertools.count()

    # ---------------------------------------------------------------- inputs
    def val(self, i: int) -> Val:
        return self.seg.lookup(self.node.inputs[i], self)

    def scalar_val(self, i: int) -> Val:
        """Input ``i`` as a scalar known in the prologue (a size, an index)."""
        v = self.val(i)
        if v.kind != "scalar":
            raise SplitBefore(self.node.inputs[i])
        return v

    # ------------------------------------------------------------------ code
    def fresh(self, base="v") -> str:
        return self.seg.fresh(base)

    def kernel_name(self, tag: str) -> str:
        return f"flowc_k{self.seg.index}_{self.where}_{tag}{next(self._kernel_ids)}"

    def pro(self, *lines: str) -> None:
        self.prologue.extend(lines)

    def launch(self, *lines: str) -> None:
        self.run.extend(lines)

    def kernel(self, text: str) -> None:
        self.kernels.append(text)

    def check(self, cond: str, fmt: str, *args: str, code="FLOWC_VALUE_ERROR") -> None:
        """Prologue: fail with ``fmt % args`` (printf) unless ``cond`` holds."""
        fmt = fmt.replace('"', "'")
        tail = "".join(f", {a}" for a in args)
        self.pro(f'if (!({cond})) return flowc_fail({code}, {self.where}, "{fmt}"{tail});')

    # --------------------------------------------------------------- outputs
    def buffer(self, k: int, shape) -> Val:
        """Output ``k`` as a new C-contiguous array of ``shape`` (C expressions)."""
        var = self.node.outputs[k]
        dtype, static = var.type.dtype, var.type.shape
        ctype(dtype)
        name = self.fresh()
        nd = len(shape)
        dims = tuple(f"{name}_n{d}" for d in range(nd))
        strides = tuple(f"{name}_s{d}" for d in range(nd))
        for d in range(nd):
            self.pro(f"const int64_t {dims[d]} = {shape[d]};")
        for d in reversed(range(nd)):
            below = "1" if d == nd - 1 else f"{dims[d + 1]} * {strides[d + 1]}"
            self.pro(f"const int64_t {strides[d]} = {below};")
        self.pro(f"const int64_t {name}_size = {_prod(dims)};")
        val = Val(name, dtype, tuple(static), "array", dims, strides, var, True, f"{name}_size")
        self.buffers.append(val)
        self.outs[k] = val
        return val

    def view(self, k: int, data: str, shape, strides) -> Val:
        """Output ``k`` as a view: its data pointer is set where the node runs."""
        var = self.node.outputs[k]
        name = self.fresh()
        nd = len(shape)
        dims = tuple(f"{name}_n{d}" for d in range(nd))
        steps = tuple(f"{name}_s{d}" for d in range(nd))
        for d in range(nd):
            self.pro(
                f"const int64_t {dims[d]} = {shape[d]};",
                f"const int64_t {steps[d]} = {strides[d]};",
            )
        val = Val(name, var.type.dtype, var.type.shape, "array", dims, steps)
        self.launch(f"{val.ctype}* {name} = {data};")
        self.outs[k] = val
        return val

    def alias(self, k: int, val: Val) -> None:
        """Output ``k`` is ``val`` seen with the output's type (no code)."""
        static = self.node.outputs[k].type.shape
        self.outs[k] = dataclasses.replace(val, static=tuple(static), var=None, buffer=False)

    def scalar(self, k: int, lines, expr: str) -> Val:
        """Output ``k`` as a scalar local computed in the prologue by ``lines`` then ``expr``."""
        var = self.node.outputs[k]
        name = self.fresh()
        val = _scalar_val(name, var.type.dtype, var.type.shape, var)
        if lines:
            self.pro(
                f"{val.ctype} {name};", "{", *("  " + s for s in lines), f"  {name} = {expr};", "}"
            )
        else:
            self.pro(f"{val.ctype} {name} = {expr};")
        self.outs[k] = val
        return val

    def commit(self) -> None:
        seg = self.seg
        seg.inputs.extend(self.new_inputs)
        seg.input_code.extend(self.new_code)
        seg.vals.update(self.new_vals)
        if self.node is not None:
            header = f"// {self.where}: {_c_comment(self.node)}"
            seg.prologue.append(header)
            seg.run.append(header)
            seg.nodes.append(self.node)
            for k, val in self.outs.items():
                seg.vals[self.node.outputs[k]] = val
        seg.prologue.extend(self.prologue)
        seg.run.extend(self.run)
        seg.kernels.extend(self.kernels)
        seg.buffers.extend(self.buffers)
        seg.needs_blas |= self.needs_blas


def _c_comment(node) -> str:
    """``node`` as the text of a ``//`` comment (no line break, no line splice)."""
    text = str(node).replace("\n", " ").replace("\\", "/")
    return text if len(text) <= 100 else text[:97] + "..."


# ------------------------------------------------------------------- the table

EMITTERS: dict[type, Callable[[NodeContext], None]] = {}


def register(*op_types):
    """Make the decorated ``emit(ctx)`` the C++ emitter of ``op_types`` (and subclasses)."""

    def deco(fn):
        for t in op_types:
            EMITTERS[t] = fn
        return fn

    return deco


def emitter_for(op):
    """The emitter registered for ``type(op)`` or its nearest base class; None if none."""
    for cls in type(op).__mro__:
        if cls in EMITTERS:
            return EMITTERS[cls]
    return None


# ------------------------------------------------------------- elementwise loops


@dataclasses.dataclass
class MapIn:
    """An input of an elementwise loop: ``scalar`` (one element, passed by value), ``full``
    (the output's shape: contiguous means flat indexing) or ``partial`` (broadcast)."""

    val: Val
    strides: tuple
    mode: str


def map_input(v: Val, out_static) -> MapIn:
    """Classify ``v`` (of the output's ndim) as a loop input; static 1 dims broadcast."""
    strides = tuple("0" if s == 1 else v.strides[d] for d, s in enumerate(v.static))
    if v.kind == "scalar" or all(s == 1 for s in v.static):
        mode = "scalar"
    elif all(s != 1 or o == 1 for s, o in zip(v.static, out_static, strict=True)):
        mode = "full"
    else:
        mode = "partial"
    return MapIn(v, strides, mode)


def emit_map(ctx: NodeContext, outs: list[Val], ins: list[MapIn], body, tag="map") -> None:
    """Kernels computing ``outs`` (contiguous, one shape) elementwise from ``ins``.

    A flat kernel serves inputs that are contiguous (or scalars): a branch-free loop that
    vectorizes. A strided kernel serves the rest: rows over the leading dims, an inner loop
    over the last one with each input's own stride (0 where it broadcasts). The driver picks
    one at run time by the inputs' strides.
    """
    name = ctx.kernel_name(tag)
    size = outs[0].size or _prod(outs[0].shape)
    lines, exprs = body([f"a{k}" for k in range(len(ins))])
    stores = [f"{{q}}{k}[{{i}}] = {e};" for k, e in enumerate(exprs)]
    out_params = [f"{o.ctype}* FLOWC_RESTRICT y{k}" for k, o in enumerate(outs)]
    out_args = [o.name for o in outs]
    fulls = [m for m in ins if m.mode == "full"]
    calls = []

    def signature(strided: bool):
        """(params, args, preamble) of the flat or the strided kernel. A one-element input
        is passed by value, or by pointer where the driver cannot read it (device memory)."""
        nd = outs[0].ndim
        params = [f"const int64_t n{d}" for d in range(nd)] if strided else ["const int64_t n"]
        args, pre = (list(outs[0].shape) if strided else [size]), ""
        for k, m in enumerate(ins):
            t = m.val.ctype
            if m.mode == "scalar" and (m.val.kind == "scalar" or ctx.target.host_memory):
                params.append(f"const {t} x{k}")
                args.append(m.val.item)
            elif m.mode == "scalar":
                params.append(f"const {t}* FLOWC_RESTRICT x{k}_p")
                args.append(m.val.ptr)
                pre += f"  const {t} x{k} = x{k}_p[0];\n"
            else:
                params.append(f"const {t}* FLOWC_RESTRICT x{k}")
                args.append(m.val.ptr)
                if strided:
                    params += [f"const int64_t x{k}_s{d}" for d in range(nd)]
                    args += list(m.strides)
        return params, args, pre

    if all(m.mode != "partial" for m in ins):
        params, args, pre = signature(strided=False)
        inner = [
            f"const {m.val.ctype} a{k} = x{k}{'' if m.mode == 'scalar' else '[i]'};"
            for k, m in enumerate(ins)
        ]
        inner += lines + [st.format(q="y", i="i") for st in stores]
        ctx.kernel(
            f"FLOWC_KERNEL void {name}_flat({', '.join(params + out_params)}) {{\n{pre}"
            f"  FLOWC_PARALLEL_FOR(i, n) {{\n{_indent(inner, 4)}  }}\n}}\n"
        )
        calls.append(f"FLOWC_LAUNCH({name}_flat, {size}, {', '.join(args + out_args)});")
        if all(m.val.buffer for m in fulls):
            ctx.launch(calls[0])  # every input is known contiguous (or a scalar)
            return
    params, args, pre = signature(strided=True)
    text = _strided_loop(ins, outs, lines, stores)
    ctx.kernel(
        f"FLOWC_KERNEL void {name}_strided({', '.join(params + out_params)}) {{\n{pre}{text}}}\n"
    )
    calls.append(f"FLOWC_LAUNCH({name}_strided, {size}, {', '.join(args + out_args)});")
    if len(calls) == 1:
        ctx.launch(calls[0])
    else:
        cond = " && ".join(_contiguous(m.val) for m in fulls)
        ctx.launch(f"if ({cond})", "  " + calls[0], "else", "  " + calls[1])


def _strided_loop(ins: list[MapIn], outs: list[Val], lines, stores) -> str:
    """The body of a strided elementwise kernel (parameters ``n{d}``, ``x{k}``, ``x{k}_s{d}``)."""
    nd = outs[0].ndim
    last = nd - 1
    arrays = [k for k, m in enumerate(ins) if m.mode != "scalar"]
    # Inputs broadcast along the last dim are read once per row; the others get a unit-stride
    # loop (plain vector loads) when all their strides allow it, else a strided one.
    rowwise = [k for k in arrays if nd > 1 and ins[k].strides[last] == "0"]
    moving = [k for k in arrays if k not in rowwise]

    def loop(i, at):
        def src(k, m):
            if m.mode == "scalar":
                return f"x{k}"
            return f"b{k}" if k in rowwise else f"{'x' if nd == 1 else 'p'}{k}[{at(k)}]"

        inner = [f"const {m.val.ctype} a{k} = {src(k, m)};" for k, m in enumerate(ins)]
        return inner + lines + [st.format(q="y" if nd == 1 else "q", i=i) for st in stores]

    if nd == 1:
        body = loop("i", lambda k: f"i * x{k}_s0")
        return f"  FLOWC_PARALLEL_FOR(i, n0) {{\n{_indent(body, 4)}  }}\n"
    head = _decompose(range(nd - 1), "i", "r", lambda d: f"n{d}")
    head += [
        f"const {ins[k].val.ctype}* FLOWC_RESTRICT p{k} = x{k} + "
        f"({' + '.join(f'i{d} * x{k}_s{d}' for d in range(nd - 1))});"
        for k in arrays
    ]
    head += [f"const {ins[k].val.ctype} b{k} = p{k}[0];" for k in rowwise]
    head += [f"{o.ctype}* FLOWC_RESTRICT q{k} = y{k} + r * n{last};" for k, o in enumerate(outs)]

    def row(at):
        return [f"FLOWC_SIMD_FOR(j, n{last}) {{", *("  " + s for s in loop("j", at)), "}"]

    if moving:
        head += [f"if ({' && '.join(f'x{k}_s{last} == 1' for k in moving)}) {{"]
        head += ["  " + s for s in row(lambda k: "j")] + ["} else {"]
        head += ["  " + s for s in row(lambda k: f"j * x{k}_s{last}")] + ["}"]
    else:
        head += row(None)
    return (
        f"  const int64_t rows = {_prod(f'n{d}' for d in range(nd - 1))};\n"
        f"  FLOWC_PARALLEL_ROWS(r, rows) {{\n{_indent(head, 4)}  }}\n"
    )


def _decompose(dims, idx: str, flat: str, size) -> list[str]:
    """Lines splitting ``flat`` into row-major indices ``{idx}{d}`` over ``dims``."""
    dims = list(dims)
    if not dims:
        return []
    lines = [f"int64_t rem = {flat};"]
    for d in reversed(dims[1:]):
        lines += [f"const int64_t {idx}{d} = rem % {size(d)};", f"rem /= {size(d)};"]
    lines.append(f"const int64_t {idx}{dims[0]} = rem;")
    return lines


def _offset(dims, idx: str, stride) -> str:
    terms = [f"{idx}{d} * {stride(d)}" for d in dims]
    return " + ".join(terms) if terms else "0"


def _nest(dims, inner: list[str], pragma: str | None = None) -> list[str]:
    """Nested loops ``j{d}`` over ``dims`` around ``inner``; ``pragma`` on the innermost."""
    dims = list(dims)
    if not dims:
        return ["{", *("  " + s for s in inner), "}"]
    lines, pad = [], ""
    for n, d in enumerate(dims):
        if pragma and n == len(dims) - 1:
            lines.append(pad + pragma)
        lines.append(f"{pad}for (int64_t j{d} = 0; j{d} < n{d}; ++j{d}) {{")
        pad += "  "
    lines += [pad + s for s in inner]
    for _ in dims:
        pad = pad[:-2]
        lines.append(pad + "}")
    return lines


def _broadcast_shape(ctx: NodeContext, ins: list[Val], out_static) -> list[str]:
    """The output shape of an Elemwise, checking that non-broadcast dims agree."""
    fmt, args = _shape_fmt(ins)
    shape = []
    for d, st in enumerate(out_static):
        srcs = [v for v in ins if v.static[d] != 1]
        if st == 1 or not srcs:
            shape.append("1")
            continue
        for other in srcs[1:]:
            ctx.check(
                f"{other.shape[d]} == {srcs[0].shape[d]}",
                f"input shapes {fmt} disagree along dim {d}; a dim broadcasts only where its "
                f"static size is 1 (use a row/col type, dimshuffle('x', ...) or addbroadcast)",
                *args,
            )
        shape.append(srcs[0].shape[d])
    return shape


def _align(v: Val, nd: int) -> Val:
    """``v`` with leading broadcast dims added up to ``nd`` dims (no code)."""
    lead = nd - v.ndim
    if lead == 0:
        return v
    return dataclasses.replace(
        v,
        static=(1,) * lead + tuple(v.static),
        shape=("1",) * lead + tuple(v.shape),
        strides=("0",) * lead + tuple(v.strides),
        var=None,
        buffer=False,
    )


def copy_into(ctx: NodeContext, src: Val, dst: Val) -> None:
    """Copy (and cast) ``src`` into the contiguous array ``dst`` of the same shape."""
    if src.kind == "scalar":
        ctx.launch(f"{dst.name}[0] = ({dst.ctype}){src.name};")
        return
    emit_map(ctx, [dst], [map_input(src, dst.static)], _cast_body(src.dtype, dst.dtype), "copy")


@register(Elemwise)
def emit_elemwise(ctx: NodeContext) -> None:
    """One flat and one strided loop over the broadcast shape (Composite: one fused body)."""
    node = ctx.node
    ins = [ctx.val(i) for i in range(len(node.inputs))]
    body = loop_body(node.op.scalar_op, [v.dtype for v in ins], [o.dtype for o in node.outputs])
    if all(v.kind == "scalar" for v in ins):
        lines, exprs = body([v.name for v in ins])
        for k, e in enumerate(exprs):
            ctx.scalar(k, lines, e)
        return
    shape = _broadcast_shape(ctx, ins, node.outputs[0].type.shape)
    outs = [ctx.buffer(k, shape) for k in range(len(node.outputs))]
    emit_map(ctx, outs, [map_input(v, outs[0].static) for v in ins], body)


# -------------------------------------------------------------------- reductions

_INIT = {"add": "0", "mul": "1", "and": "true", "or": "false"}
_COMBINE = {
    "add": "{acc} += {v};",
    "mul": "{acc} *= {v};",
    "maximum": "{acc} = flowc_max({acc}, {v});",
    "minimum": "{acc} = flowc_min({acc}, {v});",
    "and": "{acc} = {acc} && {v};",
    "or": "{acc} = {acc} || {v};",
}
_CHUNK = 1024  # output elements per task when reducing into contiguous rows


def _strided_params(v: Val) -> list[str]:
    return (
        [f"const {v.ctype}* FLOWC_RESTRICT x"]
        + [f"const int64_t n{d}" for d in range(v.ndim)]
        + [f"const int64_t s{d}" for d in range(v.ndim)]
    )


def _unit_or_strided(stride: str, loop) -> list[str]:
    """``loop(index)`` twice: for a unit ``stride`` (plain vector loads) and for any other."""
    return [f"if ({stride} == 1) {{", *loop("j"), "} else {", *loop(f"j * {stride}"), "}"]


@register(Reduce)
def emit_reduce(ctx: NodeContext) -> None:
    """Reduce over any axis set. When the last dim is kept, each task accumulates a chunk of
    an output row while streaming the input's rows; otherwise each output element loops over
    the reduced dims. A full reduction of a contiguous input is one flat parallel loop."""
    op = ctx.node.op
    x = ctx.val(0)
    acc_t = ctype(op.dtype)
    if x.kind == "scalar":
        ctx.scalar(0, [], f"({acc_t}){x.name}")
        return
    red = sorted({a % x.ndim for a in op.axis})
    kept = [d for d in range(x.ndim) if d not in red]
    if op.kind in ("maximum", "minimum"):
        fmt, args = _shape_fmt([x])
        ctx.check(
            " && ".join(f"{x.shape[d]} > 0" for d in red) or "true",
            f"cannot take the {op.kind} over an empty axis of an array of shape {fmt}",
            *args,
        )
    y = ctx.buffer(0, [x.shape[d] for d in kept])
    first = op.kind in ("maximum", "minimum")  # start from the first element, not a constant
    combine = _COMBINE[op.kind]
    red_offset = _offset(red[:-1], "j", lambda d: f"s{d}")
    if red and kept[-1:] == [x.ndim - 1]:
        last, outer = kept[-1], kept[:-1]

        def loop(i):
            return [f"  FLOWC_SIMD_FOR(j, len) {combine.format(acc='q[j]', v=f'({acc_t})pr[{i}]')}"]

        inner = [
            f"const {x.ctype}* FLOWC_RESTRICT pr = p + ({_offset(red, 'j', lambda d: f's{d}')});"
        ]
        inner += _unit_or_strided(f"s{last}", loop)
        init = f"({acc_t})p[j * s{last}]" if first else f"({acc_t}){_INIT[op.kind]}"
        start = _offset(outer, "i", lambda d: f"s{d}")
        body = [
            "const int64_t c = o % n_chunks, r = o / n_chunks;",
            *_decompose(outer, "i", "r", lambda d: f"n{d}"),
            f"const int64_t lo = c * {_CHUNK};",
            f"const int64_t len = n{last} - lo < {_CHUNK} ? n{last} - lo : {_CHUNK};",
            f"const {x.ctype}* FLOWC_RESTRICT p = x + ({start}) + lo * s{last};",
            f"{acc_t}* FLOWC_RESTRICT q = y + r * n{last} + lo;",
            f"FLOWC_SIMD_FOR(j, len) q[j] = {init};",
            *_nest(red, inner),
        ]
        text = (
            f"  const int64_t n_outer = {_prod(f'n{d}' for d in outer)};\n"
            f"  const int64_t n_chunks = (n{last} + {_CHUNK - 1}) / {_CHUNK};\n"
            f"  FLOWC_PARALLEL_ROWS(o, n_outer * n_chunks) {{\n{_indent(body, 4)}  }}\n"
        )
    else:
        pragma = {"add": "FLOWC_SIMD_SUM(acc)", "mul": "FLOWC_SIMD_PROD(acc)"}.get(op.kind, "")
        lst = red[-1] if red else None

        def loop(i):
            v = f"({acc_t})pr[{i}]"
            head = [f"  {pragma}"] if pragma else []
            return head + [
                f"  for (int64_t j = 0; j < n{lst}; ++j) {combine.format(acc='acc', v=v)}"
            ]

        inner = [f"const {x.ctype}* FLOWC_RESTRICT pr = p + ({red_offset});"]
        inner += (
            _unit_or_strided(f"s{lst}", loop)
            if red
            else [combine.format(acc="acc", v=f"({acc_t})p[0]")]
        )
        body = _decompose(kept, "i", "o", lambda d: f"n{d}")
        body += [
            f"const {x.ctype}* FLOWC_RESTRICT p = x + ({_offset(kept, 'i', lambda d: f's{d}')});"
        ]
        body += [f"{acc_t} acc = ({acc_t}){'p[0]' if first else _INIT[op.kind]};"]
        body += _nest(red[:-1], inner) + ["y[o] = acc;"]
        text = (
            f"  const int64_t n_out = {_prod(f'n{d}' for d in kept)};\n"
            f"  FLOWC_PARALLEL_ROWS(o, n_out) {{\n{_indent(body, 4)}  }}\n"
        )
    name = ctx.kernel_name("reduce")
    params = _strided_params(x) + [f"{acc_t}* FLOWC_RESTRICT y"]
    ctx.kernel(f"FLOWC_KERNEL void {name}({', '.join(params)}) {{\n{text}}}\n")
    work = _prod(x.shape)
    call = f"FLOWC_LAUNCH({name}, {work}, {x.ptr}, {', '.join(x.shape + x.strides)}, {y.name});"
    if kept or op.kind not in ("add", "mul") or not ctx.target.parallel_reductions:
        ctx.launch(call)
        return
    # All dims reduced: a contiguous input is one flat OpenMP reduction, which opens its own
    # parallel region (so it is launched as one element of work).
    clause = "+" if op.kind == "add" else "*"
    step = f"for (int64_t i = 0; i < n; ++i) {combine.format(acc='acc', v=f'({acc_t})x[i]')}"
    ctx.kernel(
        f"FLOWC_KERNEL void {name}_flat(const int64_t n, const {x.ctype}* FLOWC_RESTRICT x, "
        f"{acc_t}* FLOWC_RESTRICT y) {{\n"
        f"  {acc_t} acc = ({acc_t}){_INIT[op.kind]};\n"
        f"  if (n >= FLOWC_PARALLEL_MIN) {{\n"
        f"    FLOWC_PRAGMA(omp parallel for simd reduction({clause} : acc))\n    {step}\n"
        f"  }} else {{\n"
        f"    FLOWC_PRAGMA(omp simd reduction({clause} : acc))\n    {step}\n  }}\n"
        f"  y[0] = acc;\n}}\n"
    )
    flat = f"FLOWC_LAUNCH({name}_flat, 1, {work}, {x.ptr}, {y.name});"
    ctx.launch(f"if ({_contiguous(x)})", "  " + flat, "else", "  " + call)


@register(Argmax)
def emit_argmax(ctx: NodeContext) -> None:
    """Index of the first maximum (minimum) along one axis or of the flattened array; NaN
    counts as the maximum, as in NumPy."""
    op = ctx.node.op
    x = ctx.val(0)
    cmp = ">" if op.kind == "max" else "<"
    ctype(x.dtype)
    if x.kind == "scalar":
        ctx.scalar(0, [], "(int64_t)0")
        return
    fmt, args = _shape_fmt([x])
    red = list(range(x.ndim)) if op.axis is None else [op.axis % x.ndim]
    kept = [d for d in range(x.ndim) if d not in red]
    ctx.check(
        " && ".join(f"{x.shape[d]} > 0" for d in range(x.ndim)) or "true",
        f"arg{op.kind} of an empty axis (shape {fmt})",
        *args,
    )
    y = ctx.buffer(0, [x.shape[d] for d in kept])
    name = ctx.kernel_name("arg")
    update = f"if (best == best && (v {cmp} best || v != v)) {{ best = v; bi = k; }}"
    body = _decompose(kept, "i", "o", lambda d: f"n{d}")
    body += [f"const {x.ctype}* FLOWC_RESTRICT p = x + ({_offset(kept, 'i', lambda d: f's{d}')});"]
    body += [f"{x.ctype} best = p[0];", "int64_t bi = 0, k = 0;"]
    body += _nest(
        red, [f"const {x.ctype} v = p[{_offset(red, 'j', lambda d: f's{d}')}];", update, "++k;"]
    )
    body += ["y[o] = bi;"]
    params = _strided_params(x) + ["int64_t* FLOWC_RESTRICT y"]
    ctx.kernel(
        f"FLOWC_KERNEL void {name}({', '.join(params)}) {{\n"
        f"  const int64_t n_out = {_prod(f'n{d}' for d in kept)};\n"
        f"  FLOWC_PARALLEL_ROWS(o, n_out) {{\n{_indent(body, 4)}  }}\n}}\n"
    )
    args = [x.ptr, *x.shape, *x.strides, y.name]
    ctx.launch(f"FLOWC_LAUNCH({name}, {_prod(x.shape)}, {', '.join(args)});")


@register(Softmax, LogSoftmax)
def emit_softmax(ctx: NodeContext) -> None:
    """Per row: the max (0 if not finite), the sum of exp(x - max), then the outputs."""
    op = ctx.node.op
    log = isinstance(op, LogSoftmax)
    x = ctx.val(0)
    if x.dtype not in FLOATS:
        raise Unsupported(f"softmax of {x.dtype}")
    red = list(normalize_axis(op.axis, x.ndim))
    kept = [d for d in range(x.ndim) if d not in red]
    y = ctx.buffer(0, list(x.shape))
    t = x.ctype
    xo = _offset(red, "j", lambda d: f"s{d}")
    yo = _offset(red, "j", lambda d: f"t{d}")
    body = _decompose(kept, "i", "o", lambda d: f"n{d}")
    body += [
        f"const {t}* FLOWC_RESTRICT p = x + ({_offset(kept, 'i', lambda d: f's{d}')});",
        f"{t}* FLOWC_RESTRICT q = y + ({_offset(kept, 'i', lambda d: f't{d}')});",
        f"{t} m = -INFINITY;",
    ]
    body += _nest(red, [f"m = flowc_max(m, p[{xo}]);"])
    body += ["if (flowc_isinf(m) || m != m) m = 0;", f"{t} sum = 0;"]
    body += _nest(red, [f"sum += flowc_exp(p[{xo}] - m);"], "FLOWC_SIMD_SUM(sum)")
    if log:
        body += [f"const {t} lse = flowc_log(sum);"]
        body += _nest(red, [f"q[{yo}] = (p[{xo}] - m) - lse;"])
    else:
        body += _nest(red, [f"q[{yo}] = flowc_exp(p[{xo}] - m) / sum;"])
    params = (
        _strided_params(x)
        + [f"{t}* FLOWC_RESTRICT y"]
        + [f"const int64_t t{d}" for d in range(x.ndim)]
    )
    name = ctx.kernel_name("softmax")
    ctx.kernel(
        f"FLOWC_KERNEL void {name}({', '.join(params)}) {{\n"
        f"  const int64_t n_out = {_prod(f'n{d}' for d in kept)};\n"
        f"  FLOWC_PARALLEL_ROWS(o, n_out) {{\n{_indent(body, 4)}  }}\n}}\n"
    )
    args = [x.ptr, *x.shape, *x.strides, y.name, *y.strides]
    ctx.launch(f"FLOWC_LAUNCH({name}, {y.size}, {', '.join(args)});")


# ------------------------------------------------------------ views and shapes


@register(DimShuffle)
def emit_dimshuffle(ctx: NodeContext) -> None:
    """A view: the input's sizes and strides permuted, 'x' dims of size 1 and stride 0."""
    x = ctx.val(0)
    pattern = ctx.node.op.pattern
    if x.kind == "scalar":
        ctx.alias(0, _scalar_val(x.name, x.dtype, ctx.node.outputs[0].type.shape))
        return
    shape = tuple("1" if p == "x" else x.shape[p] for p in pattern)
    strides = tuple("0" if p == "x" else x.strides[p] for p in pattern)
    ctx.alias(0, dataclasses.replace(x, shape=shape, strides=strides))


@register(SpecifyShape)
def emit_specify_shape(ctx: NodeContext) -> None:
    """The input itself, after checking the sizes it asserts."""
    x = ctx.val(0)
    fmt, args = _shape_fmt([x])
    want = ctx.node.op.shape
    for d, s in enumerate(want):
        if s is not None:
            shown = "(" + ", ".join("?" if w is None else str(w) for w in want) + ")"
            ctx.check(f"{x.shape[d]} == {s}", f"expected shape {shown}, got {fmt}", *args)
    ctx.alias(0, x)


@register(Subtensor)
def emit_subtensor(ctx: NodeContext) -> None:
    """Basic indexing as a view: an offset, and a size and stride per kept dim."""
    op = ctx.node.op
    if type(op) is not Subtensor:
        raise Unsupported(f"{type(op).__name__} (advanced indexing)")
    x = ctx.val(0)
    index = iter(ctx.scalar_val(i) for i in range(1, len(ctx.node.inputs)))
    base = ctx.fresh("ix")
    offsets, shape, strides = [], [], []
    d = 0

    def part(p):
        if p is None:
            return "false", "0"
        return "true", (str(p) if isinstance(p, int) else f"(int64_t){next(index).name}")

    for k, e in enumerate(op.idx_list):
        if e is None:
            shape.append("1")
            strides.append("0")
            continue
        if isinstance(e, tuple):
            (hs, start), (he, stop) = part(e[0]), part(e[1])
            step = "1" if e[2] is None else part(e[2])[1]
            st, ln, sp = f"{base}_b{k}", f"{base}_l{k}", f"{base}_p{k}"
            ctx.pro(
                f"int64_t {st}, {ln};",
                f"const int64_t {sp} = {step};",
                f"FLOWC_TRY(flowc_slice({ctx.where}, {x.shape[d]}, {hs}, {start}, {he}, {stop}, "
                f"{sp}, &{st}, &{ln}));",
            )
            offsets.append(f"{st} * {x.strides[d]}")
            shape.append(ln)
            strides.append(f"{sp} * {x.strides[d]}")
        else:
            i = f"{base}_i{k}"
            value = str(e) if isinstance(e, int) else f"(int64_t){next(index).name}"
            ctx.pro(f"int64_t {i} = {value};", f"if ({i} < 0) {i} += {x.shape[d]};")
            ctx.check(
                f"{i} >= 0 && {i} < {x.shape[d]}",
                f"index %lld is out of bounds for axis {d} with size %lld",
                f"(long long)({value})",
                f"(long long){x.shape[d]}",
                code="FLOWC_INDEX_ERROR",
            )
            offsets.append(f"{i} * {x.strides[d]}")
        d += 1
    shape += x.shape[d:]
    strides += x.strides[d:]
    ctx.pro(f"const int64_t {base}_off = {' + '.join(offsets) or '0'};")
    ctx.view(0, f"{x.ptr} + {base}_off", shape, strides)


@register(Shape_i)
def emit_shape_i(ctx: NodeContext) -> None:
    ctx.scalar(0, [], f"(int64_t){ctx.val(0).shape[ctx.node.op.i]}")


@register(Shape)
def emit_shape(ctx: NodeContext) -> None:
    x = ctx.val(0)
    y = ctx.buffer(0, [str(x.ndim)])
    ctx.launch(*(f"{y.name}[{d}] = {s};" for d, s in enumerate(x.shape)))


@register(Alloc)
def emit_alloc(ctx: NodeContext) -> None:
    """A new array of the given sizes filled with the value, broadcast."""
    value = ctx.val(0)
    sizes = [ctx.scalar_val(i) for i in range(1, len(ctx.node.inputs))]
    nd = len(sizes)
    dims = ctx.fresh("dims")
    if nd:
        ctx.pro(f"const int64_t {dims}[] = {{{', '.join(f'(int64_t){s.name}' for s in sizes)}}};")
        ctx.check(
            f"flowc_count({nd}, {dims}) >= 0",
            "negative or too large size in shape (" + ", ".join(["%lld"] * nd) + ")",
            *(f"(long long){dims}[{k}]" for k in range(nd)),
        )
    y = ctx.buffer(0, [f"{dims}[{k}]" for k in range(nd)])
    lead = nd - value.ndim
    fmt, args = _shape_fmt([value])
    for k in range(value.ndim):
        if value.static[k] != 1:
            ctx.check(
                f"{value.shape[k]} == {y.shape[lead + k]}",
                f"value of shape {fmt} does not match the shape in dim {lead + k} (size %lld; "
                f"only dims of static size 1 broadcast)",
                *args,
                f"(long long){y.shape[lead + k]}",
            )
    if value.kind == "scalar":
        fill = MapIn(value, ("0",) * nd, "scalar")
    else:
        fill = map_input(_align(value, nd), y.static)
    emit_map(ctx, [y], [fill], _cast_body(value.dtype, y.dtype), "fill")


# ------------------------------------------------------------ matrix products


def _matrix(v: Val, vector_as: str):
    """(rows, cols, s0, s1) of a 2-d Val, or of a 1-d one as a row or a column."""
    if v.ndim == 2:
        return v.shape[0], v.shape[1], v.strides[0], v.strides[1]
    if vector_as == "row":
        return "1", v.shape[0], "0", v.strides[0]
    return v.shape[0], "1", v.strides[0], "0"


def _product(ctx: NodeContext, y: Val, a: Val, b: Val, alpha: str) -> None:
    """Run lines: ``y += alpha * a @ b`` (BLAS where the dtypes allow)."""
    m, k, sa0, sa1 = _matrix(a, "row")
    _, n, sb0, sb1 = _matrix(b, "col")
    args = f"{m}, {n}, {k}, ({y.ctype}){alpha}, {a.ptr}, {sa0}, {sa1}, {b.ptr}, {sb0}, {sb1}"
    if ctx.target.blas and a.dtype == b.dtype == y.dtype and y.dtype in FLOATS:
        ctx.needs_blas = True
        call = f"flowc_gemm({ctx.where}, {args}, {y.name})"
    else:
        # Parenthesized: the template's commas must not split FLOWC_LAUNCH's arguments.
        naive = f"(flowc_matmul_naive<{y.ctype}, {a.ctype}, {b.ctype}>)"
        ctx.launch(f"FLOWC_LAUNCH({naive}, {m} * {n} * {k}, {args}, {y.name});")
        return
    ctx.launch(f"FLOWC_TRY({call});")


def _check_inner(ctx, a: Val, b: Val, what: str) -> None:
    fmt, args = _shape_fmt([a, b])
    ctx.check(
        f"{a.shape[-1]} == {b.shape[0]}",
        f"{what} shapes {fmt} are not aligned: dim {a.ndim - 1} of a != dim 0 of b",
        *args,
    )


@register(Dot)
def emit_dot(ctx: NodeContext) -> None:
    """A zeroed output, then one GEMM (vectors as 1-row or 1-column matrices)."""
    a, b = ctx.val(0), ctx.val(1)
    _check_inner(ctx, a, b, "dot:")
    y = ctx.buffer(0, list(a.shape[:-1]) + list(b.shape[1:]))
    ctx.launch(f"for (int64_t t = 0; t < {y.size}; ++t) {y.name}[t] = 0;")
    _product(ctx, y, a, b, "1")


@register(Gemm)
def emit_gemm(ctx: NodeContext) -> None:
    """``y = beta * C`` (C broadcast as NumPy does), then ``y += alpha * A @ B``."""
    c, alpha, a, b, beta = (ctx.val(i) for i in range(5))
    if alpha.ndim or beta.ndim:
        raise Unsupported("Gemm with non-scalar alpha/beta")
    _check_inner(ctx, a, b, "Gemm:")
    y = ctx.buffer(0, [a.shape[0]] + list(b.shape[1:]))
    (fc, ac), (fy, ay) = _shape_fmt([c]), _shape_fmt([y])
    for d in range(y.ndim):
        ctx.check(
            f"{c.shape[d]} == {y.shape[d]} || {c.shape[d]} == 1",
            f"C of shape {fc} does not broadcast to the product's shape {fy}",
            *ac,
            *ay,
        )
    # C broadcasts as NumPy does (any dim of size 1), so its strides are chosen at run time.
    strides = tuple(
        "0" if c.static[d] == 1 else f"({c.shape[d]} == 1 ? 0 : {c.strides[d]})"
        for d in range(c.ndim)
    )
    ct = y.ctype

    def body(xs):
        return [], [f"({ct})(({ct}){xs[0]} * ({ct}){xs[1]})"]

    c_in = MapIn(c, strides, "scalar" if c.kind == "scalar" else "partial")
    beta_in = MapIn(beta, ("0",) * y.ndim, "scalar")
    emit_map(ctx, [y], [c_in, beta_in], body, "beta")
    _product(ctx, y, a, b, alpha.item)
