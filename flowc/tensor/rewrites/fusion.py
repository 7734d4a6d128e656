"""Fusion: maximal groups of elementwise nodes become one ``Composite`` elementwise node.

A group grows from a root (visited last-first in topological order) up through the nodes
that produce its inputs. A node joins when it is an out-of-place, non-complex ``Elemwise``
and either every reader of its output is in the group, or (it is needed elsewhere) it
becomes an extra output of the fused node, so nothing is ever computed twice.
"""

from __future__ import annotations

import bisect
import heapq

from flowc.graph.basic import Constant
from flowc.graph.type import COMPLEX_DTYPES
from flowc.tensor.composite import Composite, FusedElemwise, ScalarConstant
from flowc.tensor.elemwise import Elemwise

# The most distinct non-constant inputs a fused node may read (a kernel's argument list is
# bounded: CUDA's parameter space, registers). Would be ``config.fusion_max_inputs``.
MAX_INPUTS = 32


def fuse_elemwise(fgraph):
    """Replace each group of >= 2 fusable ``Elemwise`` nodes by one fused node; returns fgraph.

    Rules, which keep the result acyclic and free of duplicated work:

    - a member's output read only inside the group stays internal; it may be of a smaller
      broadcast shape than the group's (``sigmoid(row) * matrix``): the fused loop
      evaluates it at each output element, NumPy once per row;
    - a member's output also read outside the group (or a graph output) becomes an
      extra output of the fused node (``FusedElemwise``), if it has the group's full
      broadcast pattern and every outside reader comes after the root in topological
      order (so no path leaves the group and comes back); otherwise it ends the group;
    - scalar constants (0-d, or every dim of static size 1) go into the Composite body
      and do not count towards ``MAX_INPUTS``.

    Cost: O((nodes + edges) log nodes), a heap per group and a bisection per candidate.
    """
    order = fgraph.toposort()
    pos = {node: k for k, node in enumerate(order)}
    readers = _Readers(fgraph, pos)
    taken: set = set()
    groups = []
    for root in reversed(order):
        if root in taken or not _fusable(root):
            continue
        members = _grow(root, pos, taken, readers)
        if len(members) >= 2:
            taken.update(members)
            groups.append(members)
    for members in groups:
        _fuse(fgraph, sorted(members, key=pos.__getitem__))
    return fgraph


class _Readers:
    """Per variable, the sorted positions of the nodes reading it (one per input slot),
    and whether it is a graph output; computed on first use."""

    def __init__(self, fgraph, pos):
        self.fgraph = fgraph
        self.pos = pos
        self.memo: dict = {}

    def __call__(self, var):
        found = self.memo.get(var)
        if found is None:
            clients = self.fgraph.clients[var]
            positions = sorted(self.pos[c] for c, _ in clients if c != "output")
            found = self.memo[var] = (positions, len(positions) != len(clients))
        return found


def _fusable(node) -> bool:
    op = node.op
    if type(op) is not Elemwise or op.inplace_pattern or len(node.outputs) != 1:
        return False
    return not any(v.dtype in COMPLEX_DTYPES for v in (*node.inputs, node.outputs[0]))


def _inlinable(var) -> bool:
    """A constant that becomes a ScalarConstant of the Composite: one element, all dims 1."""
    return (
        isinstance(var, Constant)
        and var.data.size == 1
        and all(s == 1 for s in var.type.shape)
        and var.type.dtype not in COMPLEX_DTYPES
    )


def _fits_inside(var, bcast) -> bool:
    """``var`` broadcasts to the group's shape: broadcastable wherever the group's output is."""
    return all(vb or not gb for vb, gb in zip(var.type.broadcastable, bcast, strict=True))


def _grow(root, pos, taken, readers) -> set:
    """The group of ``root``, grown through the producers of its inputs.

    Producers are visited latest first, so when a node is decided every reader of its
    output that can still join has joined: it is internal when the members are all its
    readers, and may be an extra output when its other readers all come after the root
    (members never do, so those readers are exactly the ones positioned up to the root).
    """
    bcast = root.outputs[0].type.broadcastable
    device = root.tag.get("device")
    root_pos = pos[root]
    members = {root}
    inputs = {v for v in root.inputs if not _inlinable(v)}
    if len(inputs) > MAX_INPUTS:
        return members
    member_reads: dict = {}  # variable -> how many input slots of members read it
    heap: list = []
    seen: set = set()

    def add(node):
        for v in node.inputs:
            member_reads[v] = member_reads.get(v, 0) + 1
            p = v.owner
            if (
                p is not None
                and p not in seen
                and p not in taken
                and _fusable(p)
                and p.tag.get("device") == device  # never fuse across the user's pins
            ):
                seen.add(p)
                heapq.heappush(heap, (-pos[p], id(p), p))

    add(root)
    while heap:
        *_, p = heapq.heappop(heap)
        out = p.outputs[0]
        positions, is_output = readers(out)
        reads = member_reads.get(out, 0)
        if reads < len(positions) or is_output:  # read outside the group too
            if reads < bisect.bisect_right(positions, root_pos):
                continue  # an outside reader before the root could lead back into the group
            if out.type.broadcastable != bcast:
                continue  # an extra output has the fused node's full shape
        elif not _fits_inside(out, bcast):
            continue
        new = {v for v in p.inputs if not _inlinable(v) and v not in inputs}
        if len(inputs) - 1 + len(new) > MAX_INPUTS:
            continue
        inputs.discard(out)
        inputs |= new
        members.add(p)
        add(p)
    return members


def _fuse(fgraph, members) -> None:
    """Replace ``members`` (in topological order) by one ``Elemwise(Composite)`` node."""
    member_set = set(members)
    produced = {n.outputs[0] for n in members}
    inputs: dict = {}
    for n in members:
        for v in n.inputs:
            if v not in produced and not _inlinable(v) and v not in inputs:
                inputs[v] = len(inputs)
    if not inputs:
        return  # all constants: constant folding's business
    nin = len(inputs)
    reg = dict(inputs)
    steps: list = []
    for n in members:
        refs = [
            ScalarConstant(v.data.reshape(()), v.dtype) if _inlinable(v) else reg[v]
            for v in n.inputs
        ]
        op = n.op.scalar_op
        if isinstance(op, Composite):  # inline a node fused before
            sub = list(refs)
            for sop, srefs in op.steps:
                steps.append(
                    (sop, tuple(r if isinstance(r, ScalarConstant) else sub[r] for r in srefs))
                )
                sub.append(nin + len(steps) - 1)
            reg[n.outputs[0]] = sub[op.outputs[0]]
        else:
            steps.append((op, tuple(refs)))
            reg[n.outputs[0]] = nin + len(steps) - 1
    outs = [
        n.outputs[0]
        for n in members
        if any(c == "output" or c not in member_set for c, _ in fgraph.clients[n.outputs[0]])
    ]
    comp = Composite(nin, steps, [reg[o] for o in outs])
    op = Elemwise(comp) if len(outs) == 1 else FusedElemwise(comp)
    node = op.make_node(*inputs)
    for old, new in zip(outs, node.outputs, strict=True):
        if old.type != new.type and not (
            old.type.is_super(new.type) or new.type.is_super(old.type)
        ):
            return  # not expected: the fused node would change a type, so leave the group
    for old, new in zip(outs, node.outputs, strict=True):
        new.name = old.name
        fgraph.replace(old, new, reason="fusion")


__all__ = ["MAX_INPUTS", "fuse_elemwise"]
