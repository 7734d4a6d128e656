"""Products (dot, matmul, tensordot, batched_dot, outer) and T.nlinalg: forward against NumPy,
gradients by finite differences, infer_shape on non-square shapes, R_op, and error paths."""

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc.testing import verify_grad
from tests.optable import Case, check_forward, check_grad, check_shape

NL = T.nlinalg


def normal(*shapes):
    return lambda rng: [rng.normal(size=s) for s in shapes]


def ints(*shapes, dtype="int32"):
    return lambda rng: [rng.integers(-5, 6, size=s).astype(dtype) for s in shapes]


def _spd(rng, n, batch=()):
    """A well-conditioned symmetric positive-definite matrix (or a stack of them)."""
    r = rng.normal(size=(*batch, n, n))
    return r @ np.swapaxes(r, -1, -2) + n * np.eye(n)


def spd(n, *others, batch=()):
    return lambda rng: [_spd(rng, n, batch), *[rng.normal(size=s) for s in others]]


def well_conditioned(n):
    # Diagonally dominant but not symmetric: inverse/det/solve of a general matrix.
    return lambda rng: [rng.normal(size=(n, n)) + 2 * n * np.eye(n)]


def same(fn):
    """A NumPy reference cast back to the first input's dtype (for mul/sum-built results)."""
    return lambda *xs: np.asarray(fn(*xs)).astype(xs[0].dtype)


def batched_dot_ref(a, b):
    return np.stack([np.tensordot(x, y, axes=([x.ndim - 1], [0])) for x, y in zip(a, b)])


PRODUCTS = [
    # dot: every rank combination np.dot takes
    Case("dot_vv", T.dot, np.dot, normal((5,), (5,))),
    Case("dot_mv", T.dot, np.dot, normal((3, 5), (5,))),
    Case("dot_vm", T.dot, np.dot, normal((5,), (5, 2))),
    Case("dot_mm", T.dot, np.dot, normal((3, 5), (5, 2))),
    Case("dot_method", lambda a, b: a.dot(b), np.dot, normal((2, 4), (4, 3))),
    Case("dot_scalar_m", T.dot, np.dot, normal((), (3, 4))),
    Case("dot_m_scalar", T.dot, np.dot, normal((3, 4), ())),
    Case("dot_3d_v", T.dot, np.dot, normal((2, 3, 5), (5,))),
    Case("dot_3d_m", T.dot, np.dot, normal((2, 3, 5), (5, 4))),
    Case("dot_m_3d", T.dot, np.dot, normal((3, 5), (2, 5, 4))),
    Case("dot_3d_3d", T.dot, np.dot, normal((2, 3, 5), (4, 5, 2))),
    Case("dot_row_col", T.dot, np.dot, normal((1, 5), (5, 1))),
    Case(
        "dot_transposed",
        lambda a, b: T.dot(a.T, b.T),
        lambda a, b: np.dot(a.T, b.T),
        normal((5, 3), (2, 5)),
    ),
    Case("dot_empty_inner", T.dot, np.dot, normal((3, 0), (0, 2))),
    Case("dot_empty_outer", T.dot, np.dot, normal((0, 4), (4, 2))),
    Case("dot_int32", T.dot, np.dot, ints((3, 5), (5, 2)), dtypes=("float64",)),
    Case("dot_int_vv", T.dot, np.dot, ints((6,), (6,), dtype="int64"), dtypes=("float64",)),
    Case(
        "dot_int_float",
        T.dot,
        np.dot,
        lambda rng: [rng.integers(-3, 4, size=(3, 4)).astype("int16"), rng.normal(size=(4,))],
    ),
    # matmul: batches, static-1 broadcasting, vectors
    Case("matmul_mm", T.matmul, np.matmul, normal((3, 5), (5, 2))),
    Case("matmul_batch", T.matmul, np.matmul, normal((4, 3, 5), (4, 5, 2))),
    Case("matmul_bcast1", T.matmul, np.matmul, normal((4, 3, 5), (1, 5, 2))),
    Case("matmul_bcast_rank", T.matmul, np.matmul, normal((2, 4, 3, 5), (5, 2))),
    Case("matmul_bcast_both", T.matmul, np.matmul, normal((2, 1, 3, 5), (1, 4, 5, 2))),
    Case("matmul_vec_left", T.matmul, np.matmul, normal((5,), (2, 5, 3))),
    Case("matmul_vec_right", T.matmul, np.matmul, normal((2, 3, 5), (5,))),
    Case("matmul_vv", T.matmul, np.matmul, normal((5,), (5,))),
    Case("matmul_operator", lambda a, b: a @ b, lambda a, b: a @ b, normal((3, 2, 4), (3, 4, 2))),
    # A list on the left has no __matmul__, so Python calls the variable's __rmatmul__.
    Case(
        "matmul_rmatmul",
        lambda a: [[1.0, 2.0], [3.0, 4.0]] @ a,
        lambda a: np.array([[1.0, 2.0], [3.0, 4.0]]) @ a,
        normal((3, 2, 5)),
        dtypes=("float64",),
    ),
    Case("matmul_empty_batch", T.matmul, np.matmul, normal((0, 3, 5), (0, 5, 2))),
    Case(
        "matmul_transposed",
        lambda a, b: T.matmul(a.transpose(0, 2, 1), b),
        lambda a, b: np.matmul(a.transpose(0, 2, 1), b),
        normal((4, 5, 3), (4, 5, 2)),
    ),
    Case("matmul_int", T.matmul, np.matmul, ints((2, 3, 4), (2, 4, 3)), dtypes=("float64",)),
    # tensordot
    Case("tensordot_2", T.tensordot, np.tensordot, normal((2, 3, 4), (3, 4, 5))),
    Case(
        "tensordot_1",
        lambda a, b: T.tensordot(a, b, 1),
        lambda a, b: np.tensordot(a, b, 1),
        normal((2, 3, 4), (4, 5)),
    ),
    Case(
        "tensordot_0",
        lambda a, b: T.tensordot(a, b, 0),
        lambda a, b: np.tensordot(a, b, 0),
        normal((2, 3), (4,)),
    ),
    Case(
        "tensordot_pairs",
        lambda a, b: T.tensordot(a, b, [[0, 2], [1, 0]]),
        lambda a, b: np.tensordot(a, b, [[0, 2], [1, 0]]),
        normal((4, 3, 5), (5, 4, 2)),
    ),
    Case(
        "tensordot_negative",
        lambda a, b: T.tensordot(a, b, ([-1, 0], [0, -1])),
        lambda a, b: np.tensordot(a, b, ([-1, 0], [0, -1])),
        normal((2, 3, 4), (4, 5, 2)),
    ),
    Case(
        "tensordot_int_axes",
        lambda a, b: T.tensordot(a, b, (1, 0)),
        lambda a, b: np.tensordot(a, b, (1, 0)),
        normal((3, 5), (5, 2)),
    ),
    Case(
        "tensordot_int",
        lambda a, b: T.tensordot(a, b, 1),
        lambda a, b: np.tensordot(a, b, 1),
        ints((2, 3), (3, 4)),
        dtypes=("float64",),
    ),
    # batched_dot
    Case("batched_dot_33", T.batched_dot, np.matmul, normal((4, 3, 5), (4, 5, 2))),
    Case(
        "batched_dot_22",
        T.batched_dot,
        lambda a, b: np.einsum("bi,bi->b", a, b),
        normal((4, 5), (4, 5)),
    ),
    Case(
        "batched_dot_32",
        T.batched_dot,
        lambda a, b: np.einsum("bij,bj->bi", a, b),
        normal((4, 3, 5), (4, 5)),
    ),
    Case(
        "batched_dot_23",
        T.batched_dot,
        lambda a, b: np.einsum("bi,bij->bj", a, b),
        normal((4, 5), (4, 5, 3)),
    ),
    Case("batched_dot_43", T.batched_dot, batched_dot_ref, normal((3, 2, 4, 5), (3, 5, 2))),
    Case(
        "batched_dot_int", T.batched_dot, np.matmul, ints((2, 3, 4), (2, 4, 2)), dtypes=("float64",)
    ),
    # outer
    Case("outer", T.outer, np.outer, normal((3,), (4,))),
    Case("outer_int", T.outer, np.outer, ints((3,), (2,)), dtypes=("float64",)),
    Case("outer_matrix_inputs", T.outer, np.outer, normal((2, 3), (4,))),
]

NLINALG = [
    Case("inverse_spd", NL.matrix_inverse, np.linalg.inv, spd(4)),
    Case("inverse_general", NL.matrix_inverse, np.linalg.inv, well_conditioned(3)),
    Case("inverse_batched", NL.matrix_inverse, np.linalg.inv, spd(3, batch=(2,))),
    Case(
        "inverse_transposed",
        lambda a: NL.matrix_inverse(a.T),
        lambda a: np.linalg.inv(a.T),
        well_conditioned(3),
    ),
    Case("inverse_empty", NL.matrix_inverse, np.linalg.inv, normal((0, 0)), grad=()),
    Case("det", NL.det, np.linalg.det, well_conditioned(4)),
    Case("det_batched", NL.det, np.linalg.det, spd(3, batch=(2, 2))),
    Case("det_empty", NL.det, np.linalg.det, normal((0, 0)), grad=()),
    Case(
        "slogdet",
        lambda a: list(NL.slogdet(a)),
        lambda a: list(np.linalg.slogdet(a)),
        lambda rng: [-_spd(rng, 3)],
    ),
    Case(
        "slogdet_batched",
        lambda a: list(NL.slogdet(a)),
        lambda a: list(np.linalg.slogdet(a)),
        spd(3, batch=(2,)),
    ),
    Case("solve_vector", NL.solve, np.linalg.solve, spd(4, (4,))),
    Case("solve_matrix", NL.solve, np.linalg.solve, spd(4, (4, 2))),
    Case(
        "solve_general",
        NL.solve,
        np.linalg.solve,
        lambda rng: [rng.normal(size=(3, 3)) + 6 * np.eye(3), rng.normal(size=(3, 5))],
    ),
    Case("cholesky", NL.cholesky, np.linalg.cholesky, spd(4)),
    # The brief's form: the input is symmetrized inside the function.
    Case(
        "cholesky_of_aat",
        lambda a: NL.cholesky(a.dot(a.T) + 3 * np.eye(3, dtype=a.dtype)),
        lambda a: np.linalg.cholesky(a @ a.T + 3 * np.eye(3)).astype(a.dtype),
        normal((3, 3)),
    ),
    Case("cholesky_batched", NL.cholesky, np.linalg.cholesky, spd(3, batch=(2,))),
    Case("eigh_values", lambda a: NL.eigh(a)[0], lambda a: np.linalg.eigh(a)[0], spd(4)),
    # Eigenvector signs are arbitrary: compare and differentiate sign-invariant functions.
    Case(
        "eigh_both",
        lambda a: [NL.eigh(a)[0], NL.eigh(a)[1] ** 2],
        lambda a: [np.linalg.eigh(a)[0], np.linalg.eigh(a)[1] ** 2],
        spd(4),
    ),
    Case(
        "eigh_brief",
        lambda a: NL.eigh(a)[0].sum() + (NL.eigh(a)[1] ** 2)[0].sum(),
        lambda a: np.linalg.eigh(a)[0].sum() + (np.linalg.eigh(a)[1] ** 2)[0].sum(),
        spd(3),
        infer_shape=False,
    ),
    Case(
        "eigh_of_aat",
        lambda a: NL.eigh(a.dot(a.T))[0],
        lambda a: np.linalg.eigh(a @ a.T)[0],
        normal((3, 3)),
    ),
    Case(
        "eigh_batched",
        lambda a: [NL.eigh(a)[0], NL.eigh(a)[1] ** 2],
        lambda a: [np.linalg.eigh(a)[0], np.linalg.eigh(a)[1] ** 2],
        spd(3, batch=(2,)),
    ),
    Case("pinv_wide", NL.pinv, np.linalg.pinv, normal((3, 5))),
    Case("pinv_tall", NL.pinv, np.linalg.pinv, normal((5, 2))),
    Case("pinv_square", NL.pinv, np.linalg.pinv, well_conditioned(3)),
    Case("trace", NL.trace, np.trace, normal((3, 5))),
    Case("trace_int", NL.trace, np.trace, ints((4, 3)), dtypes=("float64",)),
    Case("diag_of_vector", NL.diag, np.diag, normal((4,))),
    Case("diag_of_matrix", NL.diag, np.diag, normal((3, 5))),
    Case("diag_of_tall", NL.diag, np.diag, normal((5, 2))),
    Case("diag_transposed", lambda a: NL.diag(a.T), lambda a: np.diag(a.T), normal((5, 2))),
    Case("diag_int", NL.diag, np.diag, ints((3,)), dtypes=("float64",)),
    Case(
        "inverse_int",
        NL.matrix_inverse,
        np.linalg.inv,
        lambda rng: [np.array([[2, 1], [1, 3]], dtype="int32")],
        dtypes=("float64",),
    ),
    # norms
    Case("norm_vec", NL.norm, np.linalg.norm, normal((5,))),
    Case("norm_vec_1", lambda x: NL.norm(x, 1), lambda x: np.linalg.norm(x, 1), normal((5,))),
    Case(
        "norm_vec_inf",
        lambda x: NL.norm(x, np.inf),
        lambda x: np.linalg.norm(x, np.inf),
        normal((5,)),
    ),
    Case(
        "norm_vec_neginf",
        lambda x: NL.norm(x, -np.inf),
        lambda x: np.linalg.norm(x, -np.inf),
        normal((5,)),
    ),
    Case(
        "norm_vec_0",
        lambda x: NL.norm(x, 0),
        lambda x: np.linalg.norm(x, 0),
        lambda rng: [np.array([0.0, 1.5, 0.0, -2.0])],
        grad=(),
    ),
    Case("norm_vec_3", lambda x: NL.norm(x, 3), lambda x: np.linalg.norm(x, 3), normal((5,))),
    Case(
        "norm_axis",
        lambda x: NL.norm(x, axis=1),
        lambda x: np.linalg.norm(x, axis=1),
        normal((3, 4)),
    ),
    Case(
        "norm_axis_keep",
        lambda x: NL.norm(x, 1, axis=-1, keepdims=True),
        lambda x: np.linalg.norm(x, 1, axis=-1, keepdims=True),
        normal((2, 3, 4)),
    ),
    Case("norm_all_3d", NL.norm, np.linalg.norm, normal((2, 3, 4))),
    Case(
        "norm_fro", lambda x: NL.norm(x, "fro"), lambda x: np.linalg.norm(x, "fro"), normal((3, 5))
    ),
    Case("norm_mat_1", lambda x: NL.norm(x, 1), lambda x: np.linalg.norm(x, 1), normal((3, 5))),
    Case(
        "norm_mat_inf",
        lambda x: NL.norm(x, np.inf),
        lambda x: np.linalg.norm(x, np.inf),
        normal((3, 5)),
    ),
    Case(
        "norm_mat_neg1", lambda x: NL.norm(x, -1), lambda x: np.linalg.norm(x, -1), normal((3, 5))
    ),
    Case(
        "norm_mat_axes",
        lambda x: NL.norm(x, np.inf, axis=(2, 0)),
        lambda x: np.linalg.norm(x, np.inf, axis=(2, 0)),
        normal((3, 2, 4)),
    ),
    Case(
        "norm_mat_axes_keep",
        lambda x: NL.norm(x, -np.inf, axis=(0, 1), keepdims=True),
        lambda x: np.linalg.norm(x, -np.inf, axis=(0, 1), keepdims=True),
        normal((3, 4, 2)),
    ),
    Case("norm_int", NL.norm, np.linalg.norm, ints((4,)), dtypes=("float64",)),
]

ALL = PRODUCTS + NLINALG


@pytest.mark.parametrize("case", ALL, ids=str)
def test_forward(case):
    check_forward(case)


@pytest.mark.parametrize("case", [c for c in ALL if c.grad != ()], ids=str)
def test_grad(case):
    check_grad(case)


@pytest.mark.parametrize("case", [c for c in ALL if c.infer_shape], ids=str)
def test_infer_shape(case):
    check_shape(case)


# ------------------------------------------------------------------ beyond the table


def test_non_contiguous_inputs():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 8)), rng.normal(size=(8, 4))
    x, y = T.dmatrices("x", "y")
    f = flowc.function([x, y], [T.dot(x, y), x @ y.T, NL.matrix_inverse(x[:4, :4])])
    av, bv = a[:, ::2], b[::2, :].T  # strided and transposed views
    assert not av.flags.c_contiguous and not bv.flags.c_contiguous
    got = f(av, bv.T)
    np.testing.assert_allclose(got[0], av @ bv.T, rtol=1e-12)
    np.testing.assert_allclose(got[1], av @ bv, rtol=1e-12)
    np.testing.assert_allclose(got[2], np.linalg.inv(av[:4, :4]), rtol=1e-10)


def test_dot_empty_grad():
    x, y = T.dmatrices("x", "y")
    gx, gy = T.grad(T.dot(x, y).sum(), [x, y])
    f = flowc.function([x, y], [gx, gy])
    got_x, got_y = f(np.ones((3, 0)), np.ones((0, 2)))
    assert got_x.shape == (3, 0) and got_y.shape == (0, 2)
    got_x, got_y = f(np.ones((0, 4)), np.ones((4, 2)))
    assert got_x.shape == (0, 4)
    np.testing.assert_array_equal(got_y, np.zeros((4, 2)))


def test_dot_dtypes_follow_numpy():
    cases = [
        ("float32", "float64"),
        ("int32", "float32"),
        ("int8", "int8"),
        ("int32", "int64"),
        ("bool", "bool"),
        ("float32", "float32"),
    ]
    for da, db in cases:
        a, b = T.tensor(da, shape=(None, None)), T.tensor(db, shape=(None,))
        want = np.dot(np.ones((2, 2), da), np.ones(2, db)).dtype
        out = T.dot(a, b)
        assert out.dtype == want.name, (da, db)
        got = out.eval({a: np.ones((2, 2), da), b: np.ones(2, db)})
        assert got.dtype == want


def test_dot_python_scalar_keeps_dtype():
    x = T.fmatrix("x")
    assert T.dot(x, 2.0).dtype == "float32"
    assert T.dot(3, x).dtype == "float32"


def test_grad_dtypes_and_static_shapes():
    a = T.tensor("float32", shape=(3, 1))
    b = T.tensor("float64", shape=(1, None))
    ga, gb = T.grad(T.dot(a, b).sum(), [a, b])
    assert (ga.dtype, ga.type.shape) == ("float32", (3, 1))
    assert gb.dtype == "float64" and gb.type.shape[0] == 1
    c = T.tensor("float64", shape=(1, 3, 4))
    d = T.dtensor3("d")
    gc = T.grad(T.matmul(c, d).sum(), c)
    assert gc.type.shape == (1, 3, 4)
    got = gc.eval({c: np.ones((1, 3, 4)), d: np.ones((5, 4, 2))})
    np.testing.assert_allclose(got, np.full((1, 3, 4), 10.0))


def test_integer_inputs_get_no_gradient():
    i, x = T.imatrix("i"), T.dvector("x")
    assert T.Dot().grad([i, x], [T.dvector("gz")])[0] is None
    gi, gx = T.grad(T.dot(i, x).sum(), [i, x])
    values = {i: np.array([[1, 2], [3, 4]], "int32"), x: np.ones(2)}
    np.testing.assert_array_equal(gi.eval(values), np.zeros((2, 2)))
    np.testing.assert_array_equal(gx.eval(values), [4.0, 6.0])


def test_second_derivatives():
    rng = np.random.default_rng(3)
    verify_grad(
        lambda a, b: T.grad((T.dot(a, b) ** 2).sum(), a),
        [rng.normal(size=(3, 4)), rng.normal(size=(4, 2))],
    )
    verify_grad(lambda a: T.grad(NL.det(a), a), [_spd(rng, 3)])
    verify_grad(
        lambda a, b: T.grad((T.matmul(a, b) ** 2).sum(), b),
        [rng.normal(size=(2, 3, 4)), rng.normal(size=(1, 4, 2))],
    )


def test_cholesky_grad_matches_symmetric_convention():
    # For symmetric perturbations, the gradient's symmetric part is what matters:
    # <g, E> must match finite differences for a symmetric direction E.
    rng = np.random.default_rng(5)
    a = _spd(rng, 4)
    x = T.dmatrix("x")
    w = rng.normal(size=(4, 4))
    cost = (NL.cholesky(x) * w).sum()
    g = T.grad(cost, x).eval({x: a})
    assert np.allclose(np.triu(g, 1), 0)  # only the lower triangle is read
    e = rng.normal(size=(4, 4))
    e = e + e.T
    f = flowc.function([x], cost)
    eps = 1e-6
    fd = (f(a + eps * e) - f(a - eps * e)) / (2 * eps)
    np.testing.assert_allclose(np.sum(g * e), fd, rtol=1e-6)


def _check_rop(fn, values, rng):
    xs = [T.tensor(v.dtype, (None,) * v.ndim, name=f"x{k}") for k, v in enumerate(values)]
    vs = [x.type() for x in xs]
    out = fn(*xs)
    jv = T.Rop(out, xs, vs)
    tangents = [rng.normal(size=v.shape) for v in values]
    f = flowc.function(xs, out)
    f_jv = flowc.function(xs + vs, jv, on_unused_input="ignore")  # linear ops ignore x
    eps = 1e-6
    plus = f(*[v + eps * t for v, t in zip(values, tangents, strict=True)])
    minus = f(*[v - eps * t for v, t in zip(values, tangents, strict=True)])
    np.testing.assert_allclose(
        f_jv(*values, *tangents), (plus - minus) / (2 * eps), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize(
    "name, fn, shapes",
    [
        ("dot_mm", T.dot, [(3, 5), (5, 2)]),
        ("dot_vv", T.dot, [(4,), (4,)]),
        ("matmul", T.matmul, [(2, 3, 4), (2, 4, 5)]),
        ("tensordot", lambda a, b: T.tensordot(a, b, [[0, 2], [1, 0]]), [(4, 3, 5), (5, 4, 2)]),
        ("inverse", lambda a: NL.matrix_inverse(a + 4 * np.eye(3)), [(3, 3)]),
        ("det", lambda a: NL.det(a + 4 * np.eye(3)), [(3, 3)]),
        ("diag", NL.diag, [(4,)]),
        ("extract_diag", NL.diag, [(3, 4)]),
    ],
)
def test_rop(name, fn, shapes):
    rng = np.random.default_rng(7)
    _check_rop(fn, [rng.normal(size=s) for s in shapes], rng)


def test_dot_rop_with_one_tangent():
    x, y = T.dmatrices("x", "y")
    v = T.dmatrix("v")
    jv = T.Rop(T.dot(x, y), x, v)
    rng = np.random.default_rng(0)
    a, b, t = rng.normal(size=(2, 3)), rng.normal(size=(3, 4)), rng.normal(size=(2, 3))
    np.testing.assert_allclose(jv.eval({x: a, y: b, v: t}), t @ b)


def test_ops_compare_by_props():
    assert T.Dot() == T.Dot() and hash(T.MatMul()) == hash(T.MatMul())
    assert T.TensorDot((0,), (1,)) == T.TensorDot([0], [1])
    assert T.TensorDot((0,), (1,)) != T.TensorDot((1,), (0,))


# ---------------------------------------------------------------------- errors


def test_dot_static_inner_mismatch_at_build_time():
    a = T.tensor("float64", shape=(3, 4))
    with pytest.raises(ValueError, match="inner dims do not match"):
        T.dot(a, T.tensor("float64", shape=(5, 2)))
    with pytest.raises(ValueError, match="inner dims do not match"):
        T.dot(a, T.tensor("float64", shape=(5,)))
    with pytest.raises(ValueError, match="inner dims"):
        T.matmul(T.tensor("float64", shape=(2, 3, 4)), T.tensor("float64", shape=(2, 5, 2)))


def test_dot_runtime_mismatch_names_shapes():
    x, y = T.dmatrices("x", "y")
    f = flowc.function([x, y], T.dot(x, y))
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(5, 2\)"):
        f(np.ones((3, 4)), np.ones((5, 2)))
    v = T.dvector("v")
    g = flowc.function([v, y], T.dot(v, y))
    with pytest.raises(ValueError, match=r"\(3,\) and \(4, 2\)"):
        g(np.ones(3), np.ones((4, 2)))


def test_matmul_errors():
    a, b = T.dtensor3("a"), T.dtensor3("b")
    f = flowc.function([a, b], a @ b)
    with pytest.raises(ValueError, match=r"\(2, 3, 4\) and \(3, 4, 2\)"):
        f(np.ones((2, 3, 4)), np.ones((3, 4, 2)))
    # A run-time batch size of 1 does not broadcast unless declared static.
    with pytest.raises(ValueError, match="static size 1"):
        f(np.ones((2, 3, 4)), np.ones((1, 4, 2)))
    with pytest.raises(TypeError, match="0-d"):
        T.matmul(T.dscalar("s"), a)
    with pytest.raises(ValueError, match="do not broadcast"):
        T.matmul(T.tensor("float64", shape=(2, 3, 4)), T.tensor("float64", shape=(3, 4, 2)))


def test_tensordot_errors():
    a, b = T.dtensor3("a"), T.dmatrix("b")
    with pytest.raises(ValueError, match="out of range"):
        T.tensordot(a, b, [[3], [0]])
    with pytest.raises(ValueError, match="1 axes of a but 2 of b"):
        T.tensordot(a, b, [[0], [0, 1]])
    with pytest.raises(ValueError, match="axes=3"):
        T.tensordot(a, b, 3)
    with pytest.raises(ValueError, match="repeat"):
        T.tensordot(a, b, [[0, 0], [0, 1]])
    with pytest.raises(TypeError, match="pair"):
        T.tensordot(a, b, "x")
    with pytest.raises(ValueError, match="has size 4"):
        T.tensordot(T.tensor("float64", shape=(2, 4, 1)), T.tensor("float64", shape=(3, 2)), 2)
    f = flowc.function([a, b], T.tensordot(a, b, 1))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\) and \(5, 2\)"):
        f(np.ones((2, 3, 4)), np.ones((5, 2)))


def test_batched_dot_errors():
    with pytest.raises(TypeError, match="batch dim"):
        T.batched_dot(T.dvector("a"), T.dmatrix("b"))
    with pytest.raises(ValueError, match="batch sizes differ"):
        T.batched_dot(T.tensor("float64", shape=(2, 3)), T.tensor("float64", shape=(4, 3)))


@pytest.mark.parametrize(
    "fn", [NL.matrix_inverse, NL.det, NL.cholesky, NL.eigh, NL.slogdet, NL.pinv, NL.trace]
)
def test_wrong_ndim_is_a_type_error(fn):
    with pytest.raises(TypeError, match="expected a matrix"):
        fn(T.dvector("v"))


@pytest.mark.parametrize("fn", [NL.matrix_inverse, NL.det, NL.cholesky, NL.eigh, NL.slogdet])
def test_non_square_static_shape_is_a_value_error(fn):
    with pytest.raises(ValueError, match=r"square matrix, got static shape \(3, 4\)"):
        fn(T.tensor("float64", shape=(3, 4)))


def test_non_square_at_run_time():
    x = T.dmatrix("x")
    f = flowc.function([x], NL.det(x))
    with pytest.raises(np.linalg.LinAlgError, match=r"det: expected square.*\(3, 4\)"):
        f(np.ones((3, 4)))


def test_singular_input_raises_linalg_error():
    x = T.dmatrix("x")
    singular = np.array([[1.0, 2.0], [2.0, 4.0]])
    f = flowc.function([x], NL.matrix_inverse(x))
    with pytest.raises(np.linalg.LinAlgError, match=r"matrix_inverse: Singular matrix.*\(2, 2\)"):
        f(singular)
    g = flowc.function([x], T.grad(NL.det(x), x))
    with pytest.raises(np.linalg.LinAlgError, match="Singular"):
        g(singular)
    s = flowc.function([x], NL.solve(x, np.ones(2)))
    with pytest.raises(np.linalg.LinAlgError, match="solve"):
        s(singular)
    assert float(NL.det(x).eval({x: singular})) == 0.0


def test_cholesky_not_positive_definite():
    x = T.dmatrix("x")
    with pytest.raises(np.linalg.LinAlgError, match="cholesky: .*positive definite"):
        NL.cholesky(x).eval({x: -np.eye(3)})


def test_solve_errors():
    a = T.dmatrix("a")
    with pytest.raises(TypeError, match="vector or a matrix"):
        NL.solve(a, T.dtensor3("b"))
    with pytest.raises(TypeError, match="expected a matrix"):
        NL.solve(T.dvector("v"), T.dvector("w"))
    with pytest.raises(ValueError, match="b needs 3 rows"):
        NL.solve(T.tensor("float64", shape=(3, 3)), T.tensor("float64", shape=(4,)))
    b = T.dvector("b")
    f = flowc.function([a, b], NL.solve(a, b))
    with pytest.raises(ValueError, match=r"shape \(3, 3\) and b of shape \(4,\)"):
        f(np.eye(3), np.ones(4))


def test_diag_norm_and_dtype_errors():
    with pytest.raises(TypeError, match="vector or a matrix"):
        NL.diag(T.dtensor3("t"))
    with pytest.raises(ValueError, match="nuc"):
        NL.norm(T.dmatrix("m"), "nuc")
    with pytest.raises(ValueError, match="not a vector norm"):
        NL.norm(T.dvector("v"), "fro")
    with pytest.raises(ValueError, match="1-d or 2-d"):
        NL.norm(T.dtensor3("t"), 1)
    with pytest.raises(TypeError, match="float16"):
        NL.matrix_inverse(T.tensor("float16", shape=(None, None)))
    v = T.dvector("v")
    f = flowc.function([v], NL.AllocDiag()(v, 2, 3))
    np.testing.assert_array_equal(f(np.array([1.0, 2.0])), [[1, 0, 0], [0, 2, 0]])
    with pytest.raises(ValueError, match="does not fit"):
        f(np.ones(3))


def test_slogdet_and_det_agree_in_sign():
    x = T.dmatrix("x")
    sign, logabs = NL.slogdet(x)
    f = flowc.function([x], [sign, logabs, NL.det(x)])
    a = np.array([[0.0, 2.0], [3.0, 1.0]])
    s, la, d = f(a)
    assert s == -1.0 and np.isclose(np.exp(la), 6.0) and np.isclose(d, -6.0)


def test_hessian_of_quadratic_form():
    x = T.dvector("x")
    a = np.arange(9.0).reshape(3, 3)
    h = T.hessian(T.dot(x, T.dot(a, x)), x)
    np.testing.assert_allclose(h.eval({x: np.array([0.5, -1.0, 2.0])}), a + a.T)
