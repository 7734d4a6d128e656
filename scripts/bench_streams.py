"""Two streams on two cores: a graph of two independent GEMM-heavy branches, compiled with
``streams=2`` (schedule heft) and ``serial``. Prints figures; asserts nothing.

    python scripts/bench_streams.py [--n 768] [--depth 3] [--repeats 5]

BLAS runs one thread per stream (set below, before NumPy is imported), so the serial plan
uses one core and the two-stream plan two; the target is a speedup of at least 1.7x on two
cores. For reference, the serial plan is also timed with OpenBLAS's own two threads.
"""

import os

# One BLAS thread per stream: must be set before NumPy loads OpenBLAS. (The reference run
# of the serial plan with BLAS's own threads is a child process that sets its own count.)
_CHILD_THREADS = os.environ.get("FLOWC_BENCH_BLAS_THREADS")
os.environ["OPENBLAS_NUM_THREADS"] = _CHILD_THREADS or "1"
os.environ["OMP_NUM_THREADS"] = _CHILD_THREADS or "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import flowc  # noqa: E402
import flowc.tensor as T  # noqa: E402
from flowc.kernels import compile_nodes  # noqa: E402
from flowc.sched.arena import ArenaRunner  # noqa: E402


def blas_threads() -> str:
    """The BLAS libraries NumPy loaded and their thread counts (threadpoolctl, if installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed: BLAS threads not verified"
    info = threadpool_info()
    return ", ".join(f"{i['internal_api']} {i['num_threads']} thread(s)" for i in info) or "none"


def serial_with_blas_threads(n: int, argv) -> str:
    """The serial plan's timing line from a child process whose BLAS has ``n`` threads."""
    env = dict(os.environ, FLOWC_BENCH_BLAS_THREADS=str(n))
    done = subprocess.run(
        [sys.executable, __file__, *argv, "--serial-only"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def two_branches(depth: int):
    """``a`` and ``b`` each go through ``depth`` layers ``tanh(h @ W)`` and a column sum;
    the two vectors meet at the end (a cheap join, so almost all work is in the branches)."""
    x = T.dmatrix("x")
    ws = [T.dmatrix(f"w{i}") for i in range(2 * depth)]
    a, b = x, x.T
    for k in range(depth):
        a = T.tanh(a @ ws[k])
        b = T.tanh(b @ ws[depth + k])
    return [x, *ws], a.sum(axis=0) * b.sum(axis=0)


def timed(f, args, repeats) -> list[float]:
    f(*args)  # warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(*args)
        times.append(time.perf_counter() - t0)
    return times


def timed_pairs(f, g, args, repeats) -> tuple[list[float], list[float]]:
    f(*args), g(*args)  # warm up
    tf, tg = [], []
    for _ in range(repeats):
        for fn, times in ((f, tf), (g, tg)):
            t0 = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - t0)
    return tf, tg


def fmt(times) -> str:
    ms = [t * 1e3 for t in times]
    return f"{statistics.median(ms):8.1f} ms  [{min(ms):.1f} - {max(ms):.1f}]"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=768, help="matrix size")
    parser.add_argument("--depth", type=int, default=3, help="matmul+tanh layers per branch")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--serial-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    inputs, out = two_branches(args.depth)
    rng = np.random.default_rng(0)
    values = [rng.normal(size=(args.n, args.n)) / np.sqrt(args.n) for _ in inputs]
    with flowc.config.change(devices="cpu:1", streams=1, schedule="serial"):
        serial = flowc.function(inputs, out)
        compiled = flowc.function(inputs, out)
    # Both plans walk their kernels through the executor with the same compiled per-node
    # drivers (as a multi-stream function does), so they compare like with like; a
    # one-stream function normally runs as one compiled program, timed on its own.
    serial.program = None
    drivers = compile_nodes([k.node for k in serial.kernels])
    if drivers is not None:
        serial._runner = ArenaRunner(serial.fgraph, serial.plan, serial.kernels, drivers)
    if getattr(compiled, "program", None) is None:
        compiled = None
    if args.serial_only:  # the child process of serial_with_blas_threads
        t = timed(serial, values, args.repeats)
        print(f"{statistics.median(t)} {min(t)} {max(t)}")
        return

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"load average {load} (other work on the cores skews the figures)"
    )
    print(f"BLAS: {blas_threads()}")
    print(
        f"graph: 2 branches x {args.depth} x (float64 {args.n}x{args.n} matmul + tanh), "
        f"{args.repeats} runs; median [min - max]"
    )
    with flowc.config.change(devices="cpu:1", streams=2, schedule="heft"):
        streams = flowc.function(inputs, out)
    print(streams.plan.summary())

    def one_branch(x, *ws):
        for w in ws[: args.depth]:
            x = np.tanh(x @ w)
        return x

    def both_in_threads(x, *ws):
        # The same work as the graph in two plain threads: what the cores allow right now.
        t = threading.Thread(target=one_branch, args=(x.T, *ws[args.depth :]))
        t.start()
        one_branch(x, *ws)
        t.join()

    def both_in_one(x, *ws):
        one_branch(x, *ws)
        one_branch(x.T, *ws[args.depth :])

    print(f"one branch in NumPy, 1 BLAS thread:  {fmt(timed(one_branch, values, 3))}")
    t_one, t_two = timed_pairs(both_in_one, both_in_threads, values, args.repeats)
    print(
        f"NumPy, both branches in 1 thread:    {fmt(t_one)}\n"
        f"NumPy, one branch per thread:        {fmt(t_two)}  -> "
        f"{statistics.median(t_one) / statistics.median(t_two):.2f}x, the most two streams can"
        f" give now"
    )
    # Alternate the two so that a change in the machine's load hits both alike.
    t_serial, t_streams = timed_pairs(serial, streams, values, args.repeats)
    print(f"serial plan, 1 BLAS thread:          {fmt(t_serial)}")
    print(f"streams=2 heft, 1 BLAS thread each:  {fmt(t_streams)}")
    ratios = sorted(s / p for s, p in zip(t_serial, t_streams, strict=True))
    speedup = statistics.median(t_serial) / statistics.median(t_streams)
    print(
        f"speedup streams=2 / serial: {speedup:.2f}x (ratio of medians; run by run "
        f"{ratios[0]:.2f} - {ratios[-1]:.2f}); target >= 1.7x on 2 cores"
    )
    want, got = serial(*values), streams(*values)
    print(
        f"results equal: {np.array_equal(want, got)} "
        f"(max abs difference {np.max(np.abs(want - got)):.3g})"
    )
    if compiled is not None:
        t_compiled = timed(compiled, values, args.repeats)
        diff = np.max(np.abs(compiled(*values) - want))
        print(
            f"serial as one compiled program:      {fmt(t_compiled)}  -> streams=2 is "
            f"{statistics.median(t_compiled) / statistics.median(t_streams):.2f}x that "
            f"(max abs difference {diff:.3g})"
        )
    # Reference: what OpenBLAS's own threads make of the serial plan.
    cpus = os.cpu_count() or 1
    med, lo, hi = map(
        float,
        serial_with_blas_threads(
            cpus, ["--n", str(args.n), "--depth", str(args.depth), "--repeats", str(args.repeats)]
        ).split(),
    )
    print(
        f"reference: serial, {cpus} BLAS threads:  {fmt([med, lo, hi])}  "
        f"-> streams=2 is {med / statistics.median(t_streams):.2f}x that"
    )


if __name__ == "__main__":
    main()
