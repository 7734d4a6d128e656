"""BLAS-shaped ops that the specialize step forms from ``dot``: ``Gemm`` (and GEMV).

``Gemm`` computes ``beta * C + alpha * dot(A, B)`` as one node, the form that the
kernel back ends map to one cblas/cuBLAS call. ``C`` may broadcast (a bias row).
"""

from __future__ import annotations

import numpy as np

from flowc.graph.basic import Apply, Op
from flowc.graph.type import TensorType
from flowc.tensor.elemwise import broadcast_static_shape
from flowc.tensor.var import as_tensor_variable


class Gemm(Op):
    """``beta * C + alpha * dot(A, B)`` for a matrix ``A`` and a matrix or vector ``B``.

    ``alpha`` and ``beta`` are 0-d; ``C`` broadcasts to the product's shape. With
    ``inplace`` (set by the in-place step) the result is written into ``C``'s buffer.
    """

    __props__ = ("inplace",)

    def __init__(self, inplace=False):
        self.inplace = bool(inplace)
        self.destroy_map = {0: [0]} if self.inplace else {}

    def __str__(self):
        return "Gemm_inplace" if self.inplace else "Gemm"

    def make_node(self, C, alpha, A, B, beta):
        C, alpha, A, B, beta = map(as_tensor_variable, (C, alpha, A, B, beta))
        if A.ndim != 2 or B.ndim not in (1, 2):
            raise TypeError(
                f"Gemm needs a matrix A and a matrix or vector B, got {A.ndim}-d and {B.ndim}-d"
            )
        if alpha.ndim or beta.ndim:
            raise TypeError("Gemm: alpha and beta must be 0-d")
        out_static = (A.type.shape[0],) + B.type.shape[1:]
        if C.ndim != len(out_static):
            raise TypeError(f"Gemm: C has {C.ndim} dims, the product has {len(out_static)}")
        shape = broadcast_static_shape([out_static, C.type.shape], "Gemm")
        dtype = np.result_type(C.dtype, alpha.dtype, A.dtype, B.dtype, beta.dtype).name
        return Apply(self, [C, alpha, A, B, beta], [TensorType(dtype, shape)()])

    def perform(self, node, inputs, output_storage):
        C, alpha, A, B, beta = inputs
        dtype = node.outputs[0].dtype
        prod = np.dot(A, B)
        if self.inplace and C.shape == prod.shape and C.dtype == dtype and C.flags.writeable:
            C *= beta
            C += alpha * prod
            output_storage[0][0] = C
            return
        out = np.empty(prod.shape, dtype=dtype)
        try:
            np.multiply(C, beta, out=out, casting="unsafe")
        except ValueError as exc:
            raise ValueError(
                f"Gemm: C of shape {C.shape} does not broadcast to the product's shape {prod.shape}"
            ) from exc
        out += alpha * prod
        output_storage[0][0] = out

    def infer_shape(self, fgraph, node, input_shapes):
        _, _, a, b, _ = input_shapes
        return [(a[0],) + tuple(b[1:])]

    def grad(self, inputs, output_grads):
        from flowc.autodiff import grad

        C, alpha, A, B, beta = inputs
        expanded = expand_gemm(*inputs)
        return grad(
            None, inputs, known_grads={expanded: output_grads[0]}, disconnected_inputs="ignore"
        )


def expand_gemm(C, alpha, A, B, beta):
    """The unfused graph of a Gemm: ``beta * C + alpha * dot(A, B)``."""
    from flowc.tensor.linalg import dot

    return beta * C + alpha * dot(A, B)


gemm = Gemm()

__all__ = ["Gemm", "expand_gemm", "gemm"]
