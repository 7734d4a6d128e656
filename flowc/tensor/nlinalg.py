"""Linear algebra on matrices with ``numpy.linalg``: inverse, det, solve, cholesky, eigh, pinv,
slogdet, and ``trace``/``diag``/``norm``. Gradients follow the standard matrix-calculus rules.
Ops on square matrices also accept stacks of them (leading batch dims), except ``solve``.
"""

from __future__ import annotations

import numbers

import numpy as np

from flowc.graph.basic import Apply, Constant, Op
from flowc.graph.type import COMPLEX_DTYPES, DISCRETE_DTYPES, TensorType
from flowc.tensor.elemwise import _sum_to_input, dimshuffle
from flowc.tensor.linalg import _fmt, _swap_last, dot, matmul, outer
from flowc.tensor.var import as_tensor_variable

LinAlgError = np.linalg.LinAlgError  # a ValueError subclass


def _matrix_input(x, what, stack=True):
    """``x`` as a tensor that is a matrix (or a stack of them), else a TypeError."""
    x = as_tensor_variable(x)
    if x.ndim < 2 or (not stack and x.ndim != 2):
        kind = "a matrix (2-d) or a stack of matrices" if stack else "a matrix (2-d)"
        raise TypeError(f"{what}: expected {kind}, got the {x.ndim}-d {x} ({x.type})")
    if x.dtype == "float16":
        raise TypeError(f"{what}: numpy.linalg does not support float16; cast {x} to float32")
    return x


def _square_input(x, what, stack=True):
    x = _matrix_input(x, what, stack)
    n, m = x.type.shape[-2:]
    if n is not None and m is not None and n != m:
        raise ValueError(f"{what}: expected a square matrix, got static shape {_fmt(x.type.shape)}")
    return x


def _square_static(shape):
    """The static shape with the two matrix dims unified (each is the other where known)."""
    n = shape[-2] if shape[-2] is not None else shape[-1]
    return (*shape[:-2], n, n)


def _square_sizes(shp):
    n = shp[-2] if isinstance(shp[-2], int) else shp[-1]
    return (*shp[:-2], n, n)


def _float_dtype(*dtypes) -> str:
    """NumPy's linalg result dtype: integers and bools compute in float64."""
    dtype = np.result_type(*dtypes)
    return "float64" if dtype.name in DISCRETE_DTYPES else dtype.name


def _real_dtype(dtype) -> str:
    return {"complex64": "float32", "complex128": "float64"}.get(dtype, dtype)


def _check_square(what, x):
    if x.shape[-1] != x.shape[-2]:
        raise LinAlgError(f"{what}: expected square matrices, got an array of shape {x.shape}")


def _linalg(what, fn, *arrays):
    """Call ``fn`` and name the op and the shapes in any LinAlgError."""
    try:
        return fn(*arrays)
    except LinAlgError as exc:
        shapes = " and ".join(str(a.shape) for a in arrays)
        raise LinAlgError(f"{what}: {exc} (input of shape {shapes})") from exc


def _real_grad(op, x):
    if x.dtype in COMPLEX_DTYPES:
        raise NotImplementedError(f"{op}: gradients are implemented for real inputs only")


def _last2(x):
    """``x`` (..., ) with two trailing broadcastable dims, to scale a stack of matrices."""
    return dimshuffle(x, (*range(x.ndim), "x", "x"))


class _Tril(Op):
    """The lower triangle (``np.tril(x, k)``) of each matrix of a stack; used by gradients."""

    __props__ = ("k",)

    def __init__(self, k=0):
        self.k = int(k)

    def make_node(self, x):
        x = _matrix_input(x, "tril")
        return Apply(self, [x], [x.type()])

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = np.tril(inputs[0], self.k)

    def infer_shape(self, fgraph, node, input_shapes):
        return [input_shapes[0]]

    def grad(self, inputs, output_grads):
        return [_sum_to_input(self(output_grads[0]), inputs[0])]

    def R_op(self, inputs, eval_points):
        return [None if eval_points[0] is None else self(eval_points[0])]


def _lower_form(s):
    """The gradient of an op that reads only the lower triangle of a symmetric input, given
    ``s`` whose symmetric part is the gradient for symmetric perturbations (as LAPACK reads)."""
    return _Tril(0)(s) + _Tril(-1)(_swap_last(s))


class MatrixInverse(Op):
    """The inverse of a square matrix (or of each matrix of a stack), ``np.linalg.inv``."""

    __props__ = ()

    def make_node(self, x):
        x = _square_input(x, "matrix_inverse")
        out = TensorType(_float_dtype(x.dtype), _square_static(x.type.shape))
        return Apply(self, [x], [out()])

    def perform(self, node, inputs, output_storage):
        (x,) = inputs
        _check_square("matrix_inverse", x)
        out = _linalg("matrix_inverse", np.linalg.inv, x)
        output_storage[0][0] = np.asarray(out, dtype=node.outputs[0].dtype)

    def infer_shape(self, fgraph, node, input_shapes):
        return [_square_sizes(input_shapes[0])]

    def grad(self, inputs, output_grads):
        (x,) = inputs
        (gz,) = output_grads
        _real_grad(self, x)
        xinv_t = _swap_last(self(x))
        # d(X^-1) = -X^-1 dX X^-1, so the gradient is -X^-T gz X^-T.
        return [_sum_to_input(-matmul(matmul(xinv_t, gz), xinv_t), x)]

    def R_op(self, inputs, eval_points):
        (x,) = inputs
        (v,) = eval_points
        if v is None:
            return [None]
        xinv = self(x)
        return [-matmul(matmul(xinv, v), xinv)]


def matrix_inverse(x):
    """The inverse of the square matrix ``x``; a singular ``x`` raises ``LinAlgError``."""
    return MatrixInverse()(x)


inv = matrix_inverse


class Det(Op):
    """The determinant of a square matrix (or of each matrix of a stack)."""

    __props__ = ()

    def make_node(self, x):
        x = _square_input(x, "det")
        out = TensorType(_float_dtype(x.dtype), x.type.shape[:-2])
        return Apply(self, [x], [out()])

    def perform(self, node, inputs, output_storage):
        (x,) = inputs
        _check_square("det", x)
        output_storage[0][0] = np.asarray(
            _linalg("det", np.linalg.det, x), dtype=node.outputs[0].dtype
        )

    def infer_shape(self, fgraph, node, input_shapes):
        return [tuple(input_shapes[0][:-2])]

    def grad(self, inputs, output_grads):
        (x,) = inputs
        (gz,) = output_grads
        _real_grad(self, x)
        # d det(X) = det(X) tr(X^-1 dX): the gradient is gz det(X) X^-T (X must be invertible).
        g = _last2(gz * self(x)) * _swap_last(matrix_inverse(x))
        return [_sum_to_input(g, x)]


def det(x):
    """The determinant of the square matrix ``x`` (its gradient needs ``x`` invertible)."""
    return Det()(x)


class SLogDet(Op):
    """``np.linalg.slogdet``: the sign and the log of the absolute value of the determinant."""

    __props__ = ()

    def make_node(self, x):
        x = _square_input(x, "slogdet")
        dtype = _float_dtype(x.dtype)
        batch = x.type.shape[:-2]
        return Apply(
            self, [x], [TensorType(dtype, batch)(), TensorType(_real_dtype(dtype), batch)()]
        )

    def perform(self, node, inputs, output_storage):
        (x,) = inputs
        _check_square("slogdet", x)
        sign, logabs = _linalg("slogdet", np.linalg.slogdet, x)
        output_storage[0][0] = np.asarray(sign, dtype=node.outputs[0].dtype)
        output_storage[1][0] = np.asarray(logabs, dtype=node.outputs[1].dtype)

    def infer_shape(self, fgraph, node, input_shapes):
        batch = tuple(input_shapes[0][:-2])
        return [batch, batch]

    def grad(self, inputs, output_grads):
        (x,) = inputs
        _, g_logabs = output_grads
        _real_grad(self, x)
        # The sign is piecewise constant; d log|det X| = tr(X^-1 dX).
        return [_sum_to_input(_last2(g_logabs) * _swap_last(matrix_inverse(x)), x)]


def slogdet(x):
    """``(sign, log|det x|)`` of the square matrix ``x``, stable where ``det`` overflows."""
    return SLogDet()(x)


class Cholesky(Op):
    """The lower Cholesky factor ``L`` (``L L^T = x``) of a symmetric positive-definite matrix.

    Like LAPACK, only the lower triangle of ``x`` is read, and the gradient is that of the
    function of the lower triangle (zero above the diagonal).
    """

    __props__ = ()

    def make_node(self, x):
        x = _square_input(x, "cholesky")
        out = TensorType(_float_dtype(x.dtype), _square_static(x.type.shape))
        return Apply(self, [x], [out()])

    def perform(self, node, inputs, output_storage):
        (x,) = inputs
        _check_square("cholesky", x)
        out = _linalg("cholesky", np.linalg.cholesky, x)
        output_storage[0][0] = np.asarray(out, dtype=node.outputs[0].dtype)

    def infer_shape(self, fgraph, node, input_shapes):
        return [_square_sizes(input_shapes[0])]

    def grad(self, inputs, output_grads):
        (x,) = inputs
        (gl,) = output_grads
        _real_grad(self, x)
        # dL = L Phi(L^-1 dX L^-T), Phi = lower triangle with a halved diagonal, so for
        # symmetric dX the gradient is L^-T Phi(L^T gl) L^-1 (Murray 2016).
        chol = self(x)
        linv = matrix_inverse(chol)
        m = matmul(_swap_last(chol), gl)
        phi = 0.5 * (_Tril(0)(m) + _Tril(-1)(m))
        s = matmul(matmul(_swap_last(linv), phi), linv)
        return [_sum_to_input(_lower_form(s), x)]


def cholesky(x):
    """The lower Cholesky factor of the symmetric positive-definite ``x``; ``LinAlgError``
    if ``x`` is not positive definite."""
    return Cholesky()(x)


class Eigh(Op):
    """Eigenvalues (ascending) and eigenvectors (columns) of a symmetric matrix.

    Only the lower triangle is read (``UPLO='L'``); the gradient assumes distinct
    eigenvalues (a repeated pair contributes nothing to the eigenvector term) and is,
    like ``Cholesky``'s, that of the function of the lower triangle.
    """

    __props__ = ()

    def make_node(self, x):
        x = _square_input(x, "eigh")
        dtype = _float_dtype(x.dtype)
        shape = _square_static(x.type.shape)
        return Apply(
            self, [x], [TensorType(_real_dtype(dtype), shape[:-1])(), TensorType(dtype, shape)()]
        )

    def perform(self, node, inputs, output_storage):
        (x,) = inputs
        _check_square("eigh", x)
        w, v = _linalg("eigh", np.linalg.eigh, x)
        output_storage[0][0] = np.asarray(w, dtype=node.outputs[0].dtype)
        output_storage[1][0] = np.asarray(v, dtype=node.outputs[1].dtype)

    def infer_shape(self, fgraph, node, input_shapes):
        shp = _square_sizes(input_shapes[0])
        return [shp[:-1], shp]

    def grad(self, inputs, output_grads):
        from flowc.tensor import math

        (x,) = inputs
        gw, gv = output_grads
        _real_grad(self, x)
        w, v = self(x)
        nd = w.ndim
        row = dimshuffle(w, (*range(nd - 1), "x", nd - 1))  # w_j along the last axis
        col = dimshuffle(w, (*range(nd), "x"))  # w_i along the second-to-last
        diff = row - col
        # F_ij = 1 / (w_j - w_i) off the diagonal, 0 where the eigenvalues coincide.
        f = math.switch(math.eq(diff, 0), 0, 1 / math.switch(math.eq(diff, 0), 1, diff))
        vt = _swap_last(v)
        inner = f * matmul(vt, gv)
        s = matmul(v * dimshuffle(gw, (*range(nd - 1), "x", nd - 1)), vt)
        s = s + matmul(matmul(v, inner), vt)
        return [_sum_to_input(_lower_form(s), x)]


def eigh(x):
    """``(w, v)``: eigenvalues in ascending order and unit eigenvectors (the columns of
    ``v``) of the symmetric matrix ``x``, as ``np.linalg.eigh``."""
    return Eigh()(x)


class Solve(Op):
    """``np.linalg.solve(a, b)``: ``x`` with ``a x = b``, for a vector or matrix ``b``."""

    __props__ = ()

    def make_node(self, a, b):
        a = _square_input(a, "solve (input a)", stack=False)
        b = as_tensor_variable(b)
        if b.ndim not in (1, 2):
            raise TypeError(f"solve: b must be a vector or a matrix, got the {b.ndim}-d {b}")
        if b.dtype == "float16":
            raise TypeError(f"solve: numpy.linalg does not support float16; cast {b} to float32")
        n = a.type.shape[0] if a.type.shape[0] is not None else a.type.shape[1]
        if n is not None and b.type.shape[0] is not None and n != b.type.shape[0]:
            raise ValueError(
                f"solve: a has static shape {_fmt(a.type.shape)} but b has "
                f"{_fmt(b.type.shape)}; b needs {n} rows"
            )
        shape = (n, *b.type.shape[1:])
        return Apply(self, [a, b], [TensorType(_float_dtype(a.dtype, b.dtype), shape)()])

    def perform(self, node, inputs, output_storage):
        a, b = inputs
        _check_square("solve", a)
        if b.shape[0] != a.shape[0]:
            raise ValueError(
                f"solve: a of shape {a.shape} and b of shape {b.shape} do not "
                f"match (b needs {a.shape[0]} rows)"
            )
        out = _linalg("solve", np.linalg.solve, a, b)
        output_storage[0][0] = np.asarray(out, dtype=node.outputs[0].dtype)

    def infer_shape(self, fgraph, node, input_shapes):
        sa, sb = input_shapes
        return [(sa[0] if isinstance(sa[0], int) else sb[0], *sb[1:])]

    def grad(self, inputs, output_grads):
        a, b = inputs
        (gx,) = output_grads
        _real_grad(self, a)
        _real_grad(self, b)
        x = self(a, b)
        gb = self(a.T, gx)  # x = a^-1 b: gb = a^-T gx
        ga = -outer(gb, x) if b.ndim == 1 else -dot(gb, x.T)
        return [_sum_to_input(ga, a), _sum_to_input(gb, b)]


def solve(a, b):
    """The solution ``x`` of ``a x = b`` (``a`` square, ``b`` a vector or a matrix)."""
    return Solve()(a, b)


class Pinv(Op):
    """The Moore-Penrose pseudo-inverse (``np.linalg.pinv``) of a matrix or a stack of them.

    The gradient holds where the rank is constant near the input (e.g. full rank).
    """

    __props__ = ()

    def make_node(self, x):
        x = _matrix_input(x, "pinv")
        shape = (*x.type.shape[:-2], x.type.shape[-1], x.type.shape[-2])
        return Apply(self, [x], [TensorType(_float_dtype(x.dtype), shape)()])

    def perform(self, node, inputs, output_storage):
        out = _linalg("pinv", np.linalg.pinv, inputs[0])
        output_storage[0][0] = np.asarray(out, dtype=node.outputs[0].dtype)

    def infer_shape(self, fgraph, node, input_shapes):
        (shp,) = input_shapes
        return [(*shp[:-2], shp[-1], shp[-2])]

    def grad(self, inputs, output_grads):
        (a,) = inputs
        (g,) = output_grads
        _real_grad(self, a)
        # Golub & Pereyra: dX = -X dA X + X X^T dA^T (I - A X) + (I - X A) dA^T X^T X.
        x = self(a)
        xt, gt = _swap_last(x), _swap_last(g)
        xxt, xtx = matmul(x, xt), matmul(xt, x)
        term1 = -matmul(matmul(xt, g), xt)
        gt_xxt = matmul(gt, xxt)
        term2 = gt_xxt - matmul(matmul(a, x), gt_xxt)
        xtx_gt = matmul(xtx, gt)
        term3 = xtx_gt - matmul(xtx_gt, matmul(x, a))
        return [_sum_to_input(term1 + term2 + term3, a)]


def pinv(x):
    """The Moore-Penrose pseudo-inverse of ``x`` (any matrix shape)."""
    return Pinv()(x)


class ExtractDiag(Op):
    """The main diagonal of a matrix, a vector of length ``min(rows, cols)`` (a copy)."""

    __props__ = ()

    def make_node(self, x):
        x = as_tensor_variable(x)
        if x.ndim != 2:
            raise TypeError(f"extract_diag: expected a matrix (2-d), got the {x.ndim}-d {x}")
        n, m = x.type.shape
        k = min(n, m) if n is not None and m is not None else (0 if 0 in (n, m) else None)
        return Apply(self, [x], [TensorType(x.dtype, (k,))()])

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = np.diagonal(inputs[0]).copy()

    def infer_shape(self, fgraph, node, input_shapes):
        from flowc.tensor import math

        n, m = input_shapes[0]
        if isinstance(n, int) and isinstance(m, int):
            return [(min(n, m),)]
        return [(math.minimum(n, m),)]

    def grad(self, inputs, output_grads):
        from flowc.tensor.basic import shape_tuple

        (x,) = inputs
        return [_sum_to_input(AllocDiag()(output_grads[0], *shape_tuple(x)), x)]

    def R_op(self, inputs, eval_points):
        return [None if eval_points[0] is None else self(eval_points[0])]


def extract_diag(x):
    """The main diagonal of the matrix ``x``."""
    return ExtractDiag()(x)


def _size_input(s):
    if isinstance(s, (int, np.integer)):
        return as_tensor_variable(np.int64(s))
    from flowc.tensor import math

    s = as_tensor_variable(s)
    if s.ndim != 0 or s.dtype not in DISCRETE_DTYPES:
        raise TypeError(f"alloc_diag: a size must be an integer scalar, got {s} ({s.type})")
    return s if s.dtype == "int64" else math.cast(s, "int64")


class AllocDiag(Op):
    """A matrix of zeros with the vector ``v`` on its main diagonal.

    Square (``len(v)`` each way) by default; with ``rows, cols`` given the output has that
    shape and ``len(v)`` must be ``min(rows, cols)``.
    """

    __props__ = ()

    def make_node(self, v, *shape):
        v = as_tensor_variable(v)
        if v.ndim != 1:
            raise TypeError(f"alloc_diag: expected a vector (1-d), got the {v.ndim}-d {v}")
        if len(shape) not in (0, 2):
            raise TypeError(f"alloc_diag: give no shape or (rows, cols), got {len(shape)} sizes")
        sizes = [_size_input(s) for s in shape]
        if sizes:
            static = tuple(int(s.data) if isinstance(s, Constant) else None for s in sizes)
        else:
            static = (v.type.shape[0], v.type.shape[0])
        return Apply(self, [v, *sizes], [TensorType(v.dtype, static)()])

    def perform(self, node, inputs, output_storage):
        v, *shape = inputs
        n = len(v)
        rows, cols = (int(shape[0]), int(shape[1])) if shape else (n, n)
        if min(rows, cols) != n:
            raise ValueError(
                f"alloc_diag: a diagonal of length {n} does not fit a matrix of "
                f"shape {(rows, cols)}"
            )
        out = np.zeros((rows, cols), dtype=node.outputs[0].dtype)
        out[np.arange(n), np.arange(n)] = v
        output_storage[0][0] = out

    def infer_shape(self, fgraph, node, input_shapes):
        if len(node.inputs) == 3:
            return [(node.inputs[1], node.inputs[2])]
        (n,) = input_shapes[0]
        return [(n, n)]

    def grad(self, inputs, output_grads):
        v, *shape = inputs
        return [_sum_to_input(ExtractDiag()(output_grads[0]), v)] + [None] * len(shape)

    def R_op(self, inputs, eval_points):
        if eval_points[0] is None:
            return [None]
        return [self(eval_points[0], *inputs[1:])]


def alloc_diag(v):
    """The square matrix with the vector ``v`` on its diagonal."""
    return AllocDiag()(v)


def diag(x):
    """``np.diag`` (k=0): a vector becomes a diagonal matrix, a matrix gives its diagonal."""
    x = as_tensor_variable(x)
    if x.ndim == 1:
        return AllocDiag()(x)
    if x.ndim == 2:
        return ExtractDiag()(x)
    raise TypeError(f"diag: expected a vector or a matrix, got the {x.ndim}-d {x}")


def trace(x):
    """The sum of the main diagonal of the matrix ``x`` (dtype as ``np.trace``)."""
    from flowc.tensor import reduction

    x = as_tensor_variable(x)
    if x.ndim != 2:
        raise TypeError(f"trace: expected a matrix (2-d), got the {x.ndim}-d {x}")
    return reduction.sum(ExtractDiag()(x))


def _is_num(o, value) -> bool:
    return isinstance(o, (numbers.Number, np.number)) and not isinstance(o, bool) and o == value


def _vector_norm(x, ord, axis, keepdims):
    from flowc.tensor import math, reduction

    if ord is None or _is_num(ord, 2):
        return math.sqrt(reduction.sum(math.sqr(x), axis=axis, keepdims=keepdims))
    if isinstance(ord, str) or not isinstance(ord, (numbers.Number, np.number)):
        raise ValueError(f"norm: ord {ord!r} is not a vector norm (use a number, inf or -inf)")
    if _is_num(ord, np.inf):
        return reduction.max(abs(x), axis=axis, keepdims=keepdims)
    if _is_num(ord, -np.inf):
        return reduction.min(abs(x), axis=axis, keepdims=keepdims)
    if _is_num(ord, 0):
        return reduction.sum(math.cast(math.neq(x, 0), x.dtype), axis=axis, keepdims=keepdims)
    if _is_num(ord, 1):
        return reduction.sum(abs(x), axis=axis, keepdims=keepdims)
    p = float(ord)
    return reduction.sum(abs(x) ** p, axis=axis, keepdims=keepdims) ** (1.0 / p)


def _matrix_norm(x, ord, axes, keepdims):
    from flowc.tensor import math, reduction

    row, col = axes
    if ord is None or ord == "fro":
        out = math.sqrt(reduction.sum(math.sqr(x), axis=axes, keepdims=True))
    elif _is_num(ord, 1) or _is_num(ord, -1):  # max/min column sum
        pick = reduction.max if ord > 0 else reduction.min
        out = pick(reduction.sum(abs(x), axis=row, keepdims=True), axis=col, keepdims=True)
    elif _is_num(ord, np.inf) or _is_num(ord, -np.inf):  # max/min row sum
        pick = reduction.max if ord > 0 else reduction.min
        out = pick(reduction.sum(abs(x), axis=col, keepdims=True), axis=row, keepdims=True)
    else:
        raise ValueError(
            f"norm: matrix ord {ord!r} is not supported; use None, 'fro', 1, -1, "
            f"inf or -inf (2, -2 and 'nuc' need an SVD)"
        )
    if keepdims:
        return out
    return dimshuffle(out, [a for a in range(x.ndim) if a not in axes])


def norm(x, ord=None, axis=None, keepdims=False):
    """``np.linalg.norm``: vector norms (2, 1, inf, -inf, 0, any p) along one axis, matrix
    norms ('fro', 1, -1, inf, -inf) over two; with ``axis=None`` and ``ord=None`` the 2-norm
    of all elements. Integer inputs are computed in float64."""
    from flowc.tensor import math
    from flowc.tensor.reduction import normalize_axis

    x = as_tensor_variable(x)
    if x.dtype in DISCRETE_DTYPES:
        x = math.cast(x, "float64")
    if axis is None:
        if ord is None:
            return _vector_norm(x, None, None, keepdims)
        if x.ndim not in (1, 2):
            raise ValueError(
                f"norm: ord={ord!r} needs a 1-d or 2-d input (or an axis), got the {x.ndim}-d {x}"
            )
        axis = tuple(range(x.ndim))
    axes = normalize_axis(axis, x.ndim, "norm axis")
    if isinstance(axis, (numbers.Integral, np.integer)) or len(axes) == 1:
        return _vector_norm(x, ord, axes, keepdims)
    if len(axes) == 2:
        # The order given matters for 1/inf norms: the first axis holds the rows.
        row, col = normalize_axis(axis[0], x.ndim)[0], normalize_axis(axis[1], x.ndim)[0]
        return _matrix_norm(x, ord, (row, col), keepdims)
    raise ValueError(f"norm: axis must be an int or a pair of ints, got {axis!r}")


__all__ = [
    "AllocDiag",
    "Cholesky",
    "Det",
    "Eigh",
    "ExtractDiag",
    "LinAlgError",
    "MatrixInverse",
    "Pinv",
    "SLogDet",
    "Solve",
    "alloc_diag",
    "cholesky",
    "det",
    "diag",
    "eigh",
    "extract_diag",
    "inv",
    "matrix_inverse",
    "norm",
    "pinv",
    "slogdet",
    "solve",
    "trace",
]
