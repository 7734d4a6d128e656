"""``ExecutionPlan``: plain data saying which kernel runs when, reading and writing which slots.

``make_plan`` is the serial plan: topological order, each intermediate freed after
its last reader. Later strategies (streams, devices, memory arenas) produce the
same structure.
"""

from __future__ import annotations

import dataclasses

from flowc.graph.basic import Constant


@dataclasses.dataclass(frozen=True)
class Step:
    """Run kernel ``kernel`` on slots ``reads``, store into ``writes``, then free ``frees``."""

    kernel: int
    reads: tuple[int, ...]
    writes: tuple[int, ...]
    frees: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ExecutionPlan:
    """Slots hold values; inputs and constants are bound before the first step."""

    n_slots: int
    input_slots: tuple[int, ...]
    constants: tuple[tuple[int, object], ...]
    steps: tuple[Step, ...]
    output_slots: tuple[int, ...]

    def summary(self) -> str:
        return (
            f"{len(self.steps)} steps, {self.n_slots} slots, "
            f"{len(self.input_slots)} inputs, {len(self.output_slots)} outputs"
        )


def make_plan(fgraph, kernels) -> ExecutionPlan:
    """The serial plan of ``kernels`` (in ``fgraph`` topological order)."""
    slot: dict = {}

    def slot_of(v):
        return slot.setdefault(v, len(slot))

    input_slots = tuple(slot_of(v) for v in fgraph.inputs)
    constants = []
    for k in kernels:
        for v in k.node.inputs:
            if isinstance(v, Constant) and v not in slot:
                constants.append((slot_of(v), v.data))
    for v in fgraph.outputs:
        if isinstance(v, Constant) and v not in slot:
            constants.append((slot_of(v), v.data))
    last_read = {}
    for step, k in enumerate(kernels):
        for v in k.node.inputs:
            last_read[v] = step
    keep = set(fgraph.inputs) | set(fgraph.outputs)
    steps = []
    for step, k in enumerate(kernels):
        reads = tuple(slot_of(v) for v in k.node.inputs)
        writes = tuple(slot_of(v) for v in k.node.outputs)
        dead = [
            v
            for v in dict.fromkeys(k.node.inputs)
            if last_read[v] == step and v not in keep and not isinstance(v, Constant)
        ]
        dead += [v for v in k.node.outputs if v not in last_read and v not in keep]
        steps.append(Step(step, reads, writes, tuple(slot_of(v) for v in dead)))
    outputs = tuple(slot_of(v) for v in fgraph.outputs)
    return ExecutionPlan(len(slot), input_slots, tuple(constants), tuple(steps), outputs)
