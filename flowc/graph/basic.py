"""The IR: ``Variable``, ``Constant``, ``Apply``, ``Op``, and walks over graphs of them."""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from collections.abc import Iterable, Sequence

import numpy as np

_ids = itertools.count()

# The device that nodes built inside ``with flowc.device(...)`` are pinned to.
_device_scope: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "flowc_device", default=None
)


@contextlib.contextmanager
def device(name: str):
    """Pin the nodes built inside the block to device ``name`` (e.g. ``'cpu:1'``)."""
    if not isinstance(name, str) or ":" not in name:
        raise ValueError(f"device names look like 'cpu:0' or 'cuda:1', got {name!r}")
    token = _device_scope.set(name)
    try:
        yield name
    finally:
        _device_scope.reset(token)


class Variable:
    """A value in a graph: the ``index``-th output of ``owner``, or an input if no owner."""

    def __init__(self, type, owner=None, index=None, name=None):
        self.type = type
        self.owner = owner
        self.index = index
        self.name = name
        self.tag = {}
        self.id = next(_ids)

    def __repr__(self):
        return str(self)

    def __str__(self):
        if self.name is not None:
            return self.name
        if self.owner is not None:
            op = str(self.owner.op)
            return op if len(self.owner.outputs) == 1 else f"{op}.{self.index}"
        return f"<{self.type}>"

    def clone(self) -> Variable:
        """A fresh input variable of the same type and name (no owner)."""
        v = type(self)(self.type, name=self.name)
        v.tag = dict(self.tag)
        return v

    # Variables are graph nodes: equality is identity (``==`` may be overloaded
    # by subclasses' operators, so containers must use ``hash``/``is``).
    __hash__ = object.__hash__


class Constant(Variable):
    """A variable with a fixed value ``data``; merged with equal constants."""

    def __init__(self, type, data, name=None):
        super().__init__(type, name=name)
        self.data = type.filter(data, what="constant", allow_downcast=True)
        self.data.setflags(write=False)
        self._signature = None

    def signature(self):
        """A hashable key equal for constants of equal type and value."""
        if self._signature is None:
            d = self.data
            self._signature = (self.type, d.shape, d.tobytes())
        return self._signature

    def clone(self) -> Constant:
        return self  # constants are immutable and shared between graphs

    def __str__(self):
        if self.name is not None:
            return self.name
        if self.data.size <= 8:
            return np.array2string(self.data, separator=",").replace("\n", "")
        return f"Constant{{{self.type}}}"


class Apply:
    """One application of ``op`` to ``inputs``, producing ``outputs``."""

    def __init__(self, op, inputs: Sequence[Variable], outputs: Sequence[Variable]):
        self.op = op
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        pinned = _device_scope.get()
        self.tag = {"device": pinned} if pinned else {}
        for i, out in enumerate(self.outputs):
            if out.owner is not None and out.owner is not self:
                raise ValueError(f"output {i} of {op} already belongs to another node")
            out.owner, out.index = self, i

    def __repr__(self):
        return f"{self.op}({', '.join(map(str, self.inputs))})"

    @property
    def out(self) -> Variable:
        if len(self.outputs) != 1:
            raise ValueError(f"{self.op} has {len(self.outputs)} outputs")
        return self.outputs[0]

    def clone_with_new_inputs(self, inputs: Sequence[Variable]) -> Apply:
        """This node on other inputs; the op re-checks them unless the types are equal."""
        if len(inputs) != len(self.inputs):
            raise ValueError(f"{self.op} takes {len(self.inputs)} inputs, got {len(inputs)}")
        if all(a.type == b.type for a, b in zip(inputs, self.inputs, strict=True)):
            outs = [o.type.make_variable(o.name) for o in self.outputs]
            node = Apply(self.op, inputs, outs)
        else:
            node = self.op.make_node(*inputs)
            for old, new in zip(self.outputs, node.outputs, strict=True):
                new.name = old.name
        node.tag = {**node.tag, **self.tag}
        return node


class Op:
    """An operation. Parameters named in ``__props__`` are immutable and define equality.

    Subclasses implement ``make_node``, ``perform`` (NumPy, the executable spec),
    ``infer_shape`` and ``grad``; ``R_op`` defaults to a transposed ``grad``.
    """

    __props__: tuple[str, ...] = ()
    destroy_map: dict[int, list[int]] = {}  # output index -> input indices overwritten
    view_map: dict[int, list[int]] = {}  # output index -> input indices aliased

    def _props(self):
        return tuple(getattr(self, p) for p in self.__props__)

    def __eq__(self, other):
        return type(self) is type(other) and self._props() == other._props()

    def __hash__(self):
        return hash((type(self), self._props()))

    def __setattr__(self, name, value):
        if name in self.__props__ and name in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.{name} is immutable")
        object.__setattr__(self, name, value)

    def __str__(self):
        props = self._props()
        if not props:
            return type(self).__name__
        return f"{type(self).__name__}{{{', '.join(map(_prop_str, props))}}}"

    __repr__ = __str__

    def __call__(self, *inputs):
        node = self.make_node(*inputs)
        return node.outputs[0] if len(node.outputs) == 1 else list(node.outputs)

    def make_node(self, *inputs) -> Apply:
        raise NotImplementedError(f"{type(self).__name__}.make_node")

    def perform(self, node: Apply, inputs: list, output_storage: list[list]) -> None:
        """Compute with NumPy: ``output_storage[i][0] = value of output i``."""
        raise NotImplementedError(f"{type(self).__name__}.perform")

    def infer_shape(self, fgraph, node: Apply, input_shapes: list[tuple]) -> list[tuple]:
        """Output shapes as tuples of symbolic int64 scalars (or ints)."""
        raise NotImplementedError(f"{type(self).__name__}.infer_shape")

    def grad(self, inputs: list[Variable], output_grads: list[Variable]) -> list:
        """Gradient of a scalar cost w.r.t. each input, given those w.r.t. each output.

        An entry is a Variable of the input's type, or None where no gradient flows
        (an integer input, an index).
        """
        raise NotImplementedError(f"{type(self).__name__} has no gradient")

    def R_op(self, inputs: list[Variable], eval_points: list) -> list:
        """Jacobian-vector product ``J @ v`` per output; by default the transpose of ``grad``.

        ``grad`` is linear in the output gradients ``u``, so
        ``J v = d/du <grad(u), v>``, exact whatever ``u`` is.
        """
        from flowc.autodiff import transpose_grad_rop

        return transpose_grad_rop(self, inputs, eval_points)


def _prop_str(p) -> str:
    if isinstance(p, tuple):
        return "(" + ",".join(map(str, p)) + ")"
    return str(p)


# ---------------------------------------------------------------- graph walks


def ancestors(outputs: Iterable[Variable], blockers: Iterable[Variable] = ()) -> list[Variable]:
    """Every variable that ``outputs`` depend on, outputs first, stopping at ``blockers``."""
    blocked = set(blockers)
    seen, order, stack = set(), [], list(outputs)[::-1]
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        order.append(v)
        if v.owner is not None and v not in blocked:
            stack.extend(reversed(v.owner.inputs))
    return order


def graph_inputs(outputs: Iterable[Variable], blockers: Iterable[Variable] = ()) -> list[Variable]:
    """The ownerless variables (inputs and constants) that ``outputs`` depend on."""
    blocked = set(blockers)
    return [v for v in ancestors(outputs, blocked) if v.owner is None or v in blocked]


def io_toposort(inputs: Iterable[Variable], outputs: Iterable[Variable]) -> list[Apply]:
    """The Apply nodes between ``inputs`` and ``outputs``, each after those it reads.

    Deterministic: a depth-first post-order from the outputs, iterative so deep
    graphs do not hit Python's recursion limit.
    """
    # A set passed in (FunctionGraph.variables) is used as is: copying it per call
    # would make importing n nodes one by one cost O(n^2).
    stop = inputs if isinstance(inputs, (set, frozenset)) else set(inputs)
    order, done = [], set()
    for out in outputs:
        stack = [(out, False)]
        while stack:
            v, expanded = stack.pop()
            node = v.owner
            if node is None or v in stop or (node in done and not expanded):
                continue
            if expanded:
                if node not in done:
                    done.add(node)
                    order.append(node)
                continue
            stack.append((v, True))
            for inp in reversed(node.inputs):
                if inp.owner is not None and inp.owner not in done and inp not in stop:
                    stack.append((inp, False))
    return order


def clone_get_equiv(
    inputs: Sequence[Variable], outputs: Sequence[Variable], replace=None
) -> dict[Variable, Variable]:
    """Copy the graph between ``inputs`` and ``outputs``; map each old variable to its copy.

    ``replace`` maps old variables to the variables to use in their place.
    """
    equiv: dict[Variable, Variable] = dict(replace or {})
    for v in inputs:
        equiv.setdefault(v, v.clone())
    for node in io_toposort(list(equiv), outputs):  # the inputs, and what replaces
        if any(o in equiv for o in node.outputs):
            continue
        new_inputs = [equiv.setdefault(i, i.clone()) for i in node.inputs]
        new = node.clone_with_new_inputs(new_inputs)
        equiv.update(zip(node.outputs, new.outputs, strict=True))
    for v in outputs:
        equiv.setdefault(v, v.clone())
    return equiv


def clone(inputs, outputs):
    """Copies of ``inputs`` and ``outputs`` and everything between them."""
    equiv = clone_get_equiv(inputs, outputs)
    return [equiv[v] for v in inputs], [equiv[v] for v in outputs]


def clone_replace(outputs, replace: dict | None = None):
    """Copies of ``outputs`` in which each key of ``replace`` is replaced by its value.

    Only the nodes that depend on a replaced variable are copied; the rest of the
    graph is shared. ``y = x * 2; clone_replace(y, {x: z})`` is ``z * 2``.
    """
    single = isinstance(outputs, Variable)
    outs = [outputs] if single else list(outputs)
    equiv: dict[Variable, Variable] = {}
    for old, new in (replace or {}).items():
        if old.type != new.type and not old.type.is_super(new.type):
            if (old.type.dtype, old.type.ndim) != (new.type.dtype, new.type.ndim):
                raise TypeError(
                    f"cannot replace {old} of type {old.type} with {new} of type {new.type}"
                )
        equiv[old] = new
    for node in io_toposort(list(equiv), outs):
        new_inputs = [equiv.get(i, i) for i in node.inputs]
        if any(a is not b for a, b in zip(new_inputs, node.inputs, strict=True)):
            new = node.clone_with_new_inputs(new_inputs)
            equiv.update(zip(node.outputs, new.outputs, strict=True))
    new_outs = [equiv.get(v, v) for v in outs]
    return new_outs[0] if single else new_outs


def evaluate(outputs: Sequence[Variable], values: dict[Variable, object]) -> list:
    """Run ``perform`` over the graph of ``outputs`` with ``values`` for its inputs.

    The reference interpreter: used for constant folding and inner graphs.
    """
    env = dict(values)
    for v in graph_inputs(outputs, env):
        if v not in env:
            if isinstance(v, Constant):
                env[v] = v.data
            else:
                raise ValueError(f"evaluate: no value given for input {v}")
    for node in io_toposort(list(env), outputs):
        storage = [[None] for _ in node.outputs]
        node.op.perform(node, [env[i] for i in node.inputs], storage)
        for o, s in zip(node.outputs, storage, strict=True):
            env[o] = s[0]
    return [env[o] for o in outputs]
