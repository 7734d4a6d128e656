"""The whole rewrite pipeline: random graphs keep their values, gradient graphs shrink."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowc
import flowc.tensor as T
from flowc.graph import FunctionGraph
from flowc.pipeline import rewrite

UNARY = [
    ("tanh", T.tanh),
    ("neg", lambda v: -v),
    ("sqr", T.sqr),
    ("exp_tanh", lambda v: T.exp(T.tanh(v))),
    ("log1p_abs", lambda v: T.log1p(abs(v))),
    ("sigmoid", T.nnet.sigmoid),
    ("double_transpose", lambda v: v.T.T),
    ("reshape_back", lambda v: v.flatten().reshape(v.shape) if v.ndim == 2 else v),
    ("log_exp", lambda v: T.log(T.exp(v))),
]
BINARY = [
    ("add", lambda a, b: a + b),
    ("sub", lambda a, b: a - b),
    ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / (1 + T.sqr(b))),
    ("max", T.maximum),
    ("add_const", lambda a, b: a + 2.5 - b * 0.5),
]
REDUCE = [
    ("sum0", lambda v: v.sum(axis=0, keepdims=True)),
    ("mean1", lambda v: v.mean(axis=1, keepdims=True)),
    ("max_all", lambda v: v.max()),
    ("lse1", lambda v: T.logsumexp(v, axis=1, keepdims=True)),
]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_graphs_keep_their_values(data):
    x, y = T.dmatrices("x", "y")
    s = T.dscalar("s")
    pool = [x, y, s]
    n_ops = data.draw(st.integers(2, 30), label="n_ops")
    for _ in range(n_ops):
        kind = data.draw(st.sampled_from(["unary", "binary", "reduce"]))
        if kind == "unary":
            _, fn = data.draw(st.sampled_from(UNARY))
            pool.append(fn(data.draw(st.sampled_from(pool))))
        elif kind == "binary":
            _, fn = data.draw(st.sampled_from(BINARY))
            pool.append(fn(data.draw(st.sampled_from(pool)), data.draw(st.sampled_from(pool))))
        else:
            _, fn = data.draw(st.sampled_from(REDUCE))
            v = data.draw(st.sampled_from(pool))
            pool.append(fn(v) if v.ndim == 2 else v * 2)
    outputs = pool[-3:]
    rng = np.random.default_rng(0)
    values = [rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), 0.3]
    fast = flowc.function([x, y, s], outputs, mode="fast_run", on_unused_input="ignore")
    ref = flowc.function([x, y, s], outputs, mode="none", on_unused_input="ignore")
    for got, want in zip(fast(*values), ref(*values), strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def mlp_training_graph(n_layers=3, width=64):
    """The SGD step of an MLP: outputs the cost and the new parameter values."""
    rng = np.random.default_rng(0)
    x = T.dmatrix("x")
    y = T.lvector("y")
    params, h = [], x
    sizes = [width] * (n_layers + 1) + [10]
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        W = flowc.shared(rng.normal(size=(n_in, n_out)) * 0.1, name=f"W{k}")
        b = flowc.shared(np.zeros(n_out), name=f"b{k}")
        params += [W, b]
        z = T.dot(h, W) + b
        h = T.tanh(z) if k < len(sizes) - 2 else T.nnet.softmax(z)
    cost = T.nnet.categorical_crossentropy(h, y).mean()
    grads = T.grad(cost, params)
    return [x, y], [cost] + [p - 0.1 * g for p, g in zip(params, grads, strict=True)], params


def count_nodes(mode):
    inputs, outputs, params = mlp_training_graph()
    fg = FunctionGraph(inputs + params, outputs)
    before = len(fg.apply_nodes)
    from flowc.pipeline import MODES

    fg = rewrite(fg, mode, steps=MODES[mode])
    return before, len(fg.apply_nodes)


def test_mlp_gradient_graph_loses_a_third_of_its_nodes():
    before, after = count_nodes("fast_run")
    _, none = count_nodes("none")
    assert none == before
    assert after <= (2 / 3) * before, (before, after)


def test_mlp_step_gives_the_same_numbers_optimized():
    inputs, outputs, params = mlp_training_graph(n_layers=2, width=16)
    rng = np.random.default_rng(1)
    values = [rng.normal(size=(5, 16)), rng.integers(0, 10, size=5)]
    fast = flowc.function(inputs, outputs)
    ref = flowc.function(inputs, outputs, mode="none")
    for got, want in zip(fast(*values), ref(*values), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_rewriting_is_deterministic():
    inputs, outputs, params = mlp_training_graph(n_layers=2, width=8)
    f = flowc.function(inputs, outputs, mode="check")
    rng = np.random.default_rng(2)
    f(rng.normal(size=(4, 8)), rng.integers(0, 10, size=4))
