"""``mode='check'``: run the rewritten function and the unrewritten reference; compare.

With compiled kernels, every intermediate is checked too: a probe program returns the
output of every node, and each is compared with the node's ``perform`` on the same inputs
(Theano's DebugMode).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from flowc.graph.basic import io_toposort


class CheckError(AssertionError):
    """The rewritten graph and the reference disagree, or the rewrites are not deterministic."""


class CheckedFunction:
    """Calls the reference (no rewrites) then the real function, and compares every result."""

    def __init__(self, fn, rtol=None, atol=None):
        from flowc.function import compile_spec

        self.fn = fn
        spec = fn.spec
        as_outputs = [o.variable for o in spec.outputs] + [v for _, v in spec.updates]
        from flowc.function import Out

        ref_spec = dataclasses.replace(
            spec,
            outputs=[Out(v) for v in as_outputs],
            output_keys=None,
            single_output=False,
            updates=[],
            mode="none",
            on_unused_input="ignore",
        )
        self.reference = compile_spec(ref_spec)
        again = compile_spec(dataclasses.replace(spec, mode="fast_run"))
        if _structure(again.fgraph) != _structure(fn.fgraph):
            raise CheckError(
                "the rewrite pipeline gave two different graphs for the same "
                "function: a rewrite is not deterministic"
            )
        self.rtol, self.atol = rtol, atol
        self._probe = None

    def __getattr__(self, name):
        return getattr(self.fn, name)

    def check_kernels(self, values) -> int:
        """Compare every compiled node with its ``perform``; returns the nodes checked."""
        from flowc.graph.basic import Constant
        from flowc.graph.fg import FunctionGraph
        from flowc.kernels.compiled import compile_function

        fg = self.fn.fgraph
        nodes = fg.toposort()
        if self._probe is None:
            every = [o for n in nodes for o in n.outputs]
            self._probe = (every, compile_function(FunctionGraph(fg.inputs, every, clone=False)))
        every, probe = self._probe
        got = dict(zip(every, probe(values), strict=True))
        known = dict(zip(fg.inputs, values, strict=True))
        for node in nodes:
            ins = [
                i.data if isinstance(i, Constant) else known[i] if i in known else got[i]
                for i in node.inputs
            ]
            storage = [[None] for _ in node.outputs]
            node.op.perform(node, [np.array(x, copy=True) for x in ins], storage)
            for k, (o, s) in enumerate(zip(node.outputs, storage, strict=True)):
                _compare(
                    f"{node.op} (output {k}) against its perform",
                    np.asarray(s[0]),
                    np.asarray(got[o]),
                    self.rtol,
                    self.atol,
                )
        return len(nodes)

    def __call__(self, *args, **kwargs):
        if self.fn.program is not None:
            values = self.fn._bind(args, kwargs)
            values += [s.get_value(borrow=True) for s in self.fn.shared_inputs]
            self.check_kernels(values)
        expected = self.reference(*args, **kwargs)
        got = self.fn(*args, **kwargs)
        spec = self.fn.spec
        got_list = (
            list(got.values())
            if isinstance(got, dict)
            else [got]
            if spec.single_output
            else list(got)
        )
        got_list += [t.get_value(borrow=True) for t, _ in spec.updates]
        for k, (e, g) in enumerate(zip(expected, got_list, strict=True)):
            what = (
                f"output {k}"
                if k < len(spec.outputs)
                else (f"update of {spec.updates[k - len(spec.outputs)][0]}")
            )
            _compare(what, np.asarray(e), np.asarray(g), self.rtol, self.atol)
        return got


def _compare(what, expected, got, rtol, atol):
    if expected.shape != got.shape or expected.dtype != got.dtype:
        raise CheckError(
            f"mode='check': {what} is {got.dtype}{got.shape}, the reference "
            f"gives {expected.dtype}{expected.shape}"
        )
    if rtol is None:
        rtol = 1e-4 if got.dtype in (np.float32, np.complex64, np.float16) else 1e-10
    if atol is None:
        atol = rtol
    if not np.allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True):
        err = np.max(np.abs(got.astype("float64") - expected.astype("float64")))
        raise CheckError(
            f"mode='check': {what} differs from the reference (max abs error {err:.3g})"
        )


def _structure(fgraph) -> list:
    order = io_toposort(fgraph.inputs, fgraph.outputs)
    index = {v: ("in", k) for k, v in enumerate(fgraph.inputs)}
    out = []
    for n, node in enumerate(order):
        for j, o in enumerate(node.outputs):
            index[o] = (n, j)
        out.append((str(node.op), tuple(index.get(i, str(i)) for i in node.inputs)))
    return out
