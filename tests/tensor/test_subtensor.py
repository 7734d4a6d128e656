"""Indexing: basic and advanced ``x[...]``, set/inc_subtensor and take, against NumPy;
gradients by finite differences; infer_shape; static shapes; errors."""

import itertools

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc.graph.basic import Constant
from flowc.tensor.basic import shape_tuple
from flowc.tensor.subtensor import (
    AdvancedIncSubtensor,
    AdvancedSubtensor,
    IncSubtensor,
    Subtensor,
)
from flowc.testing import verify_grad
from tests.optable import Case, check_forward, check_grad, check_shape

# ------------------------------------------------------------------ table helpers


def data(*shapes, ints=()):
    """Normal float arrays of ``shapes``, then the int64 index arrays ``ints``."""
    return lambda rng: (
        [rng.normal(size=s) for s in shapes] + [np.asarray(i, dtype="int64") for i in ints]
    )


def int32_data(shape, ints=()):
    return lambda rng: (
        [rng.integers(-9, 9, size=shape).astype("int32")]
        + [np.asarray(i, dtype="int64") for i in ints]
    )


def set_ref(index_of):
    """NumPy reference of set_subtensor: ``index_of(*extra)`` gives the index."""

    def ref(x, y, *extra):
        out = x.copy()
        out[index_of(*extra)] = y
        return out

    return ref


def inc_ref(index_of):
    """NumPy reference of inc_subtensor: repeated indices accumulate (``np.add.at``)."""

    def ref(x, y, *extra):
        out = x.copy()
        np.add.at(out, index_of(*extra), y)
        return out

    return ref


BASIC = [
    Case("int", lambda x: x[1], lambda x: x[1], data((3, 4))),
    Case("neg_int", lambda x: x[-1], lambda x: x[-1], data((3, 4))),
    Case("int_int_0d", lambda x: x[1, 2], lambda x: x[1, 2], data((3, 4))),
    Case("int3_0d", lambda x: x[1, -1, 3], lambda x: x[1, -1, 3], data((2, 3, 4))),
    Case("slice_step", lambda x: x[1:, ::2], lambda x: x[1:, ::2], data((3, 5))),
    Case("reverse", lambda x: x[::-1], lambda x: x[::-1], data((3, 4))),
    Case("neg_step", lambda x: x[4:0:-2, ::-3], lambda x: x[4:0:-2, ::-3], data((5, 4))),
    Case("neg_start", lambda x: x[-3:], lambda x: x[-3:], data((5, 4))),
    Case("neg_stop", lambda x: x[:, 1:-1], lambda x: x[:, 1:-1], data((3, 5))),
    Case("beyond_end", lambda x: x[1:100, -100:2], lambda x: x[1:100, -100:2], data((3, 4))),
    Case("empty_slice", lambda x: x[3:1], lambda x: x[3:1], data((5, 4))),
    Case("empty_input", lambda x: x[:, 1:], lambda x: x[:, 1:], data((0, 4))),
    Case("newaxis", lambda x: x[None, 1:, None], lambda x: x[None, 1:, None], data((3, 4))),
    Case("np_newaxis", lambda x: x[:, np.newaxis, 2], lambda x: x[:, np.newaxis, 2], data((3, 4))),
    Case("ellipsis", lambda x: x[..., 1], lambda x: x[..., 1], data((2, 3, 4))),
    Case("ellipsis_mid", lambda x: x[1, ..., ::2], lambda x: x[1, ..., ::2], data((2, 3, 4))),
    Case("ellipsis_all", lambda x: x[...], lambda x: x[...], data((2, 3))),
    Case("zero_d_input", lambda x: x[None], lambda x: x[None], data(())),
    Case("transposed_input", lambda x: x.T[1:, ::-1], lambda x: x.T[1:, ::-1], data((3, 4))),
    Case("sym_int", lambda x, i: x[i], lambda x, i: x[i], data((3, 4), ints=[2])),
    Case("sym_neg_int", lambda x, i: x[:, i], lambda x, i: x[:, i], data((3, 4), ints=[-3])),
    Case("sym_slice", lambda x, a, b: x[a:b], lambda x, a, b: x[a:b], data((5, 2), ints=[1, -1])),
    Case("sym_step", lambda x, s: x[::s, 1:], lambda x, s: x[::s, 1:], data((5, 3), ints=[-2])),
    Case(
        "sym_all",
        lambda x, a, b, s: x[a:b:s],
        lambda x, a, b, s: x[a:b:s],
        data((7, 2), ints=[5, 0, -2]),
    ),
    Case(
        "minibatch",
        lambda x, i: x[i * 2 : (i + 1) * 2],
        lambda x, i: x[i * 2 : (i + 1) * 2],
        data((6, 3), ints=[1]),
    ),
    Case(
        "shape_slice", lambda x: x[: x.shape[0] // 2], lambda x: x[: x.shape[0] // 2], data((5, 3))
    ),
]

ADVANCED = [
    Case("ivec", lambda x, i: x[i], lambda x, i: x[i], data((3, 4), ints=[[2, 0, 2, 1]])),
    Case("list", lambda x: x[[2, 0, 2]], lambda x: x[[2, 0, 2]], data((3, 4))),
    Case("neg_list", lambda x: x[[-1, -3]], lambda x: x[[-1, -3]], data((3, 4))),
    Case("empty_list", lambda x: x[[]], lambda x: x[np.array([], dtype="int64")], data((3, 4))),
    Case("imat", lambda x, i: x[i], lambda x, i: x[i], data((3, 4), ints=[[[0, 1], [2, 2]]])),
    Case(
        "ivec_slice", lambda x, i: x[i, 1:], lambda x, i: x[i, 1:], data((3, 4), ints=[[1, 1, 0]])
    ),
    Case("slice_ivec", lambda x, i: x[:, i], lambda x, i: x[:, i], data((3, 4), ints=[[3, 0, 3]])),
    Case("int_ivec", lambda x, i: x[1, i], lambda x, i: x[1, i], data((3, 4), ints=[[0, 3]])),
    Case(
        "two_ivecs",
        lambda x, i, j: x[i, j],
        lambda x, i, j: x[i, j],
        data((3, 4), ints=[[0, 2, 2], [1, 3, 3]]),
    ),
    Case(
        "broadcast_arrays",
        lambda x, i, j: x[i, j],
        lambda x, i, j: x[i, j],
        data((3, 4), ints=[[[0], [2]], [[1, 3, 0]]]),
    ),
    Case(
        "non_adjacent",
        lambda x, i, j: x[i, :, j],
        lambda x, i, j: x[i, :, j],
        data((2, 3, 4), ints=[[1, 0], [3, 3]]),
    ),
    Case(
        "int_non_adjacent",
        lambda x, i: x[1, :, i],
        lambda x, i: x[1, :, i],
        data((2, 3, 4), ints=[[0, 2, 3]]),
    ),
    Case(
        "non_adjacent_inner",
        lambda x, i: x[:, i, :, 2],
        lambda x, i: x[:, i, :, 2],
        data((2, 3, 4, 5), ints=[[[2, 0, 1]]]),
    ),
    Case(
        "newaxis_separates",
        lambda x, i: x[:, i, None, i],
        lambda x, i: x[:, i, None, i],
        data((2, 3, 4), ints=[[1, 2]]),
    ),
    Case(
        "adjacent_inner",
        lambda x, i, j: x[:, i, j],
        lambda x, i, j: x[:, i, j],
        data((2, 3, 4), ints=[[[0], [2]], [1, 3]]),
    ),
    Case(
        "sym_int_and_array",
        lambda x, k, i: x[k, i],
        lambda x, k, i: x[k, i],
        data((3, 4), ints=[2, [0, 3, 3]]),
    ),
    Case(
        "newaxis_ivec",
        lambda x, i: x[None, i, ::2],
        lambda x, i: x[None, i, ::2],
        data((3, 4), ints=[[2, 0]]),
    ),
    Case(
        "ellipsis_ivec",
        lambda x, i: x[..., i],
        lambda x, i: x[..., i],
        data((2, 3, 4), ints=[[3, 1]]),
    ),
    Case("bool_mask", lambda x: x[x > 0], lambda x: x[x > 0], data((3, 4))),
    Case("bool_vec", lambda x, m: x[m > 0], lambda x, m: x[m > 0], data((5, 3), (5,)), grad=(0,)),
    Case(
        "bool_vec_slice",
        lambda x, m: x[:, m > 0, 1:],
        lambda x, m: x[:, m > 0, 1:],
        data((2, 4, 3), (4,)),
        grad=(0,),
    ),
    Case(
        "bool_const",
        lambda x: x[[True, False, True]],
        lambda x: x[[True, False, True]],
        data((3, 4)),
    ),
]

SET_INC = [
    Case(
        "set_basic",
        lambda x, y: T.set_subtensor(x[1:, ::2], y),
        set_ref(lambda: (slice(1, None), slice(None, None, 2))),
        data((3, 4), (2, 2)),
    ),
    Case(
        "inc_basic",
        lambda x, y: T.inc_subtensor(x[1:, ::2], y),
        inc_ref(lambda: (slice(1, None), slice(None, None, 2))),
        data((3, 4), (2, 2)),
    ),
    Case(
        "set_row_bcast",
        lambda x, y: T.set_subtensor(x[:, 1:], y),
        set_ref(lambda: (slice(None), slice(1, None))),
        data((3, 4), (1, 3)),
    ),
    Case(
        "inc_rank_bcast",
        lambda x, y: T.inc_subtensor(x[1:], y),
        inc_ref(lambda: slice(1, None)),
        data((3, 4), (4,)),
    ),
    Case(
        "inc_col_bcast",
        lambda x, y: T.inc_subtensor(x[::-1, 2:], y),
        inc_ref(lambda: (slice(None, None, -1), slice(2, None))),
        data((3, 4), (3, 1)),
    ),
    Case(
        "set_neg_step",
        lambda x, y: T.set_subtensor(x[::-2], y),
        set_ref(lambda: slice(None, None, -2)),
        data((5, 2), (3, 2)),
    ),
    Case(
        "inc_0d",
        lambda x, y: T.inc_subtensor(x[1, 2], y),
        inc_ref(lambda: (1, 2)),
        data((3, 4), ()),
    ),
    Case(
        "set_newaxis",
        lambda x, y: T.set_subtensor(x[None, 1], y),
        set_ref(lambda: (None, 1)),
        data((3, 4), (1, 4)),
    ),
    Case(
        "inc_python_number",
        lambda x: T.inc_subtensor(x[1], 2.5),
        lambda x: x + np.array([0, 2.5, 0], dtype=x.dtype)[:, None],
        data((3, 4)),
    ),
    Case(
        "set_python_number",
        lambda x: T.set_subtensor(x[:, -1], 0),
        lambda x: np.concatenate([x[:, :-1], np.zeros((3, 1), x.dtype)], axis=1),
        data((3, 4)),
    ),
    Case(
        "inc_sym_slice",
        lambda x, y, a: T.inc_subtensor(x[a:], y),
        inc_ref(lambda a: slice(a, None)),
        data((4, 3), (2, 3), ints=[-2]),
    ),
    Case(
        "set_adv",
        lambda x, y, i: T.set_subtensor(x[i], y),
        set_ref(lambda i: i),
        data((4, 3), (2, 3), ints=[[3, 0]]),
    ),
    Case(
        "inc_adv_repeated",
        lambda x, y, i: T.inc_subtensor(x[i], y),
        inc_ref(lambda i: i),
        data((4, 3), (4, 3), ints=[[3, 0, 3, 3]]),
    ),
    Case(
        "inc_adv_bcast",
        lambda x, y, i: T.inc_subtensor(x[i, 1:], y),
        inc_ref(lambda i: (i, slice(1, None))),
        data((3, 4), (1, 3), ints=[[0, 0, 2]]),
    ),
    Case(
        "inc_adv_two_arrays",
        lambda x, y, i, j: T.inc_subtensor(x[i, j], y),
        inc_ref(lambda i, j: (i, j)),
        data((3, 4), (3,), ints=[[0, 2, 0], [1, 1, 1]]),
    ),
    Case(
        "inc_adv_scalar_y",
        lambda x, y, i: T.inc_subtensor(x[:, i], y),
        inc_ref(lambda i: (slice(None), i)),
        data((3, 4), (), ints=[[1, 1]]),
    ),
    Case(
        "set_bool",
        lambda x: T.set_subtensor(x[x < 0], 0.0),
        lambda x: np.maximum(x, 0),
        data((3, 4)),
    ),
    Case(
        "inc_bool_vec",
        lambda x, y, m: T.inc_subtensor(x[m > 0], y),
        lambda x, y, m: x + np.where((m > 0)[:, None], y, 0).astype(x.dtype),
        data((4, 3), (3,), (4,)),
        grad=(0, 1),
    ),
]

INTS = [
    Case(f"int32_{c.name}", c.fn, c.ref, c.make, dtypes=("float64",), grad=())
    for c in [
        Case("basic", lambda x: x[1:, ::-2], lambda x: x[1:, ::-2], int32_data((3, 5))),
        Case("ivec", lambda x, i: x[i], lambda x, i: x[i], int32_data((3, 4), [[2, 2, 0]])),
        Case("bool", lambda x: x[x > 0], lambda x: x[x > 0], int32_data((3, 4))),
        # NumPy's x[0] = 2.75 truncates to 2 in an int array; so does set_subtensor.
        Case(
            "set_float_number",
            lambda x: T.set_subtensor(x[0], 2.75),
            lambda x: set_ref(lambda: 0)(x, 2.75),
            int32_data((3, 4)),
        ),
        Case(
            "inc_repeated",
            lambda x, i: T.inc_subtensor(x[i], 3),
            lambda x, i: inc_ref(lambda i: i)(x, np.int32(3), i),
            int32_data((3, 4), [[1, 1, 1]]),
        ),
    ]
]

TAKE = [
    Case(
        "take_flat", lambda x: T.take(x, [5, 0, 11]), lambda x: np.take(x, [5, 0, 11]), data((3, 4))
    ),
    Case(
        "take_axis0",
        lambda x, i: T.take(x, i, axis=0),
        lambda x, i: np.take(x, i, axis=0),
        data((3, 4), ints=[[2, 2, -1]]),
    ),
    Case(
        "take_axis_neg",
        lambda x, i: T.take(x, i, axis=-1),
        lambda x, i: np.take(x, i, axis=-1),
        data((2, 3, 4), ints=[[[0, 3], [1, 1]]]),
    ),
    Case(
        "take_scalar", lambda x: T.take(x, 2, axis=1), lambda x: np.take(x, 2, axis=1), data((3, 4))
    ),
    Case("take_vector", lambda x: T.take(x, [-1, 0]), lambda x: np.take(x, [-1, 0]), data((5,))),
]

ALL = BASIC + ADVANCED + SET_INC + INTS + TAKE


@pytest.mark.parametrize("case", ALL, ids=str)
def test_forward(case):
    check_forward(case)


@pytest.mark.parametrize("case", [c for c in ALL if c.grad != ()], ids=str)
def test_grad(case):
    check_grad(case)


@pytest.mark.parametrize("case", ALL, ids=str)
def test_infer_shape(case):
    check_shape(case)


# ------------------------------------------------------------------ op structure


def test_ops_and_props():
    x = T.dmatrix("x")
    i = T.lscalar("i")
    assert isinstance(x[1:, ::2].owner.op, Subtensor)
    assert str(x[1:, ::2].owner.op) == "Subtensor{1:, ::2}"
    assert str(x[i:, None].owner.op) == "Subtensor{i:, newaxis}"
    assert x[1:].owner.op == x[1:].owner.op
    assert x[1:].owner.op != x[2:].owner.op
    assert x[i].owner.inputs[1] is i  # the symbolic part is an extra input
    adv = x[[0, 1], i]
    assert type(adv.owner.op) is AdvancedSubtensor
    assert adv.owner.op.idx_list == ("a", "a")
    assert type(T.set_subtensor(x[1:], 0).owner.op) is IncSubtensor
    assert T.set_subtensor(x[1:], 0).owner.op.set_instead_of_inc
    assert type(T.inc_subtensor(x[[0]], 1.0).owner.op) is AdvancedIncSubtensor
    assert str(T.set_subtensor(x[1:], 0).owner.op) == "SetSubtensor{1:}"


def test_subtensor_is_a_view_and_perform_copies_nothing_else():
    assert Subtensor(((1, None, None),)).view_map == {0: [0]}
    assert AdvancedSubtensor(("a",)).view_map == {}
    assert IncSubtensor(((1, None, None),)).destroy_map == {}


def test_static_shapes():
    x = T.tensor("float64", shape=(5, 4))
    assert x[1:, ::2].type.shape == (4, 2)
    assert x[::-1].type.shape == (5, 4)
    assert x[-3:, 1].type.shape == (3,)
    assert x[3:1].type.shape == (0, 4)
    assert x[None, :, None].type.shape == (1, 5, 1, 4)
    assert x[1, 2].type.shape == ()
    assert x[[0, 0, 4]].type.shape == (3, 4)
    assert x[[[0], [1]], [1, 2, 3]].type.shape == (2, 3)
    assert x[[True, False, True, True, False]].type.shape == (3, 4)
    assert x[x > 0].type.shape == (None,)
    assert x[:, T.lvector()].type.shape == (5, None)
    # A slice of unknown bounds of a static dim has an unknown size.
    assert x[T.lscalar() :].type.shape == (None, 4)
    y = T.dmatrix()
    assert y[:, ::-1].type.shape == (None, None)
    assert y[None].broadcastable == (True, False, False)


@pytest.mark.parametrize("n", [0, 1, 2, 5])
def test_static_slice_lengths_match_python(n):
    x = T.tensor("float64", shape=(n,))
    parts = [None, -7, -2, -1, 0, 1, 3, 6]
    for start, stop, step in itertools.product(parts, parts, [None, -3, -1, 1, 2]):
        s = slice(start, stop, step)
        assert x[s].type.shape == (len(range(n)[s]),), s


def test_symbolic_slice_lengths_match_python():
    """infer_shape of x[a:b:c] for every pattern of symbolic and omitted parts."""
    x = T.dvector("x")
    a, b, c = T.lscalars("a", "b", "c")
    patterns = list(itertools.product([None, a], [None, b], [None, c]))
    dims = []
    for start, stop, step in patterns:
        node = x[start:stop:step].owner
        (shape,) = node.op.infer_shape(None, node, [shape_tuple(i) for i in node.inputs])
        dims.append(T.as_tensor_variable(shape[0]))
    f = flowc.function([x, a, b, c], dims, on_unused_input="ignore")
    values = [-7, -5, -1, 0, 1, 2, 4, 6]
    for n in (0, 1, 5):
        v = np.zeros(n)
        for start, stop, step in itertools.product(values, values, [-3, -1, 1, 2]):
            got = f(v, start, stop, step)
            for (ps, qs, rs), g in zip(patterns, got):
                s = slice(
                    start if ps is not None else None,
                    stop if qs is not None else None,
                    step if rs is not None else None,
                )
                assert int(g) == len(range(n)[s]), (n, s)


def test_constant_slices_of_unknown_size():
    """Constant bounds on a dim of unknown size: the length graph is computed exactly."""
    x = T.dvector("x")
    parts = [None, -6, -1, 0, 2, 6]
    slices = [slice(*p) for p in itertools.product(parts, parts, [None, -2, -1, 1, 3])]
    dims = []
    for s in slices:
        node = x[s].owner
        (shape,) = node.op.infer_shape(None, node, [shape_tuple(i) for i in node.inputs])
        dims.append(T.as_tensor_variable(shape[0]))
    f = flowc.function([x], dims)
    for n in (0, 1, 4, 7):
        got = f(np.zeros(n))
        want = [len(range(n)[s]) for s in slices]
        assert [int(g) for g in got] == want


# ------------------------------------------------------------------ x.shape[i]


def test_shape_entry_is_an_int64_scalar_usable_as_a_size():
    x = T.dmatrix("x")
    n = x.shape[0]
    assert n.dtype == "int64" and n.ndim == 0
    value = np.arange(12.0).reshape(3, 4)
    assert int(n.eval({x: value})) == 3
    assert int(x.shape[-1].eval({x: value})) == 4
    np.testing.assert_array_equal(x.shape[1:].eval({x: value}), [4])
    assert T.alloc(1.5, n, 2).eval({x: value}).shape == (3, 2)
    zeros = T.zeros((x.shape[0], 3)).eval({x: value})
    assert zeros.shape == (3, 3) and not zeros.any()
    np.testing.assert_array_equal(T.arange(x.shape[1]).eval({x: value}), np.arange(4))
    np.testing.assert_array_equal(x[: x.shape[0] // 2].eval({x: value}), value[:1])
    np.testing.assert_array_equal(x[x.shape[0] - 1].eval({x: value}), value[2])


def test_static_shape_entry_is_a_constant():
    x = T.tensor("float64", shape=(None, 3))
    n = x.shape[1]
    assert isinstance(n, Constant) and n.dtype == "int64" and int(n.data) == 3
    assert T.zeros((x.shape[1], 2)).type.shape == (3, 2)
    with pytest.raises(IndexError, match="size 2"):
        x.shape[2]


# ------------------------------------------------------------------ gradients


def test_grad_accumulates_repeated_indices():
    x = T.dmatrix("x")
    g = T.grad((x[[0, 2, 0, 0]] * 2.0).sum(), x)
    want = np.zeros((3, 4))
    want[0], want[2] = 6.0, 2.0
    np.testing.assert_array_equal(g.eval({x: np.ones((3, 4))}), want)
    g2 = T.grad(x[[1, 1], [3, 3]].sum() + x[1:, 1].sum(), x)
    want = np.zeros((3, 4))
    want[1, 3] = 2.0
    want[1:, 1] += 1.0
    np.testing.assert_array_equal(g2.eval({x: np.ones((3, 4))}), want)


def test_grad_of_set_zeroes_the_region_and_sums_broadcast_y():
    x = T.dmatrix("x")
    y = T.drow("y")  # (1, n): broadcast over the indexed rows
    out = T.set_subtensor(x[[0, 2], 1:], y)
    gx, gy = T.grad((out * 3.0).sum(), [x, y])
    gxv, gyv = flowc.function([x, y], [gx, gy])(np.ones((3, 4)), np.ones((1, 3)))
    want = np.full((3, 4), 3.0)
    want[[0, 2], 1:] = 0.0
    np.testing.assert_array_equal(gxv, want)
    np.testing.assert_array_equal(gyv, np.full((1, 3), 6.0))


def test_grad_wrt_y_of_another_dtype():
    x = T.dmatrix("x")
    y = T.fvector("y")
    g = T.grad(T.inc_subtensor(x[1], y).sum(), y)
    assert g.dtype == "float32"
    np.testing.assert_array_equal(
        g.eval({x: np.ones((2, 3)), y: np.ones(3, "float32")}), np.ones(3)
    )


def test_grad_of_repeated_set_wrt_x_and_inc_wrt_y_with_repeats():
    i = np.array([1, 0, 1, 1])
    verify_grad(
        lambda x: T.set_subtensor(x[i], 0.0), [np.random.default_rng(1).normal(size=(3, 2))]
    )
    verify_grad(
        lambda y: T.inc_subtensor(T.zeros((3, 2))[i], y),
        [np.random.default_rng(2).normal(size=(4, 1))],
    )


def test_grad_of_take_flat():
    verify_grad(
        lambda x: T.take(x, [[0, 5], [5, 5]]), [np.random.default_rng(0).normal(size=(2, 3))]
    )


def test_rop_through_indexing():
    x, v = T.dmatrices("x", "v")
    value, direction = np.arange(12.0).reshape(3, 4), np.ones((3, 4)) * 2
    jv = T.Rop(x[1:, [0, 2]] ** 2, x, v)
    np.testing.assert_allclose(
        jv.eval({x: value, v: direction}), 2 * value[1:, [0, 2]] * direction[1:, [0, 2]]
    )
    y = T.dvector("y")
    jv = T.Rop(T.set_subtensor(x[0], y * 3.0), y, T.ones_like(y))
    want = np.zeros((3, 4))
    want[0] = 3.0
    np.testing.assert_allclose(jv.eval({x: value, y: np.ones(4)}), want)


# ------------------------------------------------------------------ semantics


def test_inputs_are_never_modified():
    x, y = T.dmatrix("x"), T.dvector("y")
    f = flowc.function([x, y], [T.set_subtensor(x[1], y), T.inc_subtensor(x[[0, 0]], 1.0)])
    xv, yv = np.zeros((2, 3)), np.ones(3)
    a, b = f(xv, yv)
    assert not xv.any() and (yv == 1).all()
    np.testing.assert_array_equal(a, [[0, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(b, [[2, 2, 2], [0, 0, 0]])
    s = flowc.shared(np.zeros(3), name="s")
    g = flowc.function([], T.inc_subtensor(s[1:], 5.0))
    np.testing.assert_array_equal(g(), [0, 5, 5])
    np.testing.assert_array_equal(s.get_value(), np.zeros(3))


def test_non_contiguous_inputs():
    x = T.dmatrix("x")
    i = T.lvector("i")
    f = flowc.function([x, i], [x[1:, ::-1], x[i], T.inc_subtensor(x[:, 1:], 1.0)])
    base = np.arange(40.0).reshape(5, 8)
    value = base[::2, ::3]  # a strided view
    assert not value.flags.c_contiguous
    a, b, c = f(value, np.array([2, 0]))
    np.testing.assert_array_equal(a, value[1:, ::-1])
    np.testing.assert_array_equal(b, value[[2, 0]])
    want = value.copy()
    want[:, 1:] += 1
    np.testing.assert_array_equal(c, want)


def test_symbolic_y_is_cast_to_x_dtype():
    x = T.fmatrix("x")
    out = T.inc_subtensor(x[0], T.dvector("y"))
    assert out.dtype == "float32"
    xi = T.imatrix("xi")
    assert T.set_subtensor(xi[0], T.bvector()).dtype == "int32"
    assert T.set_subtensor(xi[0], 1.5).dtype == "int32"


def test_minibatch_givens_idiom():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(10, 3))
    data = flowc.shared(values, name="data")
    index = T.lscalar("index")
    x = T.dmatrix("x")
    w = T.dvector("w")
    cost = ((x @ w) ** 2).mean()
    bs = 4
    f = flowc.function(
        [index, w], [cost, T.grad(cost, w)], givens={x: data[index * bs : (index + 1) * bs]}
    )
    wv = np.array([0.5, -1.0, 2.0])
    for k in range(3):  # the last batch is short
        batch = values[k * bs : (k + 1) * bs]
        got_cost, got_grad = f(k, wv)
        np.testing.assert_allclose(got_cost, ((batch @ wv) ** 2).mean())
        np.testing.assert_allclose(got_grad, 2 * batch.T @ (batch @ wv) / len(batch))


def test_check_mode_agrees():
    x = T.dmatrix("x")
    i = T.lvector("i")
    out = T.inc_subtensor(x[i, ::-1], x[i, 1].dimshuffle(0, "x") * 2.0)
    f = flowc.function([x, i], out, mode="check")
    value = np.arange(12.0).reshape(3, 4)
    want = value.copy()
    np.add.at(want, ([2, 2], slice(None, None, -1)), value[[2, 2], 1:2] * 2.0)
    np.testing.assert_array_equal(f(value, np.array([2, 2])), want)


# ------------------------------------------------------------------ errors


def test_too_many_indices():
    x = T.dmatrix("x")
    with pytest.raises(IndexError, match="too many indices"):
        x[1, 2, 3]
    with pytest.raises(IndexError, match="too many indices"):
        x[:, :, None, 0]
    with pytest.raises(IndexError, match="too many indices"):
        x[x > 0, 1]
    with pytest.raises(IndexError, match="single ellipsis"):
        x[..., 1, ...]
    with pytest.raises(IndexError, match="too many indices"):
        T.dscalar()[0]


def test_bad_index_types():
    x = T.dmatrix("x")
    with pytest.raises(TypeError, match="not a valid index"):
        x[1.5]
    with pytest.raises(TypeError, match="not a valid index"):
        x["a"]
    with pytest.raises(TypeError, match="dtype float64"):
        x[T.dvector()]
    with pytest.raises(TypeError, match="dtype float64"):
        x[[0.5, 1.0]]
    with pytest.raises(TypeError, match="slice start"):
        x[1.0:2]
    with pytest.raises(TypeError, match="slice stop"):
        x[: T.dscalar()]
    with pytest.raises(TypeError, match="boolean scalar"):
        x[True]
    with pytest.raises(TypeError, match="boolean scalar"):
        x[T.bscalar() > 0]
    with pytest.raises(ValueError, match="step cannot be zero"):
        x[::0]
    with pytest.raises(TypeError, match="integers"):
        T.take(x, [0.5])


def test_out_of_range_int_index():
    x = T.tensor("float64", shape=(3, 4))
    with pytest.raises(IndexError, match=r"index 5 .*dim 0 .*size 3"):
        x[5]
    with pytest.raises(IndexError, match=r"index -5 .*dim 1 .*size 4"):
        x[:, -5]
    with pytest.raises(IndexError, match=r"index 4 .*dim 1 .*size 4"):
        x[0, [0, 4]]
    with pytest.raises(IndexError, match="boolean index"):
        x[[True, False]]
    y = T.dmatrix("y")
    f = flowc.function([y], y[5])
    with pytest.raises(IndexError, match="out of bounds for axis 0 with size 3"):
        f(np.zeros((3, 4)))
    g = flowc.function([y], T.inc_subtensor(y[:, [0, 9]], 1.0))
    with pytest.raises(IndexError, match="size 4"):
        g(np.zeros((3, 4)))


def test_set_subtensor_needs_an_indexing_result():
    x = T.dmatrix("x")
    with pytest.raises(TypeError, match="result of indexing"):
        T.set_subtensor(x, 1.0)
    with pytest.raises(TypeError, match="result of indexing"):
        T.inc_subtensor(x + 1, 1.0)
    with pytest.raises(TypeError, match="result of indexing"):
        T.set_subtensor(np.zeros(3), 1.0)


def test_bad_values_for_set_and_inc():
    x = T.dmatrix("x")
    xi = T.imatrix("xi")
    with pytest.raises(TypeError, match="dtype float64"):
        T.set_subtensor(xi[0], T.dvector())
    with pytest.raises(TypeError, match="does not fit"):
        T.set_subtensor(T.bmatrix()[0], 1000)
    with pytest.raises(ValueError, match="more than"):
        T.set_subtensor(x[0], T.dmatrix())
    with pytest.raises(ValueError, match="does not broadcast"):
        T.set_subtensor(T.tensor("float64", shape=(3, 4))[1:], np.ones((3, 4)))
    # A dim of unknown size is never broadcast at run time.
    y = T.dmatrix("y")
    f = flowc.function([x, y], T.inc_subtensor(x[1:], y))
    with pytest.raises(ValueError, match="static size is 1"):
        f(np.zeros((3, 4)), np.ones((1, 4)))
    np.testing.assert_array_equal(f(np.zeros((3, 4)), np.ones((2, 4)))[1:], np.ones((2, 4)))
