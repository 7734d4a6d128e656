"""Timelines of an ``ExecutionPlan``: Chrome-trace export (Perfetto) and a Gantt chart (PNG).

A timeline is measured (``Profile.last_trace`` of a function compiled with ``profile=True``)
or estimated by the scheduler (``plan.estimates``, empty for a serial plan).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

from flowc.sched.plan import Copy, ExecutionPlan, Launch, Record, Wait


def timeline(plan, profile=None) -> tuple[list[tuple], str]:
    """The timed steps of ``plan`` and where their times come from.

    Returns ``(entries, source)``: ``entries`` are ``(kernel index or copy label, device,
    stream, start_s, end_s)`` sorted by start, ``source`` is ``"measured"`` (from
    ``profile.last_trace``, the last call of a function compiled with ``profile=True``;
    launches only) or ``"estimated"`` (``plan.estimates``; launches and copies).
    """
    if not isinstance(plan, ExecutionPlan):
        raise TypeError(f"plan must be an ExecutionPlan, got {type(plan).__name__}")
    if profile is not None:
        trace = getattr(profile, "last_trace", None)
        if trace is None:
            raise TypeError(
                f"profile must be a flowc Profile (f.profile of a function compiled with "
                f"profile=True), got {type(profile).__name__}"
            )
        if not trace:
            raise ValueError(
                "profile.last_trace is empty: call the function once before exporting its trace"
            )
        entries, source = list(trace), "measured"
    elif plan.estimates:
        entries, source = list(plan.estimates), "estimated"
    else:
        raise ValueError(
            "this plan has no estimated times (a serial plan has none): compile the function "
            "with profile=True, call it once and pass profile=f.profile"
        )
    for e in entries:
        if len(e) != 5 or not e[3] <= e[4]:
            raise ValueError(
                f"a timeline entry must be (step, device, stream, start, end), got {e}"
            )
    entries.sort(key=lambda e: (e[3], e[4], str(e[1]), str(e[2]), str(e[0])))
    return entries, source


def _check_kernels(entries, kernels):
    if kernels is None:
        return
    for k, *_ in entries:
        if isinstance(k, int) and not 0 <= k < len(kernels):
            raise ValueError(
                f"the timeline names kernel {k} but kernels has {len(kernels)} entries; "
                f"pass the kernels of the same function (f.kernels)"
            )


def _op_name(k, kernels) -> str:
    if not isinstance(k, int):
        return str(k)  # a copy label
    if kernels is None:
        return f"kernel {k}"
    return str(kernels[k].node.op)


def _stream_key(stream):
    # Streams are ints, except named ones (the "copy" stream of a device) after them.
    return (0, stream, "") if isinstance(stream, int) else (1, 0, str(stream))


def _stream_label(stream) -> str:
    return f"stream {stream}" if isinstance(stream, int) else f"{stream} stream"


def _rows(plan, entries) -> list[tuple]:
    """``(device, stream)`` pairs of the plan and the timeline, devices then streams sorted."""
    rows = {(p.device, p.stream) for p in plan.streams} | {(e[1], e[2]) for e in entries}
    return sorted(rows, key=lambda r: (str(r[0]), _stream_key(r[1])))


def _sync_times(plan, entries):
    """When each Record and Wait of the plan happened on this timeline.

    Yields ``(kind, event, device, stream, ts, slice)``: a Record at the end of the last
    timed step before it on its stream, a Wait at the start of the next one (when the
    stream went on); ``slice`` is that step's ``(start, end)``. Steps without a time (copies
    in a measured trace) leave the sync next to them untimed, so it is skipped.
    """
    queues = defaultdict(list)  # (device, stream) -> entries in start order
    for e in entries:
        queues[(e[1], e[2])].append(e)
    for program in plan.streams:
        queue = queues.get((program.device, program.stream), [])
        by_kernel = {e[0]: e for e in queue if isinstance(e[0], int)}
        copies = iter([e for e in queue if not isinstance(e[0], int)])
        timed = []  # per step: its entry, or None
        for step in program.steps:
            if isinstance(step, Launch):
                timed.append(by_kernel.get(step.kernel))
            elif isinstance(step, Copy):
                timed.append(next(copies, None))
            else:
                timed.append(None)
        for i, step in enumerate(program.steps):
            if isinstance(step, Record):
                prev = next(
                    (timed[j] for j in range(i - 1, -1, -1) if _is_work(program.steps[j])), None
                )
                if prev is not None:
                    yield "record", step.event, program.device, program.stream, prev[4], prev
            elif isinstance(step, Wait):
                nxt = next(
                    (timed[j] for j in range(i + 1, len(timed)) if _is_work(program.steps[j])),
                    None,
                )
                if nxt is not None:
                    yield "wait", step.event, program.device, program.stream, nxt[3], nxt


def _is_work(step) -> bool:
    return isinstance(step, (Launch, Copy))


def to_chrome_trace(plan, path, kernels=None, profile=None) -> int:
    """Write the timeline of ``plan`` to ``path`` as a Chrome trace (JSON); return the number
    of events written.

    Open the file in https://ui.perfetto.dev or chrome://tracing. Each device is a
    process, each of its streams a thread; each launch (and each copy of an estimated
    timeline) is a complete event named after its op (``kernels[k].node.op``; ``kernels``
    is ``f.kernels``, without it names are ``kernel k``); Record/Wait pairs are flow
    arrows from the step before the Record to the step after the Wait, plus instant
    events. Times come from ``profile.last_trace`` when ``profile`` (``f.profile``) is
    given, else from the scheduler's ``plan.estimates``; a serial plan has none, so it
    needs a profile.

    >>> import json, os, tempfile, flowc, flowc.tensor as T
    >>> x, y = T.dmatrices("x", "y")
    >>> with flowc.config.change(streams=2, schedule="heft"):
    ...     f = flowc.function([x, y], T.tanh(x @ y) + T.exp(y @ x))
    >>> path = os.path.join(tempfile.mkdtemp(), "plan.json")
    >>> n = to_chrome_trace(f.plan, path, f.kernels)
    >>> events = json.load(open(path))["traceEvents"]
    >>> [e["tid"] for e in events if e["name"] == "Dot"]  # the two products run side by side
    [0, 1]
    """
    entries, source = timeline(plan, profile)
    _check_kernels(entries, kernels)
    rows = _rows(plan, entries)
    devices = list(dict.fromkeys(d for d, _ in rows))
    pid = {d: i for i, d in enumerate(devices)}
    tid = {}
    for d in devices:
        for i, (_, s) in enumerate(r for r in rows if r[0] == d):
            tid[(d, s)] = i
    events = []
    for d in devices:
        events.append(_meta("process_name", pid[d], None, {"name": str(d)}))
        events.append(_meta("process_sort_index", pid[d], None, {"sort_index": pid[d]}))
    for (d, s), t in tid.items():
        events.append(_meta("thread_name", pid[d], t, {"name": _stream_label(s)}))
        events.append(_meta("thread_sort_index", pid[d], t, {"sort_index": t}))
    estimated = {e[0]: e for e in plan.estimates}
    for k, d, s, start, end in entries:
        args = {"source": source}
        if isinstance(k, int):
            args["kernel"] = k
            if kernels is not None:
                args["node"] = str(kernels[k].node)[:300]
                args["backend"] = getattr(kernels[k], "backend", "")
            if source == "measured" and k in estimated:
                args["estimated_us"] = (estimated[k][4] - estimated[k][3]) * 1e6
        events.append(
            {
                "name": _op_name(k, kernels),
                "cat": "kernel" if isinstance(k, int) else "copy",
                "ph": "X",
                "ts": start * 1e6,
                "dur": (end - start) * 1e6,
                "pid": pid[d],
                "tid": tid[(d, s)],
                "args": args,
            }
        )
    for kind, ev, d, s, ts, (_, _, _, start, end) in _sync_times(plan, entries):
        where = {"pid": pid[d], "tid": tid[(d, s)]}
        events.append(
            {"name": f"{kind} e{ev}", "cat": "sync", "ph": "i", "s": "t", "ts": ts * 1e6, **where}
        )
        # Flow ends bind to the slice enclosing their time stamp: its midpoint is inside.
        flow = {"name": f"event {ev}", "cat": "sync", "id": ev, "ts": (start + end) / 2 * 1e6}
        if kind == "record":
            events.append({**flow, "ph": "s", **where})
        else:
            events.append({**flow, "ph": "f", "bp": "e", **where})
    trace = {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"source": source, "plan": plan.digest(), "generator": "flowc"},
    }
    with open(os.fspath(path), "w") as fh:
        json.dump(trace, fh)
    return len(events)


def _meta(name, pid, tid, args) -> dict:
    event = {"name": name, "ph": "M", "pid": pid, "args": args}
    if tid is not None:
        event["tid"] = tid
    return event


def memory_over_time(buffers, kernels, entries) -> list[tuple[float, int]]:
    """Bytes live over a timeline: ``[(time_s, bytes), ...]``, a step function (each value
    holds until the next time).

    ``buffers`` is ``flowc.sched.memory.fgraph_buffers(fgraph, order, shapes)`` (its steps
    are Apply nodes; ``order`` is not used), ``kernels`` the function's kernels (mapping
    nodes to kernel indices) and ``entries`` a timeline (see ``timeline``). A value lives
    from the start of the step writing it to the end of its last reader; kept values
    (inputs, outputs, constants) for the whole timeline. Copies between devices are not
    counted. On a one-stream timeline the maximum is the plan's ``lower_bound``.

    >>> import flowc, flowc.tensor as T
    >>> from flowc.sched.memory import fgraph_buffers, infer_shapes
    >>> x = T.dvector("x")
    >>> f = flowc.function([x], T.exp(x).sum(), profile=True)
    >>> _ = f([1.0, 2.0])
    >>> shapes = infer_shapes(f.fgraph, {f.fgraph.inputs[0]: (2,)})
    >>> buffers = fgraph_buffers(f.fgraph, [k.node for k in f.kernels], shapes)
    >>> max(b for _, b in memory_over_time(buffers, f.kernels, f.profile.last_trace))
    40

    (x, exp(x) and the sum: 16 + 16 + 8 bytes.)
    """
    if not isinstance(buffers, dict) or not {"reads", "writes", "sizes"} <= set(buffers):
        raise TypeError(
            "buffers must be the dict of flowc.sched.memory.fgraph_buffers(fgraph, order, "
            "shapes) (with reads, writes, sizes and keep)"
        )
    index = {kern.node: k for k, kern in enumerate(kernels)}
    span = {e[0]: (e[3], e[4]) for e in entries}
    end_all = max((e[4] for e in entries), default=0.0)
    steps = set(buffers["reads"]) | set(buffers["writes"])
    missing = [n for n in steps if index.get(n) not in span]
    if missing:
        raise ValueError(
            f"{len(missing)} steps of buffers have no time in the timeline (e.g. "
            f"{missing[0]}); pass the kernels and the timeline of the same function"
        )
    born, dies = {}, {}
    for n, outs in buffers["writes"].items():
        for v in outs:
            born[v] = span[index[n]][0]
            dies[v] = max(dies.get(v, 0.0), span[index[n]][1])
    for n, ins in buffers["reads"].items():
        for v in ins:
            dies[v] = max(dies.get(v, 0.0), span[index[n]][1])
    for v in buffers.get("keep", ()):
        born[v], dies[v] = 0.0, end_all
    changes = defaultdict(int)
    for v, t in born.items():
        changes[t] += buffers["sizes"][v]
        changes[dies[v]] -= buffers["sizes"][v]
    points, live = [], 0
    for t in sorted(changes):
        live += changes[t]
        points.append((t, live))
    return points


def draw(plan, path, kernels=None, profile=None, memory=None, title=None) -> None:
    """Draw the timeline of ``plan`` as a PNG: a Gantt chart with one row per (device,
    stream) and, with ``memory``, the bytes live over time below it.

    Times come from ``profile`` or ``plan.estimates`` as in ``to_chrome_trace``; bars are
    coloured by op (``kernels``: ``f.kernels``). ``memory`` is either a list of
    ``(time_s, bytes)`` points (a step function) or the ``fgraph_buffers`` dict of the
    function's graph, turned into points by ``memory_over_time`` over this timeline. Needs
    matplotlib (``pip install flowc[plot]``); draws with the Agg backend without touching
    pyplot's global state.

    For example, the measured timeline of a call with its memory curve::

        f = flowc.function([x, w], loss, profile=True)
        f(x_value, w_value)
        shapes = infer_shapes(f.fgraph, dict(zip(f.fgraph.inputs, [(64, 32), (32, 32)])))
        buffers = fgraph_buffers(f.fgraph, [k.node for k in f.kernels], shapes)
        draw(f.plan, "step.png", f.kernels, f.profile, memory=buffers)
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "draw() needs matplotlib, an optional extra: pip install flowc[plot]"
        ) from exc
    entries, source = timeline(plan, profile)
    _check_kernels(entries, kernels)
    if memory is not None:
        if isinstance(memory, dict):
            if kernels is None:
                raise ValueError("draw: memory given as fgraph_buffers needs kernels=f.kernels")
            memory = memory_over_time(memory, kernels, entries)
        else:
            try:
                memory = [(float(t), float(b)) for t, b in memory]
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    "draw: memory must be a list of (time_s, bytes) points or the dict of "
                    "fgraph_buffers"
                ) from exc
    rows = _rows(plan, entries)
    row = {r: i for i, r in enumerate(rows)}

    def group(k):  # what a bar's colour says: the op's class, or "copy"
        if not isinstance(k, int):
            return "copy"
        return type(kernels[k].node.op).__name__ if kernels is not None else "kernel"

    total = defaultdict(float)
    for k, *_, start, end in entries:
        total[group(k)] += end - start
    groups = sorted(total, key=lambda g: -total[g])
    height = 1.0 + 0.45 * len(rows) + (2.2 if memory else 0.0)
    fig = Figure(figsize=(10, max(height, 2.5)), layout="constrained")
    FigureCanvasAgg(fig)
    if memory:
        ax, mem_ax = fig.subplots(2, 1, sharex=True, height_ratios=[max(len(rows), 2), 3])
    else:
        ax, mem_ax = fig.subplots(1, 1), None
    colour = dict(zip(groups, _palette(len(groups)), strict=True))
    colour["copy"] = "lightgrey"
    bars = defaultdict(list)
    for k, d, s, start, end in entries:
        bars[(row[(d, s)], group(k))].append((start * 1e3, (end - start) * 1e3))
    for (y, g), spans in bars.items():
        ax.broken_barh(
            spans,
            (y - 0.4, 0.8),
            facecolors=colour[g],
            edgecolor="black",
            linewidth=0.3,
            hatch="//" if g == "copy" else None,
        )
    # An arrow from each Record to the Waits on it.
    syncs = list(_sync_times(plan, entries))
    recorded = {ev: (ts, row[(d, s)]) for kind, ev, d, s, ts, _ in syncs if kind == "record"}
    for kind, ev, d, s, ts, _ in syncs:
        if kind == "wait" and ev in recorded:
            t0, y0 = recorded[ev]
            ax.annotate(
                "",
                xy=(ts * 1e3, row[(d, s)]),
                xytext=(t0 * 1e3, y0),
                arrowprops={"arrowstyle": "->", "color": "black", "linewidth": 0.6},
            )
    ax.set_yticks(range(len(rows)), [f"{d} {_stream_label(s)}" for d, s in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    makespan = max(e[4] for e in entries)
    ax.set_title(title or f"{source} timeline, {makespan * 1e3:.3f} ms")
    shown = groups[:12]
    ax.legend(
        handles=[_patch(colour[g], g) for g in shown],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=7,
        frameon=False,
    )
    if mem_ax is not None:
        ts = [t * 1e3 for t, _ in memory]
        mib = [b / 2**20 for _, b in memory]
        mem_ax.step(ts, mib, where="post", color="tab:red")
        mem_ax.fill_between(ts, mib, step="post", alpha=0.2, color="tab:red")
        mem_ax.set_ylabel("live MiB")
        mem_ax.set_xlabel("time (ms)")
    else:
        ax.set_xlabel("time (ms)")
    fig.savefig(os.fspath(path), dpi=110)


def _palette(n) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]


def _patch(colour, label):
    from matplotlib.patches import Patch

    return Patch(facecolor=colour, edgecolor="black", linewidth=0.3, label=label)


__all__ = ["draw", "memory_over_time", "timeline", "to_chrome_trace"]
