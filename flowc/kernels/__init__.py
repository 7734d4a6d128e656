"""Lowering: every graph node becomes a ``Kernel`` the executor can call.

For now every kernel is a thunk around the op's NumPy ``perform``; generated C++/CUDA
kernels replace them op by op, and ``Function.fallback_ops`` lists what still runs
in Python.
"""

from flowc.kernels.thunk import Kernel, NanGuardError, lower

__all__ = ["Kernel", "NanGuardError", "lower"]
