"""``verify(fgraph)``: check clients, owners, types and acyclicity; on in tests after every pass."""

from __future__ import annotations

from flowc.graph.basic import Constant, io_toposort


class InvalidGraphError(AssertionError):
    """A pass left the FunctionGraph inconsistent."""


def verify(fgraph, where: str = "") -> None:
    """Raise ``InvalidGraphError`` unless ``fgraph`` is consistent.

    Checks that every node is reachable and imported, that ``clients`` matches the
    node inputs exactly, that each output's owner is its node, that each node's op
    still types its inputs to the same output types, and that the graph is acyclic.
    """
    at = f" after {where}" if where else ""

    def fail(msg):
        raise InvalidGraphError(f"invalid graph{at}: {msg}")

    order = io_toposort(fgraph.inputs, fgraph.outputs)
    if set(order) != fgraph.apply_nodes:
        extra = fgraph.apply_nodes - set(order)
        missing = set(order) - fgraph.apply_nodes
        fail(f"apply_nodes out of date (unreachable: {extra}, not imported: {missing})")
    expected = {v: [] for v in fgraph.variables}
    position = {}
    for k, node in enumerate(order):
        position[node] = k
        for i, inp in enumerate(node.inputs):
            if inp not in fgraph.variables:
                fail(f"{node} reads {inp}, which is not in the graph")
            if inp.owner is None and inp not in fgraph.inputs and not isinstance(inp, Constant):
                fail(f"{node} reads the free variable {inp}")
            if inp.owner is not None and position.get(inp.owner, k) >= k:
                fail(f"cycle through {node}")
            expected[inp].append((node, i))
        for j, out in enumerate(node.outputs):
            if out.owner is not node or out.index != j:
                fail(f"output {j} of {node} has a wrong owner or index")
        remade = node.op.make_node(*node.inputs)
        for out, want in zip(node.outputs, remade.outputs, strict=True):
            if not (
                out.type == want.type
                or out.type.is_super(want.type)
                or want.type.is_super(out.type)
            ):
                fail(f"{node} output type {out.type} but its op makes {want.type}")
    for i, out in enumerate(fgraph.outputs):
        if out not in fgraph.variables:
            fail(f"output {i} ({out}) is not in the graph")
        expected[out].append(("output", i))
    for v, want in expected.items():
        if sorted(map(_key, fgraph.clients.get(v, []))) != sorted(map(_key, want)):
            fail(f"clients of {v} are {fgraph.clients.get(v)}, expected {want}")
    if any(n.op.destroy_map for n in order):
        from flowc.graph.destroy import InconsistencyError, validate

        try:
            validate(fgraph)
        except InconsistencyError as exc:
            fail(str(exc))


def _key(client):
    node, i = client
    return (id(node), i)
