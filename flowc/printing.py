"""Printing graphs: ``debugprint`` (an indented tree with ids and types) and ``pp`` (infix)."""

from __future__ import annotations

import io
import sys

from flowc.graph.basic import Constant, Variable
from flowc.graph.fg import FunctionGraph


def debugprint(obj, file=None, print_type=True, depth=-1) -> str:
    """Print ``obj`` (variables, a FunctionGraph or a compiled function) as a tree.

    Each node shows its op, an id, and its output type; a node seen before is
    shown once and then referred to by id. Returns the text; prints it unless
    ``file='str'``.
    """
    if hasattr(obj, "fgraph") and not isinstance(obj, FunctionGraph):
        obj = obj.fgraph
    if isinstance(obj, FunctionGraph):
        roots = list(obj.outputs)
    elif isinstance(obj, Variable):
        roots = [obj]
    else:
        roots = list(obj)
    ids: dict = {}
    buf = io.StringIO()

    def ident(v):
        return ids.setdefault(v.owner if v.owner is not None else v, f"[id {_letters(len(ids))}]")

    def walk(v, indent, level):
        t = f" <{v.type}>" if print_type else ""
        prefix = " " * indent + ("|" if indent else "")
        if v.owner is None:
            label = str(v) if isinstance(v, Constant) else (v.name or "<input>")
            buf.write(f"{prefix}{label} {ident(v)}{t}\n")
            return
        node = v.owner
        seen = node in ids
        idx = f".{v.index}" if len(node.outputs) > 1 else ""
        name = f" '{v.name}'" if v.name else ""
        buf.write(f"{prefix}{node.op}{idx} {ident(v)}{name}{t}\n")
        if seen or level == depth:
            return
        for i in node.inputs:
            walk(i, indent + 1, level + 1)

    for r in roots:
        walk(r, 0, 0)
    text = buf.getvalue()
    if file == "str":
        return text
    (file or sys.stdout).write(text)
    return text


def _letters(n: int) -> str:
    s = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s


_INFIX = {
    "add": "+",
    "sub": "-",
    "mul": "*",
    "true_div": "/",
    "int_div": "//",
    "mod": "%",
    "pow": "**",
    "eq": "==",
    "neq": "!=",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
    "and_": "&",
    "or_": "|",
    "xor": "^",
}


def pp(var) -> str:
    """A readable infix form of ``var``: ``((x * y) + exp(x))``."""
    if isinstance(var, FunctionGraph):
        return "\n".join(pp(o) for o in var.outputs)
    node = var.owner
    if node is None:
        return str(var)
    op = node.op
    args = [pp(i) for i in node.inputs]
    scalar = getattr(op, "scalar_op", None)
    sname = getattr(scalar, "name", None)
    if sname in _INFIX and len(args) >= 2:
        return "(" + f" {_INFIX[sname]} ".join(args) + ")"
    if sname == "neg":
        return f"-{args[0]}"
    head = sname or str(op)
    out = f"{head}({', '.join(args)})"
    return out if len(node.outputs) == 1 else f"{out}[{var.index}]"


__all__ = ["debugprint", "pp"]
