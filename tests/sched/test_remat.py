"""Rematerialization on a tanh chain: same numbers, a peak within the budget, the expected
recomputation, and a clear error when the budget cannot be met."""

import re

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc.graph.basic import Apply, Constant, Op
from flowc.graph.fg import FunctionGraph
from flowc.graph.merge import merge
from flowc.graph.verify import verify
from flowc.sched.memory import infer_shapes
from flowc.sched.remat import (
    STRATEGIES,
    MemoryBudgetError,
    estimate_peak,
    fit_memory_budget,
    forward_pass,
    is_flop_heavy,
    remat_order,
    rematerialize,
    strategy_mincut,
)
from flowc.tensor.linalg import Dot

L, WIDTH, BATCH = 16, 32, 8


class Tap(Op):
    """Identity with a side effect (it counts its calls): must never be recomputed."""

    side_effect = True
    calls = 0

    def make_node(self, x):
        return Apply(self, [x], [x.type()])

    def perform(self, node, inputs, output_storage):
        Tap.calls += 1
        output_storage[0][0] = inputs[0].copy()

    def infer_shape(self, fgraph, node, input_shapes):
        return [input_shapes[0]]

    def grad(self, inputs, output_grads):
        return [output_grads[0]]


def training_step(n_layers=L, gated=False, tap_at=None):
    """The graph of loss = sum(h_L ** 2) and its gradients w.r.t. every W_i."""
    x = T.matrix("x")
    Ws = [T.matrix(f"W{i}") for i in range(n_layers)]
    h = x
    for i, W in enumerate(Ws):
        a = h @ W
        h = T.tanh(a) * T.nnet.sigmoid(a) if gated else T.tanh(a)
        if i == tap_at:
            h = Tap()(h)
    loss = (h**2).sum()
    return merge(FunctionGraph([x, *Ws], [loss, *flowc.grad(loss, Ws)]))


def input_shapes(fg):
    return {fg.inputs[0]: (BATCH, WIDTH), **{w: (WIDTH, WIDTH) for w in fg.inputs[1:]}}


def input_values(n_layers=L, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, WIDTH))
    return [x] + [rng.normal(size=(WIDTH, WIDTH)) * 1.2 / np.sqrt(WIDTH) for _ in range(n_layers)]


def numpy_reference(values, gated=False):
    """Loss and gradients of the chain, by hand."""
    x, Ws = values[0], values[1:]
    hs, acts = [x], []
    for W in Ws:
        a = hs[-1] @ W
        t, s = np.tanh(a), 1 / (1 + np.exp(-a))
        acts.append((t, s))
        hs.append(t * s if gated else t)
    g = 2 * hs[-1]
    grads = [None] * len(Ws)
    for i in reversed(range(len(Ws))):
        t, s = acts[i]
        ga = g * (s * (1 - t**2) + t * s * (1 - s)) if gated else g * (1 - t**2)
        grads[i] = hs[i].T @ ga
        g = ga @ Ws[i].T
    return [np.sum(hs[-1] ** 2), *grads]


def run_in_order(fg, order, values):
    """Run each node's perform in ``order``; a KeyError means the order is not a schedule."""
    env = dict(zip(fg.inputs, values, strict=True))
    for node in order:
        storage = [[None] for _ in node.outputs]
        ins = [i.data if isinstance(i, Constant) else env[i] for i in node.inputs]
        node.op.perform(node, ins, storage)
        env.update(zip(node.outputs, (s[0] for s in storage), strict=True))
    return [o.data if isinstance(o, Constant) else env[o] for o in fg.outputs]


def assert_same_numbers(fg, plan, values, gated=False):
    want = numpy_reference(values, gated)
    runs = {
        "plan order": run_in_order(plan.fgraph, plan.order, values),
        "mode py": flowc.function(plan.fgraph.inputs, plan.fgraph.outputs, mode="py")(*values),
        "mode none": flowc.function(plan.fgraph.inputs, plan.fgraph.outputs, mode="none")(*values),
        "original": flowc.function(fg.inputs, fg.outputs, mode="py")(*values),
    }
    for how, got in runs.items():
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=how)


def layer_of(v):
    """The layer index of an activation tanh(h @ W_i) of the chain (its W is input 1 + i)."""
    dot = v.owner.inputs[0].owner
    assert isinstance(dot.op, Dot)
    return int(dot.inputs[1].name[1:])


@pytest.fixture(scope="module")
def chain():
    fg = training_step()
    shapes = infer_shapes(fg, input_shapes(fg))
    baseline = estimate_peak(fg, remat_order(fg), shapes)
    return fg, baseline


def check_rewrite(fg, plan):
    """The rewritten graph is valid, its peak is what estimate_peak says, and the
    recomputed originals are no longer read by the backward pass."""
    verify(plan.fgraph)
    shapes = infer_shapes(plan.fgraph, input_shapes(plan.fgraph))
    assert estimate_peak(plan.fgraph, plan.order, shapes) == plan.peak
    assert len(plan.fgraph.apply_nodes) == len(fg.apply_nodes) + plan.n_recomputed_nodes
    copies = [n for n in plan.fgraph.apply_nodes if "recompute_of" in n.outputs[0].tag]
    assert len(copies) == plan.n_recomputed_nodes
    forward = set(forward_pass(plan.fgraph).nodes)
    position = {n: k for k, n in enumerate(plan.order)}
    loss_at = position[plan.fgraph.outputs[0].owner]
    for n in copies:
        assert n not in forward
        assert position[n] > loss_at  # recomputed in the backward pass
    for v in plan.recomputed:
        for client, _ in plan.fgraph.clients[v]:
            assert client in forward, f"{v} is still read by the backward node {client}"


# ------------------------------------------------------------------ the strategies


def test_a_budget_that_fits_changes_nothing(chain):
    fg, baseline = chain
    for name in STRATEGIES:
        plan = fit_memory_budget(fg, baseline, input_shapes(fg), name)
        assert plan.fgraph is fg and plan.n_recomputed_nodes == 0
        assert plan.peak == plan.baseline_peak == baseline


def test_sqrt_keeps_every_fourth_activation(chain):
    fg, baseline = chain
    plan = fit_memory_budget(fg, baseline - 1, input_shapes(fg), "sqrt")
    assert plan.peak <= baseline - 1
    check_rewrite(fg, plan)
    # sqrt(16) = 4 segments: layers 3, 7, 11, 15 are kept, the other 12 recomputed,
    # each with its product: 24 nodes.
    assert sorted(map(layer_of, plan.checkpoints)) == [3, 7, 11, 15]
    assert sorted(map(layer_of, plan.recomputed)) == [i for i in range(L) if i % 4 != 3]
    assert len(plan.recomputed) == L - int(np.sqrt(L))
    assert plan.n_recomputed_nodes == 2 * (L - int(np.sqrt(L)))
    assert_same_numbers(fg, plan, input_values())


def test_greedy_searches_its_budget(chain):
    fg, baseline = chain
    shapes = input_shapes(fg)
    sqrt_plan = fit_memory_budget(fg, baseline - 1, shapes, "sqrt")
    plan = fit_memory_budget(fg, sqrt_plan.peak, shapes, "greedy")
    assert plan.peak <= sqrt_plan.peak
    assert 0 < plan.n_recomputed_nodes <= sqrt_plan.n_recomputed_nodes
    check_rewrite(fg, plan)
    assert_same_numbers(fg, plan, input_values(seed=1))
    # A looser budget never needs more recomputation.
    loose = fit_memory_budget(fg, baseline - 1, shapes, "greedy")
    assert loose.peak <= baseline - 1
    assert loose.n_recomputed_nodes <= plan.n_recomputed_nodes
    check_rewrite(fg, loose)


def test_mincut_never_recomputes_products(chain):
    fg, baseline = chain
    shapes = infer_shapes(fg, input_shapes(fg))
    fw = forward_pass(fg, shapes)
    (kept,) = strategy_mincut(fw)
    # One activation per layer must be kept either way (the product or its tanh); the cut
    # keeps the tanh, so nothing is recomputed and no budget below the baseline is met.
    assert sorted(map(layer_of, kept)) == list(range(L))
    with pytest.raises(MemoryBudgetError) as err:
        fit_memory_budget(fg, baseline - 1, input_shapes(fg), "mincut")
    assert err.value.smallest_peak == baseline


def test_mincut_keeps_the_products_of_a_gated_chain():
    n = 8
    fg = training_step(n, gated=True)
    shapes = input_shapes(fg)
    baseline = estimate_peak(fg, None, infer_shapes(fg, shapes))
    plan = fit_memory_budget(fg, baseline - 1, shapes, "mincut")
    # tanh(a), sigmoid(a) and their product are all read by the backward pass; keeping a
    # alone and recomputing the three cheap ops from it is the minimum cut.
    assert len(plan.checkpoints) == n
    assert all(isinstance(v.owner.op, Dot) for v in plan.checkpoints)
    assert plan.n_recomputed_nodes == 3 * n
    copies = [c for c in plan.fgraph.apply_nodes if "recompute_of" in c.outputs[0].tag]
    assert not any(is_flop_heavy(c) for c in copies)
    assert plan.peak < baseline - 8 * BATCH * WIDTH * n  # more than one tensor a layer saved
    check_rewrite(fg, plan)
    assert_same_numbers(fg, plan, input_values(n, seed=2), gated=True)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_impossible_budget_names_the_smallest_peak(chain, strategy):
    fg, baseline = chain
    shapes = input_shapes(fg)
    with pytest.raises(MemoryBudgetError, match="smallest feasible peak found is") as err:
        fit_memory_budget(fg, 1000, shapes, strategy)
    smallest = err.value.smallest_peak
    assert str(smallest) in str(err.value)
    assert int(re.search(r"found is (\d+) bytes", str(err.value)).group(1)) == smallest
    assert smallest <= baseline
    # It is feasible, and it is the edge: one byte less is not.
    assert fit_memory_budget(fg, smallest, shapes, strategy).peak == smallest
    with pytest.raises(MemoryBudgetError):
        fit_memory_budget(fg, smallest - 1, shapes, strategy)


def test_side_effects_are_never_recomputed():
    fg = training_step(tap_at=5)
    shapes = input_shapes(fg)
    baseline = estimate_peak(fg, None, infer_shapes(fg, shapes))
    plan = fit_memory_budget(fg, baseline - 1, shapes, "sqrt")
    assert plan.n_recomputed_nodes > 0
    copies = [n for n in plan.fgraph.apply_nodes if "recompute_of" in n.outputs[0].tag]
    assert copies and not any(isinstance(n.op, Tap) for n in copies)
    assert any(isinstance(i.owner.op, Tap) for n in copies for i in n.inputs if i.owner)
    assert sum(isinstance(n.op, Tap) for n in plan.fgraph.apply_nodes) == 1
    Tap.calls = 0
    run_in_order(plan.fgraph, plan.order, input_values())
    assert Tap.calls == 1
    check_rewrite(fg, plan)


@pytest.mark.parametrize("gated", [False, True])
def test_ops_writing_in_place_are_respected(gated):
    from flowc.tensor.rewrites.inplace import insert_inplace

    n = 8
    fg = insert_inplace(training_step(n, gated=gated))
    destroyed = {
        n.inputs[i] for n in fg.apply_nodes for ins in n.op.destroy_map.values() for i in ins
    }
    assert destroyed
    shapes = input_shapes(fg)
    baseline = estimate_peak(fg, None, infer_shapes(fg, shapes))
    if not gated:
        # Every forward tanh overwrites its product: nothing is left to recompute.
        with pytest.raises(MemoryBudgetError) as err:
            fit_memory_budget(fg, baseline - 1, shapes, "greedy")
        assert err.value.smallest_peak == baseline
        return
    for strategy in sorted(STRATEGIES):
        plan = fit_memory_budget(fg, baseline - 1, shapes, strategy)
        assert plan.n_recomputed_nodes > 0
        copies = [c for c in plan.fgraph.apply_nodes if "recompute_of" in c.outputs[0].tag]
        assert not any(c.op.destroy_map for c in copies)
        values = input_values(n, seed=4)
        got = run_in_order(plan.fgraph, plan.order, values)
        for g, w in zip(got, numpy_reference(values, gated=True)):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_rematerialize_with_explicit_checkpoints():
    fg = training_step(6)
    fw = forward_pass(fg)
    activations = [v for v in fw.stashed if v.owner.op.__class__.__name__ == "Elemwise"]
    activations = [v for v in activations if v.owner.inputs[0].owner is not None]
    keep = {v for v in activations if layer_of(v) in (2, 5)}
    new, copies = rematerialize(fg, keep)
    verify(new)
    assert {layer_of(orig) for orig in copies.values() if orig.owner.op != Dot()} == {0, 1, 3, 4}
    assert len(copies) == 8  # four tanh and their four products
    values = input_values(6, seed=3)
    got = run_in_order(new, remat_order(new), values)
    for g, w in zip(got, numpy_reference(values)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    assert len(fg.apply_nodes) + 8 == len(new.apply_nodes)


def test_remat_order_is_a_schedule_that_saves_memory(chain):
    fg, baseline = chain
    order = remat_order(fg)
    assert set(order) == fg.apply_nodes
    position = {n: k for k, n in enumerate(order)}
    for n in order:
        for i in n.inputs:
            assert i.owner is None or position[i.owner] < position[n]
    shapes = infer_shapes(fg, input_shapes(fg))
    assert baseline <= estimate_peak(fg, fg.toposort(), shapes)


def test_bad_arguments(chain):
    fg, baseline = chain
    shapes = input_shapes(fg)
    with pytest.raises(TypeError, match="memory_budget must be an int"):
        fit_memory_budget(fg, 1.5e6, shapes)
    with pytest.raises(ValueError, match="memory_budget must be >= 0"):
        fit_memory_budget(fg, -1, shapes)
    with pytest.raises(ValueError, match="unknown remat strategy"):
        fit_memory_budget(fg, 10, shapes, "magic")
    x = T.matrix("x")
    no_loss = FunctionGraph([x], [T.tanh(x)])
    with pytest.raises(ValueError, match="pass loss="):
        forward_pass(no_loss)
    with pytest.raises(ValueError, match="not a variable of the graph"):
        forward_pass(fg, loss=T.scalar("y"))


def test_doctests():
    import doctest

    from flowc.sched import remat

    assert doctest.testmod(remat).failed == 0
