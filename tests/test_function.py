"""function(): inputs, outputs, updates, givens, modes, pickling and every error path."""

import pickle
import warnings

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc import In, Out


def test_outputs_single_list_and_dict():
    x, y = T.dvectors("x", "y")
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    np.testing.assert_allclose(flowc.function([x, y], x + y)(a, b), a + b)
    s, p = flowc.function([x, y], [x + y, x * y])(a, b)
    np.testing.assert_allclose(p, a * b)
    d = flowc.function([x, y], {"sum": x + y, "prod": x * y})(a, b)
    assert set(d) == {"sum", "prod"}
    np.testing.assert_allclose(d["prod"], a * b)
    assert flowc.function([x], [], on_unused_input="ignore")(a) == []


def test_in_defaults_and_keywords():
    x, y = T.dscalars("x", "y")
    f = flowc.function([x, In(y, value=10.0, name="offset")], x + y)
    assert float(f(1.0)) == 11.0
    assert float(f(1.0, 2.0)) == 3.0
    assert float(f(1.0, offset=5.0)) == 6.0
    assert float(f(x=1.0)) == 11.0
    with pytest.raises(TypeError, match="no input named 'z'"):
        f(1.0, z=2.0)
    with pytest.raises(TypeError, match="twice"):
        f(1.0, x=2.0)


def test_wrong_number_of_inputs():
    x, y = T.dvectors("x", "y")
    f = flowc.function([x, y], x + y)
    with pytest.raises(TypeError, match="takes 2 inputs"):
        f(np.ones(2), np.ones(2), np.ones(2))
    with pytest.raises(TypeError, match="missing a value for input y"):
        f(np.ones(2))


def test_wrong_ndim_and_dtype_name_the_input():
    x = T.fvector("x")
    f = flowc.function([x], x * 2)
    with pytest.raises(TypeError, match="input x: expected a 1-d array"):
        f(np.ones((2, 2), "float32"))
    with pytest.raises(TypeError, match="input x: expected dtype float32, got float64"):
        f(np.ones(3))
    g = flowc.function([x], x * 2, allow_input_downcast=True)
    assert g(np.ones(3)).dtype == np.float32
    assert f([1, 2, 3]).dtype == np.float32  # ints that fit are accepted
    with pytest.raises(TypeError, match="cannot convert"):
        f("abc")


def test_static_shape_is_checked():
    x = T.tensor("float64", shape=(None, 3), name="x")
    f = flowc.function([x], x.sum())
    with pytest.raises(ValueError, match="input x: expected static shape"):
        f(np.ones((2, 4)))


def test_unused_input_policies():
    x, y = T.dvectors("x", "y")
    with pytest.raises(flowc.UnusedInputError, match="y"):
        flowc.function([x, y], x * 2)
    with pytest.warns(UserWarning, match="not used"):
        flowc.function([x, y], x * 2, on_unused_input="warn")
    f = flowc.function([x, y], x * 2, on_unused_input="ignore")
    np.testing.assert_allclose(f(np.ones(1), np.ones(1)), [2.0])


def test_update_of_non_shared_variable_is_refused():
    x = T.dvector("x")
    with pytest.raises(TypeError, match="not a shared variable"):
        flowc.function([x], x, updates=[(x, x + 1)])


def test_update_dtype_and_ndim_mismatch():
    w = flowc.shared(np.zeros(3, "float32"), name="w")
    x = T.dvector("x")
    with pytest.raises(TypeError, match="cast it"):
        flowc.function([x], [], updates=[(w, w + x)])
    with pytest.raises(TypeError, match="dims"):
        flowc.function([], [], updates=[(w, w.sum())])


def test_updates_are_atomic():
    a = flowc.shared(np.array(1.0), name="a")
    b = flowc.shared(np.array(2.0), name="b")
    f = flowc.function([], a + b, updates=[(a, b), (b, a)])  # a swap
    assert float(f()) == 3.0
    assert (float(a.get_value()), float(b.get_value())) == (2.0, 1.0)
    f()
    assert (float(a.get_value()), float(b.get_value())) == (1.0, 2.0)


def test_updates_dict_and_outputs_see_old_values():
    w = flowc.shared(np.array([1.0, 2.0]), name="w")
    x = T.dvector("x")
    f = flowc.function([x], (w * x).sum(), updates={w: w - 0.5 * x})
    assert float(f(np.array([1.0, 1.0]))) == 3.0
    np.testing.assert_allclose(w.get_value(), [0.5, 1.5])


def test_shared_value_semantics():
    v = np.array([1.0, 2.0])
    w = flowc.shared(v)
    v[0] = 100.0
    assert w.get_value()[0] == 1.0  # copied, not borrowed
    got = w.get_value()
    got[1] = 100.0
    assert w.get_value()[1] == 2.0
    b = flowc.shared(v, borrow=True)
    assert b.get_value(borrow=True) is v
    w.set_value(np.array([5.0, 6.0, 7.0]))  # shape may change
    assert w.get_value().shape == (3,)
    with pytest.raises(TypeError, match="1-d"):
        w.set_value(np.ones((2, 2)))
    with pytest.raises(TypeError, match="symbolic variable"):
        flowc.shared(T.dvector())
    with pytest.raises(TypeError, match="explicit"):
        flowc.function([w], w * 2)


def test_outputs_do_not_alias_inputs_or_shared_storage():
    x = T.dvector("x")
    w = flowc.shared(np.array([1.0, 2.0]))
    f = flowc.function([x], [x, x.T, w])
    a = np.array([1.0, 2.0])
    out_x, out_t, out_w = f(a)
    out_x[0] = out_t[1] = out_w[0] = -1.0
    assert a[0] == 1.0 and a[1] == 2.0 and w.get_value()[0] == 1.0
    assert flowc.function([x], Out(x * 2, borrow=True))(a)[0] == 2.0


def test_inputs_are_not_modified():
    x = T.dvector("x")
    f = flowc.function([x], T.exp(x) + x * 2)
    a = np.array([1.0, 2.0])
    f(a)
    np.testing.assert_array_equal(a, [1.0, 2.0])


def test_givens():
    x, y = T.dvectors("x", "y")
    z = T.dscalar("z")
    f = flowc.function([y], x * 2, givens={x: y + 1})
    np.testing.assert_allclose(f(np.array([1.0])), [4.0])
    g = flowc.function([z], x.sum(), givens=[(x, T.alloc(z, 3))])
    assert float(g(2.0)) == 6.0
    with pytest.raises(TypeError, match="givens"):
        flowc.function([y], x * 2, givens={x: T.dmatrix()})


def test_pickle_recompiles_with_shared_values():
    w = flowc.shared(np.array([1.0, 2.0]), name="w")
    x = T.dvector("x")
    f = flowc.function([x], (w * x).sum(), updates=[(w, w + x)], name="step")
    f(np.ones(2))
    g, w2 = pickle.loads(pickle.dumps((f, w)))
    np.testing.assert_allclose(w2.get_value(), [2.0, 3.0])
    assert float(g(np.ones(2))) == 5.0
    np.testing.assert_allclose(w2.get_value(), [3.0, 4.0])
    np.testing.assert_allclose(w.get_value(), [2.0, 3.0])  # the original is separate


def test_modes_agree():
    x = T.dmatrix("x")
    out = T.tanh(x * 2 + 1).sum(axis=0) + T.exp(x).mean()
    a = np.random.default_rng(0).normal(size=(3, 4))
    ref = flowc.function([x], out, mode="py")(a)
    for mode in ["fast_run", "fast_compile", "FAST_RUN", "FAST_COMPILE", "check", "DebugMode"]:
        np.testing.assert_allclose(flowc.function([x], out, mode=mode)(a), ref)
    with pytest.raises(ValueError, match="unknown mode"):
        flowc.function([x], out, mode="turbo")


def test_nanguard_names_the_node():
    x = T.dvector("x")
    f = flowc.function([x], T.log(x) * 2, mode="NanGuardMode")
    f(np.array([1.0]))
    with pytest.raises(FloatingPointError, match="log produced"):
        f(np.array([-1.0]))


def test_merge_and_constant_folding():
    x = T.dvector("x")
    out = T.exp(x) + T.exp(x) + T.constant(2.0) * T.constant(3.0)
    f = flowc.function([x], out, mode="fast_compile")
    ops = [str(n.op) for n in f.fgraph.toposort()]
    assert ops.count("exp") == 1
    assert "mul" not in ops  # 2 * 3 folded
    np.testing.assert_allclose(f(np.zeros(1)), [8.0])
    g = flowc.function([x], out, mode="py")
    np.testing.assert_allclose(g(np.zeros(1)), [8.0])


def test_constant_folding_respects_the_size_cap():
    x = T.dvector("x")
    big = T.alloc(1.0, 1000, 1000)
    with flowc.config.change(constant_folding_max_bytes=1000):
        f = flowc.function([x], x.sum() + big.sum(), mode="fast_compile")
    assert any(str(n.op) == "Alloc" for n in f.fgraph.toposort())


def test_eval_and_config_flags():
    x = T.dscalar("x")
    assert float((x * 3).eval({x: 2.0})) == 6.0
    with pytest.raises(ValueError, match="unknown flowc flag"):
        flowc.config.change(nonsense=1).__enter__()
    from flowc.config import _from_env

    cfg = _from_env("floatX=float32,verify=true")
    assert cfg.floatX == "float32" and cfg.verify is True
    with pytest.raises(ValueError, match="key=value"):
        _from_env("floatX")


def test_integer_and_bool_functions():
    i = T.ivector("i")
    f = flowc.function([i], [i * 2, i > 1, i // 2])
    a, b, c = f(np.array([1, 2, 3], "int32"))
    assert a.dtype == np.int32 and b.dtype == np.bool_ and c.dtype == np.int32
    np.testing.assert_array_equal(c, [0, 1, 1])


def test_warn_free_compile():
    x = T.dvector("x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flowc.function([x], T.sqrt(x))(np.array([4.0]))


def test_numpy_arrays_on_the_left_build_graphs():
    x = T.dvector("x")
    y = np.ones(3) + x
    assert isinstance(y, flowc.tensor.TensorVariable)
    np.testing.assert_allclose(y.eval({x: np.zeros(3)}), np.ones(3))
    z = np.ones((2, 3)) @ x
    np.testing.assert_allclose(z.eval({x: np.ones(3)}), [3.0, 3.0])


def test_hot_call_agrees_with_the_general_path():
    """The compiled one-call path (what W2 measures) handles what the general path does."""
    a, b = T.dvector("a"), T.dvector("b")
    with flowc.config.change(linker="c"):
        f = flowc.function([a, b], a * b + a)
        g = flowc.function([a, b], [a * b, a - b])
    if f.program is None:
        pytest.skip("no C++ compiler: the hot path needs compiled kernels")
    assert f._hot is not None and g._hot is not None
    rng = np.random.default_rng(0)
    for n in (10, 3, 0, 10):  # new shapes make the driver ask for new outputs
        x, y = rng.normal(size=n), rng.normal(size=n)
        r = f(x, y)
        assert isinstance(r, np.ndarray) and r.shape == (n,)
        np.testing.assert_allclose(r, x * y + x)
        p, q = g(x, y)
        np.testing.assert_allclose(p, x * y)
        np.testing.assert_allclose(q, x - y)
    x = np.arange(6.0)
    np.testing.assert_allclose(f(x[::2], x[1::2]), x[::2] * x[1::2] + x[::2])  # strided views
    np.testing.assert_allclose(f([1.0, 2.0], [3.0, 4.0]), [4.0, 10.0])  # lists: general path
    np.testing.assert_allclose(f(a=np.ones(2), b=np.ones(2)), [2.0, 2.0])  # keywords
    np.testing.assert_allclose(f(np.ones(2, "float32"), np.ones(2)), [2.0, 2.0])  # upcast
    with pytest.raises(TypeError):
        f(np.ones(2, "complex128"), np.ones(2))  # no silent downcast on the hot path either
    with pytest.raises(ValueError, match="disagree along dim 0"):
        f(np.ones(2), np.ones(3))
    with pytest.raises(TypeError):
        f(np.ones(2))
    f.program = None  # back to the plan's kernels: the hot path goes with the program
    assert f._hot is None
    np.testing.assert_allclose(f(np.ones(2), np.ones(2)), [2.0, 2.0])
