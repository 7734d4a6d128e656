"""Rewriting machinery: node rewriters, the walkers and the equilibrium driver.

A node rewriter is a function ``(fgraph, node) -> replacements | None`` whose
docstring states its identity, registered with ``@node_rewriter([OpClass, ...])``.
It returns a list (one new variable per output of ``node``), a dict
``{old_var: new_var}``, or None when it does not apply.
"""

from __future__ import annotations

import collections
import warnings
from collections.abc import Callable, Iterable

from flowc.graph.basic import Apply, Constant, Variable


class NodeRewriter:
    """A named rewrite of one node, applied only to nodes whose op is in ``tracks``."""

    def __init__(self, fn: Callable, tracks: tuple | None, name: str):
        self.fn = fn
        self.tracks = tracks
        self.name = name
        self.__doc__ = fn.__doc__

    def __repr__(self):
        return f"<rewrite {self.name}>"

    def __call__(self, fgraph, node):
        return self.fn(fgraph, node)

    def applies_to(self, op) -> bool:
        return self.tracks is None or any(
            isinstance(op, t) if isinstance(t, type) else op == t for t in self.tracks
        )


def node_rewriter(tracks: Iterable | None):
    """Decorate ``fn(fgraph, node)`` as a rewriter of nodes whose op is (an instance of)
    one of ``tracks`` (op classes or op instances; None tracks every node)."""

    def wrap(fn):
        return NodeRewriter(fn, None if tracks is None else tuple(tracks), fn.__name__)

    return wrap


class RewriteError(RuntimeError):
    """A rewriter returned something that cannot replace the node's outputs."""


def apply_rewrite(fgraph, node: Apply, rewriter: NodeRewriter) -> bool:
    """Run ``rewriter`` on ``node``; replace its outputs if it applies. True if it did."""
    result = rewriter(fgraph, node)
    if result is None or result is False:
        return False
    if isinstance(result, dict):
        pairs = list(result.items())
    else:
        result = [result] if isinstance(result, Variable) else list(result)
        if len(result) != len(node.outputs):
            raise RewriteError(
                f"{rewriter.name} gave {len(result)} replacements for the "
                f"{len(node.outputs)} outputs of {node.op}"
            )
        pairs = list(zip(node.outputs, result, strict=True))
    pairs = [(old, new) for old, new in pairs if new is not None and new is not old]
    if not pairs:
        return False
    for old, new in pairs:
        if old.type.dtype != new.type.dtype or old.type.ndim != new.type.ndim:
            raise RewriteError(f"{rewriter.name} replaced {old} ({old.type}) by {new} ({new.type})")
    fgraph.replace_all(pairs, reason=rewriter.name)
    return True


class _Worklist:
    """A feature that queues every node imported or given a new input."""

    def __init__(self, nodes):
        self.queue = collections.deque(nodes)
        self.queued = set(nodes)

    def push(self, node):
        if node != "output" and node not in self.queued:
            self.queued.add(node)
            self.queue.append(node)

    def pop(self):
        node = self.queue.popleft()
        self.queued.discard(node)
        return node

    def on_import(self, fgraph, node, reason):
        self.push(node)

    def on_change_input(self, fgraph, node, i, old, new, reason):
        self.push(node)


def equilibrium(
    fgraph,
    rewriters: list[NodeRewriter],
    max_rewrites: int | None = None,
    name: str = "equilibrium",
):
    """Apply ``rewriters`` until none applies, visiting only nodes that changed.

    The worklist starts with every node in topological order; a rewrite queues the
    nodes it imports and the clients whose inputs it changed, so work is
    proportional to the changes, never to whole-graph rescans. Stops with a warning
    after ``max_rewrites`` rewrites (default: 10 per node plus 1000).
    """
    by_op: dict = {}

    def rewriters_for(op):
        found = by_op.get(op)
        if found is None:
            found = by_op[op] = [r for r in rewriters if r.applies_to(op)]
        return found

    work = _Worklist(fgraph.toposort())
    fgraph.attach_feature(work)
    limit = max_rewrites if max_rewrites is not None else 10 * len(fgraph.apply_nodes) + 1000
    done = 0
    try:
        while work.queue:
            node = work.pop()
            if node not in fgraph.apply_nodes:
                continue
            for rw in rewriters_for(node.op):
                if apply_rewrite(fgraph, node, rw):
                    done += 1
                    break
            if done >= limit:
                warnings.warn(
                    f"{name}: stopped after {done} rewrites without reaching a "
                    f"fixed point (the last was on {node.op}); the graph is "
                    f"correct but may be less optimized",
                    stacklevel=2,
                )
                break
    finally:
        fgraph.remove_feature(work)
    return fgraph


def walk(fgraph, rewriters: list[NodeRewriter], order: str = "in2out"):
    """One pass over a snapshot of the nodes, inputs first ('in2out') or outputs first."""
    nodes = list(fgraph.toposort())
    if order == "out2in":
        nodes.reverse()
    elif order != "in2out":
        raise ValueError(f"order must be in2out or out2in, got {order!r}")
    for node in nodes:
        if node not in fgraph.apply_nodes:
            continue
        for rw in rewriters:
            if rw.applies_to(node.op) and apply_rewrite(fgraph, node, rw):
                break
    return fgraph


# ------------------------------------------------------------------ patterns


def pattern_rewriter(
    in_pattern, out_pattern, name: str | None = None, tracks: Iterable | None = None
) -> NodeRewriter:
    """A rewriter from a pattern: ``(log, (exp, "x"))`` -> ``"x"``.

    A pattern is a variable name (a string, matching anything, the same name the
    same variable), a number (a constant all of whose elements equal it), or a tuple
    ``(op, *patterns)`` matching a node of that op. The output pattern is built by
    calling the ops; a callable in it is called with the bindings.
    """
    head = in_pattern[0]

    def fn(fgraph, node):
        bindings = {}
        if not _match(in_pattern, node.outputs[0] if len(node.outputs) == 1 else None, bindings):
            return None
        out = _build(out_pattern, bindings)
        old = node.outputs[0]
        if out is None or not (out.type == old.type or old.type.is_super(out.type)):
            return None  # e.g. log(exp(x)) of an integer x: the types differ
        return [out]

    text = f"{_show(in_pattern)} -> {_show(out_pattern)}"
    fn.__doc__ = text
    rw = NodeRewriter(fn, tuple(tracks) if tracks else (head,), name or text)
    return rw


def _match(pattern, var, bindings) -> bool:
    if var is None:
        return False
    if isinstance(pattern, str):
        bound = bindings.get(pattern)
        if bound is None:
            bindings[pattern] = var
            return True
        return bound is var
    if isinstance(pattern, (int, float)):
        return isinstance(var, Constant) and var.data.size > 0 and bool((var.data == pattern).all())
    if callable(pattern) and not isinstance(pattern, tuple):
        return bool(pattern(var))
    op, *subs = pattern
    node = var.owner
    if node is None or node.op != op or len(node.inputs) != len(subs):
        return False
    return all(_match(p, i, bindings) for p, i in zip(subs, node.inputs, strict=True))


def _build(pattern, bindings):
    if isinstance(pattern, str):
        return bindings[pattern]
    if isinstance(pattern, (int, float)):
        return pattern
    if callable(pattern) and not isinstance(pattern, tuple):
        return pattern(bindings)
    op, *subs = pattern
    return op(*[_build(p, bindings) for p in subs])


def _show(pattern) -> str:
    if isinstance(pattern, tuple):
        return f"{pattern[0]}({', '.join(_show(p) for p in pattern[1:])})"
    return str(pattern)
