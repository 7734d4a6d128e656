"""Sync insertion: copy nodes for values that cross devices, and an event for each
cross-stream edge that stream order and the other events do not already imply."""

from __future__ import annotations

import networkx as nx

from flowc.sched.cost import transfer_time
from flowc.sched.strategies import _positions, schedule_order

__all__ = ["happens_before_edges", "insert_sync"]


def _check_placed(G) -> None:
    if not isinstance(G, nx.DiGraph):
        raise TypeError(f"G must be an nx.DiGraph, got {type(G).__name__}")
    for n, data in G.nodes(data=True):
        for attr in ("slot", "start", "finish"):
            if attr not in data:
                raise ValueError(
                    f"insert_sync needs a placed graph (run a strategy first): node {n!r} "
                    f"has no {attr!r}"
                )
    for u, v in G.edges:
        if G.nodes[v]["start"] < G.nodes[u]["finish"]:
            raise ValueError(f"node {v!r} starts before its input {u!r} finishes")


def _value_nbytes(G, u, k) -> int:
    out = G.nodes[u].get("out_nbytes")
    if out is not None and k < len(out):
        return out[k]
    return max(G.edges[u, v].get("nbytes", 0) for v in G.successors(u))


def _add_copies(G, H, copy_stream, comm, pos, key) -> int:
    """Replace each cross-device edge ``u -> v`` by ``u -> copy -> v``: one copy node per value
    of ``u`` per destination device, on that device's ``copy_stream``. ``key`` gets each
    copy's place in the order that ``_retime`` follows."""
    device = {n: G.nodes[n]["slot"][0] for n in G}
    compute_streams = {G.nodes[n]["slot"] for n in G}
    wanted: dict = {}  # (u, k, dst device) -> consumers
    for u, v, data in G.edges(data=True):
        if device[u] != device[v]:
            for k in data.get("values", (0,)):
                wanted.setdefault((u, k, device[v]), []).append(v)
            H.remove_edge(u, v)
    device_rank = {}
    for n in sorted(G, key=pos.__getitem__):
        device_rank.setdefault(device[n], len(device_rank))
    # A copy of u's output sorts right after u finishes: before every reader, which start no
    # sooner, and in the same order on its copy stream, so no stream waits on a later one.
    for u, k, d in wanted:
        finish = G.nodes[u]["finish"]
        key[u, k, d] = (finish, finish, pos[u], k, device_rank[d])
    free: dict = {}
    for u, k, d in sorted(wanted, key=key.__getitem__):
        slot = (d, copy_stream)
        if slot in compute_streams:
            raise ValueError(
                f"copy_stream {copy_stream!r} is already a compute stream of device {d!r}"
            )
        copy = ("copy", u, k, d)
        if copy in G:
            raise ValueError(f"G already has a node named {copy!r}")
        nbytes = _value_nbytes(G, u, k)
        start = max(G.nodes[u]["finish"], free.get(d, 0.0))
        finish = start + comm(nbytes, device[u], d)
        free[d] = finish
        H.add_node(
            copy,
            node=None,
            op="copy",
            copy_of=(u, k),
            cost=finish - start,
            nbytes=nbytes,
            out_nbytes=(nbytes,),
            slot=slot,
            device=d,
            stream=copy_stream,
            start=start,
            finish=finish,
        )
        H.add_edge(u, copy, values=(k,), nbytes=nbytes)
        for v in wanted[u, k, d]:
            H.add_edge(copy, v, values=(0,), nbytes=nbytes)
        key[copy] = key.pop((u, k, d))
    return len(wanted)


def _retime(H, key) -> None:
    """Recompute start and finish times, keeping every stream's order: copies queue on their
    stream, so consumers may now start later than the strategy estimated."""
    finish, free = {}, {}
    for n in sorted(H, key=key.__getitem__):
        data = H.nodes[n]
        start = max([free.get(data["slot"], 0.0)] + [finish[p] for p in H.predecessors(n)])
        finish[n] = start + (data["finish"] - data["start"])
        free[data["slot"]] = finish[n]
        data["start"], data["finish"] = start, finish[n]


def happens_before_edges(G: nx.DiGraph) -> nx.DiGraph:
    """Data edges plus program order (each node to the next on its slot): reachability in this
    graph is what must happen before what."""
    C = nx.DiGraph()
    C.add_nodes_from(G)
    C.add_edges_from(G.edges)
    for nodes in schedule_order(G).values():
        C.add_edges_from(zip(nodes, nodes[1:]))
    return C


def insert_sync(G: nx.DiGraph, *, comm_cost=None, copy_stream="copy") -> tuple:
    """Make a placed graph's cross-stream dependencies explicit; returns ``(G, events, copies)``.

    Reads node attributes ``slot``, ``start``, ``finish`` (from a strategy), ``out_nbytes``
    and edge attributes ``values``, ``nbytes``. Returns a new graph where

    - each value that ``u`` produces and another device reads goes through one copy node
      per destination device, ``("copy", u, k, device)`` with ``op="copy"``, ``node=None``,
      ``copy_of=(u, k)``, on the slot ``(device, copy_stream)``; it takes
      ``comm_cost(nbytes, src, dst)`` seconds (default ``transfer_time``);
    - an edge ``u -> v`` between different slots gets ``event`` (an int id: record after
      ``u`` on its stream, wait before ``v`` on its) only if it survives the transitive
      reduction of data edges plus per-stream program order, so no event is implied by
      stream order and other events. Edges into copy nodes cross devices, and their events
      are counted too;
    - ``start`` and ``finish`` are re-estimated with copies queued on their streams.

    ``events`` and ``copies`` are the numbers of events and copy nodes.

    >>> from flowc.sched.dag import literal_dag
    >>> from flowc.sched.strategies import schedule_order
    >>> G = literal_dag({"a": 1.0, "b": 1.0, "c": 1.0}, [("a", "b"), ("a", "c"), ("b", "c")])
    >>> for n, stream, start in zip("abc", (0, 0, 1), (0.0, 1.0, 2.0)):
    ...     G.nodes[n].update(slot=("cpu", stream), start=start, finish=start + 1.0)
    >>> H, events, copies = insert_sync(G)
    >>> events, copies, H.edges["b", "c"]["event"], "event" in H.edges["a", "c"]
    (1, 0, 0, False)
    """
    _check_placed(G)
    comm = comm_cost or transfer_time
    H = G.copy()
    for _, data in H.nodes(data=True):
        data["device"], data["stream"] = data["slot"]
    for _, _, data in H.edges(data=True):
        data.pop("event", None)
    pos = _positions(G)
    # (start, finish, position) puts every node after its inputs, which finish no later
    # than it starts, and each stream in the strategy's order.
    key = {n: (d["start"], d["finish"], pos[n]) for n, d in G.nodes(data=True)}
    copies = _add_copies(G, H, copy_stream, comm, pos, key)
    _retime(H, key)
    needed = nx.transitive_reduction(happens_before_edges(H))
    slot = {n: H.nodes[n]["slot"] for n in H}
    pos = _positions(H)
    when = {n: (d["start"], d["finish"], pos[n]) for n, d in H.nodes(data=True)}
    events = 0
    for v in sorted(H, key=when.__getitem__):  # event ids in schedule order
        for u in sorted(H.predecessors(v), key=when.__getitem__):
            if slot[u] != slot[v] and needed.has_edge(u, v):
                H.edges[u, v]["event"] = events
                events += 1
    H.graph["events"], H.graph["copies"] = events, copies
    return H, events, copies
