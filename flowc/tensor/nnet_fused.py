"""Fused neural-network ops that the stabilize step puts in place of overflow-prone compositions:
the softmax cross-entropy with integer labels computed from the logits."""

from __future__ import annotations

import numpy as np

from flowc.graph.basic import Apply, Constant, Op
from flowc.graph.type import FLOAT_DTYPES, TensorType
from flowc.tensor.basic import shape_tuple
from flowc.tensor.elemwise import dimshuffle
from flowc.tensor.nnet import OneHot, Softmax, _check_labels, _int_labels, _shift
from flowc.tensor.var import as_tensor_variable


class CrossentropySoftmax1Hot(Op):
    """``logsumexp(x[i]) - x[i, labels[i]]`` per row: ``categorical_crossentropy(softmax(x),
    labels)`` computed from the logits, finite for any finite ``x``."""

    __props__ = ()

    def make_node(self, x, labels):
        x = as_tensor_variable(x)
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"crossentropy_softmax_1hot: x (the logits) must be of a float dtype, got {x.type}"
            )
        if x.ndim != 2:
            raise TypeError(
                f"crossentropy_softmax_1hot: x must be a matrix (rows of logits), got {x.ndim} dims"
            )
        labels = _int_labels(labels, "crossentropy_softmax_1hot")
        n_rows, n_labels = x.type.shape[0], labels.type.shape[0]
        if n_rows is not None and n_labels is not None and n_rows != n_labels:
            raise ValueError(
                f"crossentropy_softmax_1hot: x has {n_rows} rows but there are {n_labels} labels"
            )
        if isinstance(labels, Constant):
            _check_labels(labels.data, x.type.shape[1], "crossentropy_softmax_1hot")
        out = TensorType(x.dtype, (n_rows if n_rows is not None else n_labels,))()
        return Apply(self, [x, labels], [out])

    def perform(self, node, inputs, output_storage):
        x, labels = inputs
        if labels.shape[0] != x.shape[0]:
            raise ValueError(
                f"crossentropy_softmax_1hot: x has {x.shape[0]} rows "
                f"but there are {labels.shape[0]} labels"
            )
        _check_labels(labels, x.shape[1], "crossentropy_softmax_1hot")
        m = _shift(x, (1,))
        with np.errstate(divide="ignore", invalid="ignore"):
            # Both terms are taken relative to the row maximum, so nothing overflows.
            lse = np.log(np.sum(np.exp(x - m), axis=1))
            out = lse - (x[np.arange(x.shape[0]), labels] - m[:, 0])
        output_storage[0][0] = np.asarray(out, dtype=node.outputs[0].dtype)

    def infer_shape(self, fgraph, node, input_shapes):
        return [(input_shapes[0][0],)]

    def grad(self, inputs, output_grads):
        x, labels = inputs
        (gz,) = output_grads
        # softmax(x) - onehot(labels): a difference of bounded terms, finite for any logits.
        hot = OneHot(x.dtype)(labels, shape_tuple(x)[1])
        return [(Softmax(1)(x) - hot) * dimshuffle(gz, (0, "x")), None]


crossentropy_softmax_1hot_op = CrossentropySoftmax1Hot()


def crossentropy_softmax_1hot(x, labels):
    """``categorical_crossentropy(softmax(x), labels)`` per row, computed stably from logits."""
    return crossentropy_softmax_1hot_op(x, labels)


__all__ = ["CrossentropySoftmax1Hot", "crossentropy_softmax_1hot", "crossentropy_softmax_1hot_op"]
