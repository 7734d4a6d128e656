"""Placement strategies on random layered DAGs: estimated makespan / lower bound, per strategy
and slot count. Prints figures; asserts nothing.

    python scripts/bench_sched.py [--graphs 100] [--seed 0] [--slots 2 4 8] [--ccr 0.5]

Two machines per slot count N: ``streams``, one device with N streams (communication free,
so the lower bound max(critical path, work / N) is nearly reachable), and ``devices``, N
devices of one stream each, where an edge across devices costs ``transfer_time`` and edge
sizes are drawn so that the mean transfer is ``ccr`` times the mean node cost. The lower
bound ignores communication, so ``devices`` ratios also measure what transfers cost.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from flowc.sched.cost import LINK_BANDWIDTH, LINK_LATENCY
from flowc.sched.dag import literal_dag
from flowc.sched.strategies import STRATEGIES, lower_bound, makespan

MEAN_COST = 55e-6  # seconds: node costs are uniform on [10, 100] us


def random_layered_dag(rng: np.random.Generator, ccr: float):
    """40-120 nodes in 4-12 layers; each node reads 1-3 nodes of the layer above and, one
    time in five, one more from any earlier layer. Costs uniform on [10, 100] us; edge bytes
    uniform on [0, 2 * b], where ``b`` makes the mean transfer ``ccr`` times the mean cost."""
    n = int(rng.integers(40, 121))
    n_layers = int(rng.integers(4, 13))
    cuts = np.sort(rng.choice(np.arange(1, n), size=n_layers - 1, replace=False))
    layers = [list(map(int, layer)) for layer in np.split(np.arange(n), cuts)]
    mean_bytes = max(ccr * MEAN_COST - LINK_LATENCY, 0.0) * LINK_BANDWIDTH
    costs = {i: float(rng.uniform(10e-6, 100e-6)) for i in range(n)}
    edges = set()
    for depth in range(1, n_layers):
        above = layers[depth - 1]
        earlier = [m for layer in layers[: depth - 1] for m in layer]
        for v in layers[depth]:
            k = min(int(rng.integers(1, 4)), len(above))
            preds = set(map(int, rng.choice(above, size=k, replace=False)))
            if earlier and rng.random() < 0.2:
                preds.add(int(rng.choice(earlier)))
            edges |= {(u, v) for u in preds}
    sized = [(u, v, float(rng.uniform(0, 2 * mean_bytes))) for u, v in sorted(edges)]
    return literal_dag(costs, sized)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slots", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--ccr", type=float, default=0.5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    graphs = [random_layered_dag(rng, args.ccr) for _ in range(args.graphs)]
    sizes = [G.number_of_nodes() for G in graphs]
    print(
        f"{args.graphs} random layered DAGs (seed {args.seed}), {min(sizes)}-{max(sizes)} nodes, "
        f"CCR {args.ccr} on 'devices'"
    )
    print("makespan / lower bound: median [min - max]; ms = mean time to schedule one graph")
    for machine in ("streams", "devices"):
        print(f"\n{machine}:")
        header = f"{'strategy':>14}" + "".join(f"{f'{n} slots':>28}" for n in args.slots)
        print(header)
        for name, strategy in STRATEGIES.items():
            row = f"{name:>14}"
            for n_slots in args.slots:
                if machine == "streams":
                    slots = [("cpu:0", s) for s in range(n_slots)]
                else:
                    slots = [(f"cpu:{d}", 0) for d in range(n_slots)]
                t0 = time.perf_counter()
                ratios = [makespan(strategy(G, slots)) / lower_bound(G, n_slots) for G in graphs]
                ms = (time.perf_counter() - t0) / len(graphs) * 1e3
                cell = (
                    f"{statistics.median(ratios):.3f} [{min(ratios):.2f}-{max(ratios):.2f}]"
                    f" {ms:4.1f}ms"
                )
                row += f"{cell:>28}"
            print(row)


if __name__ == "__main__":
    main()
