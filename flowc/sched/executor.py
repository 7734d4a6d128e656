"""The executor: walks an ``ExecutionPlan``, calling its kernels in order."""

from __future__ import annotations


def execute(plan, kernels, inputs: list) -> list:
    """Run ``plan`` on ``inputs`` and return the output values."""
    slots = [None] * plan.n_slots
    for s, v in zip(plan.input_slots, inputs, strict=True):
        slots[s] = v
    for s, v in plan.constants:
        slots[s] = v
    for step in plan.steps:
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
    return [slots[s] for s in plan.output_slots]
