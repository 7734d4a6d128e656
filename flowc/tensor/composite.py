"""``Composite``: a scalar function made of a small DAG of scalar functions, the body of a fused
elementwise loop; ``FusedElemwise``: an ``Elemwise`` of a Composite with several outputs."""

from __future__ import annotations

import numpy as np

from flowc import scalar as ps
from flowc.graph.basic import Apply
from flowc.graph.type import DISCRETE_DTYPES, DTYPES, TensorType
from flowc.tensor.elemwise import (
    Elemwise,
    _check_runtime_broadcast,
    _promote,
    _sum_to_input,
    broadcast_static_shape,
    dimshuffle,
)
from flowc.tensor.var import as_tensor_variable, constant

NAME_LIMIT = 200  # characters of the body shown in a Composite's name (``expression()``: all)


class ScalarConstant:
    """A scalar constant in a Composite body: a Python number and the dtype it has there.

    Equality is by dtype and bytes, so ``0.0`` and ``-0.0`` (or two NaNs) are told apart
    the way constant merging tells them apart.
    """

    __slots__ = ("_array", "_key", "dtype", "value")

    def __init__(self, value, dtype):
        dtype = np.dtype(dtype).name
        arr = np.asarray(value, dtype=dtype)
        if arr.size != 1:
            raise ValueError(
                f"ScalarConstant: value must be a single number, got shape {arr.shape}"
            )
        arr = arr.reshape(())
        arr.setflags(write=False)
        self.dtype = dtype
        self.value = arr.item()
        self._array = arr
        self._key = (dtype, arr.tobytes())

    def array(self) -> np.ndarray:
        """The value as a read-only 0-d array (strongly typed in NumPy's promotion)."""
        return self._array

    def __eq__(self, other):
        return isinstance(other, ScalarConstant) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    def __reduce__(self):
        return (ScalarConstant, (self.value, self.dtype))

    def __repr__(self):
        return f"ScalarConstant({self.value!r}, {self.dtype!r})"

    def __str__(self):
        return repr(self.value)


class Composite(ps.ScalarOp):
    """A scalar function given by ``steps`` over ``nin`` inputs, with one or more ``outputs``.

    The body is a list of registers: ``0 .. nin-1`` are the inputs and ``nin + k`` is the
    result of ``steps[k]``. A step is ``(scalar_op, refs)``, each ref a register number
    (an input or an earlier step) or a ``ScalarConstant``. ``outputs`` lists the registers
    returned, all of them steps. A kernel renderer walks ``steps`` in order, emitting one
    statement per step into one loop body (``step_dtypes`` gives each step's C type).

    Each step's result is cast to the dtype its op gives on its arguments' dtypes, exactly
    as a separate ``Elemwise`` node would, so a fused graph computes the same numbers.
    """

    __props__ = ("nin", "steps", "outputs")

    def __init__(self, nin: int, steps, outputs):
        nin = _check_int(nin, "nin")
        if nin < 1:
            raise ValueError(f"Composite: nin must be at least 1, got {nin}")
        steps = tuple((op, tuple(refs)) for op, refs in steps)
        if not steps:
            raise ValueError("Composite: steps must not be empty")
        for k, (op, refs) in enumerate(steps):
            _check_step(k, op, refs, nin)
        if isinstance(outputs, int):
            outputs = (outputs,)
        outputs = tuple(_check_int(o, "outputs") for o in outputs)
        n_regs = nin + len(steps)
        if not outputs:
            raise ValueError("Composite: outputs must not be empty")
        if any(not nin <= o < n_regs for o in outputs):
            raise ValueError(
                f"Composite: outputs {outputs} must be step registers {nin}..{n_regs - 1}"
            )
        if len(set(outputs)) != len(outputs):
            raise ValueError(f"Composite: outputs {outputs} repeat a register")
        self.steps = steps
        self.outputs = outputs
        self._hash = hash((Composite, nin, steps, outputs))
        self._dtype_memo: dict = {}  # input dtypes -> the dtype of every step
        self._dtypes: dict[tuple, tuple] = {}
        linear = all(op.linear for op, _ in steps) and not any(
            isinstance(r, ScalarConstant) for _, refs in steps for r in refs
        )
        super().__init__(_name(nin, steps, outputs), nin, self._impl, linear=linear)

    @property
    def nout(self) -> int:
        return len(self.outputs)

    def __hash__(self):
        return self._hash

    def __reduce__(self):
        return (Composite, (self.nin, self.steps, self.outputs))

    def expression(self) -> str:
        """The whole body as text (``name`` abbreviates a long one)."""
        return _body(self.nin, self.steps, self.outputs)

    # ------------------------------------------------------------------ dtypes
    def step_dtypes(self, dtypes) -> tuple:
        """The dtype of every step's result when the inputs have ``dtypes``."""
        dtypes = tuple(
            d if isinstance(d, str) and d in DTYPES else np.dtype(d).name for d in dtypes
        )
        if len(dtypes) != self.nin:
            raise TypeError(f"{self.name} takes {self.nin} inputs, got {len(dtypes)} dtypes")
        found = self._dtypes.get(dtypes)
        if found is None:
            regs = list(dtypes)
            for op, refs in self.steps:
                args = tuple(r.dtype if isinstance(r, ScalarConstant) else regs[r] for r in refs)
                regs.append(_output_dtype(op, args))
            found = self._dtypes[dtypes] = tuple(regs[self.nin :])
        return found

    def output_dtypes(self, dtypes) -> list[str]:
        """The dtype of each output when the inputs have ``dtypes``."""
        steps = self.step_dtypes(dtypes)
        return [steps[o - self.nin] for o in self.outputs]

    def output_dtype(self, dtypes) -> str:
        if self.nout != 1:
            raise TypeError(
                f"{self.name} has {self.nout} outputs; apply it with FusedElemwise, not Elemwise"
            )
        return self.output_dtypes(dtypes)[0]

    # -------------------------------------------------------------- evaluation
    def _impl(self, *inputs):
        if len(inputs) != self.nin:
            raise TypeError(f"{self.name} takes {self.nin} inputs, got {len(inputs)}")
        inputs = [np.asarray(x) for x in inputs]
        key = tuple(x.dtype for x in inputs)
        dtypes = self._dtype_memo.get(key)
        if dtypes is None:
            dtypes = [np.dtype(d) for d in self.step_dtypes([d.name for d in key])]
            self._dtype_memo[key] = dtypes
        regs = list(inputs)
        with np.errstate(all="ignore"):
            for (op, refs), dtype in zip(self.steps, dtypes, strict=True):
                args = [r.array() if isinstance(r, ScalarConstant) else regs[r] for r in refs]
                out = np.asarray(op.impl(*args))
                if out.dtype != dtype:
                    out = out.astype(dtype)
                regs.append(out)
        shape = np.broadcast_shapes(*(x.shape for x in inputs))
        outs = []
        for o in self.outputs:
            out = regs[o]
            if out.shape != shape:
                out = np.broadcast_to(out, shape).copy()  # an output need not read every input
            elif not out.flags.writeable or any(
                np.may_share_memory(out, x) for x in (*inputs, *outs)
            ):
                out = out.copy()  # e.g. a 1-input add returns its argument itself
            outs.append(out)
        return outs[0] if len(outs) == 1 else tuple(outs)

    # --------------------------------------------------------------- gradients
    def expand(self, inputs) -> list:
        """The body as tensor ops on ``inputs``: one variable per register (inputs, then steps)."""
        inputs = [as_tensor_variable(x) for x in inputs]
        if len(inputs) != self.nin:
            raise TypeError(f"{self.name} takes {self.nin} inputs, got {len(inputs)}")
        ndim = max(x.ndim for x in inputs)
        regs = list(inputs)
        for op, refs in self.steps:
            args = [_const_var(r, ndim) if isinstance(r, ScalarConstant) else regs[r] for r in refs]
            regs.append(Elemwise(op)(*args))
        return regs

    def grad(self, inputs, output, gz):
        return self.grad_outputs(inputs, [gz])

    def grad_outputs(self, inputs, output_grads) -> list:
        """Elementwise gradients w.r.t. each input, given those w.r.t. each output (or None).

        The chain rule through the steps' own scalar gradient rules; nothing is summed
        over broadcast dims (the caller does that, as for any scalar function).
        """
        from flowc.tensor import math

        if len(output_grads) != self.nout:
            raise ValueError(f"{self.name} has {self.nout} outputs, got {len(output_grads)} grads")
        regs = self.expand(inputs)
        ndim = max(x.ndim for x in regs[: self.nin])
        parts: dict[int, list] = {}
        for o, g in zip(self.outputs, output_grads, strict=True):
            if g is not None:
                parts.setdefault(o, []).append(as_tensor_variable(g))

        def total(r):
            got = parts.pop(r, None)
            if not got:
                return None
            g = got[0] if len(got) == 1 else math.add(*got)
            if g.dtype != regs[r].dtype:
                g = math.cast(g, regs[r].dtype)
            return g

        for k in range(len(self.steps) - 1, -1, -1):
            r = self.nin + k
            gz = total(r)
            if gz is None:
                continue
            op, refs = self.steps[k]
            args = [
                _const_var(ref, ndim) if isinstance(ref, ScalarConstant) else regs[ref]
                for ref in refs
            ]
            for ref, g in zip(refs, op.grad(args, regs[r], gz), strict=True):
                if g is None or isinstance(ref, ScalarConstant):
                    continue
                if regs[ref].dtype in DISCRETE_DTYPES:
                    continue  # no gradient flows into integer values
                parts.setdefault(ref, []).append(as_tensor_variable(g))
        return [None if x.dtype in DISCRETE_DTYPES else total(i) for i, x in enumerate(inputs)]


_DTYPE_MEMO: dict = {}


def _output_dtype(op, dtypes: tuple) -> str:
    """``op.output_dtype(dtypes)``, memoized: the ufunc rule runs the kernel on empty arrays."""
    key = (op, dtypes)
    found = _DTYPE_MEMO.get(key)
    if found is None:
        found = _DTYPE_MEMO[key] = op.output_dtype(list(dtypes))
    return found


def _check_int(v, what) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"Composite: {what} must be int register numbers, got {v!r}")
    return int(v)


def _check_step(k, op, refs, nin):
    if not isinstance(op, ps.ScalarOp):
        raise TypeError(f"Composite: step {k} has {op!r}, expected a flowc.scalar.ScalarOp")
    if isinstance(op, Composite):
        raise TypeError(f"Composite: step {k} is a Composite; inline its steps instead")
    if op.nin != -1 and len(refs) != op.nin:
        raise ValueError(f"Composite: step {k} ({op}) takes {op.nin} inputs, got {len(refs)}")
    if not refs:
        raise ValueError(f"Composite: step {k} ({op}) has no inputs")
    for r in refs:
        if isinstance(r, ScalarConstant):
            continue
        r = _check_int(r, f"step {k} refs")
        if not 0 <= r < nin + k:
            raise ValueError(
                f"Composite: step {k} ({op}) reads register {r}; only inputs 0..{nin - 1} "
                f"and earlier steps {nin}..{nin + k - 1} exist there"
            )


def _const_var(c: ScalarConstant, ndim: int):
    return constant(c.array().reshape((1,) * ndim))


def _name(nin, steps, outputs) -> str:
    body = _body(nin, steps, outputs)
    if len(body) > NAME_LIMIT:
        body = body[: NAME_LIMIT - 3] + "..."
    return f"Composite{{{body}}}"


def _body(nin, steps, outputs) -> str:
    """``t0=mul(i0, i1); add(t0, exp(t0))``: steps read twice (or outputs read inside) get names."""
    uses = [0] * (nin + len(steps))
    for _, refs in steps:
        for r in refs:
            if not isinstance(r, ScalarConstant):
                uses[r] += 1
    named = {o for o in outputs if uses[o]} | {r for r in range(nin, len(uses)) if uses[r] > 1}
    text: dict[int, str] = {i: f"i{i}" for i in range(nin)}
    lets = []
    for k, (op, refs) in enumerate(steps):
        r = nin + k
        args = ", ".join(str(x) if isinstance(x, ScalarConstant) else text[x] for x in refs)
        expr = f"{op}({args})"
        if r in named:
            name = f"t{len(lets)}"
            lets.append(f"{name}={expr}")
            expr = name
        text[r] = expr
    outs = [text[o] for o in outputs]
    result = outs[0] if len(outs) == 1 else f"({', '.join(outs)})"
    return "; ".join([*lets, result])


class FusedElemwise(Elemwise):
    """An ``Elemwise`` of a Composite with several outputs, all of the broadcast shape.

    Made by the fusion pass when a fused intermediate is also needed outside the group,
    so it is computed once. ``inplace_pattern`` may list several ``(output, input)`` pairs.
    """

    def __init__(self, scalar_op: Composite, inplace_pattern=()):
        if not isinstance(scalar_op, Composite):
            raise TypeError(f"FusedElemwise: scalar_op must be a Composite, got {scalar_op!r}")
        super().__init__(scalar_op, inplace_pattern)

    def make_node(self, *inputs):
        comp = self.scalar_op
        if len(inputs) != comp.nin:
            raise TypeError(f"{comp} takes {comp.nin} inputs, got {len(inputs)}")
        inputs = _promote([as_tensor_variable(x) for x in inputs])
        ndim = max(x.ndim for x in inputs)
        inputs = [
            x if x.ndim == ndim else dimshuffle(x, ("x",) * (ndim - x.ndim) + tuple(range(x.ndim)))
            for x in inputs
        ]
        shape = broadcast_static_shape([x.type.shape for x in inputs], "FusedElemwise")
        dtypes = comp.output_dtypes([x.dtype for x in inputs])
        return Apply(self, inputs, [TensorType(d, shape)() for d in dtypes])

    def perform(self, node, inputs, output_storage):
        _check_runtime_broadcast(node, inputs)
        outs = self.scalar_op.impl(*inputs)
        if not isinstance(outs, tuple):
            outs = (outs,)
        for k, (out, var) in enumerate(zip(outs, node.outputs, strict=True)):
            out = np.asarray(out)
            if out.dtype.name != var.dtype:
                out = out.astype(var.dtype)
            output_storage[k][0] = out
        for o, i in self.inplace_pattern:
            out, target = output_storage[o][0], inputs[i]
            if target.shape == out.shape and target.dtype == out.dtype:
                np.copyto(target, out)
                output_storage[o][0] = target

    def infer_shape(self, fgraph, node, input_shapes):
        (shape,) = super().infer_shape(fgraph, node, input_shapes)
        return [shape] * len(node.outputs)

    def grad(self, inputs, output_grads):
        grads = self.scalar_op.grad_outputs(inputs, list(output_grads))
        return [_sum_to_input(g, x) for g, x in zip(grads, inputs, strict=True)]

    def R_op(self, inputs, eval_points):
        from flowc.autodiff import transpose_grad_rop

        return transpose_grad_rop(self, inputs, eval_points)


def fused(composite: Composite, *inputs):
    """``composite`` applied elementwise to ``inputs``: one variable, or a list if it has several
    outputs (an ``Elemwise`` or a ``FusedElemwise`` node)."""
    if not isinstance(composite, Composite):
        raise TypeError(f"fused: expected a Composite, got {composite!r}")
    op = Elemwise(composite) if composite.nout == 1 else FusedElemwise(composite)
    return op(*inputs)


__all__ = ["Composite", "FusedElemwise", "ScalarConstant", "fused"]
