"""The static memory planner against a brute-force checker on random programs and orders."""

import doctest

import networkx as nx
import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc.graph.basic import Constant, evaluate
from flowc.graph.fg import FunctionGraph
from flowc.graph.type import TensorType
from flowc.sched import memory
from flowc.sched.memory import (
    fgraph_buffers,
    infer_shapes,
    liveness,
    naive_peak,
    nbytes,
    plan_memory,
)

# ------------------------------------------------------------------ random programs


def random_program(rng, n_steps, n_inputs=3, equal_sizes=False):
    """Steps ``s{k}`` writing one or two values, each reading up to three earlier values."""
    inputs = [f"i{k}" for k in range(n_inputs)]
    sizes = {v: 64 if equal_sizes else int(rng.integers(1, 200)) for v in inputs}
    available = list(inputs)
    reads, writes, deps = {}, {}, {}
    producer = {}
    for k in range(n_steps):
        step = f"s{k}"
        n_read = int(rng.integers(1, 4))
        got = list(dict.fromkeys(rng.choice(available, size=n_read).tolist()))
        outs = [f"v{k}"] + ([f"w{k}"] if rng.random() < 0.2 else [])
        for o in outs:
            sizes[o] = 64 if equal_sizes or rng.random() < 0.3 else int(rng.integers(1, 200))
            producer[o] = step
        reads[step], writes[step] = got, outs
        deps[step] = {producer[v] for v in got if v in producer}
        available += outs
    written = [o for k in range(n_steps) for o in writes[f"s{k}"]]
    outputs = [v for v in written if rng.random() < 0.15]
    return reads, writes, sizes, set(inputs) | set(outputs), deps


def random_topological_order(rng, deps):
    """Kahn's algorithm choosing uniformly among the ready steps."""
    waiting = {s: set(d) for s, d in deps.items()}
    order = []
    while waiting:
        ready = sorted(s for s, d in waiting.items() if not d)
        s = ready[int(rng.integers(len(ready)))]
        order.append(s)
        del waiting[s]
        for d in waiting.values():
            d.discard(s)
    return order


# ------------------------------------------------------------------ the brute-force checker


def check_plan(plan, order, reads, writes, sizes, keep, before=None, allowed=None, device=None):
    """Independent checks: no two values that may be alive together overlap in an arena."""
    dev = (lambda v: 0) if device is None else device.get
    pos = {s: k for k, s in enumerate(order)}
    before = before or (lambda a, b: pos[a] < pos[b])
    users, writer = {}, {}
    for s in order:
        for v in [*reads.get(s, ()), *writes.get(s, ())]:
            users.setdefault(v, set()).add(s)
        for v in writes.get(s, ()):
            writer[v] = s
    values = set(writer) | set(keep)
    assert set(plan.offsets) == values
    # In-place hand-overs are legal ones.
    for o, x in plan.inplace.items():
        s = writer[o]
        assert x in reads[s] and o not in keep and x not in keep
        assert sizes[o] == sizes[x] and dev(o) == dev(x)
        assert allowed is not None and allowed(s, x)
        assert all(before(u, s) for u in users[x] if u != s)
        assert plan.offsets[o] == plan.offsets[x]
    aliases = nx.Graph()
    aliases.add_nodes_from(values)
    aliases.add_edges_from(plan.inplace.items())
    same_buffer = {}
    for c in map(frozenset, nx.connected_components(aliases)):
        same_buffer.update(dict.fromkeys(c, c))

    def separated(a, b):  # every use of a's buffer happens before b's buffer is first written
        ua = set().union(*(users.get(v, set()) for v in same_buffer[a]))
        wb = [writer[v] for v in same_buffer[b] if v in writer]
        first = min(wb, key=pos.get) if wb else None
        return first is not None and all(u != first and before(u, first) for u in ua)

    vals = list(values)
    for k, a in enumerate(vals):
        assert plan.offsets[a] >= 0
        assert plan.offsets[a] + sizes[a] <= plan.arena_size.get(dev(a), 0) or sizes[a] == 0
        for b in vals[k + 1 :]:
            if dev(a) != dev(b) or not sizes[a] or not sizes[b]:
                continue
            if same_buffer[a] is same_buffer[b]:
                continue
            lo_a, lo_b = plan.offsets[a], plan.offsets[b]
            if lo_a < lo_b + sizes[b] and lo_b < lo_a + sizes[a]:  # they share bytes
                assert a not in keep and b not in keep, (a, b)
                assert separated(a, b) or separated(b, a), (a, b)
    # The lower bound: most bytes of distinct buffers live at one step of the order.
    span = {}
    for v in values:
        ts = [pos[u] for u in users.get(v, ())]
        span[v] = (0, len(order) - 1) if v in keep else (pos[writer[v]], max(ts))
    best = 0
    for t in range(len(order)):
        live = {same_buffer[v] for v in values if span[v][0] <= t <= span[v][1]}
        best = max(best, sum(sizes[next(iter(buf))] for buf in live))
    assert plan.lower_bound == best
    assert plan.peak_bytes >= plan.lower_bound
    assert plan.peak_bytes == sum(plan.arena_size.values())


@pytest.mark.parametrize("seed", range(40))
def test_random_dags_serial(seed):
    rng = np.random.default_rng(seed)
    reads, writes, sizes, keep, deps = random_program(rng, int(rng.integers(1, 30)))
    order = random_topological_order(rng, deps)
    plan = plan_memory(order, reads, writes, sizes, keep)
    check_plan(plan, order, reads, writes, sizes, keep)
    assert plan.inplace == {}
    assert plan.peak_bytes <= sum(sizes.values())


@pytest.mark.parametrize("seed", range(40))
def test_random_dags_inplace(seed):
    rng = np.random.default_rng(100 + seed)
    reads, writes, sizes, keep, deps = random_program(rng, 25, equal_sizes=seed % 2 == 0)
    order = random_topological_order(rng, deps)
    pairs = {(s, v) for s in order for v in reads[s] if rng.random() < 0.7}
    plan = plan_memory(order, reads, writes, sizes, keep, may_inplace=pairs)
    check_plan(plan, order, reads, writes, sizes, keep, allowed=lambda s, v: (s, v) in pairs)
    # Every legal hand-over (computed here from first principles) was taken, unless the
    # step already gave the buffer to another output.
    last = {}
    for k, s in enumerate(order):
        for v in reads[s]:
            last[v] = k
    for k, s in enumerate(order):
        free = [
            x for x in dict.fromkeys(reads[s]) if last[x] == k and x not in keep and (s, x) in pairs
        ]
        for o in writes[s]:
            match = [x for x in free if sizes[x] == sizes[o]]
            if o not in keep and match:
                assert o in plan.inplace
                free.remove(plan.inplace[o])


def test_inplace_happens_somewhere_on_random_programs():
    taken = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        reads, writes, sizes, keep, deps = random_program(rng, 25, equal_sizes=True)
        order = random_topological_order(rng, deps)
        plan = plan_memory(order, reads, writes, sizes, keep, may_inplace=lambda s, v: True)
        taken += len(plan.inplace)
    assert taken > 20


@pytest.mark.parametrize("seed", range(30))
def test_random_dags_two_streams(seed):
    rng = np.random.default_rng(200 + seed)
    reads, writes, sizes, keep, deps = random_program(rng, 24)
    stream = {s: int(rng.integers(2)) for s in deps}
    G = nx.DiGraph()
    G.add_nodes_from(deps)
    for s, d in deps.items():
        G.add_edges_from((p, s) for p in d)  # data dependencies become event waits
    for k in range(2):  # each stream runs its steps in program order
        mine = [s for s in deps if stream[s] == k]
        G.add_edges_from(zip(mine, mine[1:]))
    reach = {s: nx.descendants(G, s) for s in G}

    def before(a, b):
        return b in reach[a]

    order = list(nx.lexicographical_topological_sort(G, key=lambda s: int(s[1:])))
    pairs = {(s, v) for s in order for v in reads[s]}
    plan = plan_memory(order, reads, writes, sizes, keep, happens_before=before, may_inplace=pairs)
    check_plan(plan, order, reads, writes, sizes, keep, before=before, allowed=lambda s, v: True)


def test_concurrent_streams_never_share():
    # Stream 0: a writes p, a2 reads p. Stream 1: b writes q, b2 reads q.
    order = ["a", "a2", "b", "b2"]
    reads = {"a2": ["p"], "b2": ["q"]}
    writes = {"a": ["p"], "a2": ["r"], "b": ["q"], "b2": ["s"]}
    sizes = {"p": 100, "q": 100, "r": 8, "s": 8}
    keep = {"r", "s"}
    serial = plan_memory(order, reads, writes, sizes, keep)
    assert serial.offsets["p"] == serial.offsets["q"]  # one stream: q reuses p
    streams = {"a": 0, "a2": 0, "b": 1, "b2": 1}

    def concurrent(x, y):
        return streams[x] == streams[y] and order.index(x) < order.index(y)

    plan = plan_memory(order, reads, writes, sizes, keep, happens_before=concurrent)
    lo, hi = sorted([plan.offsets["p"], plan.offsets["q"]])
    assert hi >= lo + 100
    assert plan.peak_bytes == 216
    # An event a2 -> b orders the streams: now q may reuse p.
    path = {("a", "a2"), ("a", "b"), ("a", "b2"), ("a2", "b"), ("a2", "b2"), ("b", "b2")}
    plan = plan_memory(
        order, reads, writes, sizes, keep, happens_before=lambda x, y: (x, y) in path
    )
    assert plan.offsets["p"] == plan.offsets["q"]
    assert plan.peak_bytes == 116


def test_chains_pack_close_to_the_lower_bound():
    ratios = []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(2, 40))
        order = [f"s{k}" for k in range(n)]
        writes = {f"s{k}": [f"v{k}"] for k in range(n)}
        reads = {f"s{k}": [f"v{k - 1}"] for k in range(1, n)}
        sizes = {f"v{k}": int(rng.integers(10, 100)) for k in range(n)}
        plan = plan_memory(order, reads, writes, sizes)
        check_plan(plan, order, reads, writes, sizes, set())
        lb = max(sizes[f"v{k}"] + sizes[f"v{k + 1}"] for k in range(n - 1))
        assert plan.lower_bound == lb
        ratios.append(plan.ratio)
    assert max(ratios) <= 1.25
    assert np.mean(ratios) <= 1.05
    # Equal sizes: two buffers in turn, exactly the lower bound.
    n = 10
    order = [f"s{k}" for k in range(n)]
    plan = plan_memory(
        order,
        {f"s{k}": [k - 1] for k in range(1, n)},
        {f"s{k}": [k] for k in range(n)},
        dict.fromkeys(range(n), 32),
    )
    assert plan.ratio == 1.0 and plan.peak_bytes == 64
    assert len(set(plan.offsets.values())) == 2


def test_inplace_chain_and_its_limits():
    order = ["s1", "s2", "s3", "s4"]
    reads = {"s1": ["x"], "s2": ["a"], "s3": ["b"], "s4": ["c"]}
    writes = {"s1": ["a"], "s2": ["b"], "s3": ["c"], "s4": ["out"]}
    sizes = dict.fromkeys(["x", "a", "b", "c", "out"], 40)
    keep = {"x", "out"}
    plan = plan_memory(order, reads, writes, sizes, keep, may_inplace=lambda s, v: True)
    # a never takes over x (an input), out never takes over c (an output).
    assert plan.inplace == {"b": "a", "c": "b"}
    assert plan.offsets["a"] == plan.offsets["b"] == plan.offsets["c"]
    assert len({plan.offsets[v] for v in ("x", "a", "out")}) == 3
    assert plan.peak_bytes == 120
    # Not allowed: no in-place. Allowed only for one step: only that one.
    assert plan_memory(order, reads, writes, sizes, keep).inplace == {}
    only = plan_memory(order, reads, writes, sizes, keep, may_inplace={("s3", "b")})
    assert only.inplace == {"c": "b"}
    # Not the last reader: s5 reads a after s2, so s2 cannot overwrite it.
    reads2 = {**reads, "s5": ["a"]}
    writes2 = {**writes, "s5": ["y"]}
    sizes2 = {**sizes, "y": 8}
    plan = plan_memory(
        [*order, "s5"], reads2, writes2, sizes2, keep | {"y"}, may_inplace=lambda s, v: True
    )
    assert "b" not in plan.inplace and plan.inplace.get("c") == "b"
    # Sizes differ: no in-place.
    plan = plan_memory(
        order, reads, writes, {**sizes, "b": 48}, keep, may_inplace=lambda s, v: True
    )
    assert "b" not in plan.inplace and "c" not in plan.inplace


def test_devices_get_separate_arenas():
    order = ["s0", "s1"]
    writes = {"s0": ["a"], "s1": ["b"]}
    reads = {"s1": ["a"]}
    sizes = {"a": 10, "b": 30}
    plan = plan_memory(order, reads, writes, sizes, device={"a": 0, "b": 1})
    assert plan.arena_size == {0: 10, 1: 30}
    assert plan.offsets == {"a": 0, "b": 0}
    assert plan.peak_bytes == 40 and plan.lower_bound == 40
    check_plan(plan, order, reads, writes, sizes, set(), device={"a": 0, "b": 1})


def test_alignment_rounds_offsets():
    order = ["s0", "s1", "s2"]
    writes = {"s0": ["a"], "s1": ["b"], "s2": ["c"]}
    reads = {"s1": ["a"], "s2": ["a", "b"]}
    plan = plan_memory(order, reads, writes, {"a": 10, "b": 3, "c": 5}, alignment=16)
    assert all(off % 16 == 0 for off in plan.offsets.values())
    assert plan.peak_bytes == 48


def test_liveness_intervals_and_errors():
    span = liveness(
        ["f", "g", "h"],
        {"g": ["a"], "h": ["a", "x"]},
        {"f": ["a"], "g": ["b"], "h": ["c"]},
        {"a": 1, "b": 1, "c": 1, "x": 1},
        keep={"x"},
    )
    assert span == {"a": (0, 2), "b": (1, 1), "c": (2, 2), "x": (0, 2)}
    with pytest.raises(ValueError, match="before any step writes it"):
        liveness(["f"], {"f": ["a"]}, {}, {"a": 1})
    with pytest.raises(ValueError, match="written twice"):
        liveness(["f", "g"], {}, {"f": ["a"], "g": ["a"]}, {"a": 1})
    with pytest.raises(ValueError, match="no entry in sizes"):
        liveness(["f"], {}, {"f": ["a"]}, {})
    with pytest.raises(ValueError, match="alignment"):
        plan_memory(["f"], {}, {"f": ["a"]}, {"a": 1}, alignment=0)


def test_doctests():
    assert doctest.testmod(memory).failed == 0


# ------------------------------------------------------------------ FunctionGraph adapter


def _mlp_step():
    x, W, V = T.matrix("x"), T.matrix("W"), T.matrix("V")
    h = T.tanh(x @ W)
    loss = (h @ V).sum()
    return [x, W, V], [loss, *flowc.grad(loss, [W, V])]


def test_infer_shapes_matches_the_computed_values():
    inputs, outputs = _mlp_step()
    fg = FunctionGraph(inputs, outputs)
    rng = np.random.default_rng(0)
    vals = [rng.normal(size=s) for s in [(5, 3), (3, 7), (7, 2)]]
    shapes = infer_shapes(fg, {v: a.shape for v, a in zip(fg.inputs, vals)})
    env = dict(zip(fg.inputs, vals))
    variables = [v for v in fg.variables if not isinstance(v, Constant)]
    got = evaluate(variables, env)
    for v, value in zip(variables, got):
        assert shapes[v] == np.shape(value), v
    with pytest.raises(ValueError, match="no shape given for the input"):
        infer_shapes(fg, {fg.inputs[0]: (5, 3)})


def test_fgraph_buffers_views_share_their_base():
    x = T.matrix("x")
    y = T.exp(x)
    z = y.T  # a view of y: y must live until z's reader
    w = T.log(x)
    out = z * 2.0 + w.T
    fg = FunctionGraph([x], [out])
    order = fg.toposort()
    shapes = infer_shapes(fg, {fg.inputs[0]: (4, 6)})
    args = fgraph_buffers(fg, order, shapes)
    views = [n.outputs[0] for n in order if n.op.view_map]
    assert views and all(v not in args["sizes"] for v in views)
    exp_out = next(n.outputs[0] for n in order if "exp" in str(n.op))
    reader = next(
        n for n in order if any(i.owner and i.owner.inputs[0] is exp_out for i in n.inputs)
    )
    span = liveness(args["order"], args["reads"], args["writes"], args["sizes"], args["keep"])
    assert span[exp_out][1] >= order.index(reader)
    assert args["sizes"][exp_out] == 4 * 6 * 8
    assert fg.inputs[0] in args["keep"] and fg.outputs[0] in args["keep"]
    plan = plan_memory(**args)
    check_plan(plan, args["order"], args["reads"], args["writes"], args["sizes"], args["keep"])
    assert plan.peak_bytes < naive_peak(fg, shapes)


def test_fgraph_buffers_inplace_outputs_share_their_input():
    x = T.matrix("x")
    out = T.exp(x @ x.T) + x.sum()  # exp(...) + s is computed in the Dot's buffer
    f = flowc.function([x], out, mode="fast_run")
    fg = f.fgraph
    destroyers = [n for n in fg.toposort() if n.op.destroy_map]
    assert destroyers
    order = fg.toposort()
    shapes = infer_shapes(fg, {fg.inputs[0]: (3, 5)})
    args = fgraph_buffers(fg, order, shapes)
    for n in destroyers:
        assert n.outputs[0] not in args["writes"][n]
        assert n.outputs[0] not in args["sizes"]
        assert n.inputs[0] in args["reads"][n] and n.inputs[0] in args["sizes"]
    plan = plan_memory(**args)
    check_plan(plan, args["order"], args["reads"], args["writes"], args["sizes"], args["keep"])


def test_fgraph_buffers_errors():
    inputs, outputs = _mlp_step()
    fg = FunctionGraph(inputs, outputs)
    order = fg.toposort()
    shapes = infer_shapes(fg, {v: s for v, s in zip(fg.inputs, [(5, 3), (3, 7), (7, 2)])})
    with pytest.raises(ValueError, match="not topological"):
        fgraph_buffers(fg, order[::-1], shapes)
    with pytest.raises(ValueError, match="every Apply node"):
        fgraph_buffers(fg, order[1:], shapes)
    with pytest.raises(ValueError, match="no concrete shape"):
        fgraph_buffers(fg, order, {})
    assert nbytes(T.constant(np.zeros((2, 3), dtype="float32")), {}) == 24
    assert nbytes(TensorType("int16", (4, 5))(), {}) == 40
