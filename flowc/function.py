"""``function()``: the pipeline from user graph to callable, and the compiled ``Function``.

spec = normalize(...)            what the user asked for (In, Out, updates, givens)
fgraph = build_graph(spec)       one FunctionGraph: outputs, then update values
fgraph = rewrite(fgraph, mode)   flowc.pipeline.PIPELINE
kernels = lower(fgraph, mode)    flowc.kernels: one kernel per node
plan = schedule_plan(...)        flowc.sched: placement on streams, sync, order
Function(spec, fgraph, kernels, plan)  checks inputs, executes, applies updates
"""

from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np

from flowc.config import config
from flowc.graph.basic import Constant, Variable, clone_replace, graph_inputs
from flowc.graph.destroy import pure_view
from flowc.graph.fg import FunctionGraph
from flowc.kernels import compile_nodes, compile_program, lower
from flowc.pipeline import MODES, resolve_mode, rewrite
from flowc.sched import execute
from flowc.sched.arena import ArenaRunner
from flowc.sched.plan import device_slots, make_plan, schedule_plan
from flowc.sharedvar import SharedVariable
from flowc.tensor.var import as_tensor_variable

# Modes whose one-stream functions run compiled kernels (py and nanguard run perform).
COMPILED_MODES = ("fast_run", "fast_compile", "check")


class UnusedInputError(ValueError):
    """An input of ``function`` is not used by any output or update."""


class In:
    """An input with options: a ``value`` makes it optional, ``name`` a keyword."""

    def __init__(
        self, variable, name=None, value=None, borrow=False, allow_downcast=None, mutable=False
    ):
        if not isinstance(variable, Variable):
            raise TypeError(f"In() wraps a symbolic variable, got {type(variable).__name__}")
        if isinstance(variable, Constant):
            raise TypeError(f"In(): {variable} is a constant, not an input")
        self.variable = variable
        self.name = name if name is not None else variable.name
        self.has_default = value is not None
        self.value = value
        self.borrow = borrow
        self.allow_downcast = allow_downcast
        self.mutable = mutable


class Out:
    """An output with options: ``borrow=True`` may return internal storage."""

    def __init__(self, variable, borrow=False):
        self.variable = as_tensor_variable(variable)
        self.borrow = borrow


@dataclasses.dataclass
class FunctionSpec:
    """What the user asked for, normalized; kept to recompile after unpickling."""

    inputs: list[In]
    outputs: list[Out]
    output_keys: list | None  # dict keys, if outputs was a dict
    single_output: bool
    updates: list[tuple[SharedVariable, Variable]]
    givens: list[tuple[Variable, Variable]]
    mode: str
    schedule: str | None
    name: str | None
    on_unused_input: str
    allow_input_downcast: bool | None
    memory_budget: int | None = None
    remat: str = "greedy"
    profile: bool = False


def function(
    inputs,
    outputs=None,
    updates=None,
    givens=None,
    mode=None,
    name=None,
    on_unused_input=None,
    allow_input_downcast=None,
    profile=False,
    no_default_updates=False,
    schedule=None,
    memory_budget=None,
    remat="greedy",
):
    """Compile ``outputs`` (a variable, list or dict) as a function of ``inputs``.

    ``updates`` (pairs or a dict) give new values of shared variables, applied
    after the outputs are computed; ``givens`` substitutes variables in the graph.
    ``schedule`` names the placement strategy (default ``config.schedule``) over the
    ``config.devices`` x ``config.streams`` slots. With ``memory_budget`` (bytes), the
    first call plans the memory for its input shapes and recomputes forward values
    (strategy ``remat``: 'sqrt', 'greedy' or 'mincut') so that the plan fits.

    >>> import flowc, flowc.tensor as T
    >>> x, y = T.dscalars("x", "y")
    >>> f = flowc.function([x, y], x * y + x)
    >>> float(f(2.0, 3.0))
    8.0
    """
    spec = normalize(
        inputs,
        outputs,
        updates,
        givens,
        mode,
        name,
        on_unused_input,
        allow_input_downcast,
        schedule,
    )
    if memory_budget is not None:
        from flowc.sched.remat import check_budget

        check_budget(memory_budget, remat)
        spec = dataclasses.replace(spec, memory_budget=memory_budget, remat=remat)
    if profile:
        spec = dataclasses.replace(spec, profile=True)
    return compile_spec(spec)


def compile_spec(spec: FunctionSpec) -> Function:
    """Run the pipeline stages on a normalized spec."""
    start = time.perf_counter()
    fgraph, shared_inputs = build_graph(spec)
    if spec.memory_budget is None:
        fgraph = rewrite(fgraph, spec.mode)
        kernels = lower(fgraph, spec.mode)
        slots = device_slots(config.devices, config.streams)
        plan = schedule_plan(fgraph, kernels, spec.schedule or config.schedule, slots)
    else:
        # Planned at the first call, when shapes are known. In-place ops would pin
        # forward values, so that step is left out.
        fgraph = rewrite(fgraph, spec.mode, [s for s in MODES[spec.mode] if s != "inplace"])
        kernels, plan = None, None
    fn = Function(spec, fgraph, shared_inputs, kernels, plan)
    if (
        plan is not None
        and len(plan.streams) == 1
        and spec.mode in COMPILED_MODES
        and config.linker == "c"
        and not spec.profile
    ):
        # One stream: the whole function is one compiled program, no per-node Python.
        fn.program = compile_program(fgraph)
        if fn.program is not None:
            fn.fallback_ops = list(fn.program.fallback_ops)
            # The program returns fresh, writable arrays (it copies an output that is an
            # input), so unless an output is a constant or shared storage, nothing needs
            # copying on the way out.
            fn._program_owns = not any(
                isinstance(v, Constant) or isinstance(v, SharedVariable) or v.owner is None
                for v in fgraph.outputs
            )
            plain = not shared_inputs and not spec.updates and spec.output_keys is None
            if fn._program_owns and plain and all(d is not None for d, _ in fn._fast):
                fn._hot = fn.program.hot_call(single=spec.single_output)
    elif plan is not None and spec.mode in COMPILED_MODES and config.linker == "c":
        # Several streams: each node is its own compiled driver, launched by the stream
        # workers into arenas that the static memory plan lays out once per input shapes.
        fn._attach_runner(compile_nodes([k.node for k in kernels]))
    fn.compile_seconds = time.perf_counter() - start
    if spec.mode == "check":
        from flowc.checking import CheckedFunction

        return CheckedFunction(fn)
    return fn


def _as_pairs(mapping, what):
    if mapping is None:
        return []
    if isinstance(mapping, dict):
        return list(mapping.items())
    pairs = list(mapping)
    for p in pairs:
        if not (isinstance(p, (tuple, list)) and len(p) == 2):
            raise TypeError(f"{what} must be a dict or a list of (variable, value) pairs")
    return [tuple(p) for p in pairs]


def normalize(
    inputs,
    outputs,
    updates,
    givens,
    mode,
    name,
    on_unused_input,
    allow_input_downcast,
    schedule=None,
) -> FunctionSpec:
    """Check the arguments of ``function`` and put them in one shape."""
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"function: inputs must be a list, got {type(inputs).__name__}")
    ins = [x if isinstance(x, In) else In(x) for x in inputs]
    seen = set()
    for i in ins:
        if isinstance(i.variable, SharedVariable):
            raise TypeError(
                f"function: shared variable {i.variable} cannot be an explicit "
                f"input; it is an implicit one"
            )
        if i.variable in seen:
            raise ValueError(f"function: input {i.variable} is given twice")
        seen.add(i.variable)
    keys, single = None, False
    if outputs is None:
        outs = []
    elif isinstance(outputs, dict):
        keys = list(outputs)
        outs = list(outputs.values())
    elif isinstance(outputs, (list, tuple)):
        outs = list(outputs)
    else:
        outs, single = [outputs], True
    outs = [o if isinstance(o, Out) else Out(o) for o in outs]
    ups = []
    for target, value in _as_pairs(updates, "updates"):
        if not isinstance(target, SharedVariable):
            raise TypeError(
                f"function: update target {target} is not a shared variable; "
                f"only shared variables can be updated"
            )
        value = as_tensor_variable(value)
        if value.ndim != target.ndim:
            raise TypeError(
                f"function: the update of {target} has {value.ndim} dims, "
                f"{target} has {target.ndim}"
            )
        if value.dtype != target.dtype:
            raise TypeError(
                f"function: the update of {target} ({target.dtype}) is of dtype "
                f"{value.dtype}; cast it, e.g. with T.cast(value, "
                f"'{target.dtype}')"
            )
        if any(t is target for t, _ in ups):
            raise ValueError(f"function: {target} is updated twice")
        ups.append((target, value))
    gv = []
    for var, value in _as_pairs(givens, "givens"):
        value = as_tensor_variable(value)
        if not isinstance(var, Variable):
            raise TypeError(f"givens: key {var!r} is not a symbolic variable")
        if value.ndim != var.ndim or value.dtype != var.dtype:
            raise TypeError(
                f"givens: {var} ({var.type}) cannot be replaced by {value} ({value.type})"
            )
        gv.append((var, value))
    policy = on_unused_input or config.on_unused_input
    if policy not in ("raise", "warn", "ignore"):
        raise ValueError(f"on_unused_input must be raise, warn or ignore, got {policy!r}")
    return FunctionSpec(
        ins,
        outs,
        keys,
        single,
        ups,
        gv,
        resolve_mode(mode),
        schedule,
        name,
        policy,
        allow_input_downcast,
    )


def build_graph(spec: FunctionSpec):
    """The FunctionGraph of outputs then update values, over explicit then shared inputs."""
    targets = [o.variable for o in spec.outputs] + [v for _, v in spec.updates]
    if spec.givens:
        targets = clone_replace(targets, dict(spec.givens))
    explicit = [i.variable for i in spec.inputs]
    used = set(graph_inputs(targets))
    for i in spec.inputs:
        if i.variable not in used:
            msg = (
                f"function: input {i.variable} is not used to compute any output or "
                f"update (pass on_unused_input='ignore' to allow this)"
            )
            if spec.on_unused_input == "raise":
                raise UnusedInputError(msg)
            if spec.on_unused_input == "warn":
                warnings.warn(msg, stacklevel=4)
    shared_inputs = [v for v in graph_inputs(targets) if isinstance(v, SharedVariable)]
    fgraph = FunctionGraph(explicit + shared_inputs, targets, clone=True)
    return fgraph, shared_inputs


def _fallback_ops(kernels, drivers=None) -> list[str]:
    """The ops that run their Python ``perform``: every kernel's, or, given compiled
    ``drivers`` (one per kernel), those without one, views aside (a view costs nothing)."""
    if drivers is None:
        return sorted({str(k.node.op) for k in kernels if k.backend == "py"})
    return sorted(
        {
            str(k.node.op)
            for k, d in zip(kernels, drivers, strict=True)
            if d is None and not pure_view(k.node.op)
        }
    )


class Function:
    """A compiled function: call it with the inputs' values (positionally or by name)."""

    def __init__(self, spec, fgraph, shared_inputs, kernels, plan):
        self.spec = spec
        self.fgraph = fgraph
        self.maker = self  # Theano's f.maker.fgraph
        self.shared_inputs = shared_inputs
        self.kernels = kernels
        self.plan = plan
        self.name = spec.name
        self.fallback_ops = _fallback_ops(kernels or ())
        self.profile = Profile() if spec.profile else None
        self._program = None  # the CompiledFunction, when the function runs compiled
        self._program_owns = False
        self._hot = None  # program.hot_call(): the whole call for well-typed arguments
        self._runner = None  # sched.arena.ArenaRunner of a multi-stream compiled plan
        # The linker in force at compile time: a plan made at the first call follows it.
        self._linker = config.linker if spec.mode in COMPILED_MODES else "py"
        self._n_out = len(spec.outputs)
        self._single_plain = spec.single_output and not spec.updates
        # Inputs the fast path of __call__ accepts as they are: (dtype, ndim), when no
        # static size, default or downcast rule needs looking at.
        self._fast = tuple(
            (i.variable.type.numpy_dtype, i.variable.ndim)
            if all(d is None for d in i.variable.type.shape)
            else (None, -1)
            for i in spec.inputs
        )
        self._by_name = {i.name: k for k, i in enumerate(spec.inputs) if i.name}
        self._inputs = [
            (i, i.variable.type, i.variable.name or f"#{k}") for k, i in enumerate(spec.inputs)
        ]

    @property
    def program(self):
        """The ``CompiledFunction`` that runs a one-stream function whole (None: the plan's
        kernels run instead). Setting it drops the hot call path made from the old one."""
        return self._program

    @program.setter
    def program(self, value):
        self._program = value
        self._hot = None

    def __repr__(self):
        return f"<flowc.Function {self.name or ''} of {len(self.spec.inputs)} inputs>"

    def __call__(self, *args, **kwargs):
        if self._hot is not None and not kwargs:
            out = self._hot(args)
            if out is not None:
                return out
        values = None
        if not kwargs and len(args) == len(self._fast):
            # The common case in one pass: ndarrays of exactly the declared dtype and
            # ndim, no static sizes to check. Anything else goes through _bind.
            values = list(args)
            for x, (dtype, ndim) in zip(values, self._fast, strict=True):
                if type(x) is not np.ndarray or x.dtype is not dtype or x.ndim != ndim:
                    values = None
                    break
        if values is None:
            values = self._bind(args, kwargs)
        for s in self.shared_inputs:
            values.append(s._value)
        if self.plan is None:
            self._plan_within_budget(values)
        if self._program is not None:
            results = self._program(values)
            if self._program_owns:
                if self._single_plain:
                    return results[0]
                return self._deliver(results[: self._n_out], results[self._n_out :])
        else:
            trace = None if self.profile is None else []
            start = time.perf_counter()
            if self._runner is not None:
                results = self._runner(values, trace)
            else:
                results = execute(self.plan, self.kernels, values, trace)
            if trace is not None:
                self.profile.record(trace, start, time.perf_counter())
        outs, new = results[: self._n_out], results[self._n_out :]
        outs = [
            self._own(v, o.borrow, values) for v, o in zip(outs, self.spec.outputs, strict=True)
        ]
        return self._deliver(outs, [self._own(v, False, values) for v in new])

    def _deliver(self, outs, new):
        """Apply the updates, then return the outputs in the shape the user asked for."""
        for (target, _), value in zip(self.spec.updates, new, strict=True):
            target._value = value
        if self.spec.output_keys is not None:
            return dict(zip(self.spec.output_keys, outs, strict=True))
        if self.spec.single_output:
            return outs[0]
        return outs

    def reschedule(self, strategy=None):
        """Rebuild the plan from the measured per-node times of ``self.profile``."""
        from flowc.sched.cost import CostModel

        if self.profile is None or not self.profile.calls:
            raise ValueError(
                "reschedule() needs measured times: compile with profile=True "
                "and call the function first"
            )
        model = CostModel.from_profile(self.profile.node_times(self.kernels))
        slots = device_slots(config.devices, config.streams)
        self.plan = schedule_plan(
            self.fgraph,
            self.kernels,
            strategy or self.spec.schedule or config.schedule,
            slots,
            model,
        )
        if self._runner is not None:  # the same drivers, arenas laid out for the new plan
            self._attach_runner(self._runner.drivers)
        return self.plan

    def _plan_within_budget(self, values):
        """Recompute forward values so the plan for these shapes fits the budget."""
        from flowc.sched.remat import fit_memory_budget

        shapes = {v: np.shape(x) for v, x in zip(self.fgraph.inputs, values, strict=True)}
        self.remat_plan = fit_memory_budget(
            self.fgraph, self.spec.memory_budget, shapes, strategy=self.spec.remat
        )
        self.fgraph = self.remat_plan.fgraph
        self.kernels = lower(self.fgraph, self.spec.mode, order=self.remat_plan.order)
        self.plan = make_plan(self.fgraph, self.kernels)
        self.fallback_ops = _fallback_ops(self.kernels)
        if self._linker == "c":
            # Compiled drivers in the planned order, values in an arena laid out by the
            # same static memory plan the budget was checked against.
            self._attach_runner(compile_nodes([k.node for k in self.kernels]))

    def _attach_runner(self, drivers):
        if drivers is None:
            return
        self._runner = ArenaRunner(self.fgraph, self.plan, self.kernels, drivers)
        self.fallback_ops = _fallback_ops(self.kernels, drivers)

    def free(self):
        """Release the memory this function keeps between calls (its compiled drivers'
        scratch arenas), as Theano's ``Function.free``; the next call allocates it again."""
        if self.program is not None:
            self.program.release_scratch()
        if self._runner is not None:
            self._runner.release()

    def memory_report(self, *args, **kwargs):
        """The static memory plan of this function for these inputs' shapes.

        Returns ``(plan, naive)``: the ``MemoryPlan`` of the kernels in their order
        (``peak_bytes``, ``lower_bound``, ``ratio``) and the bytes of a plan that keeps
        every value alive.
        """
        from flowc.sched.memory import fgraph_buffers, infer_shapes, plan_memory

        values = self._bind(args, kwargs) + [s.get_value(borrow=True) for s in self.shared_inputs]
        if self.plan is None:
            self._plan_within_budget(values)
        shapes = infer_shapes(
            self.fgraph, {v: np.shape(x) for v, x in zip(self.fgraph.inputs, values, strict=True)}
        )
        order = [k.node for k in self.kernels]
        buffers = fgraph_buffers(self.fgraph, order, shapes)
        return plan_memory(**buffers), sum(buffers["sizes"].values())  # naive: all kept

    def _bind(self, args, kwargs) -> list:
        n = len(self._inputs)
        if len(args) > n:
            raise TypeError(
                f"{self._label()} takes {n} inputs "
                f"({', '.join(w for _, _, w in self._inputs)}), got {len(args)}"
            )
        given = list(args) + [_MISSING] * (n - len(args))
        for key, value in kwargs.items():
            k = self._by_name.get(key)
            if k is None:
                raise TypeError(f"{self._label()} has no input named {key!r}")
            if given[k] is not _MISSING:
                raise TypeError(f"{self._label()} got input {key!r} twice")
            given[k] = value
        out = []
        for value, (inp, ttype, what) in zip(given, self._inputs, strict=True):
            if value is _MISSING:
                if not inp.has_default:
                    raise TypeError(f"{self._label()}: missing a value for input {what}")
                value = inp.value
            allow = inp.allow_downcast
            if allow is None:
                allow = self.spec.allow_input_downcast
            if allow is None:
                # Theano: a Python float may be downcast to floatX.
                allow = isinstance(value, float) and ttype.dtype == config.floatX
            out.append(
                ttype.filter(
                    value, what=f"{self._label()}: input {what}", allow_downcast=bool(allow)
                )
            )
        return out

    def _label(self):
        return f"function {self.name}" if self.name else "function"

    @staticmethod
    def _own(value, borrow, inputs):
        """A value the caller may keep: copied if it aliases an input or shared storage."""
        value = np.asarray(value)
        if borrow:
            return value
        if not value.flags.writeable or any(
            np.may_share_memory(value, i) for i in inputs if isinstance(i, np.ndarray)
        ):
            return value.copy()
        return value

    def __reduce__(self):
        return (compile_spec, (self.spec,))

    def copy(self):
        return compile_spec(self.spec)


_MISSING = object()


class Profile:
    """Measured times of a function compiled with ``profile=True``, over all its calls.

    ``times[k]`` lists the seconds kernel ``k`` took per call; ``last_trace`` holds the
    last call's ``(kernel, device, stream, start, end)`` with times relative to its start.
    """

    def __init__(self):
        self.calls = 0
        self.times: dict[int, list[float]] = {}
        self.wall: list[float] = []
        self.last_trace: list = []

    def record(self, trace, start, end):
        self.calls += 1
        self.wall.append(end - start)
        for k, _, _, t0, t1 in trace:
            self.times.setdefault(k, []).append(t1 - t0)
        self.last_trace = [(k, d, s, t0 - start, t1 - start) for k, d, s, t0, t1 in trace]

    def node_times(self, kernels) -> dict:
        """``{Apply: median seconds}``, what ``CostModel.from_profile`` takes."""
        return {kernels[k].node: float(np.median(v)) for k, v in self.times.items()}

    def summary(self, kernels, top=15) -> str:
        rows = sorted(self.times.items(), key=lambda kv: -sum(kv[1]))[:top]
        lines = [f"{self.calls} calls, median wall {np.median(self.wall) * 1e3:.3f} ms"]
        for k, v in rows:
            lines.append(f"  {np.median(v) * 1e6:10.1f} us  {kernels[k].node.op}")
        return "\n".join(lines)


_eval_cache: dict = {}


def eval_variable(var, inputs_to_values: dict):
    """Compute ``var`` given ``{input: value}``; the compiled function is cached."""
    ins = list(inputs_to_values)
    key = (var, tuple(ins))
    fn = _eval_cache.get(key)
    if fn is None:
        fn = function(ins, var, on_unused_input="ignore")
        if len(_eval_cache) > 256:
            _eval_cache.clear()
        _eval_cache[key] = fn
    return fn(*inputs_to_values.values())
