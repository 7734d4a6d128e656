"""Scheduling: the order kernels run in, where values live, and the executor."""

from flowc.sched.executor import execute
from flowc.sched.plan import ExecutionPlan, Step, make_plan

__all__ = ["ExecutionPlan", "Step", "execute", "make_plan"]
