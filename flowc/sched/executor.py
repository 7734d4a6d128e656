"""The executor: walks an ``ExecutionPlan``, one worker thread per stream.

A one-stream plan runs in the caller's thread with no synchronization at all.
With several streams, a Wait blocks only its own stream; an exception in any
worker stops the others at their next step and is re-raised in the caller with
the node named; no worker waits forever on an event that will never come.
"""

from __future__ import annotations

import threading
import time

from flowc.sched.plan import Copy, Launch, Record, Wait


class ExecutionError(RuntimeError):
    """Raised in a worker; the original exception is its ``__cause__``."""


def execute(plan, kernels, inputs: list, trace: list | None = None, launch=None) -> list:
    """Run ``plan`` on ``inputs`` and return the output values.

    With a ``trace`` list, each Launch appends ``(kernel, device, stream, start, end)``
    (``time.perf_counter`` seconds) to it: a measured profile of this run. ``launch(step,
    kernels, slots)`` runs one Launch (default: the kernel's thunk; ``sched.arena`` passes
    one that runs compiled drivers into its arenas).
    """
    launch = launch or _launch
    slots = [None] * plan.n_slots
    for s, v in zip(plan.input_slots, inputs, strict=True):
        slots[s] = v
    for s, v in plan.constants:
        slots[s] = v
    if len(plan.streams) == 1 and trace is None:
        _run_serial(plan.streams[0].steps, kernels, slots, launch)
    else:
        _run_parallel(plan, kernels, slots, trace, launch)
    return [slots[s] for s in plan.output_slots]


def _launch(step, kernels, slots):
    kernel = kernels[step.kernel]
    try:
        outs = kernel.run([slots[s] for s in step.reads])
    except Exception as exc:
        exc.add_note(f"flowc: raised while computing {kernel.node}")
        raise
    for s, v in zip(step.writes, outs, strict=True):
        slots[s] = v
    for s in step.frees:
        slots[s] = None


def _run_serial(steps, kernels, slots, launch):
    for step in steps:
        if isinstance(step, Launch):
            launch(step, kernels, slots)
        elif isinstance(step, Copy):
            slots[step.dst] = slots[step.src].copy()


def _run_parallel(plan, kernels, slots, trace, launch):
    events = [threading.Event() for _ in range(plan.n_events)]
    failed = threading.Event()
    errors = []

    def worker(program):
        try:
            for step in program.steps:
                if failed.is_set():
                    return
                if isinstance(step, Launch):
                    if trace is None:
                        launch(step, kernels, slots)
                    else:
                        t0 = time.perf_counter()
                        launch(step, kernels, slots)
                        trace.append(
                            (step.kernel, program.device, program.stream, t0, time.perf_counter())
                        )
                elif isinstance(step, Record):
                    events[step.event].set()
                elif isinstance(step, Wait):
                    while not events[step.event].wait(0.05):
                        if failed.is_set():
                            return
                elif isinstance(step, Copy):
                    slots[step.dst] = slots[step.src].copy()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)
            failed.set()

    if len(plan.streams) == 1:
        worker(plan.streams[0])  # no thread needed (profiling a serial plan)
    else:
        threads = [threading.Thread(target=worker, args=(p,), daemon=True) for p in plan.streams]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
