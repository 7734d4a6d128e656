"""FunctionGraph: a graph with fixed inputs and outputs, its clients, and edit operations.

Features (listeners) hear of every import, prune and input change, which is how
rewriters, shape inference and destroy tracking follow the graph as it is edited.
"""

from __future__ import annotations

from collections.abc import Sequence

from flowc.graph.basic import Apply, Constant, Variable, clone_get_equiv, io_toposort


class MissingInputError(ValueError):
    """The outputs depend on a variable that is neither an input nor a constant."""


class FunctionGraph:
    """Inputs, outputs and the Apply nodes between them, with ``clients`` kept current.

    ``clients[v]`` lists ``(node, i)`` for each node reading ``v`` as input ``i``;
    an output of the graph has the client ``("output", i)``.
    """

    def __init__(
        self, inputs: Sequence[Variable], outputs: Sequence[Variable], features=(), clone=True
    ):
        if clone:
            equiv = clone_get_equiv(inputs, outputs)
            inputs = [equiv[v] for v in inputs]
            outputs = [equiv[v] for v in outputs]
        if len(set(inputs)) != len(inputs):
            raise ValueError("the same variable is given twice as an input")
        for v in inputs:
            if v.owner is not None:
                raise ValueError(f"input {v} is computed by {v.owner.op}; inputs must be free")
        self.inputs = list(inputs)
        self.outputs = []
        self.apply_nodes: set[Apply] = set()
        self.variables: set[Variable] = set()
        self.clients: dict[Variable, list] = {}
        self._features = []
        self._order = None
        for v in self.inputs:
            self._add_variable(v)
        for i, out in enumerate(outputs):
            self._import_var(out, reason="init")
            self.outputs.append(out)
            self.clients[out].append(("output", i))
        for f in features:
            self.attach_feature(f)

    def __repr__(self):
        return f"FunctionGraph({', '.join(map(str, self.outputs))})"

    # -------------------------------------------------------------- features
    def attach_feature(self, feature) -> None:
        if feature in self._features:
            return
        self._features.append(feature)
        if hasattr(feature, "on_attach"):
            feature.on_attach(self)

    def get_feature(self, cls):
        """The attached feature of type ``cls``, or None."""
        return next((f for f in self._features if isinstance(f, cls)), None)

    def remove_feature(self, feature) -> None:
        self._features.remove(feature)
        if hasattr(feature, "on_detach"):
            feature.on_detach(self)

    def _notify(self, event, *args) -> None:
        for f in self._features:
            fn = getattr(f, event, None)
            if fn is not None:
                fn(self, *args)

    # -------------------------------------------------------------- structure
    def _add_variable(self, v: Variable) -> None:
        if v not in self.variables:
            self.variables.add(v)
            self.clients.setdefault(v, [])

    def _import_var(self, var: Variable, reason) -> None:
        if var in self.variables:
            return
        if var.owner is None:
            if not isinstance(var, Constant):
                raise MissingInputError(
                    f"the outputs depend on {var} ({var.type}), which is not among the "
                    f"inputs; pass it as an input, or give it through givens"
                )
            self._add_variable(var)
            return
        for node in io_toposort(self.variables, [var]):
            self._import_node(node, reason)

    def _import_node(self, node: Apply, reason) -> None:
        if node in self.apply_nodes:
            return
        for i, inp in enumerate(node.inputs):
            if inp not in self.variables:
                self._import_var(inp, reason)
            self.clients[inp].append((node, i))
        self.apply_nodes.add(node)
        for out in node.outputs:
            self._add_variable(out)
        self._order = None
        self._notify("on_import", node, reason)

    def _prune_if_unused(self, var: Variable, reason) -> None:
        node = var.owner
        if node is None or node not in self.apply_nodes:
            if var not in self.inputs and not self.clients.get(var) and var in self.variables:
                self.variables.discard(var)
                self.clients.pop(var, None)
            return
        if any(self.clients[o] for o in node.outputs):
            return
        self.apply_nodes.discard(node)
        for o in node.outputs:
            self.variables.discard(o)
            self.clients.pop(o, None)
        self._order = None
        self._notify("on_prune", node, reason)
        for i, inp in enumerate(node.inputs):
            self.clients[inp].remove((node, i))
            self._prune_if_unused(inp, reason)

    def change_node_input(self, node, i: int, new_var: Variable, reason=None) -> None:
        """Make input ``i`` of ``node`` (or output ``i`` if node is "output") ``new_var``."""
        if node == "output":
            old = self.outputs[i]
            self.outputs[i] = new_var
        else:
            old = node.inputs[i]
            node.inputs[i] = new_var
        if old is new_var:
            return
        self._import_var(new_var, reason)
        self.clients[new_var].append((node, i))
        self.clients[old].remove((node, i))
        self._order = None
        self._notify("on_change_input", node, i, old, new_var, reason)
        self._prune_if_unused(old, reason)

    def replace(self, var: Variable, new_var: Variable, reason=None) -> None:
        """Make every client of ``var`` read ``new_var``, which must have a compatible type."""
        if var is new_var:
            return
        if var.type != new_var.type:
            if not (var.type.is_super(new_var.type) or new_var.type.is_super(var.type)):
                raise TypeError(
                    f"cannot replace {var} ({var.type}) with {new_var} ({new_var.type})"
                    + (f" in rewrite {reason}" if reason else "")
                )
        if var not in self.variables:
            return
        pinned = var.owner.tag.get("device") if var.owner is not None else None
        if pinned is not None:
            # Nodes a rewrite makes stay on the device the user pinned the old one to.
            for node in io_toposort(self.variables, [new_var]):
                node.tag.setdefault("device", pinned)
        for node, i in list(self.clients[var]):
            self.change_node_input(node, i, new_var, reason)

    def replace_all(self, pairs, reason=None) -> None:
        for var, new_var in pairs:
            self.replace(var, new_var, reason)

    def toposort(self) -> list[Apply]:
        """The nodes in an order where each comes after the nodes it reads (cached)."""
        if self._order is None:
            self._order = io_toposort(self.inputs, self.outputs)
        return self._order

    def clone(self) -> FunctionGraph:
        return FunctionGraph(self.inputs, self.outputs, clone=True)
