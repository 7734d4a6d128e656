"""Plans over virtual devices and streams give the serial results: the whole op table and
random graphs run with devices=cpu:4, streams=2 under each strategy."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowc
import flowc.tensor as T
from tests.optable import check_forward
from tests.tensor import (
    test_basic,
    test_elemwise,
    test_linalg,
    test_nnet,
    test_reduction,
    test_shape,
    test_subtensor,
)


def _table():
    cases = []
    for module in (
        test_basic,
        test_elemwise,
        test_linalg,
        test_nnet,
        test_reduction,
        test_shape,
        test_subtensor,
    ):
        for name in ("CASES", "ALL", "FORWARD_CASES"):
            cases += list(getattr(module, name, []))
    return cases


TABLE = _table()


@pytest.fixture
def many_devices():
    with flowc.config.change(devices="cpu:4", streams=2, schedule="heft"):
        yield


def test_the_table_is_not_empty():
    assert len(TABLE) > 300


@pytest.mark.parametrize("case", TABLE, ids=str)
def test_op_table_on_four_devices(case, many_devices):
    check_forward(case)


@pytest.mark.parametrize("strategy", ["heft", "critical_path", "serial", "user"])
def test_strategies_agree_on_a_training_step(strategy):
    from tests.test_pipeline import mlp_training_graph

    inputs, outputs, _ = mlp_training_graph(n_layers=2, width=8)
    rng = np.random.default_rng(0)
    values = [rng.normal(size=(4, 8)), rng.integers(0, 10, size=4)]
    want = flowc.function(inputs, outputs)(*values)
    with flowc.config.change(devices="cpu:4", streams=2, schedule=strategy):
        f = flowc.function(inputs, outputs)
    for g, w in zip(f(*values), want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    if strategy != "serial":
        assert len(f.plan.streams) > 1


def test_user_pins_are_kept():
    x = T.dmatrix("x")
    with flowc.device("cpu:3"):
        y = T.dot(x, x)
    z = T.tanh(y).sum()
    with flowc.config.change(devices="cpu:4", streams=1, schedule="user"):
        f = flowc.function([x], z)
    exp_k = next(k for k, kern in enumerate(f.kernels) if "Dot" in str(kern.node.op))
    device = next(
        p.device for p in f.plan.streams for s in p.steps if getattr(s, "kernel", None) == exp_k
    )
    assert device == "cpu:3"
    np.testing.assert_allclose(f(np.ones((2, 2))), np.tanh(2.0) * 4)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**16), st.sampled_from(["heft", "critical_path"]))
def test_random_graphs_on_many_streams(seed, strategy):
    rng = np.random.default_rng(seed)
    x, y = T.dmatrices("x", "y")
    pool = [x, y]
    for _ in range(rng.integers(3, 25)):
        a, b = (pool[i] for i in rng.integers(0, len(pool), size=2))
        pick = rng.integers(0, 5)
        pool.append(
            [
                lambda: a + b,
                lambda: T.tanh(a) * b,
                lambda: T.dot(a, b.T)[:, :4] * 0 + a,
                lambda: a.sum(axis=0, keepdims=True) + b,
                lambda: T.exp(-a * a),
            ][pick]()
        )
    outs = pool[-3:]
    values = [rng.normal(size=(4, 4)), rng.normal(size=(4, 4))]
    want = flowc.function([x, y], outs, on_unused_input="ignore")(*values)
    with flowc.config.change(devices="cpu:4", streams=2, schedule=strategy):
        f = flowc.function([x, y], outs, on_unused_input="ignore")
    for g, w in zip(f(*values), want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def test_fusion_does_not_cross_pins():
    x = T.dmatrix("x")
    with flowc.device("cpu:1"):
        y = T.exp(x)
    z = T.tanh(y) * 2
    with flowc.config.change(devices="cpu:2", streams=1, schedule="user"):
        f = flowc.function([x], z)
    devices = {str(k.node.op): k.node.tag.get("device") for k in f.kernels}
    assert devices.get("exp") == "cpu:1" and len(f.kernels) == 2
    np.testing.assert_allclose(f(np.zeros((1, 1))), [[np.tanh(1.0) * 2]])
