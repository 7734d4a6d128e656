"""Neural-network functions with Theano's ``T.nnet`` names: activations, a stable softmax and
log-softmax, and the cross-entropy losses (categorical with class indices or one-hot rows,
binary on probabilities or on logits)."""

from __future__ import annotations

import numbers

import numpy as np

from flowc.graph.basic import Apply, Constant, Op
from flowc.graph.type import FLOAT_DTYPES, INT_DTYPES, TensorType
from flowc.tensor import math, reduction
from flowc.tensor.basic import shape_tuple
from flowc.tensor.elemwise import dimshuffle
from flowc.tensor.math import sigmoid, softplus
from flowc.tensor.var import as_tensor_variable, constant


def _float_input(x, what):
    """``x`` as a float tensor of at least one dim; integers are upcast as ``np.exp`` does."""
    x = as_tensor_variable(x)
    if x.dtype not in FLOAT_DTYPES:
        if x.dtype not in INT_DTYPES and x.dtype != "bool":
            raise TypeError(f"{what}: x must be a real array, got {x} of type {x.type}")
        x = math.cast(x, np.exp(np.zeros(0, x.dtype)).dtype.name)
    if x.ndim < 1:
        raise ValueError(f"{what}: x must have at least 1 dim, got the 0-d {x}")
    return x


def _check_axis_arg(axis, what):
    if axis is not None and not isinstance(axis, (numbers.Integral, np.integer)):
        raise TypeError(f"{what}: axis must be an int or None, got {axis!r}")
    return None if axis is None else int(axis)


def _shift(x, axes):
    """The max of ``x`` over ``axes`` (kept), 0 where it is not finite, so ``exp(x - m)``
    cannot overflow; an empty axis gives 0 too."""
    m = np.max(x, axis=axes, keepdims=True, initial=-np.inf)
    return np.where(np.isfinite(m), m, 0).astype(x.dtype)


class _AlongAxis(Op):
    """A float op of one input along one ``axis`` (None: all elements), output shaped as its
    input: the frame Softmax and LogSoftmax share."""

    __props__ = ("axis",)

    def __init__(self, axis=-1):
        self.axis = _check_axis_arg(axis, type(self).__name__)

    def make_node(self, x):
        x = as_tensor_variable(x)
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{self}: x must be of a float dtype, got {x.type}")
        reduction.normalize_axis(self.axis, x.ndim, what=f"{self} axis")
        return Apply(self, [x], [x.type()])

    def infer_shape(self, fgraph, node, input_shapes):
        return [input_shapes[0]]


def _along_axis(cls, x, axis, what):
    """``cls(axis)(x)`` for the user-facing function ``what``, with its checks."""
    x = _float_input(x, what)
    axis = _check_axis_arg(axis, what)
    if axis is not None:
        (axis,) = reduction.normalize_axis(axis, x.ndim, what=f"{what} axis")
    return cls(axis)(x)


class Softmax(_AlongAxis):
    """``exp(x) / sum(exp(x))`` along ``axis`` (None: over all elements), max-shifted."""

    def perform(self, node, inputs, output_storage):
        (x,) = inputs
        axes = reduction.normalize_axis(self.axis, x.ndim)
        with np.errstate(invalid="ignore"):
            e = np.exp(x - _shift(x, axes))
            out = e / np.sum(e, axis=axes, keepdims=True)
        output_storage[0][0] = np.asarray(out, dtype=node.outputs[0].dtype)

    def grad(self, inputs, output_grads):
        (x,) = inputs
        (gz,) = output_grads
        return [self._jvp(self(x), gz)]

    def R_op(self, inputs, eval_points):
        # The Jacobian is symmetric, so J v has the same form as the gradient.
        (x,) = inputs
        (v,) = eval_points
        return [None if v is None else self._jvp(self(x), v)]

    def _jvp(self, sm, v):
        return (v - reduction.sum(v * sm, axis=self.axis, keepdims=True)) * sm


def softmax(x, axis=-1):
    """The softmax of ``x`` along ``axis`` (default the last; None: all elements)."""
    return _along_axis(Softmax, x, axis, "softmax")


class LogSoftmax(_AlongAxis):
    """``x - log(sum(exp(x)))`` along ``axis`` (None: all elements), max-shifted."""

    def perform(self, node, inputs, output_storage):
        (x,) = inputs
        axes = reduction.normalize_axis(self.axis, x.ndim)
        with np.errstate(invalid="ignore", divide="ignore"):
            xm = x - _shift(x, axes)
            out = xm - np.log(np.sum(np.exp(xm), axis=axes, keepdims=True))
        output_storage[0][0] = np.asarray(out, dtype=node.outputs[0].dtype)

    def grad(self, inputs, output_grads):
        (x,) = inputs
        (gz,) = output_grads
        sm = math.exp(self(x))
        return [gz - sm * reduction.sum(gz, axis=self.axis, keepdims=True)]

    def R_op(self, inputs, eval_points):
        (x,) = inputs
        (v,) = eval_points
        if v is None:
            return [None]
        sm = math.exp(self(x))
        return [v - reduction.sum(sm * v, axis=self.axis, keepdims=True)]


def logsoftmax(x, axis=-1):
    """``log(softmax(x))`` along ``axis``, computed without overflow or log(0)."""
    return _along_axis(LogSoftmax, x, axis, "logsoftmax")


log_softmax = logsoftmax  # PyTensor's spelling


def relu(x, alpha=0):
    """The rectifier ``max(x, 0)``; with ``alpha``, the leaky ``x if x > 0 else alpha * x``."""
    x = as_tensor_variable(x)
    if isinstance(alpha, numbers.Number) and alpha == 0:
        return math.maximum(x, 0)
    return math.switch(math.gt(x, 0), x, alpha * x)


# ------------------------------------------------------------------ class labels


def _check_labels(labels, n_classes, what):
    """Raise a ValueError naming the first label outside ``[0, n_classes)`` (None: unknown)."""
    bad = labels < 0 if n_classes is None else (labels < 0) | (labels >= n_classes)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        valid = "be >= 0" if n_classes is None else f"lie in [0, {n_classes})"
        raise ValueError(
            f"{what}: label {labels[i]} (at position {i}) is out of range; labels must {valid}"
        )


def _int_labels(labels, what):
    labels = as_tensor_variable(labels)
    if labels.dtype not in INT_DTYPES:
        raise TypeError(
            f"{what}: class labels must be integers, got {labels} of type {labels.type}"
        )
    if labels.ndim != 1:
        raise TypeError(f"{what}: class labels must be a vector, got {labels.ndim} dims")
    return labels


class OneHot(Op):
    """Rows of ``dtype`` with a 1 at each label's column: ``(len(labels), n_classes)``."""

    __props__ = ("dtype",)

    def __init__(self, dtype="float64"):
        self.dtype = np.dtype(dtype).name

    def make_node(self, labels, n_classes):
        labels = _int_labels(labels, "to_one_hot")
        static_k = None
        if isinstance(n_classes, (numbers.Integral, np.integer)):
            if n_classes < 0:
                raise ValueError(f"to_one_hot: nb_class must be >= 0, got {n_classes}")
            static_k = int(n_classes)
            n_classes = constant(np.int64(n_classes))
        n_classes = as_tensor_variable(n_classes)
        if n_classes.ndim != 0 or n_classes.dtype not in INT_DTYPES:
            raise TypeError(
                f"to_one_hot: nb_class must be an integer scalar, got "
                f"{n_classes} of type {n_classes.type}"
            )
        if n_classes.dtype != "int64":
            n_classes = math.cast(n_classes, "int64")
        if isinstance(n_classes, Constant):
            static_k = int(n_classes.data)
        out = TensorType(self.dtype, (labels.type.shape[0], static_k))()
        return Apply(self, [labels, n_classes], [out])

    def perform(self, node, inputs, output_storage):
        labels, k = inputs
        k = int(k)
        _check_labels(labels, k, "to_one_hot")
        out = np.zeros((labels.shape[0], k), dtype=self.dtype)
        out[np.arange(labels.shape[0]), labels] = 1
        output_storage[0][0] = out

    def infer_shape(self, fgraph, node, input_shapes):
        return [(input_shapes[0][0], node.inputs[1])]

    def grad(self, inputs, output_grads):
        return [None, None]

    def R_op(self, inputs, eval_points):
        return [None]


def to_one_hot(y, nb_class, dtype=None):
    """A matrix whose row ``i`` is the one-hot encoding of the class index ``y[i]``."""
    from flowc.config import config

    return OneHot(config.floatX if dtype is None else dtype)(y, nb_class)


class RowLabelLoss(Op):
    """A loss per row of an (n, k) float matrix given n integer labels: what such ops share
    (their checks, shape and ``perform`` frame). A subclass names itself (``what``, the
    matrix ``x_name``, what its rows hold) and computes ``_per_row(x, labels)``."""

    __props__ = ()
    what = x_name = rows_of = ""

    def make_node(self, x, labels):
        x = as_tensor_variable(x)
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{self.what}: {self.x_name} must be of a float dtype, got {x.type}")
        if x.ndim != 2:
            raise TypeError(
                f"{self.what}: {self.x_name} must be a matrix (rows of {self.rows_of}), "
                f"got {x.ndim} dims"
            )
        labels = _int_labels(labels, self.what)
        n_rows, n_labels = x.type.shape[0], labels.type.shape[0]
        if n_rows is not None and n_labels is not None and n_rows != n_labels:
            raise ValueError(
                f"{self.what}: {self.x_name} has {n_rows} rows but there are {n_labels} labels"
            )
        if isinstance(labels, Constant):
            # Known labels are checked now, against the class count where it is static.
            _check_labels(labels.data, x.type.shape[1], self.what)
        out = TensorType(x.dtype, (n_rows if n_rows is not None else n_labels,))()
        return Apply(self, [x, labels], [out])

    def perform(self, node, inputs, output_storage):
        x, labels = inputs
        if labels.shape[0] != x.shape[0]:
            raise ValueError(
                f"{self.what}: {self.x_name} has {x.shape[0]} rows "
                f"but there are {labels.shape[0]} labels"
            )
        _check_labels(labels, x.shape[1], self.what)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = self._per_row(x, labels)
        output_storage[0][0] = np.asarray(out, dtype=node.outputs[0].dtype)

    def _per_row(self, x, labels):
        raise NotImplementedError

    def infer_shape(self, fgraph, node, input_shapes):
        return [(input_shapes[0][0],)]


class CrossentropyCategorical1Hot(RowLabelLoss):
    """``-log(coding_dist[i, labels[i]])`` per row: the cross-entropy with integer labels."""

    what, x_name = "categorical_crossentropy", "coding_dist"
    rows_of = "class probabilities, one per integer label"

    def _per_row(self, coding, labels):
        return -np.log(coding[np.arange(coding.shape[0]), labels])

    def grad(self, inputs, output_grads):
        coding, labels = inputs
        (gz,) = output_grads
        # Only each row's true class gets a gradient, -gz / p; a switch rather than a
        # product with the one-hot mask, so a zero probability elsewhere gives 0, not nan.
        hot = OneHot("bool")(labels, shape_tuple(coding)[1])
        g = math.switch(hot, -dimshuffle(gz, (0, "x")) / coding, 0)
        return [g, None]


crossentropy_categorical_1hot = CrossentropyCategorical1Hot()


def categorical_crossentropy(coding_dist, true_dist):
    """The cross-entropy of each row of ``coding_dist`` (class probabilities) to the truth.

    ``true_dist`` is either a vector of integer class indices (the result is
    ``-log(coding_dist[i, true_dist[i]])``) or an array of ``coding_dist``'s shape of
    one-hot rows or probabilities (``-sum(true_dist * log(coding_dist), axis=-1)``).
    """
    coding = as_tensor_variable(coding_dist)
    true = as_tensor_variable(true_dist)
    if coding.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"categorical_crossentropy: coding_dist must be of a float dtype, got {coding.type}"
        )
    if coding.ndim < 1:
        raise ValueError("categorical_crossentropy: coding_dist must have at least 1 dim")
    if true.ndim == coding.ndim:
        return -reduction.sum(true * math.log(coding), axis=coding.ndim - 1)
    if true.ndim == coding.ndim - 1:
        if true.dtype not in INT_DTYPES:
            raise TypeError(
                f"categorical_crossentropy: a true_dist of one dim fewer than "
                f"coding_dist must hold integer class indices, got {true.type}"
            )
        return crossentropy_categorical_1hot(coding, true)
    raise ValueError(
        f"categorical_crossentropy: true_dist must have {coding.ndim} dims "
        f"(one-hot or probability rows) or {coding.ndim - 1} (class indices), "
        f"got {true.ndim}"
    )


def binary_crossentropy(output, target):
    """Elementwise ``-(target * log(output) + (1 - target) * log(1 - output))``."""
    output, target = as_tensor_variable(output), as_tensor_variable(target)
    if output.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"binary_crossentropy: output must be of a float dtype (probabilities),"
            f" got {output.type}"
        )
    return -(target * math.log(output) + (1 - target) * math.log1p(-output))


def sigmoid_binary_crossentropy(logits, target):
    """``binary_crossentropy(sigmoid(logits), target)`` computed stably from the logits.

    Equal to ``softplus(logits) - target * logits``, finite for any logits.
    """
    logits, target = as_tensor_variable(logits), as_tensor_variable(target)
    if logits.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"sigmoid_binary_crossentropy: logits must be of a float dtype, got {logits.type}"
        )
    return softplus(logits) - target * logits


__all__ = [
    "CrossentropyCategorical1Hot",
    "LogSoftmax",
    "OneHot",
    "Softmax",
    "binary_crossentropy",
    "categorical_crossentropy",
    "crossentropy_categorical_1hot",
    "log_softmax",
    "logsoftmax",
    "relu",
    "sigmoid",
    "sigmoid_binary_crossentropy",
    "softmax",
    "softplus",
    "to_one_hot",
]
