"""Memory: the static plan's peak against its lower bound on an MLP training step and an
unrolled RNN, and rematerialization on a deep chain (W6). Prints figures; asserts nothing.

    python scripts/bench_memory.py [--small] [--repeats 3] [--layers 64 --width 1024 --batch 512]

W6 is a chain of L layers ``h = tanh(h @ W_i)`` (float32, to keep it fast) whose step
computes the loss and the gradients with respect to all W. Each configuration runs in a
fresh process: no recomputation, remat 'sqrt' and 'mincut' at a budget of weights + input
+ gradients + 2*sqrt(L) activations, and, where installed, JAX without and with
``jax.checkpoint`` on sqrt(L) segments and PyTorch with ``checkpoint_sequential``. Memory is
measured two ways: the resident set's high-water mark during one step over the resident set
before it (``/proc/self/status``; glibc is told to return freed blocks, see ``WORKER_ENV``),
and, for flowc, tracemalloc around each kernel (NumPy reports its allocations to it).
Activation memory is the step's peak less what the gradients (outputs) hold at that time,
in units of one layer's activation (batch x width x 4 bytes).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

# Freed blocks of 64 KiB and more go back to the OS at once, so the resident set follows
# what is live instead of what glibc keeps for later.
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
MIB = 2**20


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"load average {load} (other work on the cores skews the times)"
    )


def fmt(values, scale=1.0, unit="", digits=1) -> str:
    v = [x * scale for x in values]
    return f"{statistics.median(v):.{digits}f}{unit} [{min(v):.{digits}f}-{max(v):.{digits}f}]"


# ---------------------------------------------------------------- planned peak / bound


def mlp_step(sizes, batch):
    """An SGD step of a softmax MLP: the cost, with the parameters updated in place."""
    import flowc
    import flowc.tensor as T

    rng = np.random.default_rng(0)
    x, y = T.fmatrix("x"), T.lvector("y")
    h, params = x, []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        W = flowc.shared((rng.normal(size=(n_in, n_out)) / np.sqrt(n_in)).astype("float32"))
        b = flowc.shared(np.zeros(n_out, dtype="float32"))
        params += [W, b]
        z = T.dot(h, W) + b
        h = T.tanh(z) if k < len(sizes) - 2 else T.nnet.softmax(z)
    cost = T.nnet.categorical_crossentropy(h, y).mean()
    updates = [(p, p - 0.01 * g) for p, g in zip(params, flowc.grad(cost, params), strict=True)]
    f = flowc.function([x, y], cost, updates=updates)
    args = (
        rng.normal(size=(batch, sizes[0])).astype("float32"),
        rng.integers(0, sizes[-1], size=batch),
    )
    return f, args


def rnn_step(steps, batch, n_in, hidden):
    """``h = tanh(x_t @ Wx + h @ Wh)`` unrolled ``steps`` times; the loss and its gradients
    with respect to Wx and Wh."""
    import flowc
    import flowc.tensor as T

    rng = np.random.default_rng(0)
    xs, Wx, Wh = T.ftensor3("xs"), T.fmatrix("Wx"), T.fmatrix("Wh")
    h = T.tanh(xs[0] @ Wx)
    for t in range(1, steps):
        h = T.tanh(xs[t] @ Wx + h @ Wh)
    loss = (h**2).sum()
    f = flowc.function([xs, Wx, Wh], [loss, *flowc.grad(loss, [Wx, Wh])])
    args = (
        rng.normal(size=(steps, batch, n_in)).astype("float32"),
        (rng.normal(size=(n_in, hidden)) / np.sqrt(n_in)).astype("float32"),
        (rng.normal(size=(hidden, hidden)) / np.sqrt(hidden)).astype("float32"),
    )
    return f, args


def planned(repeats, small) -> None:
    if small:
        cases = [
            ("MLP 784-256-256-10, batch 64", mlp_step([784, 256, 256, 10], 64)),
            ("RNN T=8, batch 16, 64->128", rnn_step(8, 16, 64, 128)),
        ]
    else:
        cases = [
            ("MLP 784-1024-1024-10, batch 256", mlp_step([784, 1024, 1024, 10], 256)),
            ("RNN T=32, batch 64, 256->512", rnn_step(32, 64, 256, 512)),
        ]
    print("\nplanned memory (static plan of the kernels in their order; float32); target")
    print("peak/bound <= 1.05. naive: every value kept for the whole step. plan ms: median")
    print(f"[min-max] over {repeats} calls of f.memory_report")
    print(
        f"  {'graph':<34}{'kernels':>8}{'peak MiB':>10}{'bound MiB':>11}{'peak/bound':>11}"
        f"{'naive MiB':>11}{'peak/naive':>11}   plan ms"
    )
    for name, (f, args) in cases:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            plan, naive = f.memory_report(*args)
            times.append(time.perf_counter() - t0)
        print(
            f"  {name:<34}{len(f.kernels):>8}{plan.peak_bytes / MIB:>10.2f}"
            f"{plan.lower_bound / MIB:>11.2f}{plan.ratio:>11.3f}{naive / MIB:>11.2f}"
            f"{plan.peak_bytes / naive:>11.3f}   {fmt(times, 1e3)}"
        )


# ---------------------------------------------------------------- W6: a chain under a budget


def rss() -> tuple[int, int]:
    """(resident bytes now, resident high-water mark) of this process."""
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def reset_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current resident set
        return True
    except OSError:
        return False


def chain_data(layers, width, batch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, width)).astype("float32")
    ws = [
        (rng.normal(size=(width, width)) / np.sqrt(width)).astype("float32") for _ in range(layers)
    ]
    return x, ws


def budget_bytes(layers, width, batch) -> int:
    """Weights, input and gradients, plus 2*sqrt(L) activations."""
    act = batch * width * 4
    return 2 * layers * width * width * 4 + act + int(2 * math.sqrt(layers) * act)


def measure_step(step, repeats) -> dict:
    """Time ``step()`` (after a first call) and the resident-set growth during one call."""
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    gc.collect()
    ok = reset_rss_peak()
    before, _ = rss()
    step()
    _, high = rss()
    return {
        "first_s": first,
        "times": times,
        "cpu": statistics.median(cpu),
        "rss_step": high - before if ok else None,
    }


def trace_kernels(f, args) -> dict:
    """tracemalloc around each kernel of one call of ``f``: the most bytes live during a
    kernel (``traced_step``) and that less the gradients (outputs 1:) made by then. The
    arena a compiled plan keeps between calls is freed first, so that the traced call
    allocates it again and it counts."""
    import tracemalloc

    grads = set(f.fgraph.outputs[1:])
    state = {"grads": 0, "act": 0, "step": 0}

    def note(outputs, values):
        state["grads"] += sum(
            np.asarray(v).nbytes for o, v in zip(outputs, values, strict=True) if o in grads
        )
        peak = tracemalloc.get_traced_memory()[1] - state["base"]
        state["act"] = max(state["act"], peak - state["grads"])
        state["step"] = max(state["step"], peak)

    def traced(kernel):
        def run(inputs):
            tracemalloc.reset_peak()
            values = kernel.run(inputs)
            note(kernel.node.outputs, values)
            return values

        return run

    runner = f._runner
    if runner is None:
        f.kernels[:] = [dataclasses.replace(k, run=traced(k)) for k in f.kernels]
        f.program = None  # the kernels are what is traced
    else:
        launch = runner._launch

        def traced_launch(views, step, kernels, slots):
            tracemalloc.reset_peak()
            launch(views, step, kernels, slots)
            note(kernels[step.kernel].node.outputs, [slots[s] for s in step.writes])

        runner._launch = traced_launch
        f.free()
    gc.collect()
    tracemalloc.start()
    state["base"] = tracemalloc.get_traced_memory()[0]
    f(*args)
    tracemalloc.stop()
    return {"traced_step": state["step"], "traced_act": state["act"]}


def worker_flowc(strategy, layers, width, batch, repeats, compiled=False) -> dict:
    """``compiled``: let a one-stream function run as one compiled program where flowc
    makes one; otherwise every configuration walks the plan's kernels (compiled drivers,
    values in an arena), so that they compare like with like (a function under a memory
    budget has no whole-function program)."""
    import flowc
    import flowc.tensor as T
    from flowc.kernels import compile_nodes
    from flowc.sched.remat import MemoryBudgetError

    xv, wv = chain_data(layers, width, batch)
    x = T.fmatrix("x")
    ws = [T.fmatrix(f"W{i}") for i in range(layers)]
    h = x
    for w in ws:
        h = T.tanh(h @ w)
    loss = (h**2).sum()
    outputs = [loss, *flowc.grad(loss, ws)]
    out = {}
    if strategy == "none":
        f = flowc.function([x, *ws], outputs)
    else:
        budget = budget_bytes(layers, width, batch)
        f = flowc.function([x, *ws], outputs, memory_budget=budget, remat=strategy)
        try:
            f(xv, *wv)
        except MemoryBudgetError as exc:
            # Measure the nearest plan the strategy can make instead.
            out["missed_budget"] = budget
            f = flowc.function([x, *ws], outputs, memory_budget=exc.smallest_peak, remat=strategy)
    program = getattr(f, "program", None)
    if not compiled:
        # Walk the plan's kernels as compiled drivers, one per node, with the values in the
        # arena of the static plan: what a function under a budget runs.
        f.program = None
        if f._runner is None and f.kernels is not None:
            drivers = compile_nodes([k.node for k in f.kernels])
            f._attach_runner(drivers)
    elif program is None:
        raise RuntimeError("this function has no compiled program (no C++ compiler?)")
    out.update(measure_step(lambda: f(xv, *wv), repeats))
    plan, _ = f.memory_report(xv, *wv)
    out["planned_peak"] = plan.peak_bytes
    # The plan keeps inputs and outputs (the gradients) for the whole step: the rest of
    # its arena is what the activations and temporaries need.
    kept = xv.nbytes + 2 * sum(w.nbytes for w in wv) + 4  # x, W, their gradients, the loss
    out["planned_act"] = plan.peak_bytes - kept
    if strategy != "none":
        out["recomputed_nodes"] = f.remat_plan.n_recomputed_nodes
    if not compiled:
        out.update(trace_kernels(f, [xv, *wv]))
    return out


def worker_jax(checkpoint, layers, width, batch, repeats) -> dict:
    import jax
    import jax.numpy as jnp

    xv, wv = chain_data(layers, width, batch)
    k = max(1, round(math.sqrt(layers)))

    def segment(h, ws):
        for w in ws:
            h = jnp.tanh(h @ w)
        return h

    def loss(ws, x):
        h = x
        for i in range(0, layers, k):
            part = jax.checkpoint(segment) if checkpoint else segment
            h = part(h, ws[i : i + k])
        return (h**2).sum()

    step = jax.jit(jax.value_and_grad(loss))
    ws, x = [jnp.asarray(w) for w in wv], jnp.asarray(xv)
    out = measure_step(lambda: jax.block_until_ready(step(ws, x)), repeats)
    try:  # XLA's buffer assignment: the temporaries of the step (outputs not included)
        out["planned_act"] = int(step.lower(ws, x).compile().memory_analysis().temp_size_in_bytes)
    except Exception:  # noqa: BLE001 - an optional figure
        pass
    return out


def worker_torch(checkpoint, layers, width, batch, repeats) -> dict:
    import torch
    from torch.utils.checkpoint import checkpoint_sequential

    xv, wv = chain_data(layers, width, batch)
    blocks = []
    for w in wv:
        lin = torch.nn.Linear(width, width, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
        blocks += [lin, torch.nn.Tanh()]
    model = torch.nn.Sequential(*blocks)
    x = torch.from_numpy(xv)
    k = max(1, round(math.sqrt(layers)))

    params = list(model.parameters())

    def step():  # returns the gradients, as the others do, instead of keeping them in .grad
        h = checkpoint_sequential(model, k, x, use_reentrant=False) if checkpoint else model(x)
        return torch.autograd.grad((h**2).sum(), params)

    return measure_step(step, repeats)


WORKERS = {
    "flowc none": lambda *a: worker_flowc("none", *a),
    "flowc none, compiled program": lambda *a: worker_flowc("none", *a, compiled=True),
    "flowc sqrt": lambda *a: worker_flowc("sqrt", *a),
    "flowc mincut": lambda *a: worker_flowc("mincut", *a),
    "jax": lambda *a: worker_jax(False, *a),
    "jax checkpoint": lambda *a: worker_jax(True, *a),
    "torch": lambda *a: worker_torch(False, *a),
    "torch checkpoint_sequential": lambda *a: worker_torch(True, *a),
}


def run_worker(name, args) -> dict | str:
    """Run configuration ``name`` in a fresh process; its dict, or why it did not run."""
    env = dict(os.environ, **WORKER_ENV)
    if args.threads:
        n = str(args.threads)
        env.update(OPENBLAS_NUM_THREADS=n, OMP_NUM_THREADS=n, MKL_NUM_THREADS=n)
        env["XLA_FLAGS"] = (
            env.get("XLA_FLAGS", "") + f" --xla_cpu_multi_thread_eigen=false "
            f"intra_op_parallelism_threads={n}"
        ).strip()
    cmd = [sys.executable, __file__, "--worker", name]
    for flag in ("layers", "width", "batch", "repeats"):
        cmd += [f"--{flag}", str(getattr(args, flag))]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit status {done.returncode}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def importable(module) -> bool:
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


def w6(args) -> None:
    L, width, batch = args.layers, args.width, args.batch
    act = batch * width * 4
    weights = L * width * width * 4
    threads = f"{args.threads} BLAS thread(s)" if args.threads else "default threads"
    print(
        f"\nW6: chain of {L} layers tanh(h @ W), width {width}, batch {batch}, float32 (to keep "
        f"it fast); the step computes the loss and all {L} gradients; each configuration in a "
        f"fresh process, {threads}."
    )
    print(
        f"one layer's activation (a) = {act / MIB:.2f} MiB; weights = gradients = "
        f"{weights / MIB:.0f} MiB; remat budget = weights + input + gradients + 2*sqrt(L) a = "
        f"{budget_bytes(L, width, batch) / MIB:.1f} MiB"
    )
    print(
        f"target: activation memory <= 2*sqrt(L) = {2 * math.sqrt(L):.0f} a at <= 1.35x the "
        f"time of no recomputation."
    )
    print(
        f"step s: median [min-max] of {args.repeats} steps after a first one; cpu s: CPU time "
        f"per step (all threads); act: the most bytes live during a kernel less the gradients "
        f"made by then (tracemalloc, per kernel), in a; planned: the static plan less inputs "
        f"and outputs (jax: XLA's temporaries), in a; peak MiB: resident-set growth during one "
        f"step (all gradients included)"
    )
    names = ["flowc none", "flowc sqrt", "flowc mincut", "flowc none, compiled program"]
    for peer, configs in (
        ("jax", ["jax", "jax checkpoint"]),
        ("torch", ["torch", "torch checkpoint_sequential"]),
    ):
        if importable(peer):
            names += configs
        else:
            print(f"{peer}: not importable here, skipped")
    print(
        f"  {'configuration':<30}{'step s':>20}{'cpu s':>7}{'x time':>8}{'act':>7}"
        f"{'planned':>9}{'peak MiB':>10}{'first s':>9}"
    )
    base = {}
    for name in names:
        r = run_worker(name, args)
        if isinstance(r, str):
            print(f"  {name:<30}failed: {r}")
            continue
        family = name.split()[0]
        med = statistics.median(r["times"])
        base.setdefault(family, med)
        traced = f"{r['traced_act'] / act:.1f}" if "traced_act" in r else "-"
        plan = f"{r['planned_act'] / act:.1f}" if "planned_act" in r else "-"
        rss_step = f"{r['rss_step'] / MIB:.0f}" if r.get("rss_step") else "-"
        print(
            f"  {name:<30}{fmt(r['times'], digits=2):>20}{r['cpu']:>7.2f}"
            f"{med / base[family]:>8.2f}{traced:>7}{plan:>9}{rss_step:>10}{r['first_s']:>9.2f}"
        )
        notes = []
        if "recomputed_nodes" in r:
            notes.append(f"{r['recomputed_nodes']} nodes recomputed")
        if "missed_budget" in r:
            notes.append(
                f"misses the budget; measured at its smallest plan, "
                f"{r['planned_peak'] / MIB:.1f} MiB"
            )
        if notes:
            print(f"  {'':<30}({'; '.join(notes)})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="L=16, width 256, batch 128")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=64)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument(
        "--threads", type=int, default=1, help="BLAS threads per W6 process (0: default)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.small:
        args.layers, args.width, args.batch = 16, 256, 128
    if args.worker:
        result = WORKERS[args.worker](args.layers, args.width, args.batch, args.repeats)
        print(json.dumps(result))
        return
    print(machine())
    try:
        from threadpoolctl import threadpool_info

        print(
            "BLAS: "
            + ", ".join(
                f"{i['internal_api']} {i['num_threads']} threads" for i in threadpool_info()
            )
        )
    except ImportError:
        pass
    planned(args.repeats, args.small)
    w6(args)


if __name__ == "__main__":
    main()
