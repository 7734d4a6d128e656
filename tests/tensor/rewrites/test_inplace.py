"""In-place rewrites and destroy tracking: what may be overwritten, and that results stay right."""

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc import scalar as ps
from flowc.graph.basic import evaluate
from flowc.graph.destroy import (
    DestroyHandler,
    InconsistencyError,
    can_destroy,
    destroy_handler,
    validate,
)
from flowc.graph.fg import FunctionGraph
from flowc.tensor.basic import SpecifyShape, specify_shape
from flowc.tensor.elemwise import DimShuffle, Elemwise
from flowc.tensor.rewrites.inplace import insert_inplace

rng = np.random.default_rng(42)


def inplace_nodes(fgraph):
    return [n for n in fgraph.toposort() if n.op.destroy_map]


def destroyed_values(fgraph):
    """Every value some node overwrites."""
    return [
        n.inputs[i] for n in inplace_nodes(fgraph) for ins in n.op.destroy_map.values() for i in ins
    ]


def scalar_name(node):
    return str(node.op.scalar_op) if isinstance(node.op, Elemwise) else None


def graph(inputs, outputs):
    """A FunctionGraph over the very variables given (no copy), to inspect them after."""
    return FunctionGraph(inputs, outputs, clone=False)


def tanh_inplace(x):
    return Elemwise(ps.tanh, inplace_pattern=((0, 0),))(x)


def fast_and_ref(inputs, outputs, **kw):
    return (
        flowc.function(inputs, outputs, mode="fast_run", **kw),
        flowc.function(inputs, outputs, mode="none", **kw),
    )


@pytest.fixture
def no_fusion(monkeypatch):
    """fast_run without fusion, so that the unfused elementwise nodes stay visible."""
    import flowc.pipeline as pipeline

    monkeypatch.setitem(
        pipeline.MODES, "fast_run", tuple(n for n, _ in pipeline.PIPELINE if n != "fusion")
    )


def assert_same(got, want, rtol=1e-12):
    if not isinstance(got, list):
        got, want = [got], [want]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol)


# ------------------------------------------------------------------ the pass on simple graphs


def test_chain_overwrites_intermediates_but_not_the_input(no_fusion):
    x = T.dmatrix("x")
    f, ref = fast_and_ref([x], T.exp(T.tanh(x) + 1) * 2)
    nodes = f.fgraph.toposort()
    ops = [str(n.op.scalar_op) for n in nodes]
    assert ops == ["tanh", "add", "exp", "mul"]
    assert [bool(n.op.destroy_map) for n in nodes] == [False, True, True, True]
    for value in destroyed_values(f.fgraph):
        assert value.owner is not None  # an intermediate, never x
    a = rng.normal(size=(3, 4))
    a0 = a.copy()
    assert_same(f(a), np.exp(np.tanh(a0) + 1) * 2)
    assert_same(f(a), ref(a))
    np.testing.assert_array_equal(a, a0)


def test_value_read_by_two_consumers_is_not_destroyed():
    x = T.dvector("x")
    y = T.exp(x)
    a, b = T.tanh(y), T.sin(y)
    out = a * b
    fg = graph([x], [out])
    insert_inplace(fg)
    assert y not in destroyed_values(fg)
    assert not a.owner.op.destroy_map and not b.owner.op.destroy_map
    # The product may overwrite one of its two single-use factors.
    assert [str(n.op) for n in inplace_nodes(fg)] == ["mul_inplace"]
    v = rng.normal(size=5)
    assert_same(evaluate(fg.outputs, {x: v}), [np.tanh(np.exp(v)) * np.sin(np.exp(v))])


def test_reader_that_runs_first_does_not_block_the_overwrite():
    # y / sum(y): the sum must run before the division, so the division may overwrite y.
    x = T.dvector("x")
    y = T.exp(x)
    out = y / T.sum(y)
    fg = graph([x], [out])
    insert_inplace(fg)
    assert y in destroyed_values(fg)
    v = rng.normal(size=6)
    assert_same(evaluate(fg.outputs, {x: v}), [np.exp(v) / np.exp(v).sum()])
    f, ref = fast_and_ref([x], out)
    assert_same(f(v), ref(v))


def test_transpose_view_of_a_value_read_elsewhere_is_not_destroyed():
    x = T.dmatrix("x")
    y = T.exp(x)
    yt = y.T
    out = T.tanh(yt) + T.sin(y).T
    fg = graph([x], [out])
    insert_inplace(fg)
    assert isinstance(yt.owner.op, DimShuffle)
    assert y not in destroyed_values(fg) and yt not in destroyed_values(fg)
    (tanh_node,) = [n for n in fg.toposort() if scalar_name(n) == "tanh"]
    assert not tanh_node.op.destroy_map
    v = rng.normal(size=(3, 4))
    assert_same(evaluate(fg.outputs, {x: v}), [(np.tanh(np.exp(v).T) + np.sin(np.exp(v)).T)])
    f, ref = fast_and_ref([x], out)
    assert_same(f(v), ref(v))


def test_view_read_only_by_the_destroyer_is_overwritten():
    x = T.dmatrix("x")
    y = T.exp(x)
    yt = y.T
    z = T.tanh(yt)
    fg = graph([x], [z])
    insert_inplace(fg)
    assert z.owner not in fg.apply_nodes  # replaced by its in-place form
    (node,) = inplace_nodes(fg)
    assert node.inputs[0] is yt and str(node.op) == "tanh_inplace"
    v = rng.normal(size=(2, 3))
    assert_same(evaluate(fg.outputs, {x: v}), [np.tanh(np.exp(v).T)])


def test_specify_shape_view_of_a_value_read_elsewhere_is_not_destroyed():
    x = T.dmatrix("x")
    y = T.exp(x)
    s = specify_shape(y, (3, 4))
    assert isinstance(s.owner.op, SpecifyShape)
    out = T.tanh(s).sum() + (y * 2).sum()
    fg = graph([x], [out])
    insert_inplace(fg)
    assert y not in destroyed_values(fg) and s not in destroyed_values(fg)
    v = rng.normal(size=(3, 4))
    want = np.tanh(np.exp(v)).sum() + (np.exp(v) * 2).sum()
    assert_same(evaluate(fg.outputs, {x: v}), [want])
    f, ref = fast_and_ref([x], out)
    assert_same(f(v), ref(v))


def test_broadcast_or_differently_typed_inputs_are_not_overwritten():
    x = T.dmatrix("x")
    v = T.dvector("v")
    row = T.tanh(v).dimshuffle("x", 0)  # broadcast along dim 0: smaller than the output
    fg = graph([x, v], [x + row])
    insert_inplace(fg)
    assert inplace_nodes(fg) == []
    xf, y = T.fvector("xf"), T.dvector("y")
    fg = graph([xf, y], [T.tanh(xf) + y])  # the float32 tanh cannot hold the float64 sum
    insert_inplace(fg)
    assert inplace_nodes(fg) == []


def test_graph_outputs_and_views_of_them_are_not_destroyed():
    x = T.dmatrix("x")
    y = T.exp(x)
    outs = [y, y.T, T.tanh(y) + 1, y * 2]
    fg = graph([x], outs)
    insert_inplace(fg)
    assert y not in destroyed_values(fg)
    # tanh(y) is read only by the add, which may overwrite it.
    assert [str(n.op.scalar_op) for n in inplace_nodes(fg)] == ["add"]
    f, ref = fast_and_ref([x], outs)
    a = rng.normal(size=(3, 4))
    got = f(a)
    assert_same(got, ref(a))
    np.testing.assert_array_equal(got[1], got[0].T)


def test_outputs_that_alias_each_other_are_correct():
    x = T.dvector("x")
    z = T.tanh(T.exp(x))
    f, ref = fast_and_ref([x], [z, z, -z, z.dimshuffle("x", 0)])
    a = rng.normal(size=4)
    got = f(a)
    assert_same(got, ref(a))
    np.testing.assert_array_equal(got[0], got[1])
    np.testing.assert_array_equal(got[3][0], got[0])


def test_inputs_and_shared_values_are_never_modified():
    x = T.dmatrix("x")
    w = flowc.shared(rng.normal(size=(3, 4)), name="w")
    exprs = [T.tanh(x), -x, x * w, T.exp(w), T.neg(w) + x, x.T * 2]
    a = rng.normal(size=(3, 4))
    a0, w0 = a.copy(), w.get_value()
    stored = w.get_value(borrow=True)
    exprs.append(T.tanh(T.dot(x, w.T)) + 1)  # the product is an intermediate to overwrite
    f = flowc.function([x], exprs, mode="fast_run")
    assert inplace_nodes(f.fgraph)
    for value in destroyed_values(f.fgraph):
        assert value.owner is not None
    ref = flowc.function([x], exprs, mode="none")
    assert_same(f(a), ref(a))
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(w.get_value(), w0)
    assert w.get_value(borrow=True) is stored


def test_shared_storage_survives_updates():
    x = T.dvector("x")
    w = flowc.shared(np.arange(4.0), name="w")
    new_w = T.tanh(T.exp(w) + x) * 2
    f = flowc.function([x], T.exp(w) * 3, updates=[(w, new_w)], mode="fast_run")
    assert inplace_nodes(f.fgraph)  # the update's chain still works in place
    before = w.get_value(borrow=True)
    before0 = before.copy()
    a = rng.normal(size=4)
    a0 = a.copy()
    out = f(a)
    np.testing.assert_allclose(out, np.exp(before0) * 3)
    np.testing.assert_allclose(w.get_value(), np.tanh(np.exp(before0) + a0) * 2)
    np.testing.assert_array_equal(before, before0)  # the old storage was not overwritten
    np.testing.assert_array_equal(a, a0)


def test_function_called_twice_gives_the_same_result(no_fusion):
    x = T.dmatrix("x")
    f = flowc.function([x], [T.exp(T.tanh(x) + 1) * 2, T.sin(x) * T.cos(x) - 1], mode="fast_run")
    assert len(inplace_nodes(f.fgraph)) >= 3
    a = rng.normal(size=(2, 5))
    first = f(a)
    kept = [o.copy() for o in first]
    second = f(a)
    assert_same(second, kept)
    assert_same(first, kept)  # the second call did not write into the first call's results


def test_function_over_a_constant_does_not_overwrite_it():
    c = T.constant(np.linspace(-1, 1, 5))
    x = T.dvector("x")
    out = T.tanh(c) * x
    fg = graph([x], [out])
    tanh_node = out.owner.inputs[0].owner
    assert not can_destroy(fg, tanh_node, 0)
    insert_inplace(fg)
    assert c not in destroyed_values(fg)
    f = flowc.function([x], out, mode="fast_run")
    a = rng.normal(size=5)
    assert_same(f(a), np.tanh(np.linspace(-1, 1, 5)) * a)
    np.testing.assert_array_equal(c.data, np.linspace(-1, 1, 5))


def test_fused_nodes_overwrite_their_intermediate_inputs():
    a, b = T.dmatrices("a", "b")
    y1, y2 = T.dot(a, b), T.dot(b, a)
    t = T.tanh(y1) * y2
    outs = [T.exp(t), t.sum()]  # t is needed outside the fused group: a second output
    f, ref = fast_and_ref([a, b], outs)
    (fused,) = [n for n in f.fgraph.toposort() if isinstance(n.op, Elemwise)]
    assert len(fused.outputs) == 2
    assert sorted(fused.op.destroy_map.items()) == [(0, [0]), (1, [1])]
    assert {fused.inputs[0].owner.op.__class__.__name__} == {"Dot"}
    va, vb = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    va0, vb0 = va.copy(), vb.copy()
    assert_same(f(va, vb), ref(va, vb))
    np.testing.assert_array_equal(va, va0)
    np.testing.assert_array_equal(vb, vb0)
    # The same chain on a graph input: the fused node must not overwrite x.
    x = T.dmatrix("x")
    f, ref = fast_and_ref([x], T.exp(T.tanh(x) + 1) * 2)
    assert inplace_nodes(f.fgraph) == []
    v = rng.normal(size=(2, 3))
    v0 = v.copy()
    assert_same(f(v), ref(v))
    np.testing.assert_array_equal(v, v0)


class _TaggedElemwise(Elemwise):
    """An Elemwise subclass with another constructor argument, as a fused op may have."""

    __props__ = ("scalar_op", "inplace_pattern", "tag")

    def __init__(self, scalar_op, inplace_pattern=(), tag="t"):
        super().__init__(scalar_op, inplace_pattern)
        self.tag = tag


def test_elemwise_subclass_keeps_its_class_and_props():
    x = T.dvector("x")
    y = T.exp(x)
    z = _TaggedElemwise(ps.tanh, tag="fused")(y)
    fg = graph([x], [z * 1.5])
    insert_inplace(fg)
    tagged = [n for n in fg.toposort() if isinstance(n.op, _TaggedElemwise)]
    assert len(tagged) == 1
    assert tagged[0].op.tag == "fused" and tagged[0].op.inplace_pattern == ((0, 0),)
    a = rng.normal(size=3)
    assert_same(evaluate(fg.outputs, {x: a}), [np.tanh(np.exp(a)) * 1.5])


def test_inc_subtensor_in_place():
    from flowc.tensor.subtensor import IncSubtensor

    x = T.dmatrix("x")
    y = T.exp(x)
    out = T.set_subtensor(y[0], 0.0) * 2
    f, ref = fast_and_ref([x], out)
    assert any(isinstance(n.op, IncSubtensor) and n.op.destroy_map for n in f.fgraph.toposort())
    a = rng.normal(size=(3, 4))
    a0 = a.copy()
    assert_same(f(a), ref(a))
    np.testing.assert_array_equal(a, a0)


# ------------------------------------------------------------------ random elementwise DAGs


def _random_graph(seed, n_nodes=20):
    """A seeded elementwise DAG (and a few dots) with fan-out, views and broadcasting."""
    r = np.random.default_rng(seed)
    x, y = T.dmatrix("x"), T.dmatrix("y")
    v = T.dvector("v")
    w = flowc.shared(r.normal(size=(4, 4)), name=f"w{seed}")
    pool = [x, y, w, v.dimshuffle("x", 0)]
    for _ in range(n_nodes):
        a = pool[r.integers(len(pool))]
        b = pool[r.integers(len(pool))]
        kind = r.integers(7)
        square = a.type.broadcastable == b.type.broadcastable == (False, False)
        # exp, mul and dot go through tanh so that values stay finite and comparable.
        if kind == 6 and square:
            new = T.tanh(T.dot(a, b))  # a non-elementwise intermediate that fusion stops at
        elif kind == 0:
            new = T.exp(T.tanh(a))
        elif kind in (1, 6):
            new = a + b
        elif kind == 2:
            new = a * T.tanh(b)
        elif kind == 3:
            new = T.tanh(a)
        elif kind == 4:
            new = -a
        else:
            new = a.T if a.type.broadcastable == (False, False) else a.dimshuffle(1, 0)
        pool.append(new)
    made = pool[4:]
    picks = r.choice(len(made), size=2, replace=False)
    outputs = [made[-1]] + [made[i] for i in picks]
    return [x, y, v], outputs, w


@pytest.mark.parametrize("fusion", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("seed", range(12))
def test_random_graphs_match_the_unrewritten_function(seed, fusion, request):
    if not fusion:
        request.getfixturevalue("no_fusion")
    inputs, outputs, w = _random_graph(seed)
    f, ref = fast_and_ref(inputs, outputs, on_unused_input="ignore")
    validate(f.fgraph)
    r = np.random.default_rng(100 + seed)
    values = [r.normal(size=(4, 4)), r.normal(size=(4, 4)), r.normal(size=4)]
    kept = [a.copy() for a in values]
    w0 = w.get_value()
    want = ref(*values)
    got = f(*values)
    assert_same(got, want, rtol=1e-10)
    for a, a0 in zip(values, kept, strict=True):
        np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(w.get_value(), w0)
    first = [g.copy() for g in got]
    assert_same(f(*values), first, rtol=0)
    assert_same(got, first, rtol=0)


def test_random_graphs_do_get_in_place_nodes():
    total = 0
    for seed in range(12):
        inputs, outputs, w = _random_graph(seed)
        fg = FunctionGraph(inputs + [w], outputs)
        insert_inplace(fg)
        total += len(inplace_nodes(fg))
        for value in destroyed_values(fg):
            assert value.owner is not None
    assert total >= 12


# ------------------------------------------------------------------ DestroyHandler


def test_handler_refuses_a_destroyed_value_that_is_read_elsewhere():
    x = T.dvector("x")
    y = T.exp(x)
    z = tanh_inplace(y)
    other = T.sin(y)
    with pytest.raises(InconsistencyError, match=r"tanh_inplace.*sin|sin.*tanh_inplace"):
        FunctionGraph([x], [z, other], features=[DestroyHandler()], clone=False)
    with pytest.raises(InconsistencyError, match="sin"):
        validate(graph([x], [z, other]))
    # Without the other reader the same node is fine.
    fg = FunctionGraph([x], [z], features=[DestroyHandler()], clone=False)
    validate(fg)


def test_handler_refuses_a_destroyed_view_whose_base_is_read_elsewhere():
    x = T.dmatrix("x")
    y = T.exp(x)
    z = tanh_inplace(y.T)
    with pytest.raises(InconsistencyError, match="alias"):
        FunctionGraph([x], [z, y * 2], features=[DestroyHandler()], clone=False)
    z2 = tanh_inplace(specify_shape(y, (2, 2)))
    with pytest.raises(InconsistencyError):
        FunctionGraph([x], [z2, y.T], features=[DestroyHandler()], clone=False)


def test_handler_refuses_overwriting_inputs_constants_shared_and_outputs():
    x = T.dvector("x")
    with pytest.raises(InconsistencyError, match="graph input x"):
        validate(graph([x], [tanh_inplace(x)]))
    with pytest.raises(InconsistencyError, match="graph input x"):
        validate(graph([x], [tanh_inplace(specify_shape(x, (3,)))]))
    c = T.constant(np.ones(3))
    with pytest.raises(InconsistencyError, match="constant"):
        validate(graph([x], [tanh_inplace(c) + x]))
    w = flowc.shared(np.ones(3), name="w")
    with pytest.raises(InconsistencyError, match="shared variable w"):
        validate(graph([x, w], [tanh_inplace(w) + x]))
    y = T.exp(x)
    with pytest.raises(InconsistencyError, match="graph output"):
        validate(graph([x], [y, tanh_inplace(y)]))
    with pytest.raises(InconsistencyError, match="graph output"):
        validate(graph([x], [y.dimshuffle("x", 0), tanh_inplace(y)]))


def test_handler_refuses_a_value_destroyed_twice():
    x = T.dvector("x")
    y = T.exp(x)
    with pytest.raises(InconsistencyError, match="twice"):
        validate(graph([x], [tanh_inplace(y), Elemwise(ps.neg, ((0, 0),))(y)]))
    # A chain of overwrites of successive values is fine.
    validate(graph([x], [Elemwise(ps.neg, ((0, 0),))(tanh_inplace(y))]))


def test_handler_refuses_a_destroyer_reading_the_value_twice():
    x = T.dvector("x")
    y = T.exp(x)
    node_out = Elemwise(ps.mul, ((0, 0),))(y, y)
    with pytest.raises(InconsistencyError, match="also reads"):
        validate(graph([x], [node_out]))


def test_handler_follows_edits():
    x = T.dvector("x")
    y = T.exp(x)
    z = tanh_inplace(y)
    u = T.cos(x)
    fg = graph([x], [z, u])
    handler = destroy_handler(fg)
    assert destroy_handler(fg) is handler
    assert handler.destroyers(y) == [(z.owner, 0)]
    handler.validate(fg)
    # Another reader of y arrives: now inconsistent.
    fg.replace(u, T.sin(y), reason="test")
    with pytest.raises(InconsistencyError, match="sin"):
        handler.validate(fg)
    # Give the in-place node another input: the overwrite moves to the new value.
    y2 = T.exp(x * 2)
    fg.change_node_input(z.owner, 0, y2, reason="test")
    assert handler.destroyers(y2) == [(z.owner, 0)]
    assert handler.destroyers(y) == []
    handler.validate(fg)
    # Drop the in-place node: nothing is destroyed any more.
    fg.replace(z, T.tanh(y2), reason="test")
    assert handler.destroyers(y2) == []
    assert inplace_nodes(fg) == []
    handler.validate(fg)


def test_can_destroy_answers_for_candidate_nodes():
    x = T.dmatrix("x")
    y = T.exp(x)
    a = T.tanh(y.T)
    b = T.sin(y)
    fg = graph([x], [a + b.T])
    assert not can_destroy(fg, y.owner, 0)  # x is a graph input
    assert not can_destroy(fg, a.owner, 0)  # y.T is an alias of y, which sin reads
    assert not can_destroy(fg, b.owner, 0)  # y is viewed by y.T, which tanh reads
    add = fg.outputs[0].owner
    assert can_destroy(fg, add, 0)  # tanh(y.T) is read only by the add
    with pytest.raises(ValueError, match="input_index"):
        can_destroy(fg, add, 5)


def test_attach_to_an_inconsistent_graph_leaves_it_unattached():
    x = T.dvector("x")
    fg = graph([x], [tanh_inplace(x)])
    handler = DestroyHandler()
    with pytest.raises(InconsistencyError):
        fg.attach_feature(handler)
    assert handler not in fg._features


def test_ancestor_reader_far_upstream_is_found_and_edits_keep_depths_right():
    x = T.dvector("x")
    y = T.exp(x)
    s = T.sum(y)
    c = s
    for _ in range(12):
        c = T.tanh(c)  # the sum, which reads y, is 12 nodes above the product
    out = y * c
    fg = graph([x], [out, c])
    handler = destroy_handler(fg)
    assert handler.runs_before(s.owner, out.owner)
    assert not handler.runs_before(out.owner, s.owner)
    assert handler.can_destroy(fg, out.owner, 0)
    v = rng.normal(size=4)
    want = np.exp(v).sum()
    for _ in range(12):
        want = np.tanh(want)
    fg2 = graph([x], [y * c, c])
    insert_inplace(fg2)
    assert y in destroyed_values(fg2)
    assert_same(evaluate(fg2.outputs, {x: v}), [np.exp(v) * want, want])
    # The product stops depending on the sum (which is still an output and reads y): the
    # sum may now run after it, so y must not be overwritten.
    fg.change_node_input(out.owner, 1, T.cos(x), reason="test")
    assert s.owner in fg.apply_nodes
    assert not handler.runs_before(s.owner, out.owner)
    assert not handler.can_destroy(fg, out.owner, 0)
    # And back: the product depends on the sum again (its cached depth must follow).
    fg.change_node_input(out.owner, 1, c, reason="test")
    assert handler.runs_before(s.owner, out.owner)
    assert handler.can_destroy(fg, out.owner, 0)


def test_depths_follow_an_input_that_becomes_deeper():
    x = T.dvector("x")
    y = T.exp(x)
    s = T.sum(y)
    c = T.tanh(T.tanh(s))
    out = y * T.cos(x)
    fg = graph([x], [out, c])
    handler = destroy_handler(fg)
    assert not handler.can_destroy(fg, out.owner, 0)  # the sum may run after the product
    fg.change_node_input(out.owner, 1, c, reason="test")
    assert handler.runs_before(s.owner, out.owner)
    assert handler.can_destroy(fg, out.owner, 0)


def test_gemm_writes_into_c_when_c_is_a_dead_intermediate():
    A, B, C = T.dmatrices("A", "B", "C")
    out = T.exp(C) + 0.5 * T.dot(A, B)  # exp(C) is read only by the Gemm
    f, ref = fast_and_ref([A, B, C], out)
    gemms = [n for n in f.fgraph.toposort() if "Gemm" in str(n.op)]
    assert len(gemms) == 1 and gemms[0].op.destroy_map == {0: [0]}
    args = [rng.normal(size=(3, 4)), rng.normal(size=(4, 2)), rng.normal(size=(3, 2))]
    before = [a.copy() for a in args]
    assert_same(f(*args), ref(*args))
    for a, b in zip(args, before, strict=True):
        np.testing.assert_array_equal(a, b)
    g, gref = fast_and_ref([A, B, C], C + 0.5 * T.dot(A, B))  # C is an input: never destroyed
    assert not any(n.op.destroy_map for n in g.fgraph.toposort())
    assert_same(g(*args), gref(*args))
