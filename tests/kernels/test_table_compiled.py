"""The whole op table through compiled kernels in mode='check': every case's outputs against
NumPy, and every intermediate of the compiled program against its node's perform.

All cases of one dtype go into ONE function, so the table costs one compiler run per dtype
(plus one for the probe that exposes the intermediates), not one per case.
"""

import numpy as np
import pytest

import flowc
from flowc.kernels import compiler
from tests.optable import inputs_for, strided, symbolic
from tests.sched.test_multidevice import TABLE

pytestmark = pytest.mark.skipif(compiler.find_compiler() is None, reason="no C++ compiler")


CHUNK = 120  # cases per function: a driver takes at most ~1000 arrays through ctypes


def _build(dtype, chunk):
    cases = [c for c in TABLE if dtype in c.dtypes][chunk * CHUNK : (chunk + 1) * CHUNK]
    inputs, outputs, refs, owners = [], [], [], []
    for case in cases:
        values = inputs_for(case, dtype)
        xs = symbolic(values, case.static_ones)
        outs = case.fn(*xs)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        with np.errstate(all="ignore"):
            want = case.ref(*[v.copy() for v in values])
        want = list(want) if isinstance(want, (list, tuple)) else [want]
        inputs.append((xs, values))
        outputs += outs
        refs += want
        owners += [case] * len(outs)
    return cases, inputs, outputs, refs, owners


N_CHUNKS = {d: -(-sum(d in c.dtypes for c in TABLE) // CHUNK) for d in ("float64", "float32")}


@pytest.mark.parametrize(
    ("dtype", "chunk"), [(d, k) for d, n in N_CHUNKS.items() for k in range(n)]
)
def test_op_table_compiled_in_check_mode(dtype, chunk):
    cases, inputs, outputs, refs, owners = _build(dtype, chunk)
    xs = [x for group, _ in inputs for x in group]
    values = [v for _, group in inputs for v in group]
    # -O0 builds the big test programs several times faster; the kernels are the same.
    with flowc.config.change(linker="c", cxx_flags="-O0"):
        f = flowc.function(xs, outputs, mode="check", on_unused_input="ignore")
    assert f.program is not None and f.program.n_segments >= 1
    got = f(*values)  # compares outputs with the reference and every node with perform
    assert f.check_kernels(values) > len(cases)
    for g, w, case in zip(got, refs, owners, strict=True):
        w = np.asarray(w)
        tol = case.rtol or (1e-4 if dtype == "float32" else 1e-10)
        assert g.shape == w.shape, case
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol, equal_nan=True, err_msg=str(case))
    # Non-contiguous views of the same values give the same results.
    for g, h in zip(got, f.fn(*[strided(v) for v in values]), strict=True):
        np.testing.assert_allclose(g, h, rtol=1e-5, atol=1e-6, equal_nan=True)
    # What still runs in Python is reported, and is a small part of the table.
    assert isinstance(f.fallback_ops, list)
    print(f"{dtype}: {len(cases)} cases, fallback ops: {f.fallback_ops}")
