"""Benchmarks against peers. Prints figures and ratios measured in one run; asserts nothing.

    python scripts/bench.py compile [--layers 5 20 50 100] [--repeat 3]

``compile``: the rewrite time of an MLP training step (L hidden layers of width 256,
softmax cross-entropy, SGD updates) for several L, the fitted growth exponent of
time against graph size, and PyTensor's compile time for the same graphs when
PyTensor is installed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np


def flowc_mlp_step(n_layers: int, width: int = 256, n_in: int = 784, n_out: int = 10):
    """Inputs, outputs (cost and new parameters) and parameters of one SGD step."""
    import flowc
    import flowc.tensor as T

    rng = np.random.default_rng(0)
    x = T.dmatrix("x")
    y = T.lvector("y")
    sizes = [n_in] + [width] * n_layers + [n_out]
    params, h = [], x
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        W = flowc.shared(rng.normal(size=(a, b)) * 0.01, name=f"W{k}")
        bias = flowc.shared(np.zeros(b), name=f"b{k}")
        params += [W, bias]
        z = T.dot(h, W) + bias
        h = T.tanh(z) if k < len(sizes) - 2 else T.nnet.softmax(z)
    cost = T.nnet.categorical_crossentropy(h, y).mean()
    grads = T.grad(cost, params)
    return [x, y], [cost] + [p - 0.01 * g for p, g in zip(params, grads, strict=True)], params


def time_flowc_rewrite(n_layers: int, repeat: int):
    from flowc.graph import FunctionGraph
    from flowc.pipeline import rewrite

    times, sizes = [], None
    for _ in range(repeat):
        inputs, outputs, params = flowc_mlp_step(n_layers)
        fg = FunctionGraph(inputs + params, outputs)
        before = len(fg.apply_nodes)
        start = time.perf_counter()
        fg = rewrite(fg, "fast_run")
        times.append(time.perf_counter() - start)
        sizes = (before, len(fg.apply_nodes))
    return times, sizes


def time_pytensor(n_layers: int, repeat: int, width: int = 256):
    try:
        import pytensor
        import pytensor.tensor as pt
        from pytensor.compile.mode import Mode
    except ImportError:
        return None
    times = []
    for _ in range(repeat):
        rng = np.random.default_rng(0)
        x = pt.dmatrix("x")
        y = pt.lvector("y")
        sizes = [784] + [width] * n_layers + [10]
        params, h = [], x
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            W = pytensor.shared(rng.normal(size=(a, b)) * 0.01)
            bias = pytensor.shared(np.zeros(b))
            params += [W, bias]
            z = pt.dot(h, W) + bias
            h = pt.tanh(z) if b != 10 else pt.special.softmax(z, axis=-1)
        cost = -pt.mean(pt.log(h)[pt.arange(y.shape[0]), y])
        grads = pytensor.grad(cost, params)
        updates = [(p, p - 0.01 * g) for p, g in zip(params, grads, strict=True)]
        start = time.perf_counter()
        # The Python linker: rewriting plus thunk creation, no C compilation.
        pytensor.function(
            [x, y], cost, updates=updates, mode=Mode(linker="py", optimizer="fast_run")
        )
        times.append(time.perf_counter() - start)
    return times


def fit_exponent(xs, ys) -> float:
    """Slope of log(y) against log(x): y ~ x ** slope."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def fmt(times) -> str:
    return f"{statistics.median(times):8.3f} s  [{min(times):.3f}-{max(times):.3f}]"


def bench_compile(args):
    print(
        f"flowc rewrite pipeline (fast_run), MLP training step, width 256; "
        f"median [min-max] of {args.repeat}"
    )
    nodes, medians, peers = [], [], []
    for L in args.layers:
        times, (before, after) = time_flowc_rewrite(L, args.repeat)
        nodes.append(before)
        medians.append(statistics.median(times))
        line = f"  L={L:4d}  {before:6d} -> {after:6d} nodes  flowc {fmt(times)}"
        pt = time_pytensor(L, args.repeat) if not args.no_peers else None
        if pt is not None:
            peers.append(statistics.median(pt))
            line += (
                f"  pytensor(py linker) {fmt(pt)}  ratio {statistics.median(pt) / medians[-1]:.1f}x"
            )
        print(line, flush=True)
    print(
        f"  growth exponent vs nodes: flowc {fit_exponent(nodes, medians):.2f}"
        + (f", pytensor {fit_exponent(nodes, peers):.2f}" if len(peers) == len(nodes) else "")
        + "  (target <= 1.15)"
    )
    print(f"  growth exponent vs L: flowc {fit_exponent(args.layers, medians):.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser("compile", help="rewrite time against graph size")
    c.add_argument("--layers", type=int, nargs="+", default=[5, 20, 50, 100])
    c.add_argument("--repeat", type=int, default=3)
    c.add_argument("--no-peers", action="store_true")
    c.set_defaults(fn=bench_compile)
    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
