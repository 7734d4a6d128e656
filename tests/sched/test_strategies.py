"""Scheduling graph, cost model and placement strategies, on small literal DAGs."""

import json
import math
import os

import networkx as nx
import numpy as np
import pytest

import flowc.tensor as T
from flowc.graph.fg import FunctionGraph
from flowc.sched import cost as cost_mod
from flowc.sched.cost import CostModel, Rates, node_bytes, node_flops, transfer_time
from flowc.sched.dag import build_dag, literal_dag, static_shapes
from flowc.sched.strategies import (
    STRATEGIES,
    downward_rank,
    exec_time,
    lower_bound,
    makespan,
    schedule,
    schedule_order,
    strategy_critical_path,
    strategy_heft,
    strategy_serial,
    strategy_user,
    upward_rank,
)

TOL = 1e-9
UNIT = Rates(gflops=1.0, gbps=1.0, overhead=0.0)  # 1 FLOP or byte = 1 ns


def constant_comm(seconds):
    return lambda nbytes, src, dst: 0.0 if src == dst else seconds


def random_dag(seed, n=14, p=0.25, kinds=None):
    """A random DAG (edges go from lower to higher ids) with random costs and sizes."""
    rng = np.random.default_rng(seed)
    costs = {}
    for i in range(n):
        c = float(rng.uniform(0.5, 5.0))
        if kinds:
            costs[i] = {k: c * float(rng.uniform(0.3, 3.0)) for k in kinds}
        else:
            costs[i] = c
    edges = [
        (i, j, float(rng.integers(0, 4)))
        for i in range(n)
        for j in range(i + 1, n)
        if rng.random() < p
    ]
    return literal_dag(costs, edges)


def check_valid(G, H, slots, comm):
    """H is G placed on slots: each node after its inputs' finish plus transfer, at most one
    node at a time per slot, durations from the costs, and G itself untouched."""
    assert set(H) == set(G) and set(H.edges) == set(G.edges)
    for n in G:
        assert "slot" not in G.nodes[n]
    for n, d in H.nodes(data=True):
        assert d["slot"] in slots
        assert (d["device"], d["stream"]) == d["slot"]
        assert d["start"] >= 0
        assert math.isclose(d["finish"] - d["start"], exec_time(G, n, d["device"]), abs_tol=TOL)
    for u, v, e in H.edges(data=True):
        du, dv = H.nodes[u], H.nodes[v]
        arrival = du["finish"] + comm(e["nbytes"], du["device"], dv["device"])
        assert dv["start"] >= arrival - TOL * max(1.0, arrival), (u, v)
    for slot, nodes in schedule_order(H).items():
        for a, b in zip(nodes, nodes[1:]):
            assert H.nodes[b]["start"] >= H.nodes[a]["finish"] - TOL, (slot, a, b)


def placement(H):
    return {n: (d["slot"], d["start"], d["finish"]) for n, d in H.nodes(data=True)}


STREAMS2 = [("cpu:0", 0), ("cpu:0", 1)]
STREAMS4 = [("cpu:0", s) for s in range(4)]
DEVICES = [("cpu:0", 0), ("cpu:0", 1), ("cpu:1", 0), ("cpu:1", 1)]
HETERO = [("cpu:0", 0), ("cuda:0", 0), ("cuda:0", 1)]
SLOT_SETS = {"streams2": STREAMS2, "streams4": STREAMS4, "devices": DEVICES, "hetero": HETERO}


# ------------------------------------------------------------------ validity
@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("slots_name", sorted(SLOT_SETS))
@pytest.mark.parametrize("seed", range(4))
def test_every_strategy_gives_a_valid_schedule(name, slots_name, seed):
    slots = SLOT_SETS[slots_name]
    G = random_dag(seed, kinds=("cpu", "cuda") if slots_name == "hetero" else None)
    comm = constant_comm(0.7)
    if name == "user":
        G.nodes[0]["pin"] = slots[-1]
        G.nodes[3]["pin"] = slots[0][0]
    H = STRATEGIES[name](G, slots, comm_cost=comm, seed=seed)
    check_valid(G, H, slots, comm)
    assert H.graph["strategy"] == name
    assert makespan(H) >= lower_bound(G, len(slots)) - TOL
    if name == "serial":
        assert {d["slot"] for _, d in H.nodes(data=True)} == {slots[0]}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategies_are_deterministic_and_ignore_insertion_order(name):
    G = random_dag(7, n=20, kinds=("cpu", "cuda"))
    first = placement(STRATEGIES[name](G, HETERO))
    assert placement(STRATEGIES[name](G, HETERO)) == first
    # Another process may build the same graph in another order; the plan must not change.
    R = nx.DiGraph()
    R.add_nodes_from(reversed(list(G.nodes(data=True))))
    R.add_edges_from(reversed(list(G.edges(data=True))))
    assert placement(STRATEGIES[name](R, HETERO)) == first


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_zero_cost_nodes_keep_topological_order(name):
    G = literal_dag({i: 0.0 for i in range(6)}, [(0, 1), (1, 2), (0, 3), (3, 4), (4, 5)])
    H = STRATEGIES[name](G, STREAMS2)
    check_valid(G, H, STREAMS2, transfer_time)
    order = [n for nodes in schedule_order(H).values() for n in nodes]
    for nodes in schedule_order(H).values():
        assert all(not nx.has_path(G, b, a) for a, b in zip(nodes, nodes[1:]))
    assert sorted(order) == list(range(6))
    assert makespan(H) == 0.0


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_empty_graph(name):
    H = STRATEGIES[name](nx.DiGraph(), STREAMS2)
    assert len(H) == 0 and makespan(H) == 0.0 and schedule_order(H) == {}


# ------------------------------------------------------------------ known answers
def test_heft_beats_serial_on_a_wide_graph():
    # A fork of eight unit nodes: two streams halve the middle.
    mids = [f"m{i}" for i in range(8)]
    costs = {"src": 1.0, "sink": 1.0, **dict.fromkeys(mids, 1.0)}
    G = literal_dag(costs, [("src", m) for m in mids] + [(m, "sink") for m in mids])
    serial = strategy_serial(G, STREAMS2)
    heft = strategy_heft(G, STREAMS2)
    check_valid(G, heft, STREAMS2, transfer_time)
    assert makespan(serial) == 10.0
    assert makespan(heft) == 6.0  # optimal: src, then 4 + 4 in parallel, then sink
    assert lower_bound(G, 2) == 5.0
    assert sorted(len(v) for v in schedule_order(heft).values()) == [4, 6]


# Topcuoglu, Hariri and Wu (2002), Fig. 2: ten tasks on three processors. The costs of the
# table and the edge weights are times (communication is free on one processor).
PAPER_W = {
    1: (14, 16, 9),
    2: (13, 19, 18),
    3: (11, 13, 19),
    4: (13, 8, 17),
    5: (12, 13, 10),
    6: (13, 16, 9),
    7: (7, 15, 11),
    8: (5, 11, 14),
    9: (18, 12, 20),
    10: (21, 7, 16),
}
PAPER_E = [
    (1, 2, 18), (1, 3, 12), (1, 4, 9), (1, 5, 11), (1, 6, 14), (2, 8, 19), (2, 9, 16),
    (3, 7, 23), (4, 8, 27), (4, 9, 23), (5, 9, 13), (6, 8, 15), (7, 10, 17), (8, 10, 11),
    (9, 10, 13),
]  # fmt: skip
PAPER_SLOTS = [("P1", 0), ("P2", 0), ("P3", 0)]


def paper_comm(nbytes, src, dst):
    return 0.0 if src == dst else float(nbytes)


def paper_graph():
    costs = {n: dict(zip(("P1", "P2", "P3"), w, strict=True)) for n, w in PAPER_W.items()}
    return literal_dag(costs, PAPER_E)


def test_paper_example_upward_ranks():
    rank = upward_rank(paper_graph(), PAPER_SLOTS, comm_cost=paper_comm)
    expected = {1: 108.0, 2: 77.0, 3: 80.0, 4: 80.0, 5: 69.0, 6: 63.333, 7: 42.667,
                8: 35.667, 9: 44.333, 10: 14.667}  # fmt: skip
    assert {n: round(r, 3) for n, r in rank.items()} == expected
    down = downward_rank(paper_graph(), PAPER_SLOTS, comm_cost=paper_comm)
    assert down[1] == 0.0 and round(down[10] + rank[10], 6) == 108.0


def test_paper_example_heft_schedule():
    G = paper_graph()
    H = strategy_heft(G, PAPER_SLOTS, comm_cost=paper_comm)
    check_valid(G, H, PAPER_SLOTS, paper_comm)
    # The HEFT schedule of the paper's Fig. 4(a), makespan 80.
    expected = {
        1: ("P3", 0, 9), 3: ("P3", 9, 28), 4: ("P2", 18, 26), 2: ("P1", 27, 40),
        5: ("P3", 28, 38), 6: ("P2", 26, 42), 9: ("P2", 56, 68), 7: ("P3", 38, 49),
        8: ("P1", 57, 62), 10: ("P2", 73, 80),
    }  # fmt: skip
    got = {n: (d["device"], d["start"], d["finish"]) for n, d in H.nodes(data=True)}
    assert got == expected
    assert makespan(H) == 80.0


def test_paper_example_cpop_schedule():
    G = paper_graph()
    H = strategy_critical_path(G, PAPER_SLOTS, comm_cost=paper_comm)
    check_valid(G, H, PAPER_SLOTS, paper_comm)
    # The critical path n1 n2 n9 n10 runs on P2, the fastest processor for it (54 time
    # units); the paper's Fig. 4(b) has makespan 86.
    assert {H.nodes[n]["device"] for n in (1, 2, 9, 10)} == {"P2"}
    assert makespan(H) == 86.0


def test_insertion_policy_fills_an_idle_gap():
    # b must wait for a transfer on y:0, leaving a gap that c (ranked after b) fills.
    G = literal_dag(
        {"a": {"x": 1, "y": 100}, "b": {"x": 100, "y": 1}, "c": {"x": 100, "y": 0.5}},
        [("a", "b")],
    )
    slots = [("x:0", 0), ("y:0", 0)]
    H = strategy_heft(G, slots, comm_cost=constant_comm(5.0))
    check_valid(G, H, slots, constant_comm(5.0))
    assert (H.nodes["b"]["slot"], H.nodes["b"]["start"]) == (("y:0", 0), 6.0)
    assert (H.nodes["c"]["slot"], H.nodes["c"]["start"]) == (("y:0", 0), 0.0)
    assert schedule_order(H)[("y:0", 0)] == ["c", "b"]
    assert makespan(H) == 7.0


def test_heft_keeps_heavy_transfers_on_one_device():
    G = literal_dag({"a": 1.0, "b": 1.0, "c": 1.0}, [("a", "b", 1e12), ("a", "c", 1e12)])
    H = strategy_heft(G, [("cpu:0", 0), ("cpu:1", 0)])
    assert {d["device"] for _, d in H.nodes(data=True)} == {"cpu:0"}
    assert makespan(H) == 3.0
    # Between streams of one device the same values cost nothing.
    H = strategy_heft(G, STREAMS2)
    assert makespan(H) == 2.0


def test_user_strategy_keeps_pins():
    G = random_dag(3)
    comm = constant_comm(0.5)
    free = strategy_heft(G, DEVICES, comm_cost=comm)
    # Pin where HEFT would not go: a whole slot for node 0, a device for node 5.
    pin0 = next(s for s in DEVICES if s != free.nodes[0]["slot"])
    pin5 = next(d for d in ("cpu:0", "cpu:1") if d != free.nodes[5]["device"])
    G.nodes[0]["pin"], G.nodes[5]["pin"] = pin0, pin5
    H = strategy_user(G, DEVICES, comm_cost=comm)
    check_valid(G, H, DEVICES, comm)
    assert H.nodes[0]["slot"] == pin0
    assert H.nodes[5]["device"] == pin5


def test_user_without_pins_is_heft():
    G = random_dag(11)
    assert placement(strategy_user(G, DEVICES)) == placement(strategy_heft(G, DEVICES))


def test_user_strategy_rejects_a_bad_pin():
    G = literal_dag({"a": 1.0})
    G.nodes["a"]["pin"] = "cuda:3"
    with pytest.raises(ValueError, match="pinned to 'cuda:3'"):
        strategy_user(G, STREAMS2)


def test_critical_path_puts_the_path_on_one_slot():
    G = literal_dag(
        {"a": 1.0, "b": 4.0, "c": 1.0, "d": 1.0, "e": 1.0},
        [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("c", "e")],
    )
    H = strategy_critical_path(G, STREAMS2)
    check_valid(G, H, STREAMS2, transfer_time)
    assert len({H.nodes[n]["slot"] for n in "abd"}) == 1
    assert makespan(H) == 6.0 == lower_bound(G, 2)


def test_lower_bound():
    G = literal_dag({0: 3.0, 1: 1.0, 2: 1.0, 3: {"cpu": 5.0, "cuda": 2.0}}, [(0, 1)])
    assert lower_bound(G, 1) == 7.0  # total work at the fastest costs
    assert lower_bound(G, 4) == 4.0  # the path 0 -> 1
    assert lower_bound(nx.DiGraph(), 3) == 0.0


def test_schedule_order_lists_each_slot_by_start():
    G = random_dag(5)
    H = strategy_heft(G, STREAMS4)
    order = schedule_order(H)
    assert sorted(n for nodes in order.values() for n in nodes) == sorted(G)
    for slot, nodes in order.items():
        assert all(H.nodes[n]["slot"] == slot for n in nodes)
        starts = [H.nodes[n]["start"] for n in nodes]
        assert starts == sorted(starts)


def test_exec_time_uses_the_device_kind():
    G = literal_dag({"a": {"cpu": 2.0, "cuda": 0.5}, "b": 1.5})
    assert exec_time(G, "a", "cuda:1") == 0.5
    assert exec_time(G, "a", "cpu:0") == 2.0
    assert exec_time(G, "a", 7) == 0.5  # no kind: the fastest cost
    assert exec_time(G, "b", "cuda:0") == 1.5


# ------------------------------------------------------------------ errors
def test_schedule_by_name():
    G = random_dag(2)
    assert placement(schedule(G, STREAMS2, "heft")) == placement(strategy_heft(G, STREAMS2))
    with pytest.raises(ValueError, match="unknown strategy 'fastest'"):
        schedule(G, STREAMS2, "fastest")


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_bad_arguments(name):
    f = STRATEGIES[name]
    G = literal_dag({"a": 1.0, "b": 1.0}, [("a", "b")])
    with pytest.raises(ValueError, match="non-empty list"):
        f(G, [])
    with pytest.raises(TypeError, match="device, stream"):
        f(G, ["cpu:0"])
    with pytest.raises(ValueError, match="distinct"):
        f(G, [("cpu", 0), ("cpu", 0)])
    with pytest.raises(TypeError, match="nx.DiGraph"):
        f({"a": 1.0}, STREAMS2)
    cyclic = nx.DiGraph([("a", "b"), ("b", "a")])
    nx.set_node_attributes(cyclic, 1.0, "cost")
    with pytest.raises(ValueError, match="acyclic"):
        f(cyclic, STREAMS2)
    with pytest.raises(ValueError, match="no 'cost'"):
        f(nx.DiGraph([("a", "b")]), STREAMS2)


def test_measures_reject_bad_input():
    G = literal_dag({"a": 1.0})
    with pytest.raises(ValueError, match="placed graph"):
        makespan(G)
    with pytest.raises(ValueError, match="placed graph"):
        schedule_order(G)
    with pytest.raises(ValueError, match="n_slots"):
        lower_bound(G, 0)


def test_literal_dag_errors():
    with pytest.raises(ValueError, match="cycle"):
        literal_dag({"a": 1.0, "b": 1.0}, [("a", "b"), ("b", "a")])
    with pytest.raises(ValueError, match="'z', which has no cost"):
        literal_dag({"a": 1.0}, [("a", "z")])
    with pytest.raises(ValueError, match=">= 0"):
        literal_dag({"a": -1.0})
    with pytest.raises(ValueError, match="empty cost dict"):
        literal_dag({"a": {}})
    with pytest.raises(ValueError, match=r"\(u, v\)"):
        literal_dag({"a": 1.0}, [("a",)])
    with pytest.raises(TypeError, match="costs must be a dict"):
        literal_dag([1.0])


# ------------------------------------------------------------------ the scheduling graph
def unit_model(**times):
    return CostModel(rates={"cpu": UNIT, "cuda": Rates(1000.0, 10.0, 1e-6)}, times=times or None)


def test_build_dag_nodes_edges_and_bytes():
    x = T.tensor("float64", shape=(3, 4), name="x")
    y = T.tensor("float32", shape=(4, 5), name="y")
    z = T.dot(x, y)
    fg = FunctionGraph([x, y], [T.exp(z) + z])
    G = build_dag(fg, unit_model())
    order = fg.toposort()
    assert list(G) == list(range(len(order)))
    for i, node in enumerate(order):
        assert G.nodes[i]["node"] is node and G.nodes[i]["op"] == str(node.op)
    dot = next(i for i in G if G.nodes[i]["op"] == "Dot")
    assert G.nodes[dot]["nbytes"] == 3 * 5 * 8
    # At 1 GFLOP/s and 1 GB/s the product is memory-bound (x and z float64, y float32).
    flops, nbytes = 2 * 3 * 5 * 4, 8 * 12 + 4 * 20 + 8 * 15
    assert G.nodes[dot]["costs"]["cpu"] == pytest.approx(max(flops, nbytes) * 1e-9)
    assert G.nodes[dot]["cost"] == G.nodes[dot]["costs"]["cpu"]
    # z flows to exp and to the add; the add also reads exp's result.
    consumers = sorted(G.successors(dot))
    assert len(consumers) == 2
    for v in consumers:
        assert G.edges[dot, v] == {"values": (0,), "nbytes": 120}
    assert G.number_of_edges() == 3
    assert nx.is_directed_acyclic_graph(G)


def test_build_dag_propagates_given_shapes_and_multi_output_nodes():
    x = T.tensor("float32", shape=(None, None), name="x")
    parts = T.split(x, [2, 3], 2, axis=0)
    fg = FunctionGraph([x], [T.exp(parts[0]), T.exp(parts[1]).sum()])
    (xi,) = fg.inputs
    known = static_shapes(fg, {xi: (5, 4)})
    assert {known[v] for v in fg.outputs} == {(2, 4), ()}
    G = build_dag(fg, unit_model(), shapes={xi: (5, 4)})
    split = next(i for i in G if G.nodes[i]["op"].startswith("Split"))
    assert G.nodes[split]["out_nbytes"] == (2 * 4 * 4, 3 * 4 * 4)
    assert G.nodes[split]["nbytes"] == 80
    assert G.nodes[split]["costs"]["cpu"] == 0.0  # views move nothing
    assert sorted(G.edges[split, v]["values"] for v in G.successors(split)) == [(0,), (1,)]
    # Without the input's shape, the split sizes (constants) still count; other dims as 1.
    G1 = build_dag(fg, unit_model())
    assert G1.nodes[split]["out_nbytes"] == (2 * 4, 3 * 4)


def test_build_dag_uses_measured_times():
    x = T.tensor("float64", shape=(10,), name="x")
    fg = FunctionGraph([x], [T.exp(T.exp(x))])
    first, second = fg.toposort()
    profile = CostModel.from_profile(
        {0: 0.25, second: {"cuda": 1e-3}}, rates={"cpu": UNIT, "cuda": UNIT}
    )
    G = build_dag(fg, profile)
    assert G.nodes[0]["costs"] == {"cpu": 0.25, "cuda": 0.25}
    assert G.nodes[1]["costs"] == {"cpu": pytest.approx(160e-9), "cuda": 1e-3}
    H = build_dag(fg, CostModel(rates={"cpu": UNIT, "cuda": UNIT}), kind="cuda")
    assert H.nodes[1]["cost"] == pytest.approx(160e-9)


def test_build_dag_errors():
    with pytest.raises(TypeError, match="FunctionGraph"):
        build_dag(literal_dag({"a": 1.0}))
    x = T.dvector("x")
    fg = FunctionGraph([x], [T.exp(x)])
    with pytest.raises(TypeError, match="CostModel"):
        build_dag(fg, cost_model={"cpu": 1.0})
    with pytest.raises(ValueError, match="kind 'tpu'"):
        build_dag(fg, unit_model(), kind="tpu")
    with pytest.raises(TypeError, match="tuple of ints"):
        build_dag(fg, unit_model(), shapes={fg.inputs[0]: 5})


# ------------------------------------------------------------------ the cost model
def test_flops_and_bytes():
    a = T.tensor("float64", shape=(3, 4))
    b = T.tensor("float64", shape=(4, 5))
    dot = T.dot(a, b).owner
    shapes = {a: (3, 4), b: (4, 5), dot.outputs[0]: (3, 5)}
    assert node_flops(dot, shapes) == 2 * 3 * 5 * 4
    assert node_bytes(dot, shapes) == 8 * (12 + 20 + 15)
    sa, sb = T.tensor("float32", shape=(2, 3, 4)), T.tensor("float32", shape=(2, 4, 5))
    mm = T.matmul(sa, sb).owner
    shapes = {sa: (2, 3, 4), sb: (2, 4, 5), mm.outputs[0]: (2, 3, 5)}
    assert type(mm.op).__name__ == "MatMul"
    assert node_flops(mm, shapes) == 2 * 2 * 3 * 5 * 4
    sc = T.tensor("float32", shape=(4, 3, 5))
    td = T.tensordot(sa, sc, axes=[[1, 2], [1, 0]]).owner
    shapes = {sa: (2, 3, 4), sc: (4, 3, 5), td.outputs[0]: (2, 5)}
    assert node_flops(td, shapes) == 2 * (2 * 5) * (3 * 4)
    ex = T.exp(a).owner
    assert node_flops(ex, {a: (3, 4), ex.outputs[0]: (3, 4)}) == 0.0
    view = a.T.owner
    assert node_bytes(view, {a: (3, 4), view.outputs[0]: (4, 3)}) == 0.0


def test_gemm_flops():
    from flowc.tensor.blas import gemm

    A, B = T.tensor("float64", shape=(6, 7)), T.tensor("float64", shape=(7, 2))
    C = T.tensor("float64", shape=(6, 2))
    node = gemm(C, 1.0, A, B, 0.5).owner
    shapes = {v: v.type.shape for v in (*node.inputs, *node.outputs)}
    assert node_flops(node, shapes) == 2 * 6 * 2 * 7


def test_roofline_estimate():
    cm = CostModel(rates={"cpu": Rates(gflops=2.0, gbps=4.0, overhead=1e-6)})
    a, b = T.tensor("float64", shape=(100, 100)), T.tensor("float64", shape=(100, 100))
    dot = T.dot(a, b).owner
    shapes = {a: (100, 100), b: (100, 100), dot.outputs[0]: (100, 100)}
    compute, memory = 2e6 / 2e9, 3 * 80_000 / 4e9
    assert cm.estimate(dot, shapes, "cpu") == pytest.approx(1e-6 + max(compute, memory))
    ex = T.exp(a).owner
    assert cm.estimate(ex, {a: (100, 100), ex.outputs[0]: (100, 100)}, "cpu") == pytest.approx(
        1e-6 + 160_000 / 4e9
    )
    with pytest.raises(ValueError, match="device kind 'cuda'"):
        cm.estimate(ex, {}, "cuda")


def test_cost_model_errors():
    with pytest.raises(ValueError, match="finite number"):
        CostModel.from_profile({0: -1.0})
    with pytest.raises(ValueError, match="finite number"):
        CostModel.from_profile({0: {"cpu": float("nan")}})
    with pytest.raises(TypeError, match="kind -> Rates"):
        CostModel(rates={"cpu": 1.0})
    with pytest.raises(ValueError, match="Rates.gbps"):
        Rates(gflops=1.0, gbps=-1.0, overhead=0.0)


def test_transfer_time():
    assert transfer_time(1e9, "cpu:0", "cpu:0") == 0.0
    assert transfer_time(2e9, "cpu:0", "cuda:0") > transfer_time(1e9, "cpu:0", "cuda:0") > 0


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWC_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_calibration_is_cached(cache_dir, monkeypatch):
    rates = cost_mod.load_rates()
    assert rates["cpu"].gflops > 0 and rates["cpu"].gbps > 0 and rates["cpu"].overhead > 0
    assert rates["cuda"] == cost_mod.NOMINAL_RATES["cuda"]
    (path,) = [p for p in os.listdir(cache_dir) if p.startswith("costmodel-")]
    with open(cache_dir / path) as f:
        assert json.load(f)["cpu"]["gflops"] == rates["cpu"].gflops

    def no_calibration(*args, **kwargs):
        raise AssertionError("calibrated again instead of reading the cache")

    monkeypatch.setattr(cost_mod, "calibrate", no_calibration)
    assert cost_mod.load_rates() == rates
    assert CostModel().rates == rates


def test_a_corrupt_cache_is_recalibrated(cache_dir, monkeypatch):
    fake = Rates(gflops=3.0, gbps=2.0, overhead=1e-6)
    monkeypatch.setattr(cost_mod, "calibrate", lambda: fake)
    assert cost_mod.load_rates()["cpu"] == fake
    (path,) = list(cache_dir.iterdir())
    path.write_text('{"format": 1, "cpu": {"gfl')  # truncated by a crash
    other = Rates(gflops=5.0, gbps=2.0, overhead=1e-6)
    monkeypatch.setattr(cost_mod, "calibrate", lambda: other)
    assert cost_mod.load_rates()["cpu"] == other
    assert json.loads(path.read_text())["cpu"]["gflops"] == 5.0
    assert cost_mod.load_rates(refresh=True)["cpu"] == other
