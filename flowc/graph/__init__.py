"""The graph IR: variables, applies, ops, types, FunctionGraph and its verifier."""

from flowc.graph.basic import (
    Apply,
    Constant,
    Op,
    Variable,
    ancestors,
    clone,
    clone_get_equiv,
    clone_replace,
    evaluate,
    graph_inputs,
    io_toposort,
)
from flowc.graph.fg import FunctionGraph, MissingInputError
from flowc.graph.type import TensorType
from flowc.graph.verify import InvalidGraphError, verify

__all__ = [
    "Apply",
    "Constant",
    "FunctionGraph",
    "InvalidGraphError",
    "MissingInputError",
    "Op",
    "TensorType",
    "Variable",
    "ancestors",
    "clone",
    "clone_get_equiv",
    "clone_replace",
    "evaluate",
    "graph_inputs",
    "io_toposort",
    "verify",
]
