"""The compiled class-label ops: one_hot and the fused softmax cross-entropy."""

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc.graph import FunctionGraph, evaluate
from flowc.kernels import compiler
from flowc.kernels.compiled import compile_function
from flowc.kernels.cuda import CUDA
from flowc.kernels.render import Segment, Unsupported
from flowc.tensor import nnet
from flowc.tensor.nnet import OneHot
from flowc.tensor.nnet_fused import CrossentropySoftmax1Hot, crossentropy_softmax_1hot

pytestmark = pytest.mark.skipif(compiler.find_compiler() is None, reason="no C++ compiler")


def _xent_ref(x, labels):
    x = x.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]
    return lse - x[np.arange(len(labels)), labels]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("ldtype", ["int64", "int32", "uint8"])
def test_crossentropy_and_one_hot_match_numpy(dtype, ldtype):
    x = T.tensor(dtype, (None, None), name="x")
    y = T.tensor(ldtype, (None,), name="y")
    outs = [crossentropy_softmax_1hot(x, y), nnet.to_one_hot(y, x.shape[1], dtype=dtype)]
    f = compile_function(FunctionGraph([x, y], outs))
    assert f.fallback_ops == []
    rng = np.random.default_rng(0)
    for n, k in ((5, 7), (0, 3), (1, 1)):
        xv = (rng.normal(size=(n, k)) * 3).astype(dtype)
        yv = rng.integers(0, k, size=n).astype(ldtype)
        for xs in (xv, np.asfortranarray(xv), np.repeat(xv, 2, axis=1)[:, ::2]):
            loss, hot = f([xs, yv])
            tol = 1e-5 if dtype == "float32" else 1e-12
            np.testing.assert_allclose(loss, _xent_ref(xv, yv), rtol=tol, atol=tol)
            assert loss.dtype == dtype and hot.dtype == dtype and hot.shape == (n, k)
            np.testing.assert_array_equal(hot, np.eye(k, dtype=dtype)[yv])


def test_crossentropy_is_finite_for_huge_logits():
    x, y = T.dmatrix("x"), T.lvector("y")
    f = compile_function(FunctionGraph([x, y], [crossentropy_softmax_1hot(x, y)]))
    xv = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    got = f([xv, np.array([1, 2])])[0]
    np.testing.assert_allclose(got, [2e4, np.log(3.0)])


@pytest.mark.parametrize("bad", [-1, 3, 200])
def test_a_label_out_of_range_raises_as_perform_does(bad):
    x, y = T.dmatrix("x"), T.lvector("y")
    fg = FunctionGraph([x, y], [crossentropy_softmax_1hot(x, y), nnet.to_one_hot(y, 3)])
    f = compile_function(fg)
    labels = np.array([0, 2, bad, 1])
    with pytest.raises(ValueError, match=rf"label {bad} \(at position 2\) is out of range"):
        evaluate(fg.outputs, dict(zip(fg.inputs, [np.zeros((4, 3)), labels], strict=True)))
    with pytest.raises(ValueError, match=rf"label {bad} \(at position 2\) is out of range"):
        f([np.zeros((4, 3)), labels])
    with pytest.raises(ValueError, match="x has 4 rows but there are 3 labels"):
        f([np.zeros((4, 3)), np.array([0, 1, 2])])


def test_negative_class_count_raises():
    y, k = T.lvector("y"), T.lscalar("k")
    f = compile_function(FunctionGraph([y, k], [nnet.to_one_hot(y, k)]))
    assert f.fallback_ops == []
    np.testing.assert_array_equal(f([np.array([1, 0]), np.array(2)])[0], [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="nb_class must be >= 0"):
        f([np.array([], "int64"), np.array(-1)])


def test_a_training_step_is_one_driver():
    """The classifier's loss and gradient need no Python step between kernels."""
    x, y = T.fmatrix("x"), T.lvector("y")
    W = flowc.shared(np.random.default_rng(1).normal(size=(6, 4)).astype("float32"), name="W")
    cost = nnet.categorical_crossentropy(nnet.softmax(T.dot(x, W)), y).mean()
    with flowc.config.change(linker="c"):
        step = flowc.function([x, y], cost, updates=[(W, W - 0.1 * T.grad(cost, W))])
    kinds = {type(n.op) for n in step.fgraph.apply_nodes}
    assert CrossentropySoftmax1Hot in kinds and OneHot in kinds
    assert step.program is not None and step.program.n_segments == 1
    assert step.fallback_ops == []
    xv = np.random.default_rng(2).normal(size=(8, 6)).astype("float32")
    yv = np.arange(8) % 4
    W0 = W.get_value()
    loss = step(xv, yv)
    np.testing.assert_allclose(loss, _xent_ref(xv @ W0, yv).mean(), rtol=1e-5)
    p = np.exp(xv @ W0 - (xv @ W0).max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(8), yv] -= 1
    np.testing.assert_allclose(W.get_value(), W0 - 0.1 * xv.T @ p / 8, rtol=1e-4, atol=1e-6)


def test_cuda_leaves_label_ops_to_perform():
    x, y = T.dmatrix("x"), T.lvector("y")
    for out in (crossentropy_softmax_1hot(x, y), nnet.to_one_hot(y, 3)):
        with pytest.raises(Unsupported):
            Segment(0, CUDA).emit(out.owner)
