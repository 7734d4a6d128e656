"""The compiled driver reuses scratch memory: buffers of disjoint lifetimes share a slot."""

import re

import numpy as np
import pytest

import flowc.tensor as T
from flowc.graph import FunctionGraph
from flowc.kernels import compiler
from flowc.kernels.compiled import compile_function

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
