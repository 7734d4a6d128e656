"""The scheduling graph: an ``nx.DiGraph`` with one node per Apply and one edge per producer ->
consumer pair, carrying estimated costs (seconds) and bytes for the placement strategies."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np

from flowc.graph.basic import Constant
from flowc.graph.type import TensorType
from flowc.sched.cost import CostModel

__all__ = ["build_dag", "literal_dag", "static_shapes"]


def _full(shape) -> tuple[int, ...] | None:
    if shape is None or any(s is None for s in shape):
        return None
    return tuple(int(s) for s in shape)


def static_shapes(fgraph, shapes: dict | None = None) -> dict:
    """``{variable: tuple of ints}`` for every variable of ``fgraph`` whose shape is known.

    A shape is known when ``shapes`` gives it, when its static type has every dim, or when
    re-making its node on inputs of the known shapes (``make_node`` computes static output
    shapes) gives every dim. So giving the shapes of the inputs is usually enough.
    """
    known = {}
    for v, s in (shapes or {}).items():
        try:
            known[v] = tuple(int(d) for d in s)
        except TypeError as exc:
            raise TypeError(f"shapes[{v}] must be a tuple of ints, got {s!r}") from exc
    for v in fgraph.variables:
        if v not in known:
            s = np.shape(v.data) if isinstance(v, Constant) else _full(_static(v))
            if s is not None:
                known[v] = tuple(s)
    for node in fgraph.toposort():
        if all(v in known for v in node.outputs) or not all(v in known for v in node.inputs):
            continue
        for v, s in zip(node.outputs, _remade_shapes(node, known), strict=True):
            if v not in known and s is not None:
                known[v] = s
    return known


def _static(v):
    return getattr(v.type, "shape", None)


def _remade_shapes(node, known):
    """The static output shapes of ``node`` re-made on inputs typed with their known shapes."""
    inputs = []
    for v in node.inputs:
        if isinstance(v, Constant) or not isinstance(v.type, TensorType):
            inputs.append(v)
        else:
            inputs.append(TensorType(v.type.dtype, known[v])())
    try:
        outs = node.op.make_node(*inputs).outputs
    except Exception:  # an estimate only: any op that refuses keeps its unknown shape
        return [None] * len(node.outputs)
    if len(outs) != len(node.outputs):
        return [None] * len(node.outputs)
    return [_full(_static(o)) for o in outs]


def _shape_or_ones(v, known):
    # Unknown dims count as 1: the estimate is then a lower bound on the work.
    if v in known:
        return known[v]
    return tuple(1 if d is None else d for d in (_static(v) or ()))


def _value_nbytes(v, shape) -> int:
    dtype = getattr(v.type, "dtype", None)
    return 0 if dtype is None else math.prod(shape) * np.dtype(dtype).itemsize


def build_dag(fgraph, cost_model=None, *, shapes=None, kind="cpu") -> nx.DiGraph:
    """The scheduling graph of ``fgraph``.

    Node ``i`` is the ``i``-th Apply of ``fgraph.toposort()``, with attributes

    - ``node``: the Apply; ``op``: ``str`` of its op;
    - ``costs``: ``{device kind: seconds}`` from ``cost_model`` (default: a calibrated
      ``CostModel``), and ``cost``: ``costs[kind]``;
    - ``out_nbytes``: bytes of each output, ``nbytes``: their sum.

    An edge ``u -> v`` says ``v`` reads outputs of ``u``: ``values`` (their indices in
    ``u``'s outputs) and ``nbytes`` (their bytes). Sizes come from static shapes, from
    ``shapes`` (``{variable: shape}``, e.g. for the inputs) propagated through the graph,
    and otherwise count unknown dims as 1.

    Values an op overwrites (``destroy_map``) need no extra edges: the destroy handler
    admits a graph only when every other reader is an ancestor of the overwriting node.

    >>> import flowc.tensor as T
    >>> from flowc.graph.fg import FunctionGraph
    >>> from flowc.sched.cost import CostModel, Rates
    >>> x = T.tensor("float64", shape=(None, 3), name="x")
    >>> fg = FunctionGraph([x], [T.exp(x).sum()])
    >>> cm = CostModel(rates={"cpu": Rates(gflops=1.0, gbps=1.0, overhead=0.0)})
    >>> G = build_dag(fg, cm, shapes={fg.inputs[0]: (4, 3)})
    >>> [(G.nodes[i]["op"], G.nodes[i]["nbytes"]) for i in G]
    [('exp', 96), ('Sum{(0, 1)}', 8)]
    >>> G.edges[0, 1]["nbytes"], G.nodes[0]["cost"] == 192e-9
    (96, True)
    """
    if not hasattr(fgraph, "toposort") or not hasattr(fgraph, "variables"):
        raise TypeError(f"build_dag: fgraph must be a FunctionGraph, got {type(fgraph).__name__}")
    if cost_model is None:
        cost_model = CostModel()
    elif not isinstance(cost_model, CostModel):
        raise TypeError(f"build_dag: cost_model must be a CostModel, got {cost_model!r}")
    if kind not in cost_model.kinds:
        raise ValueError(f"build_dag: kind {kind!r} is not one of the model's {cost_model.kinds}")
    known = static_shapes(fgraph, shapes)
    order = fgraph.toposort()
    index = {node: i for i, node in enumerate(order)}
    G = nx.DiGraph()
    for i, node in enumerate(order):
        node_shapes = {v: _shape_or_ones(v, known) for v in (*node.inputs, *node.outputs)}
        costs = cost_model.costs(node, node_shapes, key=i)
        out_nbytes = tuple(_value_nbytes(v, node_shapes[v]) for v in node.outputs)
        G.add_node(
            i,
            node=node,
            op=str(node.op),
            cost=costs[kind],
            costs=costs,
            out_nbytes=out_nbytes,
            nbytes=sum(out_nbytes),
        )
    for v_id, node in enumerate(order):
        reads: dict[int, set[int]] = {}
        for var in node.inputs:
            if var.owner is not None and var.owner in index:
                reads.setdefault(index[var.owner], set()).add(var.index)
        for u_id, outs in reads.items():
            values = tuple(sorted(outs))
            nbytes = sum(G.nodes[u_id]["out_nbytes"][k] for k in values)
            G.add_edge(u_id, v_id, values=values, nbytes=nbytes)
    return G


def literal_dag(costs: dict, edges=(), *, nbytes: int = 0) -> nx.DiGraph:
    """A scheduling graph written out: for tests, examples and benchmarks.

    ``costs`` maps each node to its seconds, or to ``{device kind: seconds}`` (``cost`` is
    then the smallest). ``edges`` holds ``(u, v)`` or ``(u, v, nbytes)``; each node has one
    output, of the largest ``nbytes`` of its out-edges (``nbytes`` if it has none).

    >>> G = literal_dag({"a": 1.0, "b": {"cpu": 3.0, "cuda": 0.5}}, [("a", "b", 8)])
    >>> G.nodes["b"]["cost"], G.nodes["a"]["nbytes"], G.edges["a", "b"]["values"]
    (0.5, 8, (0,))
    """
    if not isinstance(costs, dict):
        raise TypeError(f"literal_dag: costs must be a dict of node -> seconds, got {costs!r}")
    G = nx.DiGraph()
    for n, c in costs.items():
        per_kind = dict(c) if isinstance(c, dict) else None
        if per_kind == {}:
            raise ValueError(f"literal_dag: node {n!r} has an empty cost dict")
        for value in per_kind.values() if per_kind else (c,):
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"literal_dag: cost of node {n!r} must be >= 0, got {c!r}")
        attrs = {"cost": float(min(per_kind.values())) if per_kind else float(c), "op": str(n)}
        if per_kind:
            attrs["costs"] = {k: float(v) for k, v in per_kind.items()}
        G.add_node(n, **attrs)
    for e in edges:
        if len(e) not in (2, 3):
            raise ValueError(f"literal_dag: an edge is (u, v) or (u, v, nbytes), got {e!r}")
        u, v, b = (*e, nbytes) if len(e) == 2 else e
        for end in (u, v):
            if end not in costs:
                raise ValueError(f"literal_dag: edge {e!r} names {end!r}, which has no cost")
        if not isinstance(b, int | float) or b < 0:
            raise ValueError(f"literal_dag: nbytes of edge {e!r} must be >= 0")
        G.add_edge(u, v, values=(0,), nbytes=b)
    if not nx.is_directed_acyclic_graph(G):
        raise ValueError(f"literal_dag: the edges form a cycle: {nx.find_cycle(G)}")
    for n in G:
        out = max((G.edges[n, s]["nbytes"] for s in G.successors(n)), default=nbytes)
        G.nodes[n]["out_nbytes"] = (out,)
        G.nodes[n]["nbytes"] = out
    return G
