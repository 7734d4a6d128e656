"""Benchmarks against peers. Prints figures and ratios measured in one run; asserts nothing.

    python scripts/bench.py compile [--layers 5 20 50 100] [--repeat 3]
    python scripts/bench.py w1 [--n 10000000]     fused elementwise, float32
    python scripts/bench.py w2                    call overhead, 10-element vectors
    python scripts/bench.py w3                    MLP training step 784-1024-1024-10
    python scripts/bench.py all

Peers (NumPy always; PyTensor, JAX and PyTorch when installed) run the same work in
the same process. Every figure is the median and [min-max] over repeats.

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


def timeit(fn, repeat=7, number=1):
    """Seconds per call of ``fn``: (median, min, max) over ``repeat`` rounds of ``number``."""
    fn()  # warm up (and compile)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times), min(times), max(times)


def show(label, t, base=None, unit=1e3, suffix="ms"):
    med, lo, hi = t
    ratio = f"  {med / base:6.2f}x" if base else ""
    print(
        f"  {label:34s} {med * unit:10.3f} {suffix} [{lo * unit:.3f}-{hi * unit:.3f}]{ratio}",
        flush=True,
    )


def peers():
    found = {}
    for name in ("pytensor", "jax", "torch"):
        try:
            found[name] = __import__(name)
        except ImportError:
            print(f"  ({name} is not installed: skipped)")
    return found


W1_EXPR = "tanh(x*y + exp(-x*x)) * sigmoid(y) - log1p(abs(x))"


def bench_w1(args):
    import flowc
    import flowc.tensor as T

    n = args.n
    rng = np.random.default_rng(0)
    a = rng.normal(size=n).astype("float32")
    b = rng.normal(size=n).astype("float32")
    print(f"W1 fused elementwise {W1_EXPR}, float32, n={n:.0e}; ratios to the floor")
    dst = np.empty_like(a)
    copy = timeit(lambda: np.copyto(dst, a), repeat=args.repeat)
    bandwidth = 2 * a.nbytes / copy[0]
    floor = 3 * a.nbytes / bandwidth
    print(
        f"  memory bandwidth (NumPy copy) {bandwidth / 1e9:.1f} GB/s; floor "
        f"(3 arrays x 4 B x n) {floor * 1e3:.3f} ms"
    )

    def numpy_w1():
        return np.tanh(a * b + np.exp(-a * a)) * (1 / (1 + np.exp(-b))) - np.log1p(np.abs(a))

    x, y = T.fvectors("x", "y")
    f = flowc.function([x, y], T.tanh(x * y + T.exp(-x * x)) * T.nnet.sigmoid(y) - T.log1p(abs(x)))
    np.testing.assert_allclose(f(a, b), numpy_w1(), rtol=1e-4, atol=1e-5)
    show("floor", (floor, floor, floor), floor)
    show("flowc", timeit(lambda: f(a, b), args.repeat), floor)
    show("numpy", timeit(numpy_w1, args.repeat), floor)
    found = peers()
    if "pytensor" in found:
        import pytensor
        import pytensor.tensor as pt

        px, py = pt.fvectors("x", "y")
        expr = pt.tanh(px * py + pt.exp(-px * px)) * pt.sigmoid(py) - pt.log1p(abs(px))
        for mode in ("FAST_RUN", None):
            g = pytensor.function([px, py], expr, mode=mode)
            show(
                f"pytensor ({mode or 'default mode'})",
                timeit(lambda g=g: g(a, b), args.repeat),
                floor,
            )
    if "jax" in found:
        import jax
        import jax.numpy as jnp

        jf = jax.jit(
            lambda x, y: (
                jnp.tanh(x * y + jnp.exp(-x * x)) * jax.nn.sigmoid(y) - jnp.log1p(jnp.abs(x))
            )
        )
        ja, jb = jnp.asarray(a), jnp.asarray(b)
        show("jax.jit", timeit(lambda: jf(ja, jb).block_until_ready(), args.repeat), floor)
    if "torch" in found:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)

        def torch_w1():
            return torch.tanh(ta * tb + torch.exp(-ta * ta)) * torch.sigmoid(tb) - torch.log1p(
                torch.abs(ta)
            )

        show("torch (eager)", timeit(torch_w1, args.repeat), floor)


def bench_w2(args):
    import flowc
    import flowc.tensor as T

    a = np.arange(10, dtype="float64")
    b = np.ones(10)
    print("W2 call overhead: f(a, b) = a*b + a on 10-element float64 vectors, us per call")
    x, y = T.dvectors("x", "y")
    f = flowc.function([x, y], x * y + x)
    number = 2000
    show("numpy (a*b + a)", timeit(lambda: a * b + a, args.repeat, number), None, 1e6, "us")
    base = timeit(lambda: f(a, b), args.repeat, number)
    show("flowc", base, None, 1e6, "us")
    found = peers()
    if "pytensor" in found:
        import pytensor
        import pytensor.tensor as pt

        px, py = pt.dvectors("x", "y")
        g = pytensor.function([px, py], px * py + px)
        show(
            "pytensor (default mode)", timeit(lambda: g(a, b), args.repeat, number), None, 1e6, "us"
        )
        g.trust_input = True
        show(
            "pytensor (trust_input)", timeit(lambda: g(a, b), args.repeat, number), None, 1e6, "us"
        )
    if "jax" in found:
        import jax

        jf = jax.jit(lambda x, y: x * y + x)
        show(
            "jax.jit",
            timeit(lambda: jf(a, b).block_until_ready(), args.repeat, number),
            None,
            1e6,
            "us",
        )
    if "torch" in found:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        show("torch (eager)", timeit(lambda: ta * tb + ta, args.repeat, number), None, 1e6, "us")


def _mlp_params(rng, sizes, dtype):
    return [
        ((rng.normal(size=(m, n)) * np.sqrt(1.0 / m)).astype(dtype), np.zeros(n, dtype))
        for m, n in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def bench_w3(args):
    import flowc
    import flowc.tensor as T

    dtype, batch, sizes, lr = "float32", 256, [784, 1024, 1024, 10], 0.01
    rng = np.random.default_rng(0)
    X = rng.normal(size=(batch, sizes[0])).astype(dtype)
    Y = rng.integers(0, sizes[-1], size=batch)
    init = _mlp_params(rng, sizes, dtype)
    print(
        f"W3 MLP training step {'-'.join(map(str, sizes))}, batch {batch}, tanh, softmax "
        f"cross-entropy, SGD, {dtype}; ms per step, ratios to the BLAS floor"
    )

    # The BLAS floor: the same GEMMs through numpy.dot (3 forward, 5 backward).
    acts = [X] + [np.zeros((batch, n), dtype) for n in sizes[1:]]
    grads = [np.zeros((batch, n), dtype) for n in sizes[1:]]

    def gemms():
        for k, (W, _) in enumerate(init):
            np.dot(acts[k], W, out=acts[k + 1])
        for k in reversed(range(len(init))):
            np.dot(acts[k].T, grads[k])
            if k:
                np.dot(grads[k], init[k][0].T)

    floor = timeit(gemms, args.repeat)

    x = T.fmatrix("x")
    y = T.lvector("y")
    params, h = [], x
    for k, (W0, b0) in enumerate(init):
        W, b = flowc.shared(W0.copy(), name=f"W{k}"), flowc.shared(b0.copy(), name=f"b{k}")
        params += [W, b]
        z = T.dot(h, W) + b
        h = T.tanh(z) if k < len(init) - 1 else T.nnet.softmax(z)
    cost = T.nnet.categorical_crossentropy(h, y).mean()
    updates = [
        (p, p - np.float32(lr) * g) for p, g in zip(params, T.grad(cost, params), strict=True)
    ]
    step = flowc.function([x, y], cost, updates=updates)

    state = [(W.copy(), b.copy()) for W, b in init]

    def numpy_step():
        hs = [X]
        for k, (W, b) in enumerate(state):
            z = hs[-1] @ W + b
            if k < len(state) - 1:
                hs.append(np.tanh(z))
            else:
                z = z - z.max(axis=1, keepdims=True)
                p = np.exp(z)
                p /= p.sum(axis=1, keepdims=True)
        g = p
        g[np.arange(batch), Y] -= 1
        g /= batch
        for k in reversed(range(len(state))):
            W, b = state[k]
            gW, gb = hs[k].T @ g, g.sum(axis=0)
            if k:
                g = (g @ W.T) * (1 - hs[k] ** 2)
            W -= lr * gW
            b -= lr * gb

    show("BLAS floor (numpy.dot GEMMs)", floor, floor[0])
    show("flowc", timeit(lambda: step(X, Y), args.repeat), floor[0])
    show("numpy (hand-written step)", timeit(numpy_step, args.repeat), floor[0])
    found = peers()
    if "pytensor" in found:
        import pytensor
        import pytensor.tensor as pt

        px, py = pt.fmatrix("x"), pt.lvector("y")
        pparams, ph = [], px
        for k, (W0, b0) in enumerate(init):
            W, b = pytensor.shared(W0.copy()), pytensor.shared(b0.copy())
            pparams += [W, b]
            z = pt.dot(ph, W) + b
            ph = pt.tanh(z) if k < len(init) - 1 else pt.special.softmax(z, axis=-1)
        pcost = -pt.mean(pt.log(ph)[pt.arange(py.shape[0]), py])
        pup = [
            (p, p - np.float32(lr) * g)
            for p, g in zip(pparams, pytensor.grad(pcost, pparams), strict=True)
        ]
        pstep = pytensor.function([px, py], pcost, updates=pup)
        show("pytensor (default mode)", timeit(lambda: pstep(X, Y), args.repeat), floor[0])
    if "jax" in found:
        import jax
        import jax.numpy as jnp

        def loss(ps, x, y):
            h = x
            for k, (W, b) in enumerate(ps):
                z = h @ W + b
                h = jnp.tanh(z) if k < len(ps) - 1 else z
            return -jnp.mean(jax.nn.log_softmax(h)[jnp.arange(x.shape[0]), y])

        @jax.jit
        def jstep(ps, x, y):
            grads = jax.grad(loss)(ps, x, y)
            return [(W - lr * gW, b - lr * gb) for (W, b), (gW, gb) in zip(ps, grads, strict=True)]

        jps = [(jnp.asarray(W), jnp.asarray(b)) for W, b in init]
        jx, jy = jnp.asarray(X), jnp.asarray(Y)
        holder = [jps]

        def run_jax():
            holder[0] = jstep(holder[0], jx, jy)
            jax.block_until_ready(holder[0])

        show("jax.jit", timeit(run_jax, args.repeat), floor[0])
    if "torch" in found:
        import torch

        tps = [
            (torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True))
            for W, b in init
        ]
        tx, ty = torch.from_numpy(X), torch.from_numpy(Y)

        def torch_step():
            h = tx
            for k, (W, b) in enumerate(tps):
                z = h @ W + b
                h = torch.tanh(z) if k < len(tps) - 1 else z
            loss = torch.nn.functional.cross_entropy(h, ty)
            for W, b in tps:
                W.grad = b.grad = None
            loss.backward()
            with torch.no_grad():
                for W, b in tps:
                    W -= lr * W.grad
                    b -= lr * b.grad

        show("torch (eager)", timeit(torch_step, args.repeat), floor[0])


def bench_all(args):
    for fn in (bench_w1, bench_w2, bench_w3, bench_compile):
        fn(args)
        print()


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
    for name, fn in (("w1", bench_w1), ("w2", bench_w2), ("w3", bench_w3), ("all", bench_all)):
        w = sub.add_parser(name, help=(fn.__doc__ or name))
        w.add_argument("--n", type=int, default=10_000_000)
        w.add_argument("--repeat", type=int, default=7)
        w.add_argument("--layers", type=int, nargs="+", default=[5, 20, 50, 100])
        w.add_argument("--no-peers", action="store_true")
        w.set_defaults(fn=fn)
    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
