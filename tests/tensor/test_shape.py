"""Shape ops (reshape, flatten, dimshuffle helpers, join/split/stack, tile, repeat, flip,
broadcast_to, arange, eye): forward vs NumPy, gradients, infer_shape, errors; jacobian/hessian."""

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc.tensor.basic import shape_tuple
from tests.optable import Case, check_forward, check_grad, check_shape


def normal(*shapes):
    return lambda rng: [rng.normal(size=s) for s in shapes]


def ints(*shapes, dtype="int32"):
    return lambda rng: [rng.integers(-9, 9, size=s).astype(dtype) for s in shapes]


def dims(x):
    return shape_tuple(x)


INT_ONLY = {"dtypes": ("float64",), "grad": ()}

RESHAPE = [
    Case("reshape_2x6", lambda x: T.reshape(x, (2, 6)), lambda x: x.reshape(2, 6), normal((3, 4))),
    Case(
        "reshape_minus1", lambda x: x.reshape((4, -1)), lambda x: x.reshape(4, -1), normal((3, 4))
    ),
    Case("reshape_vector", lambda x: x.reshape(-1), lambda x: x.reshape(-1), normal((2, 3, 4))),
    Case("reshape_3d", lambda x: x.reshape(2, 3, 2), lambda x: x.reshape(2, 3, 2), normal((3, 4))),
    Case("reshape_to_0d", lambda x: T.reshape(x, ()), lambda x: x.reshape(()), normal((1, 1))),
    Case(
        "reshape_from_0d",
        lambda x: T.reshape(x, (1, 1, 1)),
        lambda x: x.reshape(1, 1, 1),
        normal(()),
    ),
    Case(
        "reshape_empty",
        lambda x: T.reshape(x, (-1, 3)),
        lambda x: x.reshape(-1, 3),
        normal((0, 3, 2)),
    ),
    Case(
        "reshape_symbolic_entries",
        lambda x: T.reshape(x, (dims(x)[1], dims(x)[0])),
        lambda x: x.reshape(x.shape[1], x.shape[0]),
        normal((3, 5)),
    ),
    Case(
        "reshape_symbolic_minus1",
        lambda x: T.reshape(x, (dims(x)[0] * 2, -1)),
        lambda x: x.reshape(x.shape[0] * 2, -1),
        normal((4, 6)),
    ),
    Case(
        "reshape_like_other",
        lambda x, y: T.reshape(x, y.shape),
        lambda x, y: x.reshape(y.shape),
        normal((3, 4), (6, 2)),
        grad=(0,),
    ),
    # The shape vector holds -1 at run time only: infer_shape must handle it.
    Case(
        "reshape_runtime_minus1",
        lambda x, s: T.reshape(x, s, ndim=2),
        lambda x, s: x.reshape(s),
        lambda rng: [rng.normal(size=(3, 4)), np.array([-1, 2])],
        grad=(0,),
    ),
    Case(
        "reshape_int",
        lambda x: x.reshape(4, 3),
        lambda x: x.reshape(4, 3),
        ints((3, 4)),
        **INT_ONLY,
    ),
]

FLATTEN = [
    Case("flatten_1", lambda x: T.flatten(x), lambda x: x.reshape(-1), normal((2, 3, 4))),
    Case("flatten_2", lambda x: x.flatten(2), lambda x: x.reshape(2, 12), normal((2, 3, 4))),
    Case("flatten_3_identity", lambda x: x.flatten(3), lambda x: x, normal((2, 3, 4))),
    Case("flatten_0d", lambda x: T.flatten(x), lambda x: x.reshape(1), normal(())),
    Case("flatten_empty", lambda x: T.flatten(x, 2), lambda x: x.reshape(0, 6), normal((0, 3, 2))),
    Case(
        "flatten_empty_trailing", lambda x: T.flatten(x, 1), lambda x: x.reshape(0), normal((3, 0))
    ),
    Case("flatten_int", lambda x: T.flatten(x), lambda x: x.ravel(), ints((3, 2)), **INT_ONLY),
]

DIMSHUFFLE = [
    Case("transpose", T.transpose, np.transpose, normal((2, 3, 4))),
    Case(
        "transpose_axes",
        lambda x: T.transpose(x, (1, 2, 0)),
        lambda x: np.transpose(x, (1, 2, 0)),
        normal((2, 3, 4)),
    ),
    Case(
        "transpose_neg_axes",
        lambda x: T.transpose(x, (-1, 0, 1)),
        lambda x: np.transpose(x, (2, 0, 1)),
        normal((2, 3, 4)),
    ),
    Case("transpose_0d", T.transpose, np.transpose, normal(())),
    Case("padleft", lambda x: T.shape_padleft(x, 2), lambda x: x[None, None], normal((2, 3))),
    Case("padright", lambda x: T.shape_padright(x), lambda x: x[..., None], normal((2, 3))),
    Case("padaxis_mid", lambda x: T.shape_padaxis(x, 1), lambda x: x[:, None], normal((2, 3))),
    Case("padaxis_neg", lambda x: T.shape_padaxis(x, -1), lambda x: x[..., None], normal((2, 3))),
    Case(
        "expand_dims_tuple",
        lambda x: T.expand_dims(x, (0, -1)),
        lambda x: np.expand_dims(x, (0, -1)),
        normal((2, 3)),
    ),
    Case(
        "expand_dims_int",
        lambda x: T.expand_dims(x, 1),
        lambda x: np.expand_dims(x, 1),
        normal((2, 3)),
    ),
    Case("squeeze_static", lambda x: x.squeeze(), np.squeeze, normal((3, 1, 4, 1))),
    Case(
        "squeeze_axis", lambda x: T.squeeze(x, 1), lambda x: np.squeeze(x, 1), normal((3, 1, 4, 1))
    ),
    # Size-1 dims not static: the explicit axis is checked at run time.
    Case(
        "squeeze_runtime_axis",
        lambda x: T.squeeze(x, (-1, 1)),
        lambda x: np.squeeze(x, (-1, 1)),
        normal((3, 1, 4, 1)),
        static_ones=False,
    ),
    Case(
        "squeeze_none_static",
        lambda x: T.squeeze(x),
        lambda x: x,
        normal((3, 1)),
        static_ones=False,
    ),
    Case(
        "addbroadcast",
        lambda x, y: T.addbroadcast(x, 1) * y,
        lambda x, y: x * y,
        normal((3, 1), (3, 4)),
        static_ones=False,
    ),
    Case(
        "addbroadcast_neg",
        lambda x, y: T.addbroadcast(x, -2) + y,
        lambda x, y: x + y,
        normal((1, 4), (3, 4)),
        static_ones=False,
    ),
    Case("unbroadcast", lambda x: T.unbroadcast(x, 0) * 2, lambda x: x * 2, normal((1, 4))),
    Case(
        "patternbroadcast",
        lambda x, y: T.patternbroadcast(x, (False, True)) + y,
        lambda x, y: x + y,
        normal((3, 1), (3, 4)),
        static_ones=False,
    ),
    Case(
        "dimshuffle_int",
        lambda x: T.transpose(T.shape_padleft(x)),
        lambda x: x[None].transpose(),
        ints((2, 3)),
        **INT_ONLY,
    ),
]

JOIN = [
    Case(
        "join_0",
        lambda a, b, c: T.join(0, a, b, c),
        lambda a, b, c: np.concatenate([a, b, c]),
        normal((2, 3), (4, 3), (1, 3)),
    ),
    Case(
        "join_1",
        lambda a, b: T.join(1, a, b),
        lambda a, b: np.concatenate([a, b], 1),
        normal((2, 3), (2, 5)),
    ),
    Case(
        "concat_neg",
        lambda a, b: T.concatenate([a, b], axis=-1),
        lambda a, b: np.concatenate([a, b], -1),
        normal((2, 3, 1), (2, 3, 4)),
    ),
    Case(
        "concat_empty",
        lambda a, b: T.concatenate([a, b]),
        lambda a, b: np.concatenate([a, b]),
        normal((0, 3), (2, 3)),
    ),
    Case(
        "concat_vectors",
        lambda a, b: T.concatenate([a, b]),
        lambda a, b: np.concatenate([a, b]),
        normal((3,), (5,)),
    ),
    # Mixed dtypes promote as in NumPy: float32 + int32 -> float64, float + int8 -> float.
    Case(
        "concat_int32_float",
        lambda a, b: T.concatenate([a, b]),
        lambda a, b: np.concatenate([a, b]),
        lambda rng: [rng.normal(size=(2, 3)), rng.integers(0, 5, size=(1, 3)).astype("int32")],
    ),
    Case(
        "concat_int8_float",
        lambda a, b: T.concatenate([a, b], 1),
        lambda a, b: np.concatenate([a, b], 1),
        lambda rng: [rng.normal(size=(2, 3)), rng.integers(0, 5, size=(2, 2)).astype("int8")],
    ),
    Case(
        "concat_int",
        lambda a, b: T.concatenate([a, b], 1),
        lambda a, b: np.concatenate([a, b], 1),
        lambda rng: [
            rng.integers(0, 5, size=(2, 3)).astype("int16"),
            rng.integers(0, 5, size=(2, 2)).astype("int64"),
        ],
        **INT_ONLY,
    ),
    Case(
        "stack_0",
        lambda a, b, c: T.stack([a, b, c]),
        lambda a, b, c: np.stack([a, b, c]),
        normal((2, 3), (2, 3), (2, 3)),
    ),
    Case(
        "stack_neg",
        lambda a, b: T.stack([a, b], axis=-1),
        lambda a, b: np.stack([a, b], -1),
        normal((2, 3), (2, 3)),
    ),
    Case(
        "stack_mid",
        lambda a, b: T.stack((a, b), axis=1),
        lambda a, b: np.stack([a, b], 1),
        normal((2, 3), (2, 3)),
    ),
    Case(
        "stack_scalars",
        lambda a, b: T.stack([a, b, a * b]),
        lambda a, b: np.stack([a, b, a * b]),
        normal((), ()),
    ),
    Case(
        "stack_int",
        lambda a, b: T.stack([a, b], 1),
        lambda a, b: np.stack([a, b], 1),
        ints((3,), (3,)),
        **INT_ONLY,
    ),
]

SPLIT = [
    Case(
        "split_0", lambda x: T.split(x, [2, 3, 1], 3), lambda x: np.split(x, [2, 5]), normal((6, 4))
    ),
    Case(
        "split_neg_axis",
        lambda x: T.split(x, [1, 4], 2, axis=-1),
        lambda x: np.split(x, [1], axis=-1),
        normal((3, 5)),
    ),
    Case(
        "split_zero_part",
        lambda x: T.split(x, [0, 5], 2, axis=1),
        lambda x: np.split(x, [0], axis=1),
        normal((3, 5)),
    ),
    Case("split_one", lambda x: T.split(x, [4], 1), lambda x: [x], normal((4, 2))),
    Case(
        "split_symbolic",
        lambda x, s: T.split(x, s, 3, axis=1),
        lambda x, s: np.split(x, np.cumsum(s)[:-1], axis=1),
        lambda rng: [rng.normal(size=(2, 7)), np.array([3, 0, 4])],
        grad=(0,),
    ),
    Case(
        "split_symbolic_entries",
        lambda x: T.split(x, [dims(x)[0] - 1, 1], 2),
        lambda x: np.split(x, [len(x) - 1]),
        normal((5, 2)),
    ),
    # Only one output reaches the cost: the other gets a zero gradient.
    Case(
        "split_one_used",
        lambda x: T.split(x, [2, 4], 2)[1] * 3,
        lambda x: np.split(x, [2])[1] * 3,
        normal((6, 2)),
    ),
    Case(
        "split_int",
        lambda x: T.split(x, [1, 2], 2),
        lambda x: np.split(x, [1]),
        ints((3, 2)),
        **INT_ONLY,
    ),
]

TILE_REPEAT = [
    Case("tile_2d", lambda x: T.tile(x, (2, 3)), lambda x: np.tile(x, (2, 3)), normal((2, 3))),
    Case("tile_short_reps", lambda x: T.tile(x, 3), lambda x: np.tile(x, 3), normal((2, 3))),
    Case(
        "tile_long_reps",
        lambda x: T.tile(x, (2, 1, 3)),
        lambda x: np.tile(x, (2, 1, 3)),
        normal((2, 3)),
    ),
    Case("tile_zero", lambda x: T.tile(x, (0, 2)), lambda x: np.tile(x, (0, 2)), normal((2, 3))),
    Case("tile_0d", lambda x: T.tile(x, (2, 2)), lambda x: np.tile(x, (2, 2)), normal(())),
    Case(
        "tile_bcast_dim", lambda x: T.tile(x, (3, 2)), lambda x: np.tile(x, (3, 2)), normal((1, 3))
    ),
    Case(
        "tile_symbolic",
        lambda x: T.tile(x, (dims(x)[1], 1)),
        lambda x: np.tile(x, (x.shape[1], 1)),
        normal((2, 3)),
    ),
    Case("tile_int", lambda x: T.tile(x, 2), lambda x: np.tile(x, 2), ints((3,)), **INT_ONLY),
    Case("repeat_flat", lambda x: T.repeat(x, 2), lambda x: np.repeat(x, 2), normal((2, 3))),
    Case(
        "repeat_axis",
        lambda x: T.repeat(x, 3, axis=1),
        lambda x: np.repeat(x, 3, axis=1),
        normal((2, 3)),
    ),
    Case(
        "repeat_vector",
        lambda x: T.repeat(x, [1, 0, 3], axis=-1),
        lambda x: np.repeat(x, [1, 0, 3], axis=-1),
        normal((2, 3)),
    ),
    Case(
        "repeat_len1_vector",
        lambda x: T.repeat(x, [2], axis=0),
        lambda x: np.repeat(x, [2], axis=0),
        normal((3, 2)),
    ),
    Case(
        "repeat_symbolic_vector",
        lambda x, r: T.repeat(x, r, axis=0),
        lambda x, r: np.repeat(x, r, axis=0),
        lambda rng: [rng.normal(size=(3, 2)), np.array([2, 0, 1])],
        grad=(0,),
    ),
    Case(
        "repeat_symbolic_scalar",
        lambda x, r: T.repeat(x, r, axis=0),
        lambda x, r: np.repeat(x, r, axis=0),
        lambda rng: [rng.normal(size=(3, 2)), np.array(2, dtype="int32")],
        grad=(0,),
    ),
    Case("repeat_0d", lambda x: T.repeat(x, 3), lambda x: np.repeat(x, 3), normal(())),
    Case(
        "repeat_empty",
        lambda x: T.repeat(x, 2, axis=1),
        lambda x: np.repeat(x, 2, axis=1),
        normal((0, 3)),
    ),
    Case(
        "repeat_int",
        lambda x: T.repeat(x, [2, 1], axis=1),
        lambda x: np.repeat(x, [2, 1], axis=1),
        ints((3, 2)),
        **INT_ONLY,
    ),
    Case("flip_all", T.flip, np.flip, normal((2, 3, 4))),
    Case("flip_axis", lambda x: T.flip(x, 1), lambda x: np.flip(x, 1), normal((2, 3, 4))),
    Case(
        "flip_axes", lambda x: T.flip(x, (0, -1)), lambda x: np.flip(x, (0, -1)), normal((2, 3, 4))
    ),
    Case("flip_int", T.flip, np.flip, ints((2, 3)), **INT_ONLY),
    Case(
        "broadcast_to_row",
        lambda x: T.broadcast_to(x, (3, 4)),
        lambda x: np.broadcast_to(x, (3, 4)),
        normal((1, 4)),
    ),
    Case(
        "broadcast_to_rank",
        lambda x: T.broadcast_to(x, (2, 3, 4)),
        lambda x: np.broadcast_to(x, (2, 3, 4)),
        normal((4,)),
    ),
    Case(
        "broadcast_to_symbolic",
        lambda x, y: T.broadcast_to(x, dims(y)),
        lambda x, y: np.broadcast_to(x, y.shape),
        normal((1, 3), (5, 3)),
        grad=(0,),
    ),
]

CONSTRUCT = [
    Case(
        "arange_float",
        lambda a, b: T.arange(a, b, 0.75),
        lambda a, b: np.arange(a, b, 0.75),
        lambda rng: [np.array(0.3), np.array(7.1)],
    ),
    Case(
        "arange_neg_step",
        lambda a, b: T.arange(b, a, -1.5),
        lambda a, b: np.arange(b, a, -1.5),
        lambda rng: [np.array(0.3), np.array(7.1)],
    ),
    Case(
        "arange_float_step",
        lambda a, s: T.arange(a, 10, s),
        lambda a, s: np.arange(a, 10, s),
        lambda rng: [np.array(0.2), np.array(1.3)],
    ),
    Case(
        "arange_int",
        lambda a, b: T.arange(a, b),
        lambda a, b: np.arange(a, b),
        lambda rng: [np.array(-2, dtype="int32"), np.array(5, dtype="int32")],
        **INT_ONLY,
    ),
    Case(
        "arange_stop_only",
        lambda n: T.arange(n),
        lambda n: np.arange(n),
        lambda rng: [np.array(4, dtype="int64")],
        **INT_ONLY,
    ),
    Case(
        "arange_empty",
        lambda a, b: T.arange(a, b),
        lambda a, b: np.arange(a, b),
        lambda rng: [np.array(5), np.array(2)],
        **INT_ONLY,
    ),
    Case(
        "arange_dtype",
        lambda a, b: T.arange(a, b, 2, dtype="float32"),
        lambda a, b: np.arange(a, b, 2, dtype="float32"),
        lambda rng: [np.array(1), np.array(8)],
        **INT_ONLY,
    ),
    Case(
        "eye_nm_k",
        lambda n, m: T.eye(n, m, 1),
        lambda n, m: np.eye(n, m, 1),
        lambda rng: [np.array(3), np.array(5)],
        **INT_ONLY,
    ),
    Case(
        "eye_neg_k",
        lambda n: T.eye(n, k=-1, dtype="int32"),
        lambda n: np.eye(n, k=-1, dtype="int32"),
        lambda rng: [np.array(4)],
        **INT_ONLY,
    ),
    Case(
        "eye_empty",
        lambda n: T.eye(n, 3, dtype="float32"),
        lambda n: np.eye(n, 3, dtype="float32"),
        lambda rng: [np.array(0)],
        **INT_ONLY,
    ),
]

ALL = RESHAPE + FLATTEN + DIMSHUFFLE + JOIN + SPLIT + TILE_REPEAT + CONSTRUCT


@pytest.mark.parametrize("case", ALL, ids=str)
def test_forward(case):
    check_forward(case)


@pytest.mark.parametrize("case", [c for c in ALL if c.grad != ()], ids=str)
def test_grad(case):
    check_grad(case)


@pytest.mark.parametrize("case", ALL, ids=str)
def test_infer_shape(case):
    check_shape(case)


# ------------------------------------------------------------------ static shapes and methods


def test_static_shapes():
    x = T.dmatrix("x")
    n = T.lscalar("n")
    assert T.reshape(x, (n, 3)).type.shape == (None, 3)
    assert T.reshape(T.tensor("float64", (4, 6)), (3, -1)).type.shape == (3, 8)
    assert T.reshape(x, (1, -1)).broadcastable == (True, False)
    assert T.flatten(T.tensor("float64", (2, None, 4)), 2).type.shape == (2, None)
    a, b = T.tensor("float64", (2, 3)), T.tensor("float64", (None, 3))
    assert T.concatenate([a, b]).type.shape == (None, 3)
    assert T.concatenate([a, a]).type.shape == (4, 3)
    assert T.concatenate([a, b], axis=1).type.shape == (2, 6)
    assert T.concatenate([a, T.dmatrix()], axis=1).type.shape == (2, None)
    parts = T.split(T.tensor("float64", (None, 5)), [2, 3], 2, axis=1)
    assert [p.type.shape for p in parts] == [(None, 2), (None, 3)]
    assert T.stack([a, a]).type.shape == (2, 2, 3)
    assert T.tile(T.tensor("float64", (2, 3)), (2, 2)).type.shape == (4, 6)
    assert T.repeat(T.tensor("float64", (2, 3)), 2, axis=1).type.shape == (2, 6)
    assert T.repeat(T.tensor("float64", (2, 3)), [1, 2, 0], axis=1).type.shape == (2, 3)
    assert T.arange(2, 11, 3).type.shape == (3,)
    assert T.eye(3, 4).type.shape == (3, 4)
    assert T.eye(n).type.shape == (None, None)
    assert T.broadcast_to(T.row(), (n, 4)).type.shape == (None, 4)


def test_variable_methods():
    x = T.dtensor3("x")
    v = np.arange(24.0).reshape(2, 3, 4)
    f = flowc.function(
        [x],
        [
            x.reshape(6, 4),
            x.reshape((4, 6)),
            x.flatten(),
            x.flatten(2),
            T.shape_padright(x).squeeze(),
            x.T,
        ],
    )
    out = f(v)
    want = [v.reshape(6, 4), v.reshape(4, 6), v.ravel(), v.reshape(2, 12), v, v.T]
    for g, w in zip(out, want):
        np.testing.assert_array_equal(g, w)


def test_reshape_symbolic_vector_needs_ndim():
    x = T.dmatrix("x")
    s = T.lvector("s")
    with pytest.raises(ValueError, match="pass ndim"):
        T.reshape(x, s)
    y = T.reshape(x, s, ndim=3)
    assert y.ndim == 3
    np.testing.assert_array_equal(
        y.eval({x: np.arange(6.0).reshape(2, 3), s: np.array([3, 1, 2])}),
        np.arange(6.0).reshape(3, 1, 2),
    )
    # The length is asserted at run time.
    with pytest.raises(ValueError):
        y.eval({x: np.ones((2, 3)), s: np.array([6, 1])})


def test_reshape_int32_scalar_entries():
    x = T.dvector("x")
    n = T.iscalar("n")
    f = flowc.function([x, n], T.reshape(x, (n, -1)))
    np.testing.assert_array_equal(f(np.arange(6.0), 3), np.arange(6.0).reshape(3, 2))


def test_as_tensor_variable_of_list_stacks():
    n = T.lscalar("n")
    x = T.fscalar("x")
    v = T.as_tensor_variable([n, 3, n * 2])
    assert v.dtype == "int64" and v.type.shape == (3,)
    np.testing.assert_array_equal(v.eval({n: 5}), [5, 3, 10])
    # Python numbers take the float32 of x.
    w = T.as_tensor_variable([x, 1.5])
    assert w.dtype == "float32"
    np.testing.assert_allclose(w.eval({x: np.float32(2.0)}), [2.0, 1.5])
    m = T.as_tensor_variable([[x, 0.0], [0.0, x]])
    assert m.type.shape == (2, 2)
    np.testing.assert_allclose(m.eval({x: np.float32(3.0)}), [[3.0, 0.0], [0.0, 3.0]])


def test_non_contiguous_inputs():
    a = np.arange(32.0).reshape(4, 8)
    x = T.dmatrix("x")
    f = flowc.function(
        [x],
        [
            T.reshape(x, (-1,)),
            T.flatten(x, 1),
            T.concatenate([x, x], 1),
            *T.split(x, [1, 3], 2, axis=1),
            T.tile(x, (1, 2)),
            T.repeat(x, [1, 2, 0, 1], axis=1),
            T.flip(x, 0),
            T.transpose(x),
            T.stack([x, x], axis=2),
        ],
    )
    for view in (a.T, a[:, ::2], a[::-1, 1::2]):
        assert not view.flags.c_contiguous and view.shape[1] == 4
        got = f(view)
        want = [
            view.reshape(-1),
            view.ravel(),
            np.concatenate([view, view], 1),
            *np.split(view, [1], axis=1),
            np.tile(view, (1, 2)),
            np.repeat(view, [1, 2, 0, 1], axis=1),
            np.flip(view, 0),
            view.T,
            np.stack([view, view], axis=2),
        ]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    # Gradients evaluated at non-contiguous values.
    w = np.arange(16.0).reshape(8, 2)
    g = T.grad((T.reshape(x, (-1, 2)) * w).sum() + (T.flip(x, 1) * x).sum(), x)
    for view in (a.T[:4], a[:, ::2]):
        np.testing.assert_allclose(g.eval({x: view}), w.reshape(4, 4) + 2 * np.flip(view, 1))


def test_split_outputs_are_views_of_input_values_not_copies_of_each_other():
    x = T.dvector("x")
    a, b = T.split(x, [2, 3], 2)
    f = flowc.function([x], [a, b])
    ga, gb = f(np.arange(5.0))
    ga[0] = 100.0  # outputs are owned by the caller: changing one leaves the other alone
    np.testing.assert_array_equal(gb, [2.0, 3.0, 4.0])


# ------------------------------------------------------------------ gradients, R_op


def test_split_grad_with_unused_outputs_is_zero_there():
    x = T.dvector("x")
    a, b, c = T.split(x, [1, 2, 2], 3)
    g = T.grad((b * np.array([2.0, 3.0])).sum(), x)
    np.testing.assert_array_equal(g.eval({x: np.arange(5.0)}), [0, 2, 3, 0, 0])


def test_join_grad_to_int_input_is_none_and_float_gets_its_part():
    x = T.dvector("x")
    k = T.ivector("k")
    y = T.concatenate([x, k])
    gx = T.grad((y * np.arange(5.0)).sum(), x)
    np.testing.assert_array_equal(gx.eval({x: np.ones(2), k: np.ones(3, "int32")}), [0, 1])


def test_arange_grad_values():
    a, s = T.dscalars("a", "s")
    y = T.arange(a, 10.0, s)
    ga, gs = T.grad((y * y).sum(), [a, s])
    f = flowc.function([a, s], [ga, gs])
    av, sv = 0.5, 1.25
    vals = np.arange(av, 10.0, sv)
    i = np.arange(len(vals))
    got_a, got_s = f(av, sv)
    np.testing.assert_allclose(got_a, 2 * vals.sum())
    np.testing.assert_allclose(got_s, (2 * vals * i).sum())


def test_repeat_second_derivative():
    # The gradient of RepeatGrad is Repeat again: hessian of sum(repeat(x, r)**3).
    x = T.dvector("x")
    r = np.array([2, 0, 3])
    H = T.hessian((T.repeat(x, r) ** 3).sum(), x)
    xv = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(H.eval({x: xv}), np.diag(6 * xv * r))


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: T.reshape(x, (3, 4)),
        lambda x: T.concatenate([x, x * 2], axis=1),
        lambda x: T.split(x, [1, 5], 2, axis=0)[1],
        lambda x: T.flip(x, 1),
        lambda x: T.unbroadcast(T.shape_padleft(x), 0),
    ],
    ids=["reshape", "join", "split", "flip", "unbroadcast"],
)
def test_rop_matches_jacobian_product(fn):
    x = T.dmatrix("x")
    v = T.dmatrix("v")
    y = fn(x)
    jv = T.Rop(y, x, v)
    rng = np.random.default_rng(0)
    xv, vv = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    f = flowc.function([x], y)
    eps = 1e-6
    fd = (f(xv + eps * vv) - f(xv - eps * vv)) / (2 * eps)
    np.testing.assert_allclose(jv.eval({x: xv, v: vv}), fd, rtol=1e-6, atol=1e-8)


def test_jacobian_elementwise():
    x = T.dvector("x")
    J = T.jacobian(x**2 * 3, x)
    xv = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(J.eval({x: xv}), np.diag(6 * xv))


def test_hessian_sum_of_cubes():
    x = T.dvector("x")
    H = T.hessian((x**3).sum(), x)
    xv = np.array([1.0, -2.0, 0.5, 3.0])
    np.testing.assert_allclose(H.eval({x: xv}), np.diag(6 * xv))


def test_jacobian_of_matrix_wrt_vector_has_shape_y_plus_x():
    x = T.dvector("x")
    A = T.dmatrix("A")
    y = T.shape_padright(x) * A  # y[i, j] = x[i] * A[i, j]
    J = T.jacobian(y, x)
    assert J.ndim == 3
    xv, Av = np.array([1.0, 2.0, 3.0]), np.arange(12.0).reshape(3, 4)
    got = J.eval({x: xv, A: Av})
    want = np.zeros((3, 4, 3))
    for i in range(3):
        want[i, :, i] = Av[i]
    assert got.shape == (3, 4, 3)
    np.testing.assert_allclose(got, want)


def test_jacobian_of_scalar_and_of_reshaped_matrix():
    X = T.dmatrix("X")
    Xv = np.arange(1.0, 7.0).reshape(2, 3)
    J = T.jacobian((X**2).sum(), X)  # a 0-d expression: the gradient itself
    np.testing.assert_allclose(J.eval({X: Xv}), 2 * Xv)
    Jr = T.jacobian(T.reshape(X, (3, 2)) * 2.0, X)
    got = Jr.eval({X: Xv})
    assert got.shape == (3, 2, 2, 3)
    np.testing.assert_allclose(got.reshape(6, 6), 2 * np.eye(6))


def test_jacobian_with_list_wrt_uses_concatenate_and_eye():
    x, y = T.dvectors("x", "y")
    out = T.concatenate([x * y, x + 2 * y])
    Jx, Jy = T.jacobian(out, [x, y])
    xv, yv = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    np.testing.assert_allclose(Jx.eval({x: xv, y: yv}), np.vstack([np.diag(yv), np.eye(2)]))
    np.testing.assert_allclose(Jy.eval({x: xv, y: yv}), np.vstack([np.diag(xv), 2 * np.eye(2)]))


def test_eye_symbolic_and_dtype():
    n = T.lscalar("n")
    e = T.eye(n, dtype="float32")
    assert e.dtype == "float32"
    np.testing.assert_array_equal(e.eval({n: 3}), np.eye(3, dtype="float32"))
    with flowc.config.change(floatX="float32"):
        assert T.eye(2).dtype == "float32"
    assert T.eye(2).dtype == "float64"
    x = T.fmatrix("x")
    np.testing.assert_array_equal(
        T.identity_like(x).eval({x: np.zeros((2, 3), "float32")}), np.eye(2, 3, dtype="float32")
    )


def test_arange_dtypes_follow_numpy():
    assert T.arange(5).dtype == np.arange(5).dtype.name
    assert T.arange(0.5, 3).dtype == np.arange(0.5, 3).dtype.name
    assert T.arange(T.iscalar()).dtype == np.arange(np.int32(3)).dtype.name
    assert T.arange(T.fscalar(), 3).dtype == np.arange(np.float32(0), 3).dtype.name
    assert T.arange(T.iscalar(), 2.5).dtype == "float64"
    assert T.arange(3, dtype="int8").dtype == "int8"


# ------------------------------------------------------------------ errors


def test_reshape_errors():
    x = T.dmatrix("x")
    with pytest.raises(ValueError, match="only one -1"):
        T.reshape(x, (-1, -1))
    with pytest.raises(ValueError, match="invalid size -2"):
        T.reshape(x, (-2, 3))
    with pytest.raises(ValueError, match="ndim=3"):
        T.reshape(x, (2, 3), ndim=3)
    with pytest.raises(TypeError, match="reshape shape entry"):
        T.reshape(x, (2.5, 2))
    with pytest.raises(TypeError, match="integer vector"):
        T.reshape(x, T.dvector())
    with pytest.raises(ValueError, match=r"6 elements\) into shape \(4, 2\)"):
        T.reshape(T.tensor("float64", (2, 3)), (4, 2))
    with pytest.raises(ValueError, match="cannot reshape"):
        T.reshape(T.tensor("float64", (2, 3)), (4, -1))
    f = flowc.function([x], T.reshape(x, (4, -1)))
    with pytest.raises(ValueError, match=r"cannot reshape an array of shape \(3, 3\)"):
        f(np.ones((3, 3)))
    s = T.lvector("s")
    g = flowc.function([x, s], T.reshape(x, s, ndim=2))
    with pytest.raises(ValueError, match="only one -1"):
        g(np.ones((2, 2)), np.array([-1, -1]))
    with pytest.raises(ValueError, match="invalid size -3"):
        g(np.ones((2, 2)), np.array([-3, 1]))


def test_flatten_and_transpose_errors():
    x = T.dmatrix("x")
    with pytest.raises(ValueError, match="flatten: ndim"):
        T.flatten(x, 0)
    with pytest.raises(ValueError, match="flatten: ndim"):
        T.flatten(x, 3)
    with pytest.raises(ValueError, match="not a permutation"):
        T.transpose(x, (0, 0))
    with pytest.raises(ValueError, match="out of range"):
        T.transpose(x, (0, 2))
    with pytest.raises(ValueError, match="out of range"):
        T.shape_padaxis(x, 3)
    with pytest.raises(ValueError, match="out of range"):
        T.expand_dims(x, (0, 4))


def test_squeeze_errors():
    x = T.tensor("float64", (3, None))
    with pytest.raises(ValueError, match="cannot squeeze axis 0 .* its size is 3"):
        T.squeeze(x, 0)
    f = flowc.function([x], T.squeeze(x, 1))
    np.testing.assert_array_equal(f(np.ones((3, 1))), np.ones(3))
    with pytest.raises(ValueError, match="specify_shape"):
        f(np.ones((3, 2)))
    with pytest.raises(ValueError, match="out of range"):
        T.squeeze(x, 2)


def test_addbroadcast_errors():
    with pytest.raises(ValueError, match="static size 3"):
        T.addbroadcast(T.tensor("float64", (3, None)), 0)
    x = T.dmatrix("x")
    f = flowc.function([x], T.addbroadcast(x, 1))
    with pytest.raises(ValueError):
        f(np.ones((2, 2)))
    with pytest.raises(ValueError, match="entries"):
        T.patternbroadcast(x, (True,))
    assert T.unbroadcast(x, 0) is x


def test_join_errors():
    a, b = T.dmatrix("a"), T.dvector("b")
    with pytest.raises(ValueError, match="same number of dims"):
        T.concatenate([a, b])
    with pytest.raises(ValueError, match="same number of dims"):
        T.stack([a, b])
    with pytest.raises(ValueError, match="0-d"):
        T.concatenate([T.dscalar(), T.dscalar()])
    with pytest.raises(ValueError, match="out of range"):
        T.concatenate([a, a], axis=2)
    with pytest.raises(ValueError, match=r"dim 1 has static sizes \[3, 4\]"):
        T.concatenate([T.tensor("float64", (2, 3)), T.tensor("float64", (2, 4))])
    with pytest.raises(TypeError, match="list or tuple"):
        T.concatenate(a)
    with pytest.raises(ValueError, match="at least one"):
        T.join(0)
    c = T.dmatrix("c")
    g = flowc.function([a, c], T.concatenate([a, c]))
    with pytest.raises(ValueError, match="differ outside axis 0"):
        g(np.ones((2, 3)), np.ones((2, 4)))
    assert T.concatenate([a]) is a


def test_split_errors():
    x = T.dvector("x")
    with pytest.raises(ValueError, match="2 sizes given for 3 splits"):
        T.split(x, [1, 2], 3)
    with pytest.raises(ValueError, match="sum to 4"):
        T.split(T.tensor("float64", (5,)), [1, 3], 2)
    with pytest.raises(ValueError, match="invalid size -1"):
        T.split(x, [-1, 3], 2)
    with pytest.raises(ValueError, match="n_splits"):
        T.split(x, [], 0)
    f = flowc.function([x], T.split(x, [1, 3], 2))
    with pytest.raises(ValueError, match="sum to 4, but axis 0"):
        f(np.ones(5))
    s = T.lvector("s")
    g = flowc.function([x, s], T.split(x, s, 2))
    with pytest.raises(ValueError):
        g(np.ones(3), np.array([1, 1, 1]))


def test_tile_repeat_errors():
    x = T.dmatrix("x")
    with pytest.raises(ValueError, match="non-negative"):
        T.tile(x, (2, -1))
    with pytest.raises(ValueError, match="non-negative"):
        T.repeat(x, -2)
    with pytest.raises(ValueError, match="invalid size -1"):
        T.repeat(x, [1, -1], axis=0)
    with pytest.raises(ValueError, match="3 repeats for axis 1"):
        T.repeat(T.tensor("float64", (2, 2)), [1, 2, 3], axis=1)
    with pytest.raises(TypeError, match="integer"):
        T.repeat(x, T.dscalar())
    r = T.lvector("r")
    f = flowc.function([x, r], T.repeat(x, r, axis=0))
    with pytest.raises(ValueError, match="2 repeats for axis 0"):
        f(np.ones((3, 2)), np.array([1, 2]))
    with pytest.raises(ValueError, match="non-negative"):
        f(np.ones((2, 2)), np.array([1, -2]))


def test_broadcast_to_errors():
    with pytest.raises(ValueError, match="does not broadcast"):
        T.broadcast_to(T.tensor("float64", (3,)), (2, 4))
    with pytest.raises(ValueError, match="cannot broadcast the 2-d"):
        T.broadcast_to(T.dmatrix(), (3,))
    x = T.dvector("x")
    f = flowc.function([x], T.broadcast_to(x, (2, 3)))
    with pytest.raises(ValueError):
        f(np.ones(1))  # only static size-1 dims broadcast


def test_arange_eye_errors():
    with pytest.raises(ValueError, match="step must not be zero"):
        T.arange(0, 5, 0)
    s = T.lscalar("s")
    f = flowc.function([s], T.arange(0, 5, s))
    with pytest.raises(ValueError, match="step must not be zero"):
        f(0)
    with pytest.raises(TypeError, match="real scalar"):
        T.arange(T.dvector())
    with pytest.raises(ValueError, match="eye n must be non-negative"):
        T.eye(-1)
    with pytest.raises(TypeError, match="integer scalar"):
        T.eye(T.dscalar())
    n = T.lscalar("n")
    g = flowc.function([n], T.eye(n))
    with pytest.raises(ValueError, match="non-negative"):
        g(-2)
