"""The plan builder and executor: several streams give the serial results; failures surface."""

import numpy as np
import pytest

import flowc
import flowc.tensor as T
from flowc.graph import FunctionGraph
from flowc.kernels import lower
from flowc.sched import execute, make_plan
from flowc.sched.plan import Launch, Record, Wait


def _graph():
    x, y = T.dmatrices("x", "y")
    a = T.tanh(x) * 2
    b = T.exp(y) + 1
    c = T.dot(a, b.T)
    d = (a.sum() + b.sum()) * c
    return FunctionGraph([x, y], [c, d])


def _run(plan, kernels, values):
    return execute(plan, kernels, values)


@pytest.mark.parametrize("n_streams", [1, 2, 3])
def test_round_robin_placement_matches_serial(n_streams):
    fg = _graph()
    kernels = lower(fg, "py")
    placement = {k: ("cpu:0", k % n_streams) for k in range(len(kernels))}
    plan = make_plan(fg, kernels, placement)
    serial = make_plan(fg, kernels)
    rng = np.random.default_rng(0)
    values = [rng.normal(size=(3, 4)), rng.normal(size=(3, 4))]
    for got, want in zip(_run(plan, kernels, values), _run(serial, kernels, values), strict=True):
        np.testing.assert_allclose(got, want)
    counts = plan.counts()
    assert counts["launch"] == len(kernels)
    assert counts["record"] == plan.n_events
    assert counts["wait"] >= plan.n_events  # each event is waited for at least once
    if n_streams == 1:
        assert plan.n_events == 0 and len(plan.streams) == 1


def test_events_pair_records_and_waits_across_streams():
    fg = _graph()
    kernels = lower(fg, "py")
    placement = {k: ("cpu:0", k % 2) for k in range(len(kernels))}
    plan = make_plan(fg, kernels, placement)
    recorded = {s.event for p in plan.streams for s in p.steps if isinstance(s, Record)}
    waited = {s.event for p in plan.streams for s in p.steps if isinstance(s, Wait)}
    assert recorded == waited == set(range(plan.n_events))
    # A Wait never waits for an event recorded later on its own stream.
    for p in plan.streams:
        own = [s.event for s in p.steps if isinstance(s, Record)]
        assert not set(own) & {s.event for s in p.steps if isinstance(s, Wait)}
    assert plan.digest() == make_plan(fg, kernels, placement).digest()
    assert "2 streams" in plan.summary()


def test_failure_on_one_stream_names_the_node_and_does_not_hang():
    x = T.dvector("x")
    y = T.dvector("y")
    slow = T.exp(x)
    for _ in range(20):
        slow = T.tanh(slow)
    bad = T.nlinalg.cholesky(T.outer(y, y) - 10.0)  # not positive definite: raises
    fg = FunctionGraph([x, y], [slow + bad.sum()])
    kernels = lower(fg, "py")
    bad_k = next(k for k, kern in enumerate(kernels) if "Cholesky" in str(kern.node.op))
    placement = {k: ("cpu:0", 1 if k == bad_k else 0) for k in range(len(kernels))}
    plan = make_plan(fg, kernels, placement)
    with pytest.raises(np.linalg.LinAlgError) as info:
        execute(plan, kernels, [np.ones(3), np.ones(3)])
    assert any("Cholesky" in note for note in getattr(info.value, "__notes__", []))


def test_serial_plan_frees_intermediates():
    fg = _graph()
    kernels = lower(fg, "py")
    plan = make_plan(fg, kernels)
    freed = {s for step in plan.steps if isinstance(step, Launch) for s in step.frees}
    outputs = set(plan.output_slots) | set(plan.input_slots)
    assert freed and not freed & outputs


@pytest.mark.parametrize("strategy", ["serial", "heft"])
def test_scheduled_plans_free_what_they_are_done_with(strategy):
    """Plans built from a schedule drop values as make_plan's do: every intermediate whose
    readers share a stream is freed once, by its last reader; nothing kept is freed."""
    from flowc.sched.plan import device_slots, schedule_plan

    fg = _graph()
    kernels = lower(fg, "py")
    plan = schedule_plan(fg, kernels, strategy, device_slots("cpu:2", 2))
    kept = set(plan.output_slots) | set(plan.input_slots) | {s for s, _ in plan.constants}
    readers, frees = {}, []
    for p, program in enumerate(plan.streams):
        for step in program.steps:
            if isinstance(step, Launch):
                frees += step.frees
                for s in step.reads:
                    readers.setdefault(s, set()).add(p)
    one_stream = {s for s, ps in readers.items() if len(ps) == 1 and s not in kept}
    assert one_stream and set(frees) >= one_stream
    assert len(frees) == len(set(frees)) and not set(frees) & kept
    want = execute(make_plan(fg, kernels), kernels, [np.ones((2, 3)), np.ones((4, 3))])
    got = execute(plan, kernels, [np.ones((2, 3)), np.ones((4, 3))])
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w)


def test_function_results_do_not_depend_on_the_plan():
    x = T.dvector("x")
    f = flowc.function([x], T.exp(x).sum())
    assert len(f.plan.streams) == 1
    assert float(f(np.zeros(3))) == 3.0


def test_profile_records_every_kernel_and_reschedules():
    x = T.dmatrix("x")
    w = T.dmatrix("w")
    outs = [T.tanh(T.dot(x, w)).sum(), T.exp(x).mean()]
    with flowc.config.change(devices="cpu:2", streams=1, schedule="heft"):
        f = flowc.function([x, w], outs, profile=True)
        a, b = np.ones((20, 30)), np.ones((30, 10))
        f(a, b)
        f(a, b)
        assert f.profile.calls == 2
        assert set(f.profile.times) == set(range(len(f.kernels)))
        assert all(len(v) == 2 and min(v) >= 0 for v in f.profile.times.values())
        plan = f.reschedule()
        assert plan.estimates and {e[1] for e in plan.estimates} <= {"cpu:0", "cpu:1"}
        np.testing.assert_allclose(f(a, b)[0], np.tanh(30.0) * 200)
    assert "calls" in f.profile.summary(f.kernels)
    g = flowc.function([x], x.sum())
    with pytest.raises(ValueError, match="profile=True"):
        g.reschedule()
