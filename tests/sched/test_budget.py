"""function(memory_budget=...): the first call plans within the budget, results unchanged."""

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc.sched.remat import MemoryBudgetError


def chain(L=12, width=32, seed=0):
    rng = np.random.default_rng(seed)
    x = T.dmatrix("x")
    Ws = [
        flowc.shared(rng.normal(size=(width, width)) / np.sqrt(width), name=f"W{i}")
        for i in range(L)
    ]
    h = x
    for W in Ws:
        h = T.tanh(T.dot(h, W))
    loss = (h**2).sum()
    return x, Ws, [loss, *T.grad(loss, Ws)]


@pytest.mark.parametrize("remat", ["sqrt", "greedy"])
def test_budget_is_met_and_results_are_equal(remat):
    x, Ws, outs = chain()
    a = np.random.default_rng(1).normal(size=(16, 32))
    ref = flowc.function([x], outs)
    baseline, _ = ref.memory_report(a)
    fixed = sum(W.get_value().nbytes for W in Ws) * 2  # weights and their gradients
    budget = fixed + (baseline.peak_bytes - fixed) // 2
    f = flowc.function([x], outs, memory_budget=budget, remat=remat)
    for got, want in zip(f(a), ref(a), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert f.remat_plan.peak <= budget
    assert f.remat_plan.n_recomputed_nodes > 0
    plan, naive = f.memory_report(a)
    assert plan.peak_bytes <= budget < naive
    assert plan.peak_bytes >= plan.lower_bound


def test_budget_that_already_fits_changes_nothing():
    x, Ws, outs = chain(L=4)
    a = np.ones((4, 32))
    f = flowc.function([x], outs, memory_budget=10**9)
    f(a)
    assert f.remat_plan.n_recomputed_nodes == 0


def test_impossible_budget_names_the_smallest_peak():
    x, Ws, outs = chain(L=6)
    f = flowc.function([x], outs, memory_budget=1000)
    with pytest.raises(MemoryBudgetError, match="smallest feasible peak found is"):
        f(np.ones((8, 32)))


def test_bad_budget_arguments():
    x, Ws, outs = chain(L=2)
    with pytest.raises(TypeError, match="bytes"):
        flowc.function([x], outs, memory_budget=1.5)
    with pytest.raises(ValueError, match="remat strategy"):
        flowc.function([x], outs, memory_budget=100, remat="magic")


@pytest.mark.parametrize("remat", ["sqrt", "greedy"])
def test_compiled_step_runs_in_an_arena_within_the_budget(remat):
    """With kernels, the planned step runs compiled drivers in the planned order, its
    intermediates in one arena that, with the weights, gradients and input, fits the
    budget; the arena is laid out once and reused."""
    from flowc.kernels import compiler

    if compiler.find_compiler() is None:
        pytest.skip("no C++ compiler")
    x, Ws, outs = chain(L=16)
    a = np.random.default_rng(1).normal(size=(16, 32))
    ref = flowc.function([x], outs)
    baseline, _ = ref.memory_report(a)
    fixed = sum(W.get_value().nbytes for W in Ws) * 2 + a.nbytes + 8  # ... and the loss
    budget = fixed + (baseline.peak_bytes - fixed) // 2
    with flowc.config.change(linker="c"):
        f = flowc.function([x], outs, memory_budget=budget, remat=remat)
    for _ in range(3):
        for got, want in zip(f(a), ref(a), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    assert f._runner is not None and f.fallback_ops == [] and f._runner.layouts == 1
    arena = sum(v.nbytes for v in f._runner.arenas.values())
    assert 0 < arena and arena + fixed <= budget
