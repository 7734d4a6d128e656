"""The C++ renderer: literals, scalar expressions, the emit table, and every scalar function
compiled and compared with its NumPy ``perform``."""

import numpy as np
import pytest

import flowc.tensor as T
from flowc import scalar as ps
from flowc.graph import Apply, FunctionGraph, Op, evaluate
from flowc.kernels import compiler
from flowc.kernels.compiled import compile_function
from flowc.kernels.render import (
    CPU,
    EMITTERS,
    SCALAR_C,
    Segment,
    SplitBefore,
    Unsupported,
    c_literal,
    emit_elemwise,
    emitter_for,
    loop_body,
    register,
    scalar_expr,
)
from flowc.tensor.composite import Composite, FusedElemwise, ScalarConstant
from flowc.tensor.elemwise import Elemwise
from flowc.tensor.subtensor import AdvancedSubtensor

needs_cxx = pytest.mark.skipif(compiler.find_compiler() is None, reason="no C++ compiler")


# ------------------------------------------------------------------ literals


@pytest.mark.parametrize(
    ("value", "dtype", "text"),
    [
        (np.float32(0.1), "float32", "(float)0.10000000149011612"),
        (0.1, "float32", "(float)0.1"),
        (0.1, "float64", "(double)0.1"),
        (-0.0, "float64", "(double)-0.0"),
        (np.nan, "float32", "(float)NAN"),
        (-np.inf, "float64", "(double)(-INFINITY)"),
        (np.inf, "float32", "(float)(INFINITY)"),
        (-(2**63), "int64", "INT64_MIN"),
        (2**64 - 1, "uint64", "(uint64_t)18446744073709551615ULL"),
        (-7, "int8", "(int8_t)-7LL"),
        (True, "bool", "true"),
        (0, "bool", "false"),
    ],
)
def test_c_literal(value, dtype, text):
    assert c_literal(value, dtype) == text


def test_c_literal_refuses_unknown_dtypes():
    with pytest.raises(Unsupported, match="float16"):
        c_literal(1.0, "float16")


# --------------------------------------------------------- scalar expressions


def test_scalar_expr_converts_arguments_to_the_loop_type():
    # int / int computes in double, as np.true_divide does
    assert scalar_expr(ps.true_div, ["a", "b"], ["int32", "int32"], "float64") == (
        "(double)((double)a / (double)b)"
    )
    # a comparison converts both sides to their common type, and gives bool
    assert scalar_expr(ps.lt, ["a", "b"], ["int8", "float32"], "bool") == ("(bool)((float)a < b)")
    assert scalar_expr(ps.switch, ["c", "a", "b"], ["float64", "int32", "float64"], "float64") == (
        "(double)((bool)c ? (double)a : b)"
    )
    assert scalar_expr(ps.add, ["a", "b", "c"], ["float32"] * 3, "float32") == (
        "(float)((a + b) + c)"
    )
    assert scalar_expr(ps.Cast("int16"), ["a"], ["float64"], "int16") == "(int16_t)(a)"


def test_scalar_expr_refuses_what_c_cannot_do():
    with pytest.raises(Unsupported, match="pow"):
        scalar_expr(ps.pow, ["a", "b"], ["int64", "int64"], "int64")
    with pytest.raises(Unsupported):
        scalar_expr(ps.exp, ["a"], ["float16"], "float16")


def test_every_scalar_function_has_a_c_expression():
    assert set(ps.SCALAR_OPS) <= set(SCALAR_C)


def test_composite_body_is_one_statement_per_step():
    comp = Composite(
        2,
        [(ps.mul, (0, 1)), (ps.exp, (2,)), (ps.add, (3, ScalarConstant(1.5, "float32")))],
        3 + 1,
    )
    lines, outs = loop_body(comp, ["float32", "float32"], ["float32"])(["a0", "a1"])
    assert lines == [
        "const float t0 = (float)(a0 * a1);",
        "const float t1 = (float)flowc_exp(t0);",
        "const float t2 = (float)(t1 + (float)1.5);",
    ]
    assert outs == ["t2"]


# --------------------------------------------------------------- the table


class _NoEmitter(Op):
    def make_node(self, x):
        x = T.as_tensor_variable(x)
        return Apply(self, [x], [x.type()])

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = inputs[0] * 3


def test_emit_table_lookup_follows_subclasses():
    assert emitter_for(Elemwise(ps.exp)) is emit_elemwise
    comp = Composite(1, [(ps.exp, (0,)), (ps.neg, (1,))], (1, 2))
    assert emitter_for(FusedElemwise(comp)) is emit_elemwise
    assert emitter_for(_NoEmitter()) is None


def test_register_adds_an_emitter_and_a_node_without_one_falls_back():
    x = T.dvector("x")
    fg = FunctionGraph([x], [_NoEmitter()(T.exp(x)) + 1])
    f = compile_function(fg)
    assert f.fallback_ops == ["_NoEmitter"] and f.n_segments == 2
    np.testing.assert_allclose(f([np.ones(3)])[0], 3 * np.e + 1)

    @register(_NoEmitter)
    def emit_times_three(ctx):
        body = loop_body(ps.mul, ["float64", "float64"], ["float64"])
        v = ctx.val(0)
        y = ctx.buffer(0, list(v.shape))
        from flowc.kernels.render import MapIn, emit_map, map_input

        three = MapIn(
            type(v)("3.0", "float64", v.static, "scalar", v.shape, v.strides), (), "scalar"
        )
        emit_map(ctx, [y], [map_input(v, y.static), three], body)

    try:
        g = compile_function(fg)
        assert g.fallback_ops == [] and g.n_segments == 1
        np.testing.assert_allclose(g([np.ones(3)])[0], 3 * np.e + 1)
    finally:
        del EMITTERS[_NoEmitter]


def test_unsupported_leaves_the_segment_unchanged():
    x = T.tensor("float16", (None,), name="x")
    seg = Segment(0, CPU)
    with pytest.raises(Unsupported):
        seg.emit((T.exp(x) * 2).owner)
    assert seg.inputs == [] and seg.prologue == [] and seg.kernels == [] and not seg.vals
    y = T.dvector("y")
    with pytest.raises(Unsupported, match="advanced"):
        seg.emit(y[T.lvector("i")].owner)
    assert isinstance(y[T.lvector("i")].owner.op, AdvancedSubtensor)
    assert seg.inputs == []


def test_a_scalar_from_a_kernel_of_the_same_segment_splits_it():
    x = T.lvector("x")
    n = T.sum(x)
    out = T.alloc(T.constant(0.0), n)
    seg = Segment(0, CPU)
    seg.emit(n.owner)
    with pytest.raises(SplitBefore):
        seg.emit(out.owner)
    assert len(seg.nodes) == 1


# ------------------------------------------------------- every scalar function

SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.5, -3.5, 1e-3, 30.0, np.nan, np.inf, -np.inf]


def _scalar_values(dtype, rng):
    if dtype == "bool":
        return [rng.random(24) < 0.5 for _ in range(3)]
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        lo = max(info.min, -6)
        vals = [rng.integers(lo, 7, size=24).astype(dtype) for _ in range(3)]
        vals[0][:2] = [info.min, info.max]
        vals[1][:3] = [0, 1, info.max if lo == 0 else -1]  # division by 0 and by -1
        return vals
    base = [rng.uniform(-2, 2, size=24 - len(SPECIAL)) for _ in range(3)]
    vals = [np.concatenate([SPECIAL, b]).astype(dtype) for b in base]
    vals[1] = np.roll(vals[1], 5)
    return vals


def _all_scalar_graph(dtype):
    x, y, z = (T.tensor(dtype, (None,), name=n) for n in "xyz")
    outs, names = [], []
    for name, op in ps.SCALAR_OPS.items():
        if name == "pow" and dtype not in ("float32", "float64"):
            continue  # NumPy raises for negative integer exponents; see the fallback test
        args = {1: [x], 2: [x, y], -1: [x, y, z], 3: [x, y, z]}[op.nin]
        try:
            outs.append(Elemwise(op)(*args))
        except (TypeError, ValueError):
            continue  # NumPy has no loop of this function for this dtype
        names.append(name)
    for target in ("bool", "int8", "uint16", "int64", "float32", "float64"):
        outs.append(T.cast(x, target))
        names.append(f"cast_{target}")
    return FunctionGraph([x, y, z], outs), names


SCALAR_DTYPES = [
    "float64",
    pytest.param("float32", marks=pytest.mark.slow),
    pytest.param("int64", marks=pytest.mark.slow),
    pytest.param("int8", marks=pytest.mark.slow),
    pytest.param("uint8", marks=pytest.mark.slow),
    pytest.param("bool", marks=pytest.mark.slow),
]


@needs_cxx
@pytest.mark.parametrize("dtype", SCALAR_DTYPES)
def test_every_scalar_function_matches_numpy(dtype):
    fg, names = _all_scalar_graph(dtype)
    f = compile_function(fg)
    values = _scalar_values(dtype, np.random.default_rng(0))
    with np.errstate(all="ignore"):
        want = evaluate(fg.outputs, dict(zip(fg.inputs, [v.copy() for v in values], strict=True)))
    got = f(values)
    for name, g, w in zip(names, got, want, strict=True):
        w = np.asarray(w)
        assert g.dtype == w.dtype, f"{name}: {g.dtype} != {w.dtype}"
        # libmvec is accurate to 4 ulp; the special functions follow other formulas.
        tol = {"float32": 2e-6, "float64": 1e-12}.get(w.dtype.name, 0)
        if name in ("gamma", "tri_gamma", "psi", "erfinv", "gammaln") and tol:
            tol = 1e-6 if w.dtype == np.float32 else 1e-10
        if name == "round_half_away_from_zero" and w.dtype.kind in "iu":
            g, w = g[2:], w[2:]  # perform rounds ints through float64: wrong near int64 max
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol, equal_nan=True, err_msg=name)
    # Only float16 results (functions of small ints) have no C type: they run in Python.
    half = {str(o.owner.op) for o in fg.outputs if o.dtype == "float16"}
    assert set(f.fallback_ops) == half


@needs_cxx
def test_integer_pow_falls_back():
    x, y = T.lvector("x"), T.lvector("y")
    fg = FunctionGraph([x, y], [x**y + 1])
    f = compile_function(fg)
    assert f.fallback_ops == ["pow"]
    np.testing.assert_array_equal(f([np.arange(4), np.full(4, 3)])[0], np.arange(4) ** 3 + 1)
