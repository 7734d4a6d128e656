"""Elementwise fusion and ``Composite``: the graphs fusion makes, and the numbers they compute."""

import pickle
from collections import Counter

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc import scalar as ps
from flowc.graph.basic import evaluate
from flowc.graph.fg import FunctionGraph
from flowc.graph.merge import merge
from flowc.graph.verify import verify
from flowc.tensor.composite import Composite, FusedElemwise, ScalarConstant, fused
from flowc.tensor.elemwise import Elemwise
from flowc.tensor.rewrites.fusion import MAX_INPUTS, fuse_elemwise
from flowc.testing import check_infer_shape, verify_grad

rng = np.random.default_rng(0)


def compiled(inputs, outputs):
    """The fast_run function and the unrewritten reference."""
    return flowc.function(inputs, outputs, mode="fast_run"), flowc.function(
        inputs, outputs, mode="none"
    )


def nodes(f):
    return list(f.fgraph.toposort())


def fused_nodes(f):
    return [n for n in nodes(f) if isinstance(getattr(n.op, "scalar_op", None), Composite)]


def scalar_op_counts(f):
    """How many times each scalar function is evaluated per element, over all nodes."""
    counts = Counter()
    for n in nodes(f):
        if isinstance(n.op, Elemwise):
            op = n.op.scalar_op
            if isinstance(op, Composite):
                counts.update(str(s) for s, _ in op.steps)
            else:
                counts[str(op)] += 1
    return counts


def same_numbers(f, ref, *values, rtol=0.0):
    got, want = f(*values), ref(*values)
    got, want = (got, want) if isinstance(got, list) else ([got], [want])
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        if rtol == 0.0:
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol)


def issue_expr(x, y):
    return T.tanh(x * y + T.exp(-x * x)) * T.sigmoid(y) - T.log1p(abs(x))


def issue_ref(x, y):
    return np.tanh(x * y + np.exp(-x * x)) * (1 / (1 + np.exp(-y))) - np.log1p(np.abs(x))


# ---------------------------------------------------------------- the issue's graph


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("y_kind", ["matrix", "row"])
def test_issue_expression_is_one_node(dtype, y_kind):
    x = T.tensor(dtype, (None, None), name="x")
    y = T.tensor(dtype, (None, None) if y_kind == "matrix" else (1, None), name="y")
    f, ref = compiled([x, y], issue_expr(x, y))
    (node,) = nodes(f)
    assert type(node.op) is Elemwise and isinstance(node.op.scalar_op, Composite)
    assert node.outputs[0].dtype == dtype
    names = {str(op) for op, _ in node.op.scalar_op.steps}
    assert {"tanh", "exp", "sigmoid", "log1p", "abs"} <= names
    a = rng.normal(size=(3, 5)).astype(dtype)
    b = rng.normal(size=(3, 5) if y_kind == "matrix" else (1, 5)).astype(dtype)
    same_numbers(f, ref, a, b)  # bit for bit: every step is cast as its node was
    np.testing.assert_allclose(f(a, b), issue_ref(a, b), rtol=1e-5 if dtype == "float32" else 1e-12)


def test_composite_name_is_readable():
    x, y = T.dmatrices("x", "y")
    f = flowc.function([x, y], T.tanh(x * y + T.exp(x)))
    text = str(nodes(f)[0].op)
    assert text.startswith("Composite{") and text.endswith("}")
    assert "tanh(add(" in text and "exp(i0)" in text and "mul(i0, i1)" in text


def test_non_contiguous_inputs():
    x, y = T.dmatrices("x", "y")
    f, ref = compiled([x, y], issue_expr(x, y))
    a = rng.normal(size=(4, 12))[:, ::2]
    b = rng.normal(size=(6, 4)).T
    assert not a.flags.c_contiguous and not b.flags.c_contiguous
    same_numbers(f, ref, a, b)


# ---------------------------------------------------------------- shared intermediates


def test_intermediate_that_is_an_output_is_computed_once():
    x, y = T.dmatrices("x", "y")
    h = T.exp(x * y)
    f, ref = compiled([x, y], [h, T.tanh(h) + x])
    assert scalar_op_counts(f)["exp"] == 1
    (node,) = nodes(f)  # h is a second output of the fused node
    assert isinstance(node.op, FusedElemwise) and len(node.outputs) == 2
    a, b = rng.normal(size=(2, 3, 4))
    same_numbers(f, ref, a, b)


def test_intermediate_read_by_a_non_elemwise_node():
    x = T.dmatrix("x")
    h = T.exp(x * 2)
    f, ref = compiled([x], [T.log1p(h) * 3, h.sum()])
    assert scalar_op_counts(f)["exp"] == 1
    assert len(fused_nodes(f)) == 1
    same_numbers(f, ref, rng.normal(size=(3, 4)))


def test_reader_between_member_and_root_ends_the_group():
    # exp(x) is read by sum, and the sum is read by the group again: fusing exp into
    # the group would make a cycle, so exp stays a node of its own.
    x = T.dmatrix("x")
    a = T.exp(x)
    f, ref = compiled([x], T.log(a + a.sum()) * 2)
    assert scalar_op_counts(f)["exp"] == 1
    (node,) = fused_nodes(f)
    assert "exp" not in {str(op) for op, _ in node.op.scalar_op.steps}
    same_numbers(f, ref, rng.normal(size=(3, 4)))


def test_value_read_twice_by_one_node_stays_internal():
    x = T.dmatrix("x")
    e = T.exp(x)
    f, ref = compiled([x], e * e + 1)
    (node,) = nodes(f)
    assert len(node.outputs) == 1 and scalar_op_counts(f)["exp"] == 1
    same_numbers(f, ref, rng.normal(size=(2, 3)))


def test_smaller_intermediate_needed_elsewhere_is_not_an_extra_output():
    x, y = T.dmatrix("x"), T.drow("y")
    s = T.sigmoid(y)
    f, ref = compiled([x, y], [s, x * s + 1])
    assert scalar_op_counts(f)["sigmoid"] == 1
    assert all(len(n.outputs) == 1 for n in nodes(f))
    same_numbers(f, ref, rng.normal(size=(3, 4)), rng.normal(size=(1, 4)))


def test_outer_broadcast_of_row_and_column():
    r, c = T.drow("r"), T.dcol("c")
    f, ref = compiled([r, c], T.exp(r) * T.cos(c) + 1)
    assert len(nodes(f)) == 1
    out = f(rng.normal(size=(1, 4)), rng.normal(size=(3, 1)))
    assert out.shape == (3, 4)
    same_numbers(f, ref, rng.normal(size=(1, 4)), rng.normal(size=(3, 1)))


def test_lower_ndim_inputs_and_constants():
    x, v = T.dmatrix("x"), T.dvector("v")
    f, ref = compiled([x, v], T.exp(x * 0.5 + v) - 3)
    (node,) = fused_nodes(f)
    consts = [
        r for _, refs in node.op.scalar_op.steps for r in refs if isinstance(r, ScalarConstant)
    ]
    assert consts and all(c.dtype == "float64" for c in consts)
    same_numbers(f, ref, rng.normal(size=(3, 4)), rng.normal(size=4))


_UNARY = [T.exp, T.tanh, T.sin, T.neg, T.sigmoid, T.sqr, lambda v: T.log1p(abs(v))]
_BINARY = [T.add, T.mul, T.sub, T.maximum, lambda a, b: a * 0.5 + b]


def _random_graph(r):
    """Elementwise ops over a matrix, a row and a column; some values also read by a sum."""
    ins = [T.dmatrix("x"), T.drow("r"), T.dcol("c")]
    pool = list(ins)
    for _ in range(r.integers(3, 15)):
        kind = r.integers(0, 4)
        if kind == 0:
            pool.append(_UNARY[r.integers(len(_UNARY))](pool[r.integers(len(pool))]))
        elif kind == 3 and len(pool) > 3:
            v = pool[r.integers(3, len(pool))]
            pool.append(v + v.sum() * 0.1)
        else:
            a, b = pool[r.integers(len(pool))], pool[r.integers(len(pool))]
            pool.append(_BINARY[r.integers(len(_BINARY))](a, b))
    outs = [pool[-1]] + [pool[r.integers(3, len(pool))] for _ in range(r.integers(0, 3))]
    return ins, outs


def test_random_graphs_keep_their_values_bit_for_bit():
    r = np.random.default_rng(5)
    n_fused = n_multi = 0
    for _ in range(60):
        ins, outs = _random_graph(r)
        fg = FunctionGraph(ins, outs)
        merge(fg)
        values = dict(zip(fg.inputs, [r.normal(size=s) for s in [(3, 4), (1, 4), (3, 1)]]))
        want = evaluate(fg.outputs, values)
        fuse_elemwise(fg)
        verify(fg, "fusion")
        for node in fg.toposort():
            if isinstance(getattr(node.op, "scalar_op", None), Composite):
                n_fused += 1
                n_multi += len(node.outputs) > 1
        for got, w in zip(evaluate(fg.outputs, values), want, strict=True):
            np.testing.assert_array_equal(got, w)
    assert n_fused > 30 and n_multi > 5  # the graphs did exercise fusion


# ---------------------------------------------------------------- limits and exclusions


def test_input_limit_splits_a_long_chain():
    xs = [T.dvector(f"x{i}") for i in range(50)]
    acc = xs[0]
    for v in xs[1:]:
        acc = T.sin(acc) + v
    f, ref = compiled(xs, acc)
    fused = fused_nodes(f)
    assert len(fused) >= 2
    assert all(len(n.inputs) <= MAX_INPUTS for n in fused)
    assert max(len(n.inputs) for n in fused) == MAX_INPUTS  # groups are filled up
    assert scalar_op_counts(f)["sin"] == 49
    values = [rng.normal(size=3) for _ in xs]
    same_numbers(f, ref, *values)


def test_single_node_with_too_many_inputs_is_left_alone():
    xs = [T.dvector(f"x{i}") for i in range(MAX_INPUTS + 3)]
    f, ref = compiled(xs, T.exp(T.add(*xs)))
    assert not fused_nodes(f)
    same_numbers(f, ref, *[rng.normal(size=2) for _ in xs])


def test_inplace_nodes_and_other_ops_are_not_fused():
    x = T.dvector("x")
    y = Elemwise(ps.exp, inplace_pattern=((0, 0),))(T.neg(x))
    z = T.log(y) + T.cumsum(y)
    fg = FunctionGraph([x], [z * 2])
    fuse_elemwise(fg)
    ops = [n.op for n in fg.toposort()]
    assert Elemwise(ps.exp, ((0, 0),)) in ops and Elemwise(ps.neg) in ops
    assert sum(isinstance(getattr(op, "scalar_op", None), Composite) for op in ops) == 1


def test_complex_nodes_are_not_fused():
    x = T.zvector("x")
    f, ref = compiled([x], T.exp(x * 2) + 1)
    assert not fused_nodes(f)
    a = rng.normal(size=3) + 1j * rng.normal(size=3)
    same_numbers(f, ref, a)


def test_already_fused_node_is_inlined():
    x, y = T.dvectors("x", "y")
    comp = Composite(2, [(ps.mul, (0, 1)), (ps.exp, (2,))], [3])
    out = T.log1p(fused(comp, x, y)) * x
    fg = FunctionGraph([x, y], [out])
    fuse_elemwise(fg)
    (node,) = fg.toposort()
    assert [str(op) for op, _ in node.op.scalar_op.steps] == ["mul", "exp", "log1p", "mul"]
    a, b = rng.normal(size=(2, 4))
    got = flowc.function([x, y], out, mode="none")(a, b)
    np.testing.assert_array_equal(got, np.log1p(np.exp(a * b)) * a)


# ---------------------------------------------------------------- dtypes and shapes


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8"])
def test_integer_graphs(dtype):
    a, b = T.tensor(dtype, (None, None), "a"), T.tensor(dtype, (None, None), "b")
    f, ref = compiled([a, b], T.maximum(a * b + 3, b) // 2 - (a % 5))
    assert len(nodes(f)) == 1
    va = rng.integers(0, 9, size=(3, 4)).astype(dtype)
    vb = rng.integers(1, 9, size=(3, 4)).astype(dtype)
    same_numbers(f, ref, va, vb)


def test_mixed_dtypes_and_casts():
    a, x = T.ivector("a"), T.fvector("x")
    out = T.cast(a * 2, "float32") * x + T.cast(T.gt(x, 0), "float32")
    f, ref = compiled([a, x], out)
    (node,) = nodes(f)
    assert node.outputs[0].dtype == "float32"
    same_numbers(f, ref, np.arange(4, dtype="int32"), rng.normal(size=4).astype("float32"))


def test_each_step_is_cast_like_its_node():
    # reciprocal of int8 is float16: NumPy computes 1/a in float64, the node casts it,
    # and the fused body must round there too, not only at the end.
    a = T.bvector("a")
    f, ref = compiled([a], T.reciprocal(a) * 3)
    assert len(fused_nodes(f)) == 1
    v = np.arange(1, 100, dtype="int8")
    assert f(v).dtype == np.float16
    same_numbers(f, ref, v)


def test_grad_through_comparison_and_integer_steps():
    zero, two = ScalarConstant(0.0, "float64"), ScalarConstant(2, "int32")
    comp = Composite(
        1,
        [
            (ps.gt, (0, zero)),  # 1: bool
            (ps.mul, (0, 1)),  # 2: x * (x > 0)
            (ps.Cast("int32"), (0,)),  # 3
            (ps.mul, (3, two)),  # 4: int32
            (ps.Cast("float64"), (4,)),  # 5
            (ps.mul, (5, 0)),  # 6
            (ps.add, (2, 6)),  # 7
        ],
        [7],
    )
    x = T.dvector("x")
    f = flowc.function([x], T.grad(fused(comp, x).sum(), x), mode="none")
    v = np.array([-1.5, -0.2, 0.4, 2.7])
    np.testing.assert_allclose(f(v), (v > 0) + np.trunc(v) * 2, rtol=1e-12)


def test_comparisons_and_switch():
    x, y = T.dvectors("x", "y")
    f, ref = compiled([x, y], T.switch(T.lt(x, y), T.exp(x), T.sqrt(abs(y))) * 2)
    assert len(nodes(f)) == 1
    same_numbers(f, ref, *rng.normal(size=(2, 7)))


def test_zero_dim_inputs():
    x, y = T.dscalars("x", "y")
    f, ref = compiled([x, y], issue_expr(x, y))
    (node,) = nodes(f)
    assert node.outputs[0].ndim == 0
    same_numbers(f, ref, 0.3, -1.2)
    assert np.asarray(f(0.3, -1.2)).shape == ()


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0,)])
def test_empty_inputs(shape):
    x = T.tensor("float64", (None,) * len(shape), "x")
    y = T.tensor("float64", (None,) * len(shape), "y")
    f, ref = compiled([x, y], issue_expr(x, y))
    assert len(nodes(f)) == 1
    out = f(np.zeros(shape), np.zeros(shape))
    assert out.shape == shape
    same_numbers(f, ref, np.zeros(shape), np.zeros(shape))


def test_runtime_shape_mismatch_is_still_an_error():
    x, y = T.dmatrices("x", "y")
    f = flowc.function([x, y], T.exp(x) * y + 1)
    assert len(nodes(f)) == 1
    with pytest.raises(ValueError, match="disagree"):
        f(np.ones((2, 3)), np.ones((3, 3)))


def test_function_called_twice_gives_the_same_result():
    x, y = T.dmatrices("x", "y")
    f, ref = compiled([x, y], [T.exp(x * y) + 1, T.tanh(x) * 2 - y])
    a, b = rng.normal(size=(2, 3, 4))
    a0, b0 = a.copy(), b.copy()
    first = [v.copy() for v in f(a, b)]
    second = f(a, b)
    for u, v in zip(first, second, strict=True):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(a, a0)  # inputs untouched by in-place fused nodes
    np.testing.assert_array_equal(b, b0)
    same_numbers(f, ref, a, b)


# ---------------------------------------------------------------- gradients


def test_grad_through_fused_graph():
    verify_grad(
        lambda x, y: issue_expr(x, y),
        [rng.normal(size=(3, 4)), rng.normal(size=(1, 4))],
        mode="fast_run",
    )


def test_grad_of_fused_graph_matches_unfused():
    x, y = T.dmatrix("x"), T.drow("y")
    cost = (issue_expr(x, y) ** 2).sum()
    f, ref = compiled([x, y], T.grad(cost, [x, y]))
    assert fused_nodes(f)
    same_numbers(f, ref, rng.normal(size=(3, 4)), rng.normal(size=(1, 4)), rtol=1e-10)


def _issue_composite():
    """The fused op of the issue's graph, with its inputs in the order (x, y)."""
    x, y = T.dmatrix("x"), T.drow("y")
    f = flowc.function([x, y], issue_expr(x, y))
    (node,) = nodes(f)
    order = [f.fgraph.inputs.index(v) for v in node.inputs]
    assert sorted(order) == [0, 1]
    return node.op, order


def test_grad_of_composite_op_with_broadcasting():
    op, order = _issue_composite()

    def fn(x, y):
        return op(*[(x, y)[k] for k in order])

    points = [rng.normal(size=(3, 4)), rng.normal(size=(1, 4))]
    verify_grad(fn, points, mode="none")
    verify_grad(fn, points, mode="fast_run")  # the gradient graph is itself fused


def test_grad_of_multi_output_node():
    comp = Composite(
        2,
        [(ps.mul, (0, 1)), (ps.exp, (2,)), (ps.tanh, (3,)), (ps.add, (4, 0))],
        [3, 5],
    )
    verify_grad(
        lambda x, y: fused(comp, x, y),
        [rng.normal(size=(2, 3)), rng.normal(size=(2, 1))],
        mode="none",
    )


def test_grad_with_integer_input_and_constant():
    comp = Composite(
        2, [(ps.Cast("float64"), (1,)), (ps.mul, (0, 2, ScalarConstant(1.5, "float64")))], [3]
    )
    x, k = T.dvector("x"), T.ivector("k")
    out = fused(comp, x, k)
    gx, gk = T.grad(out.sum(), [x, k])
    g = flowc.function([x, k], [gx, gk], mode="none")
    got_x, got_k = g(np.ones(3), np.array([1, 2, 3], dtype="int32"))
    np.testing.assert_allclose(got_x, [1.5, 3.0, 4.5])
    np.testing.assert_array_equal(got_k, 0)


def test_rop_of_fused_ops():
    comp = Composite(2, [(ps.mul, (0, 1)), (ps.sin, (2,)), (ps.exp, (2,))], [3, 4])
    x, y = T.dvectors("x", "y")
    vx, vy = T.dvectors("vx", "vy")
    single = fused(Composite(2, comp.steps[:2], [3]), x, y)
    outs = [single, *fused(comp, x, y)]
    jv = flowc.function([x, y, vx, vy], T.Rop(outs, [x, y], [vx, vy]), mode="none")
    a, b, da, db = rng.normal(size=(4, 5))
    got = jv(a, b, da, db)
    d = da * b + a * db
    want = [np.cos(a * b) * d, np.cos(a * b) * d, np.exp(a * b) * d]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12)


def test_infer_shape_of_fused_nodes():
    x, y = T.dmatrix("x"), T.drow("y")
    a, b = rng.normal(size=(3, 5)), rng.normal(size=(1, 5))
    op, order = _issue_composite()
    out = op(*[(x, y)[k] for k in order])
    check_infer_shape(out, [x, y], [a, b])
    comp = Composite(2, [(ps.mul, (0, 1)), (ps.exp, (2,))], [2, 3])
    outs = fused(comp, x, y)
    check_infer_shape(outs, [x, y], [a, b])


# ---------------------------------------------------------------- pickling


def test_pickled_function_is_fused_and_equal():
    x, y = T.fmatrix("x"), T.frow("y")
    f, ref = compiled([x, y], issue_expr(x, y))
    g = pickle.loads(pickle.dumps(f))
    assert len(nodes(g)) == 1 and nodes(g)[0].op == nodes(f)[0].op  # fused the same way
    a = rng.normal(size=(3, 4)).astype("float32")
    b = rng.normal(size=(1, 4)).astype("float32")
    np.testing.assert_array_equal(g(a, b), f(a, b))
    same_numbers(g, ref, a, b)


def test_pickled_ops_are_equal():
    op, _ = _issue_composite()
    comp = Composite(
        2, [(ps.mul, (0, ScalarConstant(-0.0, "float32"))), (ps.Cast("int8"), (2,))], [2, 3]
    )
    for thing in (op, op.scalar_op, comp, FusedElemwise(comp)):
        back = pickle.loads(pickle.dumps(thing))
        assert back == thing and hash(back) == hash(thing) and str(back) == str(thing)
    args = (rng.normal(size=4).astype("float32"), np.zeros(4, "float32"))
    for u, v in zip(comp.impl(*args), pickle.loads(pickle.dumps(comp)).impl(*args), strict=True):
        np.testing.assert_array_equal(u, v)


# ---------------------------------------------------------------- Composite itself


def test_composite_impl_equality_and_text():
    steps = [(ps.mul, (0, 1)), (ps.exp, (2,)), (ps.add, (2, 3, ScalarConstant(1, "int64")))]
    comp = Composite(2, steps, [4])
    assert comp == Composite(2, tuple(steps), (4,))
    assert hash(comp) == hash(Composite(2, steps, [4]))
    assert comp != Composite(2, steps[:2], [3])
    assert comp != Composite(2, [*steps[:2], (ps.add, (2, 3, ScalarConstant(2, "int64")))], [4])
    assert comp.expression() == "t0=mul(i0, i1); add(t0, exp(t0), 1)"
    assert str(comp) == "Composite{t0=mul(i0, i1); add(t0, exp(t0), 1)}"
    a, b = rng.normal(size=(2, 3))
    np.testing.assert_array_equal(comp.impl(a, b), a * b + np.exp(a * b) + 1)
    # The int64 constant is a typed value, as the (1, 1) constant it came from was.
    assert comp.output_dtype(["float32", "float32"]) == "float64"
    assert comp.step_dtypes(["int8", "int8"]) == ("int8", "float16", "float64")
    weak = Composite(2, [*steps[:2], (ps.add, (2, 3, ScalarConstant(1, "float32")))], [4])
    assert weak.step_dtypes(["float32", "float32"]) == ("float32",) * 3


def test_composite_long_names_are_abbreviated():
    steps = [(ps.sin, (0,))] + [(ps.sin, (k,)) for k in range(1, 80)]
    comp = Composite(1, steps, [80])
    assert str(comp).endswith("...}") and len(str(comp)) < 250
    assert comp.expression().count("sin(") == 80


def test_constants_keep_their_dtype_and_sign():
    assert ScalarConstant(0.0, "float64") != ScalarConstant(-0.0, "float64")
    assert ScalarConstant(1, "int8") != ScalarConstant(1, "int16")
    c = Composite(1, [(ps.mul, (0, ScalarConstant(3, "int16")))], [1])
    assert c.impl(np.array([100], dtype="int8")).dtype == np.int16
    assert c.impl(np.array([100], dtype="int8"))[0] == 300


def test_output_that_reads_only_some_inputs_has_the_full_shape():
    comp = Composite(2, [(ps.exp, (0,)), (ps.neg, (1,))], [2, 3])
    x, y = T.drow("x"), T.dmatrix("y")
    fx, fy = flowc.function([x, y], fused(comp, x, y), mode="none")(
        np.zeros((1, 3)), np.ones((2, 3))
    )
    np.testing.assert_array_equal(fx, np.ones((2, 3)))
    np.testing.assert_array_equal(fy, -np.ones((2, 3)))


def test_output_never_aliases_an_input_or_another_output():
    comp = Composite(1, [(ps.add, (0,)), (ps.neg, (0,)), (ps.add, (2,))], [1, 2, 3])
    a = np.arange(3.0)
    out, neg, same = comp.impl(a)
    assert not np.may_share_memory(out, a) and not np.may_share_memory(neg, same)
    np.testing.assert_array_equal(same, -a)


@pytest.mark.parametrize(
    "args, exc, match",
    [
        ((0, [(ps.exp, (0,))], [1]), ValueError, "nin"),
        ((1, [], [1]), ValueError, "steps"),
        ((1, [("exp", (0,))], [1]), TypeError, "ScalarOp"),
        ((1, [(ps.exp, (0, 0))], [1]), ValueError, "takes 1"),
        ((1, [(ps.exp, (1,))], [1]), ValueError, "reads register 1"),
        ((1, [(ps.exp, (0.5,))], [1]), TypeError, "register"),
        ((1, [(ps.exp, (0,))], [0]), ValueError, "step registers"),
        ((1, [(ps.exp, (0,))], [1, 1]), ValueError, "repeat"),
        ((1, [(ps.exp, (0,))], []), ValueError, "outputs"),
    ],
)
def test_bad_composites_are_refused(args, exc, match):
    with pytest.raises(exc, match=match):
        Composite(*args)


def test_nested_composite_and_bad_uses_are_refused():
    inner = Composite(1, [(ps.exp, (0,))], [1])
    with pytest.raises(TypeError, match="inline"):
        Composite(1, [(inner, (0,))], [1])
    two = Composite(1, [(ps.exp, (0,)), (ps.sin, (0,))], [1, 2])
    with pytest.raises(TypeError, match="FusedElemwise"):
        Elemwise(two)(T.dvector())
    with pytest.raises(TypeError, match="takes 1 inputs"):
        FusedElemwise(two)(T.dvector(), T.dvector())
    with pytest.raises(TypeError, match="Composite"):
        FusedElemwise(ps.exp)
    with pytest.raises(TypeError, match="Composite"):
        fused(ps.exp, T.dvector())
    with pytest.raises(ValueError, match="single number"):
        ScalarConstant([1, 2], "int64")
