"""Destroy tracking: which values ops overwrite (``destroy_map``) or alias (``view_map``).

``DestroyHandler`` is a FunctionGraph feature that refuses graphs in which an overwritten
value is still needed elsewhere, is a graph input, constant or output, or is overwritten twice.
"""

from __future__ import annotations

from flowc.graph.basic import Apply, Constant, Variable

# How many nodes ``DestroyHandler.runs_before`` visits before giving up ("not proven").
ANCESTOR_SEARCH_LIMIT = 256


class InconsistencyError(ValueError):
    """A node overwrites a value that another node, a graph output or the caller still needs."""


def _view_inputs(op) -> dict[int, list[int]]:
    """``{out_index: [in_index]}``: the inputs each output may alias (without copying)."""
    return getattr(op, "view_map", None) or {}


def _destroyed_inputs(op) -> set[int]:
    """The input indices that ``op`` overwrites."""
    return {i for ins in (getattr(op, "destroy_map", None) or {}).values() for i in ins}


def pure_view(op) -> bool:
    """``op`` only makes views, each output of one input: its ``perform`` copies nothing."""
    views = _view_inputs(op)
    return bool(views) and not _destroyed_inputs(op) and all(len(v) == 1 for v in views.values())


def _viewed_inputs(op) -> set[int]:
    return {i for ins in _view_inputs(op).values() for i in ins}


def _describe_free(v: Variable) -> str:
    from flowc.sharedvar import SharedVariable

    if isinstance(v, Constant):
        return f"the constant {v}"
    if isinstance(v, SharedVariable):
        return f"the storage of the shared variable {v}"
    return f"the graph input {v}"


class DestroyHandler:
    """A FunctionGraph feature that tracks overwritten values and aliases, and checks them.

    Values are grouped into *alias sets*: a value, everything it is a view of (``view_map``,
    followed transitively upward), and every view of those. The output of a node that
    overwrites an input (``destroy_map``) shares its input's buffer, but holds a *new*
    content, so it starts a new alias set; later overwrites of it form a chain, which is safe.

    The rule for a node ``d`` overwriting input ``i`` (the value ``v``), with ``A`` the alias
    set of ``v``:

    - nothing in ``A`` is a graph input, a constant or shared storage (all ownerless), and
      nothing in ``A`` is a graph output (the caller reads outputs after every node has run);
    - every other reader of a value in ``A`` either only makes a view of it (its readers are
      then checked in turn), or is an *ancestor* of ``d``: ``d`` reads, directly or not, what
      that reader computes, so it is certain to run before ``d`` in any schedule. flowc has
      no ordering edges beyond the data dependencies, so a reader that is not an ancestor may
      run after ``d`` and is refused. The ancestor search is bounded by
      ``ANCESTOR_SEARCH_LIMIT`` nodes; beyond that the reader is refused (conservative);
    - no other node overwrites a value of ``A`` (a value is destroyed at most once), and
      ``d`` does not read ``A`` through another of its inputs.

    Edits keep the bookkeeping current through ``on_import``, ``on_prune`` and
    ``on_change_input``, but the rule is checked by ``validate`` (and on attach), not on
    every edit: in the middle of ``fgraph.replace`` the old and the new node both read their
    inputs, a state that is briefly inconsistent by design.
    """

    def __init__(self):
        self.fgraph = None
        # node -> (view edges [(out var, in var)], destroy edges [(in index, in var)])
        self._edges: dict[Apply, tuple[list, list]] = {}
        self._view_parents: dict[Variable, list[Variable]] = {}
        self._view_children: dict[Variable, list[Variable]] = {}
        self._destroyers: dict[Variable, list[tuple[Apply, int]]] = {}
        # node -> length of its longest path from the graph inputs (filled lazily): a node
        # can only depend on nodes of smaller depth, which prunes the ancestor search.
        self._depth: dict[Apply, int] = {}

    # ------------------------------------------------------------ feature events
    def on_attach(self, fgraph) -> None:
        if self.fgraph is not None and self.fgraph is not fgraph:
            raise ValueError("a DestroyHandler follows one FunctionGraph; make a new one")
        self.fgraph = fgraph
        self._rebuild(fgraph)
        try:
            self.validate(fgraph)
        except InconsistencyError:
            fgraph.remove_feature(self)
            raise

    def on_detach(self, fgraph) -> None:
        self.fgraph = None
        self._clear()

    def on_import(self, fgraph, node, reason=None) -> None:
        self._add_node(node)

    def on_prune(self, fgraph, node, reason=None) -> None:
        self._remove_node(node)
        self._depth.pop(node, None)

    def on_change_input(self, fgraph, node, i, old, new, reason=None) -> None:
        if node == "output":
            return
        if node in self._depth:
            # The depths below ``node`` stay right if the new input is as deep as the old.
            before = 0 if old.owner is None else self._depth.get(old.owner)
            if before is None or self._value_depth(new) != before:
                self._depth.clear()
        if node in self._edges:
            self._remove_node(node)
            self._add_node(node)

    # ------------------------------------------------------------ bookkeeping
    def _clear(self) -> None:
        self._depth.clear()
        self._edges.clear()
        self._view_parents.clear()
        self._view_children.clear()
        self._destroyers.clear()

    def _rebuild(self, fgraph) -> None:
        self._clear()
        for node in fgraph.toposort():
            self._add_node(node)

    def _add_node(self, node: Apply) -> None:
        if node in self._edges:
            return
        views = [
            (node.outputs[o], node.inputs[i])
            for o, ins in sorted(_view_inputs(node.op).items())
            for i in ins
        ]
        destroys = [(i, node.inputs[i]) for i in sorted(_destroyed_inputs(node.op))]
        self._edges[node] = (views, destroys)
        for out, inp in views:
            self._view_parents.setdefault(out, []).append(inp)
            self._view_children.setdefault(inp, []).append(out)
        for i, inp in destroys:
            self._destroyers.setdefault(inp, []).append((node, i))

    def _remove_node(self, node: Apply) -> None:
        edges = self._edges.pop(node, None)
        if edges is None:
            return
        views, destroys = edges
        for out, inp in views:
            _drop(self._view_parents, out, inp)
            _drop(self._view_children, inp, out)
        for i, inp in destroys:
            _drop(self._destroyers, inp, (node, i))

    def _value_depth(self, var: Variable) -> int:
        return 0 if var.owner is None else self._node_depth(var.owner)

    def _node_depth(self, node: Apply) -> int:
        depth = self._depth
        if node in depth:
            return depth[node]
        stack = [node]
        while stack:  # iterative: graphs may be deeper than Python's recursion limit
            n = stack[-1]
            if n in depth:
                stack.pop()
                continue
            missing = [i.owner for i in n.inputs if i.owner is not None and i.owner not in depth]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            depth[n] = 1 + max((depth[i.owner] for i in n.inputs if i.owner is not None), default=0)
        return depth[node]

    def runs_before(self, reader: Apply, node: Apply) -> bool:
        """True if ``node`` depends on an output of ``reader`` (so ``reader`` runs first).

        A bounded search (``ANCESTOR_SEARCH_LIMIT`` nodes): False when it cannot tell. It
        answers True only on a path it walked, so the depth cache, which only prunes the
        search, can make it miss a path but never invent one.
        """
        floor = self._node_depth(reader)
        if self._node_depth(node) <= floor:
            return False
        stack = [node]
        seen: set[Apply] = set()
        while stack:
            n = stack.pop()
            for inp in n.inputs:
                owner = inp.owner
                if owner is reader:
                    return True
                if owner is None or owner in seen or self._node_depth(owner) <= floor:
                    continue
                seen.add(owner)
                if len(seen) > ANCESTOR_SEARCH_LIMIT:
                    return False
                stack.append(owner)
        return False

    # ------------------------------------------------------------ queries
    def aliases(self, var: Variable) -> list[Variable]:
        """``var`` and every value sharing its buffer and content through views."""
        seen, order, stack = {var}, [var], [var]
        while stack:
            v = stack.pop()
            for w in self._view_parents.get(v, []) + self._view_children.get(v, []):
                if w not in seen:
                    seen.add(w)
                    order.append(w)
                    stack.append(w)
        return order

    def destroyers(self, var: Variable) -> list[tuple[Apply, int]]:
        """The ``(node, input_index)`` pairs that overwrite ``var``."""
        return list(self._destroyers.get(var, ()))

    def _check_graph(self, fgraph) -> None:
        if self.fgraph is not None and fgraph is not self.fgraph:
            raise ValueError("this DestroyHandler is attached to another FunctionGraph")

    def problem(self, fgraph, node: Apply, i: int) -> str | None:
        """Why ``node`` overwriting its input ``i`` would be unsafe, or None if it is safe."""
        self._check_graph(fgraph)
        if not 0 <= i < len(node.inputs):
            raise ValueError(
                f"input_index {i} is out of range for {node}, which has {len(node.inputs)} inputs"
            )
        v = node.inputs[i]
        aliases = self.aliases(v)
        for w in aliases:
            if w.owner is None:
                via = "" if w is v else f" (through {v}, a view of it)"
                return f"{node} overwrites {_describe_free(w)}{via}"
        for w in aliases:
            what = "it" if w is v else f"its alias {w}"
            for client, j in fgraph.clients.get(w, ()):
                if client == "output":
                    return f"{node} overwrites {v}, but {what} is graph output {j}"
                if client is node:
                    if w is v and j == i:
                        continue
                    return f"{node} overwrites {v} (input {i}) and also reads {what} as input {j}"
                if j in _destroyed_inputs(client.op):
                    return f"{v} is overwritten twice: by {node} and by {client}" + (
                        "" if w is v else f", which overwrites its alias {w}"
                    )
                if j in _viewed_inputs(client.op):
                    continue  # only a view: its own readers are in ``aliases``
                if self.runs_before(client, node):
                    continue
                return (
                    f"{node} overwrites {v}, but {client} also reads {what} and may run "
                    f"after {node}"
                )
        return None

    def can_destroy(self, fgraph, node: Apply, input_index: int) -> bool:
        """Whether making ``node`` overwrite its input ``input_index`` would be safe."""
        return self.problem(fgraph, node, input_index) is None

    def validate(self, fgraph) -> None:
        """Raise ``InconsistencyError`` naming the nodes if any overwrite is unsafe."""
        self._check_graph(fgraph)
        for node in fgraph.toposort():
            for i in sorted(_destroyed_inputs(node.op)):
                msg = self.problem(fgraph, node, i)
                if msg is not None:
                    raise InconsistencyError(msg)


def _drop(mapping: dict, key, value) -> None:
    items = mapping.get(key)
    if items is None:
        return
    items.remove(value)
    if not items:
        del mapping[key]


def destroy_handler(fgraph) -> DestroyHandler:
    """The DestroyHandler attached to ``fgraph``, attaching a new one if there is none."""
    handler = fgraph.get_feature(DestroyHandler)
    if handler is None:
        handler = DestroyHandler()
        fgraph.attach_feature(handler)
    return handler


def _handler_for(fgraph) -> DestroyHandler:
    """The attached handler, or a detached one built for a single query."""
    handler = fgraph.get_feature(DestroyHandler)
    if handler is None:
        handler = DestroyHandler()
        handler._rebuild(fgraph)
    return handler


def validate(fgraph) -> None:
    """Raise ``InconsistencyError`` if a node of ``fgraph`` overwrites a value unsafely."""
    _handler_for(fgraph).validate(fgraph)


def can_destroy(fgraph, node: Apply, input_index: int) -> bool:
    """Whether making ``node`` overwrite its input ``input_index`` would be safe."""
    return _handler_for(fgraph).can_destroy(fgraph, node, input_index)


__all__ = [
    "ANCESTOR_SEARCH_LIMIT",
    "DestroyHandler",
    "InconsistencyError",
    "can_destroy",
    "destroy_handler",
    "validate",
]
