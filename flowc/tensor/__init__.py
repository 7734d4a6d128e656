"""The Theano-named tensor API: ``import flowc.tensor as T``.

Each family of ops lives in its own module; this namespace gathers them.
"""

from flowc.autodiff import Lop, Rop, grad, hessian, jacobian
from flowc.tensor import nlinalg, nnet
from flowc.tensor.basic import *  # noqa: F403
from flowc.tensor.elemwise import *  # noqa: F403
from flowc.tensor.linalg import *  # noqa: F403
from flowc.tensor.math import *  # noqa: F403
from flowc.tensor.reduction import *  # noqa: F403
from flowc.tensor.shape import *  # noqa: F403
from flowc.tensor.subtensor import *  # noqa: F403
from flowc.tensor.var import *  # noqa: F403

__all__ = ["Lop", "Rop", "grad", "hessian", "jacobian", "nlinalg", "nnet"]
