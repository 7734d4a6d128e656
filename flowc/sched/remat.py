"""Rematerialization: fit a training step under a memory budget by recomputing activations.

The forward pass computes the loss; the backward pass reads forward values ("stashed"
activations). A dropped activation is recomputed from kept ones (checkpoints) by a clone
of the forward sub-graph that only backward nodes read, so the original dies early.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import networkx as nx

from flowc.graph.basic import Apply, Constant, clone_get_equiv, io_toposort
from flowc.graph.fg import FunctionGraph
from flowc.sched.cost import FLOP_HEAVY
from flowc.sched.memory import fgraph_buffers, infer_shapes, nbytes, plan_memory


class MemoryBudgetError(ValueError):
    """No plan found fits ``memory_budget``; ``smallest_peak`` is the best one found."""

    def __init__(self, message: str, smallest_peak: int):
        super().__init__(message)
        self.smallest_peak = smallest_peak


# ---------------------------------------------------------------- the forward pass


@dataclasses.dataclass(frozen=True)
class ForwardPass:
    """What rematerialization may change in a training step's graph.

    ``nodes``: the Apply nodes computing the loss, in topological order; ``values``: their
    outputs; ``stashed``: those the backward pass reads; ``kept``: forward values never
    recomputed (graph outputs; outputs of ops with side effects, of ops overwriting an
    input or reading an overwritten one, of shape queries, of constants alone);
    ``split_points``: values that alone carry the forward pass from one part to the next
    (Chen's candidate stage splitting points); ``sizes`` in bytes; ``heavy``: FLOP-heavy
    nodes (never recomputed by the min-cut policy); ``queries``: shape queries of forward
    values, which run with the forward pass.
    """

    nodes: tuple
    values: tuple
    stashed: tuple
    kept: frozenset
    split_points: tuple
    sizes: dict
    heavy: frozenset
    queries: tuple
    shapes: dict


def is_flop_heavy(node: Apply) -> bool:
    """Products and factorizations (Dot, MatMul, TensorDot, Gemm, inverse, solve, ...): the
    ops the cost model prices by their FLOPs."""
    return type(node.op).__name__ in FLOP_HEAVY


def _is_shape_query(node) -> bool:
    from flowc.tensor.basic import Shape, Shape_i

    return isinstance(node.op, (Shape, Shape_i))


def _never_recomputed(node) -> bool:
    # A random draw recomputed would draw again: ops declaring side effects are kept.
    # An op overwriting its input would overwrite a checkpoint that others still read.
    return bool(getattr(node.op, "side_effect", False) or getattr(node.op, "destroy_map", None))


def _default_loss(fgraph):
    for v in fgraph.outputs:
        if v.ndim == 0 and v.dtype.startswith(("float", "complex")):
            return v
    raise ValueError(
        "rematerialization needs the loss: no output of the graph is a float scalar; "
        "pass loss=<the loss variable of the graph>"
    )


def forward_pass(fgraph, shapes=None, loss=None, expensive: Callable | None = None) -> ForwardPass:
    """Split ``fgraph`` into the forward pass (what ``loss`` depends on) and the rest.

    ``loss`` defaults to the first float scalar output; ``shapes`` gives every variable's
    concrete shape (``infer_shapes``; None: sizes are unknown, 0);
    ``expensive(node) -> bool`` (default ``is_flop_heavy``) says which ops are never
    worth recomputing.
    """
    loss = _default_loss(fgraph) if loss is None else loss
    if loss not in fgraph.variables:
        raise ValueError(f"forward_pass: loss {loss} is not a variable of the graph")
    expensive = is_flop_heavy if expensive is None else expensive
    nodes = io_toposort(fgraph.inputs, [loss])
    forward = set(nodes)
    # Shape queries of forward values go with the forward pass: they are tiny, and the
    # backward reading them must not keep (or recompute) the array they measure.
    meta = [
        n
        for n in fgraph.toposort()
        if n not in forward
        and _is_shape_query(n)
        and all(i.owner is None or i.owner in forward for i in n.inputs)
    ]
    forward.update(meta)
    values = [o for n in nodes for o in n.outputs]
    outputs = set(fgraph.outputs)
    kept = {o for n in meta for o in n.outputs}
    kept |= {o for n in nodes if _never_recomputed(n) for o in n.outputs}
    # A value overwritten in place is gone once its destroyer ran: nothing recomputed in
    # the backward pass may read it, so its other readers are not recomputed either.
    destroyed = {
        n.inputs[i] for n in nodes for ins in (n.op.destroy_map or {}).values() for i in ins
    }
    kept |= {o for n in nodes if any(i in destroyed for i in n.inputs) for o in n.outputs}
    kept |= {v for v in values if v in outputs}
    # Values computed from constants alone (broadcast constants and the like) are kept:
    # the backward may read them at no risk, and recomputing them only adds nodes.
    constant = set()
    for n in nodes:
        if all(isinstance(i, Constant) or i in constant for i in n.inputs):
            constant.update(n.outputs)
    kept |= constant
    stashed = [
        v for v in values if any(c != "output" and c not in forward for c, _ in fgraph.clients[v])
    ]
    pos = {n: k for k, n in enumerate(nodes)}
    last = {v: pos[v.owner] for v in values}
    for n in nodes:
        for i in n.inputs:
            if i in last:
                last[i] = max(last[i], pos[n])
    split, open_ = [], set()
    for k, n in enumerate(nodes):
        open_ -= {v for v in open_ if last[v] <= k}
        born = {o for o in n.outputs if last[o] > k and o not in kept}
        open_ |= born
        if len(born) == 1 and open_ == born:
            split.append(next(iter(born)))
    return ForwardPass(
        nodes=tuple(nodes),
        values=tuple(values),
        stashed=tuple(stashed),
        kept=frozenset(kept),
        split_points=tuple(split),
        sizes={v: nbytes(v, shapes) if shapes is not None else 0 for v in values},
        heavy=frozenset(n for n in nodes if expensive(n)),
        queries=tuple(meta),
        shapes=shapes,
    )


# ---------------------------------------------------------------- the rewrite


def _rewrite(fgraph, fw: ForwardPass, checkpoints):
    """A new graph in which backward nodes read recomputed copies of dropped values."""
    stay = set(checkpoints) | fw.kept
    forward = set(fw.nodes) | set(fw.queries)
    values = set(fw.values)
    equiv = clone_get_equiv(fgraph.inputs, fgraph.outputs)
    new = FunctionGraph(
        [equiv[v] for v in fgraph.inputs], [equiv[v] for v in fgraph.outputs], clone=False
    )
    clones: dict = {}  # original forward variable -> its recomputed copy in ``new``

    def dropped(v):
        return v in values and v not in stay

    def recompute(v):
        # Iterative depth-first: a segment between checkpoints may be long.
        stack = [v]
        while stack:
            u = stack[-1]
            if u in clones:
                stack.pop()
                continue
            node = u.owner
            missing = [i for i in node.inputs if dropped(i) and i not in clones]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            inputs = [clones[i] if dropped(i) else equiv[i] for i in node.inputs]
            copy = equiv[node.outputs[0]].owner.clone_with_new_inputs(inputs)
            for o, c in zip(node.outputs, copy.outputs, strict=True):
                c.tag["recompute_of"] = equiv[o]
                clones[o] = c
        return clones[v]

    for node in fgraph.toposort():
        if node in forward:
            continue
        target = equiv[node.outputs[0]].owner
        for i, inp in enumerate(node.inputs):
            if dropped(inp):
                new.change_node_input(target, i, recompute(inp), reason="rematerialize")
    return new, equiv, clones


def rematerialize(fgraph, checkpoints, loss=None):
    """A copy of ``fgraph`` whose backward pass recomputes every stashed forward value that
    is not in ``checkpoints`` (nor kept: see ``ForwardPass``) from those that are.

    Chen et al.'s Alg. 2 with mirror count 1 on the dropped values. Returns the new
    FunctionGraph and a dict mapping each recomputed variable of the new graph to the
    original it copies. ``fgraph`` is not modified. Ops with ``side_effect = True`` are
    never recomputed (flowc has no random ops yet; when it does, a draw recomputed
    would draw again), nor are ops that overwrite an input (run this before the
    in-place step of the pipeline), nor shape queries.
    """
    fw = forward_pass(fgraph, None, loss)
    new, equiv, clones = _rewrite(fgraph, fw, set(checkpoints))
    return new, {c: equiv[o] for o, c in clones.items()}


# ---------------------------------------------------------------- order and peak


def remat_order(fgraph) -> list[Apply]:
    """A topological order that computes each value when first needed (Chen et al.'s
    traversal order of Alg. 2): a depth-first post-order from the outputs, those with
    the fewest ancestors first (so the loss, then the gradients of the last layers first),
    with shape queries moved right after what they measure.

    Recomputed values are computed just before their first backward reader.
    """
    outs = fgraph.outputs
    ancestors = {}  # node -> bitset of the nodes it depends on (itself included)
    for k, node in enumerate(fgraph.toposort()):
        bits = 1 << k
        for i in node.inputs:
            if i.owner is not None:
                bits |= ancestors[i.owner]
        ancestors[node] = bits
    n_anc = [ancestors[o.owner].bit_count() if o.owner else 0 for o in outs]
    ranked = sorted(range(len(outs)), key=lambda k: (n_anc[k], k))
    order = io_toposort(fgraph.inputs, [outs[k] for k in ranked])
    queries = [n for n in order if _is_shape_query(n)]
    if not queries:
        return order
    qset = set(queries)
    placed, result = set(), []

    def ready(q):
        return all(i.owner is None or i.owner in placed for i in q.inputs)

    pending = list(queries)
    for node in [None, *[n for n in order if n not in qset]]:
        if node is not None:
            result.append(node)
            placed.add(node)
        now = [q for q in pending if ready(q)]
        pending = [q for q in pending if q not in now]
        result.extend(now)
        placed.update(now)
    return result


def estimate_peak(fgraph, order, shapes) -> int:
    """The bytes of the static memory plan of ``fgraph`` run in ``order`` (None:
    ``remat_order``), given concrete ``shapes`` of its variables (``infer_shapes``)."""
    order = remat_order(fgraph) if order is None else order
    return plan_memory(**fgraph_buffers(fgraph, order, shapes)).peak_bytes


# ---------------------------------------------------------------- strategies


def strategy_sqrt(fw: ForwardPass) -> list[frozenset]:
    """Chen, Xu, Zhang, Guestrin 2016, "Training Deep Nets with Sublinear Memory Cost",
    Sec. 4.3: keep every k-th of the n stashed activations that split the forward chain,
    k = round(sqrt(n)), counting from the last one; the rest is recomputed, a segment at
    a time, for O(sqrt(n)) memory at the cost of one more forward pass.
    """
    stashed = set(fw.stashed)
    chain = [v for v in fw.split_points if v in stashed] or list(fw.split_points)
    if not chain:
        return []
    k = max(1, round(math.sqrt(len(chain))))
    return [frozenset(chain[i] for i in range(len(chain) - 1, -1, -k))]


def _greedy(fw: ForwardPass, budget: float):
    """Chen et al.'s Alg. 3: close a segment at the first split point past ``budget`` bytes."""
    splits = set(fw.split_points)
    temp = x = y = 0
    keep = []
    for v in fw.values:
        if v in fw.kept:
            continue
        temp += fw.sizes[v]
        if v in splits and temp > budget:
            x += fw.sizes[v]
            y = max(y, temp)
            keep.append(v)
            temp = 0
    return frozenset(keep), x, y


def strategy_greedy(fw: ForwardPass) -> list[frozenset]:
    """Chen et al. 2016, Alg. 3 (memory planning with budget) and its search over the
    per-segment budget B: from B = 0, B <- sqrt(x * y) (x: bytes of the kept split
    points, y: the largest segment) three times, then a geometric sweep around it; the
    exact static plan of each candidate decides (``fit_memory_budget``).
    """
    b, guesses = 0, [0, math.inf]
    for _ in range(3):
        _, x, y = _greedy(fw, b)
        b = math.isqrt(x * y)
        guesses.append(b)
    guesses += [b * 2 ** (k / 2) for k in range(-6, 7)]
    return list(dict.fromkeys(_greedy(fw, g)[0] for g in guesses))


def strategy_mincut(fw: ForwardPass) -> list[frozenset]:
    """Keep the fewest bytes from which the backward pass can recompute what it reads
    without recomputing any FLOP-heavy op: a minimum s-t cut (``nx.minimum_cut``).

    Each forward value v is an edge ``(v, "in") -> (v, "out")`` whose capacity is its size
    (cutting it: v is kept); data dependencies and the backward's reads (``-> sink``) are
    infinite, and so is ``source -> (v, "in")`` for outputs of FLOP-heavy ops (their
    recompute cost is infinite). Of the minimum cuts, the one nearest the backward pass
    (fewest recomputations). The idea of functorch's min-cut partitioner; Chen et al.
    2016 Sec. 4.2 ("drop the results of low cost operations") made optimal.
    """
    G = nx.DiGraph()
    G.add_nodes_from(["source", "sink"])
    stashed = set(fw.stashed)
    index = {v: k for k, v in enumerate(fw.values) if v not in fw.kept}  # flow-graph keys
    for v, k in index.items():
        G.add_edge(("in", k), ("out", k), capacity=fw.sizes[v])
        if v.owner in fw.heavy:
            G.add_edge("source", ("in", k))
        for i in v.owner.inputs:
            if i in index:
                G.add_edge(("out", index[i]), ("in", k))
        if v in stashed:
            G.add_edge(("out", k), "sink")
    # networkx returns the cut with the smallest sink side (the nodes that can still reach
    # the sink in the residual graph): of equal cuts, the one keeping values nearest the
    # backward pass, so the fewest are recomputed.
    _, (source_side, sink_side) = nx.minimum_cut(G, "source", "sink")
    return [
        frozenset(
            v for v, k in index.items() if ("in", k) in source_side and ("out", k) in sink_side
        )
    ]


STRATEGIES = {
    "sqrt": strategy_sqrt,
    "greedy": strategy_greedy,
    "mincut": strategy_mincut,
}


# ---------------------------------------------------------------- the driver


@dataclasses.dataclass(frozen=True)
class RematPlan:
    """A rewritten training step and the order its ``peak`` (bytes) was planned for.

    ``checkpoints``: the forward values the strategy keeps for the backward pass (beyond
    those always kept, see ``ForwardPass``); ``recomputed``: stashed values the backward
    recomputes (variables of ``fgraph``, whose copies carry ``tag["recompute_of"]``);
    ``n_recomputed_nodes``: Apply nodes added; ``baseline_peak``: the peak without any.
    """

    fgraph: FunctionGraph
    order: tuple
    shapes: dict
    checkpoints: frozenset
    recomputed: tuple
    n_recomputed_nodes: int
    peak: int
    baseline_peak: int
    strategy: str


def _build(fgraph, fw, checkpoints, baseline, strategy) -> RematPlan:
    new, equiv, clones = _rewrite(fgraph, fw, checkpoints)
    shapes = {equiv[v]: s for v, s in fw.shapes.items() if v in equiv}
    shapes.update({c: fw.shapes[o] for o, c in clones.items()})
    order = tuple(remat_order(new))
    stay = set(checkpoints) | fw.kept
    return RematPlan(
        fgraph=new,
        order=order,
        shapes=shapes,
        checkpoints=frozenset(equiv[v] for v in checkpoints if v not in fw.kept),
        recomputed=tuple(equiv[v] for v in fw.stashed if v not in stay),
        n_recomputed_nodes=len({c.owner for c in clones.values()}),
        peak=estimate_peak(new, order, shapes),
        baseline_peak=baseline,
        strategy=strategy,
    )


def check_budget(memory_budget, strategy: str) -> None:
    """Raise a clear error unless ``memory_budget`` is a byte count and ``strategy`` known."""
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, int):
        raise TypeError(f"memory_budget must be an int (bytes), got {memory_budget!r}")
    if memory_budget < 0:
        raise ValueError(f"memory_budget must be >= 0 bytes, got {memory_budget}")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown remat strategy {strategy!r}; use one of {sorted(STRATEGIES)}")


def fit_memory_budget(
    fgraph, memory_budget: int, shapes, strategy: str = "greedy", loss=None, expensive=None
) -> RematPlan:
    """Rewrite the training step ``fgraph`` so its static memory plan fits ``memory_budget``
    bytes, recomputing what ``STRATEGIES[strategy]`` drops.

    ``shapes`` maps (at least) the graph inputs to concrete shapes. The graph comes back
    unchanged when it fits as is; of a strategy's candidates that fit, the one with the
    fewest recomputed nodes wins. Raises ``MemoryBudgetError`` with the smallest peak found
    when none fits. Run the result in ``plan.order``: recomputation only saves memory when
    done just before the backward pass reads it.

    >>> import flowc, flowc.tensor as T
    >>> from flowc.graph.fg import FunctionGraph
    >>> from flowc.graph.merge import merge
    >>> x, Ws = T.matrix("x"), [T.matrix(f"W{i}") for i in range(9)]
    >>> h = x
    >>> for W in Ws:
    ...     h = T.tanh(h @ W)
    >>> loss = (h**2).sum()
    >>> fg = merge(FunctionGraph([x, *Ws], [loss, *flowc.grad(loss, Ws)]))
    >>> shapes = {v: (256, 256) for v in fg.inputs}
    >>> plan = fit_memory_budget(fg, 15_000_000, shapes, "sqrt")
    >>> plan.peak <= 15_000_000 < plan.baseline_peak, len(plan.recomputed)
    (True, 6)
    """
    check_budget(memory_budget, strategy)
    shapes = infer_shapes(fgraph, shapes)
    order = tuple(remat_order(fgraph))
    baseline = estimate_peak(fgraph, order, shapes)
    if baseline <= memory_budget:
        return RematPlan(fgraph, order, shapes, frozenset(), (), 0, baseline, baseline, strategy)
    fw = forward_pass(fgraph, shapes, loss, expensive)
    best, smallest = None, baseline
    for checkpoints in STRATEGIES[strategy](fw):
        plan = _build(fgraph, fw, checkpoints, baseline, strategy)
        smallest = min(smallest, plan.peak)
        if plan.peak <= memory_budget and (
            best is None
            or (plan.n_recomputed_nodes, plan.peak) < (best.n_recomputed_nodes, best.peak)
        ):
            best = plan
    if best is None:
        raise MemoryBudgetError(
            f"memory_budget={memory_budget} bytes cannot be met with strategy {strategy!r}: "
            f"the smallest feasible peak found is {smallest} bytes "
            f"({baseline} bytes without recomputation)",
            smallest,
        )
    return best


__all__ = [
    "STRATEGIES",
    "ForwardPass",
    "MemoryBudgetError",
    "RematPlan",
    "estimate_peak",
    "fit_memory_budget",
    "forward_pass",
    "is_flop_heavy",
    "rematerialize",
    "remat_order",
    "strategy_greedy",
    "strategy_mincut",
    "strategy_sqrt",
]
