"""grad, Lop, Rop, gradient control ops, and second derivatives."""

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc.autodiff import DisconnectedInputError

rng = np.random.default_rng(0)


def test_aliases():
    import flowc.gradient

    assert flowc.gradient is flowc.autodiff
    assert T.grad is flowc.grad is flowc.autodiff.grad
    assert T.Rop is flowc.autodiff.Rop and T.Lop is flowc.autodiff.Lop
    assert T.jacobian is flowc.autodiff.jacobian and T.hessian is flowc.autodiff.hessian


def test_grad_of_non_scalar_cost_is_refused():
    x = T.dvector("x")
    with pytest.raises(TypeError, match="must be a scalar"):
        T.grad(x * 2, x)


def test_grad_of_integer_cost_is_refused():
    x = T.ivector("x")
    with pytest.raises(TypeError, match="integer"):
        T.grad(x.sum(), x)


def test_grad_structure_follows_wrt():
    x, y = T.dscalars("x", "y")
    c = x * y
    assert isinstance(T.grad(c, x), flowc.tensor.TensorVariable)
    gx, gy = T.grad(c, [x, y])
    f = flowc.function([x, y], [gx, gy])
    assert [float(v) for v in f(2.0, 3.0)] == [3.0, 2.0]


def test_disconnected_inputs_modes():
    x, y = T.dvectors("x", "y")
    c = (x**2).sum()
    with pytest.raises(DisconnectedInputError, match="y"):
        T.grad(c, y)
    with pytest.warns(UserWarning, match="does not depend"):
        g = T.grad(c, y, disconnected_inputs="warn")
    np.testing.assert_array_equal(g.eval({y: np.ones(3)}), np.zeros(3))
    assert T.grad(c, y, disconnected_inputs="ignore", return_disconnected="none") is None
    with pytest.raises(ValueError, match="raise, warn or ignore"):
        T.grad(c, x, disconnected_inputs="maybe")


def test_integer_wrt_gets_zero_gradient():
    x = T.dvector("x")
    i = T.lscalar("i")
    c = (x * T.cast(i, "float64")).sum()
    g = T.grad(c, i)
    assert float(g.eval({x: np.ones(2), i: 3})) == 0.0


def test_consider_constant_and_disconnected_grad():
    x = T.dscalar("x")
    y = x * x
    g1 = T.grad(y * x, x, consider_constant=[y])  # d/dx (const * x) = y
    assert float(g1.eval({x: 3.0})) == 9.0
    g2 = T.grad(flowc.autodiff.disconnected_grad(y) * x, x)
    assert float(g2.eval({x: 3.0})) == 9.0
    with pytest.raises(DisconnectedInputError):
        T.grad(flowc.autodiff.disconnected_grad(y), x)
    g3 = T.grad(flowc.autodiff.zero_grad(y), x)
    assert float(g3.eval({x: 3.0})) == 0.0


def test_grad_clip_and_scale():
    x = T.dscalar("x")
    clipped = T.grad(flowc.autodiff.grad_clip(x, -1.0, 1.0) * 5.0, x)
    assert float(clipped.eval({x: 0.0})) == 1.0
    scaled = T.grad(flowc.autodiff.grad_scale(x**2, 0.5), x)
    assert float(scaled.eval({x: 3.0})) == 3.0
    with pytest.raises(ValueError, match="lower bound"):
        flowc.autodiff.grad_clip(x, 1.0, -1.0)


def test_known_grads():
    x = T.dvector("x")
    y = T.exp(x)
    g = T.grad(None, x, known_grads={y: T.ones_like(y) * 2})
    a = np.array([0.0, 1.0])
    np.testing.assert_allclose(g.eval({x: a}), 2 * np.exp(a))


def _jac_numeric(fn, a, eps=1e-6):
    out = fn(a)
    jac = np.zeros(out.shape + a.shape)
    for idx in np.ndindex(a.shape):
        d = np.zeros_like(a)
        d[idx] = eps
        jac[(...,) + idx] = (fn(a + d) - fn(a - d)) / (2 * eps)
    return jac


def test_lop_and_rop_match_the_jacobian():
    W = T.dmatrix("W")
    x = T.dvector("x")
    y = T.tanh(T.exp(x) * 0.5).sum() * x + T.sin(x) ** 2
    a = rng.normal(size=4)
    f = flowc.function([x], y)
    J = _jac_numeric(f, a)
    u, v = rng.normal(size=4), rng.normal(size=4)
    vv = T.dvector("v")
    lop = flowc.function([x, vv], T.Lop(y, x, vv))(a, u)
    rop = flowc.function([x, vv], T.Rop(y, x, vv))(a, v)
    np.testing.assert_allclose(lop, u @ J, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(rop, J @ v, rtol=1e-6, atol=1e-8)
    del W


def test_rop_through_reductions_and_dimshuffle_uses_default_rules():
    x = T.dmatrix("x")
    v = T.dmatrix("v")
    y = T.max(x * x.T, axis=0) + T.prod(x, axis=1) + T.logsumexp(x, axis=0)
    a, d = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    f = flowc.function([x], y)
    jv_numeric = (f(a + 1e-6 * d) - f(a - 1e-6 * d)) / 2e-6
    jv = flowc.function([x, v], T.Rop(y, x, v))(a, d)
    np.testing.assert_allclose(jv, jv_numeric, rtol=1e-5, atol=1e-7)


def test_hessian_vector_product_two_ways():
    x = T.dvector("x")
    v = T.dvector("v")
    cost = (T.exp(x) * x).sum() + T.sqr(x.sum())
    g = T.grad(cost, x)
    hv_rop = T.Rop(g, x, v)
    hv_grad = T.grad((g * v).sum(), x)
    a, d = rng.normal(size=5), rng.normal(size=5)
    H = np.diag(np.exp(a) * (a + 2)) + 2 * np.ones((5, 5))
    f = flowc.function([x, v], [hv_rop, hv_grad])
    r1, r2 = f(a, d)
    np.testing.assert_allclose(r1, H @ d, rtol=1e-10)
    np.testing.assert_allclose(r2, H @ d, rtol=1e-10)


def test_third_derivative():
    x = T.dscalar("x")
    y = x**4
    d3 = T.grad(T.grad(T.grad(y, x), x), x)
    assert float(d3.eval({x: 2.0})) == pytest.approx(48.0)


def test_gradient_dtype_follows_the_input():
    x = T.fmatrix("x")
    b = T.fvector("b")
    cost = T.tanh(x + b).mean() * 3.0 + T.sqr(b).sum()
    gx, gb = T.grad(cost, [x, b])
    assert gx.dtype == "float32" and gb.dtype == "float32"
    assert gb.type.shape == (None,)


def test_gradient_of_broadcast_input_sums():
    x = T.dmatrix("x")
    r = T.drow("r")
    g = T.grad((x * r).sum(), r)
    a = rng.normal(size=(4, 3))
    assert g.broadcastable == (True, False)
    np.testing.assert_allclose(g.eval({x: a, r: np.ones((1, 3))}), a.sum(0, keepdims=True))
