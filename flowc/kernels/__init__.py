"""Lowering: every graph node becomes something the executor can run.

``lower`` makes one Python thunk per node (the op's NumPy ``perform``): the reference,
and what multi-stream plans call. ``compile_program`` renders the whole graph into one
C++ translation unit (``render``), builds it once through the lock-free cache
(``compiler``, ``cache``) and returns a ``CompiledFunction`` that runs it in a few calls;
``Function.fallback_ops`` lists the ops that still run in Python.
"""

import warnings

from flowc.kernels import render_labels  # noqa: F401 (registers its emitters)
from flowc.kernels.thunk import Kernel, NanGuardError, lower

__all__ = [
    "Kernel",
    "NanGuardError",
    "compile_nodes",
    "compile_program",
    "cuda_source",
    "lower",
]

_warned = False


def _compiler_or_warn() -> bool:
    """True if a C++ compiler is found; else warns once that functions run in Python."""
    global _warned
    from flowc.kernels import compiler

    if compiler.find_compiler() is not None:
        return True
    if not _warned:
        _warned = True
        warnings.warn(
            "flowc: no C++ compiler found (set FLOWC_CXX or CXX, or put g++ on PATH); "
            "running every function with mode='py' (NumPy perform)",
            RuntimeWarning,
            stacklevel=4,
        )
    return False


def compile_program(fgraph):
    """The ``CompiledFunction`` of ``fgraph``, or None (one warning) without a C++ compiler."""
    if not _compiler_or_warn():
        return None
    from flowc.kernels.compiled import compile_function

    return compile_function(fgraph)


def compile_nodes(nodes):
    """Per node, its compiled driver ``(step, take)`` or None (``compiled.compile_nodes``);
    None for the whole list (one warning) without a C++ compiler."""
    if not _compiler_or_warn():
        return None
    from flowc.kernels.compiled import compile_nodes as build

    return build(nodes)


def cuda_source(fn) -> str:
    """The CUDA translation unit of a compiled function (or a FunctionGraph)."""
    from flowc.kernels.cuda import cuda_source as render

    return render(fn)
