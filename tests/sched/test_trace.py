"""Chrome-trace export and drawing of plans: the JSON loads and matches the plan's launches,
estimated streams never overlap, memory over time peaks at the plan's lower bound."""

import json
import sys
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc.sched.memory import fgraph_buffers, infer_shapes
from flowc.sched.plan import Launch, Wait
from flowc.sched.trace import draw, memory_over_time, timeline, to_chrome_trace


def two_branches(devices="cpu:1", streams=2, schedule="heft"):
    """Two independent products feeding one sum, compiled on several streams."""
    x, w = T.dmatrices("x", "w")
    a = T.tanh(x @ w)
    b = T.exp(w @ x) * 0.5
    out = (a + b).sum() + (a * 2).mean()
    with flowc.config.change(devices=devices, streams=streams, schedule=schedule):
        return flowc.function([x, w], out, profile=True)


def values(n=20):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, n)) * 0.1, rng.normal(size=(n, n)) * 0.1


def launches(plan):
    return [s for p in plan.streams for s in p.steps if isinstance(s, Launch)]


def load(path):
    with open(path) as fh:
        return json.load(fh)["traceEvents"]


def kernel_events(events):
    return [e for e in events if e["ph"] == "X" and e["cat"] == "kernel"]


@pytest.mark.parametrize("devices,streams", [("cpu:1", 2), ("cpu:2", 1), ("cpu:2", 2)])
def test_estimated_trace_has_one_event_per_launch(tmp_path, devices, streams):
    f = two_branches(devices, streams)
    path = tmp_path / "trace.json"
    n = to_chrome_trace(f.plan, path, f.kernels)
    events = load(path)
    assert n == len(events)
    xs = kernel_events(events)
    assert sorted(e["args"]["kernel"] for e in xs) == sorted(s.kernel for s in launches(f.plan))
    for e in xs:
        assert e["dur"] >= 0 and e["ts"] >= 0
        assert e["name"] == str(f.kernels[e["args"]["kernel"]].node.op)
    assert {e["name"] for e in xs} >= {"Dot"}
    # One process per device, named after it; each event's thread is its stream's.
    names = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert sorted(names.values()) == sorted({p.device for p in f.plan.streams})
    where = {
        s.kernel: (p.device, p.stream)
        for p in f.plan.streams
        for s in p.steps
        if isinstance(s, Launch)
    }
    threads = {
        (names[e["pid"]], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"
    }
    for e in xs:
        device, stream = where[e["args"]["kernel"]]
        assert names[e["pid"]] == device
        assert threads[(device, e["tid"])] == f"stream {stream}"


@pytest.mark.parametrize("devices,streams", [("cpu:1", 2), ("cpu:2", 1)])
def test_estimated_streams_do_not_overlap(tmp_path, devices, streams):
    f = two_branches(devices, streams)
    to_chrome_trace(f.plan, tmp_path / "t.json", f.kernels)
    per_thread = defaultdict(list)
    for e in load(tmp_path / "t.json"):
        if e["ph"] == "X":
            per_thread[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"]))
    assert len(per_thread) >= 2  # the branches really are on two streams
    for spans in per_thread.values():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start >= end - 1e-9


def test_copies_and_events_appear_on_two_devices(tmp_path):
    f = two_branches("cpu:2", 1)
    to_chrome_trace(f.plan, tmp_path / "t.json", f.kernels)
    events = load(tmp_path / "t.json")
    copies = [e for e in events if e["ph"] == "X" and e["cat"] == "copy"]
    assert len(copies) == f.plan.counts()["copy"] > 0
    # Every Wait of the plan ends a flow arrow that a Record starts.
    waited = {s.event for p in f.plan.streams for s in p.steps if isinstance(s, Wait)}
    starts = {e["id"] for e in events if e["ph"] == "s"}
    ends = {e["id"] for e in events if e["ph"] == "f"}
    assert ends == waited
    assert ends <= starts


def test_measured_trace_follows_the_profile(tmp_path):
    f = two_branches()
    x, w = values()
    np.testing.assert_allclose(
        f(x, w), (np.tanh(x @ w) + np.exp(w @ x) * 0.5).sum() + (np.tanh(x @ w) * 2).mean()
    )
    path = tmp_path / "measured.json"
    to_chrome_trace(f.plan, path, f.kernels, profile=f.profile)
    xs = kernel_events(load(path))
    assert len(xs) == len(launches(f.plan)) == len(f.profile.last_trace)
    wall_us = f.profile.wall[-1] * 1e6
    measured = {k: (t0, t1) for k, _, _, t0, t1 in f.profile.last_trace}
    for e in xs:
        t0, t1 = measured[e["args"]["kernel"]]
        assert e["ts"] == pytest.approx(t0 * 1e6)
        assert e["dur"] == pytest.approx((t1 - t0) * 1e6)
        assert 0 <= e["ts"] and e["ts"] + e["dur"] <= wall_us
        assert e["args"]["source"] == "measured"
        assert "estimated_us" in e["args"]


def test_serial_plan_needs_a_profile(tmp_path):
    x = T.dvector("x")
    f = flowc.function([x], T.exp(x).sum(), profile=True)
    assert f.plan.estimates == ()
    with pytest.raises(ValueError, match="profile=True"):
        to_chrome_trace(f.plan, tmp_path / "t.json", f.kernels)
    with pytest.raises(ValueError, match="call the function once"):
        to_chrome_trace(f.plan, tmp_path / "t.json", f.kernels, f.profile)
    f([1.0, 2.0])
    to_chrome_trace(f.plan, tmp_path / "t.json", f.kernels, f.profile)
    xs = kernel_events(load(tmp_path / "t.json"))
    assert [e["args"]["kernel"] for e in xs] == list(range(len(f.kernels)))


def test_names_without_kernels(tmp_path):
    f = two_branches()
    to_chrome_trace(f.plan, tmp_path / "t.json")
    names = {e["name"] for e in kernel_events(load(tmp_path / "t.json"))}
    assert names == {f"kernel {k}" for k in range(len(f.kernels))}


def test_bad_arguments(tmp_path):
    f = two_branches()
    with pytest.raises(TypeError, match="ExecutionPlan"):
        to_chrome_trace("plan", tmp_path / "t.json")
    with pytest.raises(TypeError, match="profile"):
        to_chrome_trace(f.plan, tmp_path / "t.json", profile=[1, 2])
    with pytest.raises(ValueError, match="kernels"):
        to_chrome_trace(f.plan, tmp_path / "t.json", f.kernels[:1])


def test_memory_over_time_by_hand():
    # a (8 B, kept) -> s0 -> b (16 B) -> s1 -> c (4 B), b also read by s2 -> d (2 B, kept)
    kernels = [SimpleNamespace(node=n) for n in ("s0", "s1", "s2")]
    buffers = {
        "reads": {"s0": ["a"], "s1": ["b"], "s2": ["b", "c"]},
        "writes": {"s0": ["b"], "s1": ["c"], "s2": ["d"]},
        "sizes": {"a": 8, "b": 16, "c": 4, "d": 2},
        "keep": {"a", "d"},
    }
    entries = [(0, "cpu:0", 0, 0.0, 1.0), (1, "cpu:0", 0, 1.0, 2.0), (2, "cpu:0", 0, 2.0, 4.0)]
    points = memory_over_time(buffers, kernels, entries)
    # at 0: a, d (kept) and b; at 1: + c; at 4 (end) everything is gone
    assert points == [(0.0, 26), (1.0, 30), (4.0, 0)]
    with pytest.raises(ValueError, match="no time"):
        memory_over_time(buffers, kernels, entries[:2])
    with pytest.raises(TypeError, match="fgraph_buffers"):
        memory_over_time([1, 2], kernels, entries)


def test_memory_over_time_peaks_at_the_lower_bound():
    x = T.dmatrix("x")
    ws = [T.dmatrix(f"w{i}") for i in range(3)]
    h = x
    for w in ws:
        h = T.tanh(h @ w)
    cost = (h**2).sum()
    f = flowc.function([x, *ws], [cost, *flowc.grad(cost, ws)], profile=True)
    args = [np.full((6, 5), 0.1)] + [np.full((5, 5), 0.2)] * 3
    f(*args)
    report, _ = f.memory_report(*args)
    shapes = infer_shapes(f.fgraph, {v: a.shape for v, a in zip(f.fgraph.inputs, args)})
    buffers = fgraph_buffers(f.fgraph, [k.node for k in f.kernels], shapes)
    points = memory_over_time(buffers, f.kernels, f.profile.last_trace)
    assert max(b for _, b in points) == report.lower_bound
    assert points[-1][1] == 0


def test_draw_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    f = two_branches("cpu:2", 2)
    draw(f.plan, tmp_path / "est.png", f.kernels)
    args = values()
    f(*args)
    shapes = infer_shapes(f.fgraph, {v: a.shape for v, a in zip(f.fgraph.inputs, args)})
    buffers = fgraph_buffers(f.fgraph, [k.node for k in f.kernels], shapes)
    draw(f.plan, tmp_path / "mem.png", f.kernels, f.profile, memory=buffers)
    draw(f.plan, tmp_path / "pts.png", profile=f.profile, memory=[(0.0, 10), (1e-3, 2**20)])
    for name in ("est.png", "mem.png", "pts.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    with pytest.raises(TypeError, match="time_s, bytes"):
        draw(f.plan, tmp_path / "bad.png", memory=[1, 2])
    with pytest.raises(ValueError, match="kernels"):
        draw(f.plan, tmp_path / "bad.png", memory=buffers)


def test_draw_without_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    f = two_branches()
    with pytest.raises(ImportError, match=r"pip install flowc\[plot\]"):
        draw(f.plan, tmp_path / "x.png")


def test_timeline_is_sorted_and_labels_its_source():
    f = two_branches()
    entries, source = timeline(f.plan)
    assert source == "estimated"
    assert [e[3] for e in entries] == sorted(e[3] for e in entries)
    f(*values())
    entries, source = timeline(f.plan, f.profile)
    assert source == "measured" and len(entries) == len(f.kernels)
