"""Shared variables: graph inputs whose value lives between calls and that updates change."""

from __future__ import annotations

import numpy as np

from flowc.graph.type import TensorType
from flowc.tensor.var import TensorVariable


class SharedVariable(TensorVariable):
    """A tensor whose value persists across calls: ``get_value``/``set_value``.

    Its type has no static sizes (Theano's default), so ``set_value`` may change
    the shape but not the dtype or number of dims.
    """

    def __init__(self, type, value, name=None, strict=False, allow_downcast=None):
        super().__init__(type, name=name)
        self._value = None
        self.strict = strict
        self.allow_downcast = allow_downcast
        self.set_value(value, borrow=True)

    @property
    def container(self):
        return self

    def get_value(self, borrow=False, return_internal_type=False):
        """The current value (a copy unless ``borrow``)."""
        return self._value if borrow else self._value.copy()

    def set_value(self, value, borrow=False):
        """Replace the value; it must keep the dtype and number of dims."""
        what = f"shared variable {self.name or ''}".strip()
        if self.strict and not (isinstance(value, np.ndarray) and value.dtype == self.dtype):
            raise TypeError(f"{what} is strict: expected an ndarray of {self.dtype}")
        arr = self.type.filter(
            value,
            what=what,
            allow_downcast=bool(self.allow_downcast) or isinstance(value, (int, float)),
        )
        if not borrow and isinstance(value, np.ndarray) and np.may_share_memory(arr, value):
            arr = arr.copy()
        self._value = arr

    def clone(self):
        return self  # shared storage is never copied when a graph is cloned


def shared(
    value,
    name=None,
    strict=False,
    allow_downcast=None,
    borrow=False,
    shape=None,
    broadcastable=None,
    device=None,
    **kwargs,
):
    """A shared variable holding ``value`` (an array or a Python number).

    ``shape`` (or ``broadcastable``) gives static sizes; by default none are static.
    ``device`` (e.g. ``'cpu:1'``) is where its storage lives in multi-device plans.
    """
    if kwargs:
        raise TypeError(f"shared() got unexpected arguments {sorted(kwargs)}")
    if isinstance(value, SharedVariable):
        raise TypeError("shared() of a shared variable: use its get_value()")
    if hasattr(value, "owner") and hasattr(value, "type"):
        raise TypeError(f"shared() needs a value, not the symbolic variable {value}")
    arr = np.asarray(value)
    if isinstance(value, float) and not isinstance(value, np.floating):
        from flowc.config import config

        arr = arr.astype(config.floatX)
    if arr.dtype == object:
        raise TypeError(f"shared(): cannot store a {type(value).__name__}")
    if broadcastable is not None:
        shape = tuple(1 if b else None for b in broadcastable)
    if shape is None:
        shape = (None,) * arr.ndim
    if device is not None and (not isinstance(device, str) or ":" not in device):
        raise ValueError(f"shared(): device names look like 'cpu:0', got {device!r}")
    var = SharedVariable(
        TensorType(arr.dtype, shape),
        arr if borrow else arr.copy(),
        name=name,
        strict=strict,
        allow_downcast=allow_downcast,
    )
    if device is not None:
        var.tag["device"] = device
    return var
