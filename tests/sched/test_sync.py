"""Sync insertion: copies across devices, and only the events that nothing else implies."""

import networkx as nx
import numpy as np
import pytest

import flowc.tensor as T
from flowc.graph.fg import FunctionGraph
from flowc.sched.cost import CostModel, Rates
from flowc.sched.dag import build_dag, literal_dag
from flowc.sched.strategies import STRATEGIES, makespan, schedule_order
from flowc.sched.sync import happens_before_edges, insert_sync

TOL = 1e-9


def constant_comm(seconds):
    return lambda nbytes, src, dst: 0.0 if src == dst else seconds


def random_dag(seed, n=14, p=0.25):
    rng = np.random.default_rng(seed)
    costs = {i: float(rng.uniform(0.5, 5.0)) for i in range(n)}
    edges = [
        (i, j, float(rng.integers(1, 5)))
        for i in range(n)
        for j in range(i + 1, n)
        if rng.random() < p
    ]
    return literal_dag(costs, edges)


def placed(costs, edges, where):
    """A literal graph with each node's (slot, start, finish) given by hand."""
    G = literal_dag(costs, edges)
    for n, (slot, start) in where.items():
        G.nodes[n].update(slot=slot, start=start, finish=start + G.nodes[n]["cost"])
    return G


def closure(H, edges):
    C = nx.DiGraph()
    C.add_nodes_from(H)
    C.add_edges_from(edges)
    assert nx.is_directed_acyclic_graph(C), "program order and events deadlock"
    return nx.transitive_closure_dag(C)


def check_sync(H, events):
    """Brute force: stream order plus events enforce every data edge, and dropping any one
    event leaves some data edge unenforced."""
    order = schedule_order(H)
    program = [(a, b) for nodes in order.values() for a, b in zip(nodes, nodes[1:])]
    inserted = [(u, v) for u, v, d in H.edges(data=True) if "event" in d]
    assert len(inserted) == events
    assert sorted(H.edges[e]["event"] for e in inserted) == list(range(events))
    for u, v in inserted:
        assert H.nodes[u]["slot"] != H.nodes[v]["slot"]
    hb = closure(H, program + inserted)
    for u, v in H.edges:
        assert hb.has_edge(u, v), f"nothing makes {v!r} wait for {u!r}"
    for e in inserted:
        without = closure(H, program + [x for x in inserted if x != e])
        assert any(not without.has_edge(u, v) for u, v in H.edges), f"event {e} is redundant"


def check_times(H, comm):
    """The re-estimated times: each node after its inputs, one node at a time per slot."""
    for u, v in H.edges:
        assert H.nodes[v]["start"] >= H.nodes[u]["finish"] - TOL, (u, v)
    for nodes in schedule_order(H).values():
        for a, b in zip(nodes, nodes[1:]):
            assert H.nodes[b]["start"] >= H.nodes[a]["finish"] - TOL
    for c, d in H.nodes(data=True):
        if d.get("op") == "copy":
            u, _ = d["copy_of"]
            src = H.nodes[u]["device"]
            assert d["finish"] - d["start"] == pytest.approx(comm(d["nbytes"], src, d["device"]))


def check_copies(G, H, copies):
    """One copy per value per destination device, and no other edge across devices."""
    device = {n: G.nodes[n]["slot"][0] for n in G}
    wanted = {
        (u, k, device[v])
        for u, v, d in G.edges(data=True)
        if device[u] != device[v]
        for k in d["values"]
    }
    made = {c: (*d["copy_of"], d["device"]) for c, d in H.nodes(data=True) if d["op"] == "copy"}
    assert sorted(made.values(), key=repr) == sorted(wanted, key=repr)
    assert copies == len(wanted)
    for u, v in H.edges:
        if H.nodes[u]["device"] != H.nodes[v]["device"]:
            assert H.nodes[v]["op"] == "copy" and H.nodes[v]["copy_of"][0] == u
    for c, (u, k, d) in made.items():
        assert H.nodes[c]["slot"] == (d, "copy")
        assert all(H.nodes[v]["device"] == d for v in H.successors(c))
    for u, v, data in G.edges(data=True):
        for k in data["values"]:
            src = u if device[u] == device[v] else ("copy", u, k, device[v])
            assert H.has_edge(src, v)


DEVICES = [("cpu:0", 0), ("cpu:0", 1), ("cpu:1", 0), ("cpu:1", 1)]
STREAMS = [("cpu:0", s) for s in range(3)]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("slots", [STREAMS, DEVICES], ids=["streams", "devices"])
@pytest.mark.parametrize("seed", range(3))
def test_sync_is_sufficient_and_minimal(name, slots, seed):
    comm = constant_comm(0.3)
    G = STRATEGIES[name](random_dag(seed), slots, comm_cost=comm)
    H, events, copies = insert_sync(G, comm_cost=comm)
    check_sync(H, events)
    check_copies(G, H, copies)
    check_times(H, comm)
    assert (H.graph["events"], H.graph["copies"]) == (events, copies)
    if slots is STREAMS:
        assert copies == 0
    if name == "serial":
        assert events == 0
    for n in G:  # G is left as it was
        assert "event" not in str(G.nodes[n]) and G.nodes[n]["slot"] in slots


def test_sync_is_deterministic():
    G = STRATEGIES["heft"](random_dag(9, n=20), DEVICES, comm_cost=constant_comm(0.3))
    first = insert_sync(G, comm_cost=constant_comm(0.3))[0]
    again = insert_sync(G, comm_cost=constant_comm(0.3))[0]
    assert list(first.edges(data=True)) == list(again.edges(data=True))
    assert list(first.nodes(data="start")) == list(again.nodes(data="start"))


def test_an_event_implied_by_stream_order_is_dropped():
    # a and b run on stream 0; c on stream 1 reads both. Waiting for b covers a.
    s0, s1 = ("cpu", 0), ("cpu", 1)
    G = placed(
        {"a": 1.0, "b": 1.0, "c": 1.0},
        [("a", "b"), ("a", "c"), ("b", "c")],
        {"a": (s0, 0.0), "b": (s0, 1.0), "c": (s1, 2.0)},
    )
    H, events, copies = insert_sync(G)
    assert (events, copies) == (1, 0)
    assert H.edges["b", "c"]["event"] == 0 and "event" not in H.edges["a", "c"]
    check_sync(H, events)


def test_an_event_implied_by_another_event_is_dropped():
    # a -> b and a -> c, with b before c on stream 1: the wait for a before b covers c.
    s0, s1 = ("cpu", 0), ("cpu", 1)
    G = placed(
        {"a": 1.0, "b": 1.0, "c": 1.0},
        [("a", "b"), ("a", "c")],
        {"a": (s0, 0.0), "b": (s1, 1.0), "c": (s1, 2.0)},
    )
    H, events, _ = insert_sync(G)
    assert events == 1 and "event" in H.edges["a", "b"] and "event" not in H.edges["a", "c"]
    check_sync(H, events)


def test_one_stream_needs_no_events():
    s0 = ("cpu", 0)
    G = placed({"a": 1.0, "b": 1.0}, [("a", "b")], {"a": (s0, 0.0), "b": (s0, 1.0)})
    H, events, copies = insert_sync(G)
    assert (events, copies) == (0, 0)
    assert H.nodes["b"]["start"] == 1.0


def test_one_copy_per_destination_device():
    comm = constant_comm(0.5)
    costs = {"u": 1.0, "v1": 1.0, "v2": 1.0, "v3": 1.0, "v4": 1.0}
    edges = [("u", v, 8) for v in ("v1", "v2", "v3", "v4")]
    G = placed(
        costs,
        edges,
        {
            "u": (("cpu:0", 0), 0.0),
            "v1": (("cpu:1", 0), 2.0),
            "v2": (("cpu:1", 1), 2.0),
            "v3": (("cpu:2", 0), 2.0),
            "v4": (("cpu:0", 1), 1.0),
        },
    )
    H, events, copies = insert_sync(G, comm_cost=comm)
    assert copies == 2
    assert set(H.successors(("copy", "u", 0, "cpu:1"))) == {"v1", "v2"}
    assert set(H.successors(("copy", "u", 0, "cpu:2"))) == {"v3"}
    # u -> each copy, each copy -> its readers, u -> v4 on the other stream.
    assert events == 6
    c1 = H.nodes[("copy", "u", 0, "cpu:1")]
    assert (c1["start"], c1["finish"], c1["nbytes"]) == (1.0, 1.5, 8)
    assert H.nodes["v1"]["start"] == 1.5  # re-estimated: as soon as the copy lands
    check_sync(H, events)
    check_copies(G, H, copies)
    check_times(H, comm)


def test_copies_queue_on_the_copy_stream():
    # Two values reach cpu:1 at once: the second copy waits for the first, and the wait for
    # the second copy then covers the first (copy-stream order).
    comm = constant_comm(0.5)
    G = placed(
        {"u1": 1.0, "u2": 1.0, "v": 1.0},
        [("u1", "v", 8), ("u2", "v", 8)],
        {"u1": (("cpu:0", 0), 0.0), "u2": (("cpu:0", 1), 0.0), "v": (("cpu:1", 0), 1.5)},
    )
    H, events, copies = insert_sync(G, comm_cost=comm)
    c1, c2 = ("copy", "u1", 0, "cpu:1"), ("copy", "u2", 0, "cpu:1")
    assert copies == 2
    assert schedule_order(H)[("cpu:1", "copy")] == [c1, c2]
    assert (H.nodes[c2]["start"], H.nodes[c2]["finish"]) == (1.5, 2.0)
    assert H.nodes["v"]["start"] == 2.0 and makespan(H) == 3.0
    assert events == 3 and "event" not in H.edges[c1, "v"]
    check_sync(H, events)


def test_multi_output_values_are_copied_separately():
    comm = constant_comm(0.1)
    G = placed(
        {"u": 1.0, "v": 1.0, "w": 1.0},
        [("u", "v", 24), ("u", "w", 16)],
        {"u": (("cpu:0", 0), 0.0), "v": (("cpu:1", 0), 2.0), "w": (("cpu:1", 1), 2.0)},
    )
    G.nodes["u"]["out_nbytes"] = (8, 16)
    G.edges["u", "v"]["values"] = (0, 1)
    G.edges["u", "w"]["values"] = (1,)
    H, events, copies = insert_sync(G, comm_cost=comm)
    assert copies == 2
    assert H.nodes[("copy", "u", 0, "cpu:1")]["nbytes"] == 8
    assert set(H.successors(("copy", "u", 1, "cpu:1"))) == {"v", "w"}
    check_sync(H, events)
    check_copies(G, H, copies)


def test_sync_of_a_compiled_graph():
    x = T.tensor("float64", shape=(64, 64), name="x")
    h = T.tanh(T.dot(x, x))
    fg = FunctionGraph([x], [T.exp(h) + T.dot(h, x), h.sum()])
    model = CostModel(rates={"cpu": Rates(gflops=1.0, gbps=1.0, overhead=1e-6)})
    G = build_dag(fg, model)
    placed_g = STRATEGIES["heft"](G, DEVICES)
    H, events, copies = insert_sync(placed_g)
    check_sync(H, events)
    check_copies(placed_g, H, copies)
    assert nx.is_directed_acyclic_graph(happens_before_edges(H))
    assert len(H) == len(G) + copies


def test_errors():
    with pytest.raises(ValueError, match="has no 'slot'"):
        insert_sync(literal_dag({"a": 1.0}))
    with pytest.raises(TypeError, match="nx.DiGraph"):
        insert_sync({"a": 1.0})
    s0, s1 = ("cpu", 0), ("cpu", 1)
    bad = placed({"a": 1.0, "b": 1.0}, [("a", "b")], {"a": (s0, 0.0), "b": (s1, 0.5)})
    with pytest.raises(ValueError, match="starts before its input 'a'"):
        insert_sync(bad)
    G = placed(
        {"a": 1.0, "b": 1.0, "c": 1.0},
        [("a", "b")],
        {"a": (("cpu:0", 0), 0.0), "b": (("cpu:1", 0), 2.0), "c": (("cpu:1", "copy"), 0.0)},
    )
    with pytest.raises(ValueError, match="already a compute stream"):
        insert_sync(G)
    assert insert_sync(G, copy_stream="dma")[2] == 1
