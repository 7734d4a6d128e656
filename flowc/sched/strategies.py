"""Placement strategies: list schedulers giving each node of ``G`` a ``(device, stream)`` slot
and estimated ``start`` and ``finish`` times, chosen by name from ``STRATEGIES``.

Every ``strategy_*`` is a pure function ``(G, slots, *, comm_cost=None, seed=0) -> G``.
It reads the node attributes ``cost`` (seconds) and, where present, ``costs`` (``{device
kind: seconds}``; the kind of device ``"cuda:1"`` is ``"cuda"``) and ``pin``, and the edge
attribute ``nbytes``; it returns a copy of ``G`` whose nodes also have ``slot``, ``device``,
``stream``, ``start`` and ``finish``. ``comm_cost(nbytes, src_device, dst_device)`` gives the
seconds to move a value (default ``transfer_time``: 0 on one device). Every slot runs one node
at a time, and two slots run concurrently. The strategies are deterministic: ties go to the
earlier node in lexicographic topological order and to the earlier slot in ``slots``; ``seed``
is accepted so that every strategy has the same signature, and no strategy draws from it.
"""

from __future__ import annotations

import bisect
import heapq
import math

import networkx as nx

from flowc.sched.cost import transfer_time

__all__ = [
    "STRATEGIES",
    "device_kind",
    "downward_rank",
    "exec_time",
    "lower_bound",
    "makespan",
    "schedule",
    "schedule_order",
    "strategy_critical_path",
    "strategy_heft",
    "strategy_serial",
    "strategy_user",
    "upward_rank",
]

_RTOL = 1e-12  # float noise below this (relative) never decides a tie or a fit


def _key(x: float) -> float:
    # Ranks rounded to 12 significant digits: summation order must not decide ties.
    return float(f"{x:.12g}")


def device_kind(device) -> str | None:
    """The kind of a device name: ``"cuda:1" -> "cuda"``, ``"cpu" -> "cpu"``; None if not a str."""
    return device.split(":", 1)[0] if isinstance(device, str) else None


def exec_time(G: nx.DiGraph, n, device) -> float:
    """Seconds node ``n`` runs on ``device``: ``costs[kind]`` if given, else ``cost``."""
    data = G.nodes[n]
    costs = data.get("costs")
    if costs:
        kind = device_kind(device)
        if kind in costs:
            return costs[kind]
    return data["cost"]


# ------------------------------------------------------------------ checks and helpers
def _check_graph(G) -> None:
    if not isinstance(G, nx.DiGraph):
        raise TypeError(f"G must be an nx.DiGraph, got {type(G).__name__}")
    if not nx.is_directed_acyclic_graph(G):
        raise ValueError(f"G must be acyclic; it has the cycle {nx.find_cycle(G)}")
    for n, data in G.nodes(data=True):
        if "cost" not in data:
            raise ValueError(f"node {n!r} of G has no 'cost' attribute (seconds)")


def _check_slots(slots) -> list[tuple]:
    if not isinstance(slots, list | tuple) or not slots:
        raise ValueError(f"slots must be a non-empty list of (device, stream) pairs, got {slots!r}")
    for s in slots:
        if not isinstance(s, tuple) or len(s) != 2:
            raise TypeError(f"each slot must be a (device, stream) tuple, got {s!r}")
    if len(set(slots)) != len(slots):
        raise ValueError(f"slots must be distinct, got {slots!r}")
    return list(slots)


def _positions(G) -> dict:
    """Each node's place in the lexicographic topological order (insertion order for node ids
    that do not compare, such as ints mixed with the tuples naming copy nodes)."""
    try:
        order = list(nx.lexicographical_topological_sort(G))
    except TypeError:
        order = list(nx.topological_sort(G))
    return {n: i for i, n in enumerate(order)}


def _mean_costs(G, slots, comm):
    """HEFT's averages: ``w̄(n)`` over the slots, ``c̄(u, v)`` over ordered pairs of distinct
    devices (0 when there is one device)."""
    w = {n: sum(exec_time(G, n, s[0]) for s in slots) / len(slots) for n in G}
    devices = list(dict.fromkeys(s[0] for s in slots))
    pairs = [(a, b) for a in devices for b in devices if a != b]
    c = {}
    for u, v, data in G.edges(data=True):
        nbytes = data.get("nbytes", 0)
        c[u, v] = sum(comm(nbytes, a, b) for a, b in pairs) / len(pairs) if pairs else 0.0
    return w, c


def upward_rank(G: nx.DiGraph, slots, *, comm_cost=None) -> dict:
    """``rank_u(n) = w̄(n) + max over successors s of (c̄(n, s) + rank_u(s))``: the length of
    the longest path from ``n`` to an exit, in mean costs (Topcuoglu et al. 2002, eq. 3)."""
    _check_graph(G)
    w, c = _mean_costs(G, _check_slots(slots), comm_cost or transfer_time)
    rank = {}
    for n in reversed(list(nx.topological_sort(G))):
        rank[n] = w[n] + max((c[n, s] + rank[s] for s in G.successors(n)), default=0.0)
    return rank


def downward_rank(G: nx.DiGraph, slots, *, comm_cost=None) -> dict:
    """``rank_d(n) = max over predecessors p of (rank_d(p) + w̄(p) + c̄(p, n))``: the longest
    path from an entry to ``n``, ``n`` excluded (Topcuoglu et al. 2002, eq. 4)."""
    _check_graph(G)
    w, c = _mean_costs(G, _check_slots(slots), comm_cost or transfer_time)
    rank = {}
    for n in nx.topological_sort(G):
        rank[n] = max((rank[p] + w[p] + c[p, n] for p in G.predecessors(n)), default=0.0)
    return rank


def _earliest_start(busy: list, ready: float, w: float) -> float:
    """The earliest ``t >= ready`` with ``[t, t + w]`` free between the sorted ``busy``
    intervals: the insertion-based policy, which may fill an idle gap left earlier."""
    t = ready
    for s, f in busy:
        if t + w <= s + _RTOL * (abs(s) + w):
            return t
        t = max(t, f)
    return t


def _place(G, H, n, candidates, busy, comm) -> None:
    """Put ``n`` on the candidate slot where it finishes first (earliest finish time)."""
    best = None
    for slot in candidates:
        device = slot[0]
        ready = 0.0
        for p in G.predecessors(n):
            placed = H.nodes[p]
            arrival = placed["finish"] + comm(
                G.edges[p, n].get("nbytes", 0), placed["device"], device
            )
            ready = max(ready, arrival)
        w = exec_time(G, n, device)
        start = _earliest_start(busy[slot], ready, w)
        if best is None or start + w < best[0] - _RTOL * abs(best[0]):
            best = (start + w, start, slot)
    finish, start, slot = best
    bisect.insort(busy[slot], (start, finish))
    H.nodes[n].update(slot=slot, device=slot[0], stream=slot[1], start=start, finish=finish)


def _list_schedule(G, slots, order, candidates, comm, name) -> nx.DiGraph:
    H = G.copy()
    busy = {s: [] for s in slots}
    for n in order:
        _place(G, H, n, candidates(n), busy, comm)
    H.graph["strategy"] = name
    return H


# ------------------------------------------------------------------ strategies
def strategy_serial(G: nx.DiGraph, slots, *, comm_cost=None, seed=0) -> nx.DiGraph:
    """Every node on ``slots[0]``, one after another in lexicographic topological order.

    >>> from flowc.sched.dag import literal_dag
    >>> G = literal_dag({0: 1.0, 1: 2.0, 2: 3.0}, [(0, 2), (1, 2)])
    >>> H = strategy_serial(G, [("cpu", 0), ("cpu", 1)])
    >>> [(H.nodes[n]["start"], H.nodes[n]["finish"]) for n in (0, 1, 2)]
    [(0.0, 1.0), (1.0, 3.0), (3.0, 6.0)]
    """
    _check_graph(G)
    slot = _check_slots(slots)[0]
    H = G.copy()
    t = 0.0
    pos = _positions(G)
    for n in sorted(G, key=pos.__getitem__):
        finish = t + exec_time(G, n, slot[0])
        H.nodes[n].update(slot=slot, device=slot[0], stream=slot[1], start=t, finish=finish)
        t = finish
    H.graph["strategy"] = "serial"
    return H


def strategy_heft(G: nx.DiGraph, slots, *, comm_cost=None, seed=0) -> nx.DiGraph:
    """HEFT list scheduling: Topcuoglu, Hariri and Wu, "Performance-effective and
    low-complexity task scheduling for heterogeneous computing", IEEE TPDS 13(3), 2002.

    Nodes are taken by decreasing upward rank (mean costs), and each goes to the slot where
    it finishes earliest, filling idle gaps (insertion-based policy). Communication costs
    nothing between streams of one device and ``comm_cost`` between devices.

    >>> from flowc.sched.dag import literal_dag
    >>> G = literal_dag({"a": 1.0, "b": 2.0, "c": 2.0, "d": 1.0},
    ...                 [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
    >>> H = strategy_heft(G, [("cpu", 0), ("cpu", 1)])
    >>> makespan(H), H.nodes["b"]["slot"], H.nodes["c"]["slot"]
    (4.0, ('cpu', 0), ('cpu', 1))
    """
    return _heft(G, slots, comm_cost, pinned=False)


def _heft(G, slots, comm_cost, pinned: bool) -> nx.DiGraph:
    """HEFT's ranking and placement; ``pinned``: nodes with a ``pin`` stay where it says."""
    _check_graph(G)
    slots = _check_slots(slots)
    comm = comm_cost or transfer_time
    allowed = {n: _pinned(G, n, slots) if pinned and "pin" in G.nodes[n] else slots for n in G}
    rank = upward_rank(G, slots, comm_cost=comm)
    pos = _positions(G)
    # Decreasing rank is a topological order whenever costs are positive; the position
    # tie-break keeps it one when zero-cost nodes tie with their successors.
    order = sorted(G, key=lambda n: (-_key(rank[n]), pos[n]))
    return _list_schedule(G, slots, order, allowed.__getitem__, comm, "user" if pinned else "heft")


def _pinned(G, n, slots) -> list:
    pin = G.nodes[n]["pin"]
    if pin in slots:
        return [pin]
    on_device = [s for s in slots if s[0] == pin]
    if not on_device:
        raise ValueError(
            f"node {n!r} is pinned to {pin!r}, which is neither a slot nor a device of {slots}"
        )
    return on_device


def strategy_user(G: nx.DiGraph, slots, *, comm_cost=None, seed=0) -> nx.DiGraph:
    """HEFT (see ``strategy_heft``) where a node with a ``pin`` attribute stays on that slot,
    or on the best stream of that device when ``pin`` names a device.

    >>> from flowc.sched.dag import literal_dag
    >>> G = literal_dag({"a": 1.0, "b": 1.0}, [("a", "b", 0)])
    >>> G.nodes["b"]["pin"] = "cpu:1"
    >>> H = strategy_user(G, [("cpu:0", 0), ("cpu:1", 0)])
    >>> H.nodes["a"]["device"], H.nodes["b"]["device"]
    ('cpu:0', 'cpu:1')
    """
    return _heft(G, slots, comm_cost, pinned=True)


def strategy_critical_path(G: nx.DiGraph, slots, *, comm_cost=None, seed=0) -> nx.DiGraph:
    """CPOP, critical-path-on-a-processor list scheduling (Topcuoglu et al. 2002, sec. 4.2).

    Priority is ``rank_u + rank_d``, the longest path through a node. The nodes of one
    critical path all go to the slot that runs them fastest, so the path pays no
    communication; the rest, taken ready-first by priority, go where they finish earliest.

    >>> from flowc.sched.dag import literal_dag
    >>> G = literal_dag({"a": 1.0, "b": 3.0, "c": 1.0, "d": 1.0},
    ...                 [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
    >>> H = strategy_critical_path(G, [("cpu", 0), ("cpu", 1)])
    >>> makespan(H), [H.nodes[n]["stream"] for n in "abcd"]
    (5.0, [0, 0, 1, 0])
    """
    _check_graph(G)
    slots = _check_slots(slots)
    comm = comm_cost or transfer_time
    up = upward_rank(G, slots, comm_cost=comm)
    down = downward_rank(G, slots, comm_cost=comm)
    prio = {n: _key(up[n] + down[n]) for n in G}
    pos = _positions(G)
    H = G.copy()
    H.graph["strategy"] = "critical_path"
    if not G:
        return H
    by_prio = lambda n: (-prio[n], pos[n])  # noqa: E731
    n = min((n for n in G if G.in_degree(n) == 0), key=by_prio)
    path = [n]
    while G.out_degree(n):
        n = min(G.successors(n), key=by_prio)
        path.append(n)
    on_path = set(path)
    cp_slot = min(slots, key=lambda s: sum(exec_time(G, m, s[0]) for m in path))
    busy = {s: [] for s in slots}
    missing = {n: G.in_degree(n) for n in G}
    ready = [(-prio[n], pos[n], n) for n in G if missing[n] == 0]
    heapq.heapify(ready)
    while ready:
        *_, n = heapq.heappop(ready)
        _place(G, H, n, [cp_slot] if n in on_path else slots, busy, comm)
        for s in G.successors(n):
            missing[s] -= 1
            if missing[s] == 0:
                heapq.heappush(ready, (-prio[s], pos[s], s))
    return H


STRATEGIES = {
    "serial": strategy_serial,
    "heft": strategy_heft,
    "user": strategy_user,
    "critical_path": strategy_critical_path,
}


def schedule(G: nx.DiGraph, slots, strategy: str = "heft", **kwargs) -> nx.DiGraph:
    """Place ``G`` on ``slots`` with the strategy named ``strategy`` (a key of STRATEGIES)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; known: {sorted(STRATEGIES)}")
    return STRATEGIES[strategy](G, slots, **kwargs)


# ------------------------------------------------------------------ measures
def makespan(G: nx.DiGraph) -> float:
    """The estimated finish time of a placed graph (0 for an empty one)."""
    try:
        return max((d["finish"] for _, d in G.nodes(data=True)), default=0.0)
    except KeyError:
        raise ValueError("makespan needs a placed graph: a node has no 'finish'") from None


def lower_bound(G: nx.DiGraph, n_slots: int) -> float:
    """``max(critical path, total work / n_slots)``, each node at its fastest cost and
    communication free: no schedule on ``n_slots`` slots finishes sooner.

    >>> from flowc.sched.dag import literal_dag
    >>> lower_bound(literal_dag({0: 1.0, 1: 1.0, 2: 1.0}, [(0, 1)]), 2)
    2.0
    """
    _check_graph(G)
    if not isinstance(n_slots, int) or n_slots < 1:
        raise ValueError(f"n_slots must be a positive int, got {n_slots!r}")
    fastest = {
        n: min(d["costs"].values()) if d.get("costs") else d["cost"] for n, d in G.nodes(data=True)
    }
    longest = {}
    for n in nx.topological_sort(G):
        longest[n] = fastest[n] + max((longest[p] for p in G.predecessors(n)), default=0.0)
    critical = max(longest.values(), default=0.0)
    return max(critical, math.fsum(fastest.values()) / n_slots)


def schedule_order(G: nx.DiGraph) -> dict:
    """``{slot: [nodes]}``: each slot's program order, by start time (then finish time, then
    lexicographic topological order, which keeps zero-length nodes after their inputs)."""
    pos = _positions(G)
    try:
        nodes = sorted(G, key=lambda n: (G.nodes[n]["start"], G.nodes[n]["finish"], pos[n]))
        order: dict = {}
        for n in nodes:
            order.setdefault(G.nodes[n]["slot"], []).append(n)
    except KeyError as exc:
        raise ValueError(f"schedule_order needs a placed graph: a node has no {exc}") from None
    return order
