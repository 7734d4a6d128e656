"""The rewrite engine: tracking, the equilibrium worklist and its bound, walkers, patterns."""

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc.graph import FunctionGraph, verify
from flowc.graph.rewrite import (
    RewriteError,
    apply_rewrite,
    equilibrium,
    node_rewriter,
    pattern_rewriter,
    walk,
)
from flowc.tensor.elemwise import Elemwise
from flowc.tensor.reduction import Reduce


def names(fg):
    return [str(n.op) for n in fg.toposort()]


def test_rewriter_only_sees_tracked_ops():
    seen = []

    @node_rewriter([Reduce])
    def spy(fgraph, node):
        seen.append(type(node.op))

    x = T.dvector("x")
    fg = FunctionGraph([x], [T.exp(x).sum()])
    equilibrium(fg, [spy])
    assert seen == [Reduce]


def test_tracking_an_op_instance():
    @node_rewriter([T.exp])
    def exp_to_sin(fgraph, node):
        """exp(x) -> sin(x)"""
        return [T.sin(node.inputs[0])]

    x = T.dvector("x")
    fg = FunctionGraph([x], [T.exp(x) + T.tanh(x)])
    equilibrium(fg, [exp_to_sin])
    assert "sin" in names(fg) and "exp" not in names(fg)
    assert exp_to_sin.__doc__ == "exp(x) -> sin(x)"


def test_equilibrium_reaches_a_fixed_point_through_new_nodes():
    # neg(neg(neg(neg(x)))): each application creates a node that matches again.
    x = T.dvector("x")
    y = x
    for _ in range(8):
        y = -y
    fg = FunctionGraph([x], [T.exp(y)])
    rule = pattern_rewriter((T.neg, (T.neg, "x")), "x")
    equilibrium(fg, [rule])
    verify(fg)
    assert names(fg) == ["exp"]


def test_equilibrium_work_is_proportional_to_changes():
    calls = []

    @node_rewriter([Elemwise])
    def counting(fgraph, node):
        calls.append(node)

    x = T.dvector("x")
    y = x
    for _ in range(500):
        y = T.tanh(y)
    fg = FunctionGraph([x], [y])
    equilibrium(fg, [counting])
    assert len(calls) == 500  # each node visited once when nothing changes


def test_equilibrium_bound_warns():
    @node_rewriter([Elemwise])
    def flip(fgraph, node):
        """exp(x) <-> sin(x), forever"""
        op = str(node.op)
        if op == "exp":
            return [T.sin(node.inputs[0])]
        if op == "sin":
            return [T.exp(node.inputs[0])]

    x = T.dvector("x")
    fg = FunctionGraph([x], [T.exp(x)])
    with pytest.warns(UserWarning, match="without reaching a fixed point"):
        equilibrium(fg, [flip], max_rewrites=50)
    verify(fg)


def test_walk_orders():
    order = []

    @node_rewriter(None)
    def record(fgraph, node):
        order.append(str(node.op))

    x = T.dvector("x")
    fg = FunctionGraph([x], [T.tanh(T.exp(x))])
    walk(fg, [record], "in2out")
    walk(fg, [record], "out2in")
    assert order == ["exp", "tanh", "tanh", "exp"]
    with pytest.raises(ValueError, match="in2out or out2in"):
        walk(fg, [record], "sideways")


def test_patterns_bind_the_same_variable_and_constants():
    rule = pattern_rewriter((T.sub, "x", "x"), lambda b: T.zeros_like(b["x"]), name="x-x")
    times_one = pattern_rewriter((T.mul, "x", 1), "x", name="x*1")
    x, y = T.dvectors("x", "y")
    fg = FunctionGraph([x, y], [x - x, x - y, T.mul(y, 1.0)], clone=False)
    from flowc.graph.merge import local_constant_folding

    equilibrium(fg, [local_constant_folding, rule, times_one])  # folds DimShuffle{x}(1.0)
    ops = names(fg)
    assert ops.count("sub") == 1 and "mul" not in ops
    assert "x-x" == rule.name


def test_pattern_refuses_a_replacement_of_another_type():
    rule = pattern_rewriter((T.log, (T.exp, "x")), "x")
    i = T.ivector("i")
    fg = FunctionGraph([i], [T.log(T.exp(i))])
    equilibrium(fg, [rule])
    assert names(fg) == ["exp", "log"]  # x is int32, log(exp(x)) is float64


def test_a_bad_rewriter_is_reported():
    @node_rewriter([Elemwise])
    def wrong(fgraph, node):
        return [T.cast(node.outputs[0], "int8")]

    x = T.dvector("x")
    fg = FunctionGraph([x], [T.exp(x)])
    with pytest.raises(RewriteError, match="wrong"):
        apply_rewrite(fg, fg.toposort()[0], wrong)


def test_print_after_dumps_the_graph(capsys):
    x = T.dvector("x")
    with flowc.config.change(print_after="canonicalize"):
        flowc.function([x], x + x)
    out = capsys.readouterr().out
    assert "--- after canonicalize" in out and "mul" in out
    np.testing.assert_allclose(flowc.function([x], x + x)(np.ones(2)), [2.0, 2.0])
