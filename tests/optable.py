"""The op test table's machinery: one ``Case`` per op use, checked three ways.

``check_forward``: the compiled function against a NumPy reference, per dtype.
``check_grad``: ``verify_grad`` by finite differences in random directions (float64).
``check_shape``: the op's ``infer_shape`` against the shape it computes.
Test modules list ``Case`` rows and parametrize over them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

import flowc
from flowc.testing import check_infer_shape, verify_grad

FLOATS = ("float64", "float32")


@dataclasses.dataclass
class Case:
    """One use of an op.

    ``make(rng)`` returns the input arrays (float ones are cast to each dtype of
    ``dtypes``; others are kept). ``fn`` builds the symbolic result from symbolic
    inputs; ``ref`` computes it with NumPy. ``grad`` lists the inputs to
    differentiate (default: every float input; ``()`` for none).
    """

    name: str
    fn: Callable
    ref: Callable
    make: Callable
    dtypes: tuple = FLOATS
    grad: tuple | None = None
    infer_shape: bool = True
    static_ones: bool = True  # size-1 dims of the inputs are static (broadcastable)
    rtol: float | None = None
    check_dtype: bool = True
    grad_tol: float = 1e-4
    grad_eps: float = 1e-6

    def __str__(self):
        return self.name


def symbolic(values, static_ones=True):
    return [
        flowc.tensor.tensor(
            v.dtype, tuple(1 if (s == 1 and static_ones) else None for s in v.shape), name=f"x{k}"
        )
        for k, v in enumerate(values)
    ]


def inputs_for(case: Case, dtype: str, seed=0):
    rng = np.random.default_rng(seed)
    values = [np.asarray(v) for v in case.make(rng)]
    return [v.astype(dtype) if v.dtype.kind == "f" else v for v in values]


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def strided(v):
    """The same values as a non-contiguous view (every other element of a wider array)."""
    if v.ndim == 0 or v.size == 0:
        return v
    wide = np.repeat(v, 2, axis=-1)
    view = wide[..., ::2]
    assert not view.flags.c_contiguous or v.shape[-1] == 1
    return view


def check_forward(case: Case, mode="fast_run"):
    for dtype in case.dtypes:
        values = inputs_for(case, dtype)
        xs = symbolic(values, case.static_ones)
        outs = _as_list(case.fn(*xs))
        f = flowc.function(xs, outs, mode=mode, on_unused_input="ignore")
        got = f(*[v.copy() for v in values])
        # Non-contiguous inputs give the same results (BLAS may round differently).
        tol = case.rtol or (1e-5 if dtype in ("float32", "float16") else 1e-12)
        for g, h in zip(got, f(*[strided(v) for v in values]), strict=True):
            np.testing.assert_allclose(
                g, h, rtol=tol, atol=tol, equal_nan=True, err_msg=f"{case} [{dtype}] strided"
            )
        with np.errstate(all="ignore"):
            want = _as_list(case.ref(*[v.copy() for v in values]))
        assert len(got) == len(want), f"{case}: {len(got)} outputs, NumPy gives {len(want)}"
        for g, w in zip(got, want, strict=True):
            w = np.asarray(w)
            if case.check_dtype:
                assert g.dtype == w.dtype, f"{case} [{dtype}]: dtype {g.dtype}, NumPy {w.dtype}"
            assert g.shape == w.shape, f"{case} [{dtype}]: shape {g.shape}, NumPy {w.shape}"
            rtol = case.rtol or (1e-4 if dtype in ("float32", "float16") else 1e-10)
            np.testing.assert_allclose(
                g, w, rtol=rtol, atol=rtol, equal_nan=True, err_msg=f"{case} [{dtype}]"
            )
        for out, v in zip(outs, got, strict=True):
            for axis, s in enumerate(out.type.shape):
                assert s is None or s == v.shape[axis], f"{case}: static shape {out.type.shape}"


def check_grad(case: Case):
    values = inputs_for(case, "float64")
    wrt = case.grad
    if wrt is None:
        wrt = tuple(k for k, v in enumerate(values) if v.dtype.kind == "f")
    if not wrt:
        return

    def fn(*diff):
        xs = symbolic(values, case.static_ones)
        full = list(xs)
        for k, d in zip(wrt, diff, strict=True):
            full[k] = d
        # Non-differentiated inputs are constants at their test values.
        for k in range(len(full)):
            if k not in wrt:
                full[k] = flowc.tensor.constant(values[k])
        return case.fn(*full)

    verify_grad(
        fn,
        [values[k] for k in wrt],
        tol=case.grad_tol,
        eps=case.grad_eps,
        static_ones=case.static_ones,
    )


def check_shape(case: Case):
    if not case.infer_shape:
        return
    values = inputs_for(case, case.dtypes[0])
    xs = symbolic(values, case.static_ones)
    outs = _as_list(case.fn(*xs))
    check_infer_shape(outs, xs, values)
