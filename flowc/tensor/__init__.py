"""The Theano-named tensor API: ``import flowc.tensor as T``.

Each family of ops lives in its own module; this namespace gathers them.
"""

from flowc.autodiff import Lop, Rop, grad, hessian, jacobian
from flowc.tensor import basic, nlinalg, nnet
from flowc.tensor.basic import *  # noqa: F403
from flowc.tensor.elemwise import *  # noqa: F403
from flowc.tensor.linalg import *  # noqa: F403
from flowc.tensor.math import *  # noqa: F403
from flowc.tensor.reduction import *  # noqa: F403
from flowc.tensor.shape_ops import *  # noqa: F403
from flowc.tensor.subtensor import *  # noqa: F403
from flowc.tensor.var import *  # noqa: F403

shape = basic.shape  # Theano's T.shape function, not a module (the ops are in shape_ops)

__all__ = ["Lop", "Rop", "grad", "hessian", "jacobian", "nlinalg", "nnet"]
