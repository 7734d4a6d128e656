"""flowc: a compiler and runtime for array programs written as symbolic graphs.

import flowc as th
import flowc.tensor as T
"""

import sys as _sys

from flowc import autodiff, printing, tensor  # noqa: F401
from flowc.autodiff import Lop, Rop, grad, hessian, jacobian
from flowc.config import config
from flowc.function import Function, In, Out, UnusedInputError, function
from flowc.graph.basic import device
from flowc.printing import debugprint, pp
from flowc.sharedvar import SharedVariable, shared

# Theano's module name for the gradient functions.
gradient = autodiff
_sys.modules["flowc.gradient"] = autodiff

__version__ = "0.1.0"

__all__ = [
    "Function",
    "In",
    "Lop",
    "Out",
    "Rop",
    "SharedVariable",
    "UnusedInputError",
    "config",
    "debugprint",
    "device",
    "function",
    "grad",
    "gradient",
    "hessian",
    "jacobian",
    "pp",
    "printing",
    "shared",
    "tensor",
]
