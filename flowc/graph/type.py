"""TensorType: the type of every value in a flowc graph (a dtype and a static shape)."""

from __future__ import annotations

import numpy as np

DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
)
FLOAT_DTYPES = frozenset({"float16", "float32", "float64"})
COMPLEX_DTYPES = frozenset({"complex64", "complex128"})
INT_DTYPES = frozenset(d for d in DTYPES if d.startswith(("int", "uint")))
DISCRETE_DTYPES = INT_DTYPES | {"bool"}


class TensorType:
    """An n-d array type: ``dtype`` and ``shape``, a static size per dim or None.

    A static size of 1 marks a broadcastable dim (Theano's ``broadcastable``).

    >>> TensorType("float32", (None, 1)).broadcastable
    (False, True)
    """

    __slots__ = ("dtype", "shape", "_hash", "_np")
    variable_class = None  # set by flowc.tensor: the Variable subclass with operators
    constant_class = None  # likewise for constants

    def __init__(self, dtype, shape=()):
        try:
            dtype = np.dtype(dtype).name
        except TypeError as exc:
            raise TypeError(f"{dtype!r} is not a dtype") from exc
        if dtype not in DTYPES:
            raise TypeError(f"flowc does not support dtype {dtype!r}; use one of {DTYPES}")
        shape = tuple(None if s is None else int(s) for s in shape)
        if any(s is not None and s < 0 for s in shape):
            raise ValueError(f"static shape {shape} has a negative size")
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "_hash", hash((dtype, shape)))
        object.__setattr__(self, "_np", np.dtype(dtype))  # compared on every call

    def __setattr__(self, name, value):
        raise AttributeError("TensorType is immutable")

    def __reduce__(self):
        return (TensorType, (self.dtype, self.shape))

    def __eq__(self, other):
        return type(other) is TensorType and self.dtype == other.dtype and self.shape == other.shape

    def __hash__(self):
        return self._hash

    def __repr__(self):
        dims = ", ".join("?" if s is None else str(s) for s in self.shape)
        return f"TensorType({self.dtype}, ({dims}{',' if self.ndim == 1 else ''}))"

    __str__ = __repr__

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def broadcastable(self) -> tuple[bool, ...]:
        return tuple(s == 1 for s in self.shape)

    @property
    def numpy_dtype(self) -> np.dtype:
        return self._np

    def clone(self, dtype=None, shape=None) -> TensorType:
        return TensorType(
            self.dtype if dtype is None else dtype, self.shape if shape is None else shape
        )

    def is_super(self, other) -> bool:
        """True when every value of ``other`` is also a value of ``self``."""
        return (
            isinstance(other, TensorType)
            and other.dtype == self.dtype
            and other.ndim == self.ndim
            and all(s is None or s == o for s, o in zip(self.shape, other.shape, strict=True))
        )

    def make_variable(self, name=None):
        from flowc.graph.basic import Variable

        return (self.variable_class or Variable)(self, name=name)

    def make_constant(self, data, name=None):
        from flowc.graph.basic import Constant

        return (self.constant_class or Constant)(self, data, name=name)

    def __call__(self, name=None):
        return self.make_variable(name)

    def filter(self, value, what="value", allow_downcast=False) -> np.ndarray:
        """Return ``value`` as an ndarray of this type, or raise naming ``what``.

        A value whose dtype is wider than this type's is refused unless
        ``allow_downcast``; a narrower one (or a Python scalar that fits) is cast.
        """
        if isinstance(value, np.ndarray) and value.dtype == self._np:
            arr = value
        else:
            src = np.asarray(value)
            if src.dtype.kind in "OUSV":
                raise TypeError(f"{what}: cannot convert {type(value).__name__} to {self}")
            if not allow_downcast and not _safe_cast(value, src, self.numpy_dtype):
                raise TypeError(
                    f"{what}: expected dtype {self.dtype}, got {src.dtype.name}; casting "
                    f"would lose precision (cast it yourself, or pass "
                    f"allow_input_downcast=True)"
                )
            arr = src.astype(self.dtype, copy=False)
        if arr.ndim != self.ndim:
            raise TypeError(
                f"{what}: expected a {self.ndim}-d array of {self.dtype}, got a "
                f"{arr.ndim}-d array of shape {arr.shape}"
            )
        for axis, (want, got) in enumerate(zip(self.shape, arr.shape, strict=True)):
            if want is not None and want != got:
                raise ValueError(
                    f"{what}: expected static shape {_fmt_shape(self.shape)}, got "
                    f"{arr.shape} (dim {axis} must be {want})"
                )
        return arr


def _fmt_shape(shape) -> str:
    return "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"


def _safe_cast(value, src: np.ndarray, dst: np.dtype) -> bool:
    if np.can_cast(src.dtype, dst, casting="safe"):
        return True
    if isinstance(value, (bool, int, float, complex, list, tuple)):
        # Python numbers and lists are accepted when their values survive the cast.
        with np.errstate(all="ignore"):
            try:
                return bool(np.array_equal(src.astype(dst), src))
            except (OverflowError, ValueError, TypeError):
                return False
    return False


def upcast(*dtypes) -> str:
    """NumPy's promotion of ``dtypes``."""
    return np.result_type(*dtypes).name
