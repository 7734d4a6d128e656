"""The compiled driver reuses scratch memory: buffers of disjoint lifetimes share a slot."""

import re

import numpy as np
import pytest

import flowc.tensor as T
from flowc.graph import FunctionGraph
from flowc.kernels import compiler
from flowc.kernels.compiled import compile_function
from tests.concurrency import results_from_threads

pytestmark = pytest.mark.skipif(compiler.find_compiler() is None, reason="no C++ compiler")


def test_a_chain_needs_two_slots_not_one_per_layer():
    x = T.dmatrix("x")
    W = T.dmatrix("W")
    h = x
    for _ in range(12):
        h = T.tanh(T.dot(h, W)) + 1.0  # each layer's buffers die after the next layer
    f = compile_function(FunctionGraph([x, W], [h.sum()]))
    slots = set(re.findall(r"const size_t (slot\d+)_at", f.source))
    buffers = re.findall(r"const size_t (\w+)_at = slot", f.source)
    assert len(buffers) >= 12
    assert 1 <= len(slots) <= 4, (len(slots), len(buffers))
    a, w = (
        np.random.default_rng(0).normal(size=(3, 5)),
        np.random.default_rng(1).normal(size=(5, 5)) * 0.3,
    )
    want = a
    for _ in range(12):
        want = np.tanh(want @ w) + 1.0
    np.testing.assert_allclose(f([a, w])[0], want.sum(), rtol=1e-12)


def test_values_read_late_keep_their_slot():
    x = T.dvector("x")
    a = T.exp(x)  # read again at the very end
    b = T.tanh(a)
    c = T.sin(b) * 2
    d = T.cos(c) + a
    f = compile_function(FunctionGraph([x], [d.sum(), c.max()]))
    v = np.linspace(-1, 1, 7)
    ea = np.exp(v)
    cc = np.sin(np.tanh(ea)) * 2
    got = f([v])
    np.testing.assert_allclose(got[0], (np.cos(cc) + ea).sum(), rtol=1e-12)
    np.testing.assert_allclose(got[1], cc.max(), rtol=1e-12)


def _chain(depth=6):
    x, W = T.dmatrix("x"), T.dmatrix("W")
    h = x
    for _ in range(depth):
        h = T.tanh(T.dot(h, W)) + 1.0
    return x, W, h


def test_repeated_calls_reuse_the_arena():
    x, W, h = _chain()
    # A marker constant keeps this source (and so its library and arena) to this test.
    f = compile_function(FunctionGraph([x, W], [h.sum() + 0.123456789]))
    rng = np.random.default_rng(2)
    a, w = rng.normal(size=(4, 5)), rng.normal(size=(5, 5)) * 0.3
    first = f([a, w])[0]
    allocs = f.scratch_allocs
    assert allocs >= 1  # the intermediates did need scratch
    for _ in range(5):
        np.testing.assert_array_equal(f([a, w])[0], first)
        np.testing.assert_array_equal(f([a[:2], w])[0], f([a[:2], w])[0])  # smaller fits
    assert f.scratch_allocs == allocs  # nothing allocated after the first call
    f([rng.normal(size=(40, 5)), w])  # bigger shapes grow the arena once
    assert f.scratch_allocs == allocs + 1
    assert f.release_scratch() > 0
    assert f.release_scratch() == 0  # nothing left to free
    np.testing.assert_array_equal(f([a, w])[0], first)  # and it comes back on demand


def test_concurrent_calls_never_share_an_arena():
    """A call that finds the arena busy takes its own block: threads never clobber it."""
    x, W, h = _chain(8)
    f = compile_function(FunctionGraph([x, W], [h.sum(axis=1) + 0.987654321]))
    rng = np.random.default_rng(3)
    inputs = [(rng.normal(size=(64, 32)), rng.normal(size=(32, 32)) * 0.2) for _ in range(4)]
    want = [f(list(p))[0] for p in inputs]
    for k, runs in enumerate(results_from_threads(lambda p: f(list(p)), inputs, 30)):
        for got in runs:
            np.testing.assert_array_equal(got[0], want[k])


def test_function_free_releases_the_arena():
    import flowc

    x, W, h = _chain()
    with flowc.config.change(linker="c"):
        f = flowc.function([x, W], h.sum() * 0.5 + 0.31415)
    a, w = np.ones((3, 5)), np.eye(5) * 0.1
    r = f(a, w)
    assert f.program is not None and f.program.scratch_allocs >= 1
    f.free()
    assert f.program.release_scratch() == 0  # free() already did
    np.testing.assert_array_equal(f(a, w), r)
