"""Fused neural-network ops that the stabilize step puts in place of overflow-prone compositions:
the softmax cross-entropy with integer labels computed from the logits."""

from __future__ import annotations

import numpy as np

from flowc.tensor.basic import shape_tuple
from flowc.tensor.elemwise import dimshuffle
from flowc.tensor.nnet import OneHot, RowLabelLoss, Softmax, _shift


class CrossentropySoftmax1Hot(RowLabelLoss):
    """``logsumexp(x[i]) - x[i, labels[i]]`` per row: ``categorical_crossentropy(softmax(x),
    labels)`` computed from the logits, finite for any finite ``x``."""

    what, x_name, rows_of = "crossentropy_softmax_1hot", "x", "logits"

    def _per_row(self, x, labels):
        # Both terms are taken relative to the row maximum, so nothing overflows.
        m = _shift(x, (1,))
        lse = np.log(np.sum(np.exp(x - m), axis=1))
        return lse - (x[np.arange(x.shape[0]), labels] - m[:, 0])

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
