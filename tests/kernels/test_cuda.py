"""The CUDA build: whole graphs rendered by the same emitters with the CUDA target, and built
by nvcc (no GPU needed). Many graphs share ONE translation unit, so each build is one nvcc
run; the op table and the random graphs are built for sm_80 and sm_90 in one run each.
"""

import re
import shutil
import struct
import subprocess
import time

import numpy as np
import pytest

import flowc.tensor as T
from flowc.graph import Apply, FunctionGraph, Op
from flowc.kernels import compiler
from flowc.kernels import cuda_source as cuda_source_of_function
from flowc.kernels.compiled import HEADER, compile_function
from flowc.kernels.compiler import CompileError
from flowc.kernels.cuda import (
    CUDA,
    cuda_program,
    cuda_source,
    cuda_source_many,
    find_nvcc,
)
from flowc.kernels.cuda import compile_cuda as _compile_cuda
from flowc.pipeline import rewrite
from tests.optable import _as_list, inputs_for, symbolic

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc")
ARCHES = ["sm_80", "sm_90"]


def compile_cuda(source, arch, out, **kw):
    """``compile_cuda``, printing nvcc's time (``pytest -s`` shows it)."""
    start = time.perf_counter()
    path = _compile_cuda(source, arch, out, **kw)
    print(f"nvcc {arch} ({len(source) // 1000} kB of source): {time.perf_counter() - start:.1f} s")
    return path


def _cuda_images(path) -> list[int]:
    """The SM versions of the CUDA ELF images (EM_CUDA = 190) embedded in an object file."""
    data = path.read_bytes()
    found, at = [], data.find(b"\x7fELF", 1)
    while at >= 0:
        abi = data[at + 8]
        machine = struct.unpack_from("<H", data, at + 18)[0]
        flags = struct.unpack_from("<I", data, at + 48)[0]
        if machine == 190:
            # e_flags holds the SM number in bits 8-15 from ELF ABI version 8 on, else 0-7.
            found.append((flags >> 8) & 0xFF if abi >= 8 else flags & 0xFF)
        at = data.find(b"\x7fELF", at + 4)
    return found


def _cubin_kernels(path) -> set[str]:
    """The names of the kernels in a cubin: its ``.text.<kernel>`` sections."""
    return {m.decode() for m in re.findall(rb"\x00\.text\.(\w+)\x00", path.read_bytes())}


# ------------------------------------------------------------------ the op table


def _op_table():
    from tests.sched.test_multidevice import _table

    return _table()


def _table_graphs() -> dict:
    """One graph per op-table case (its first dtype), after the fast_run rewrites."""
    graphs = {}
    for k, case in enumerate(_op_table()):
        values = inputs_for(case, case.dtypes[0])
        xs = symbolic(values, case.static_ones)
        outs = _as_list(case.fn(*xs))
        graphs[f"t{k}"] = rewrite(FunctionGraph(xs, outs), "fast_run")
    return graphs


@needs_nvcc
@pytest.mark.slow
def test_the_op_table_compiles_for_sm80_and_sm90(tmp_path):
    graphs = _table_graphs()
    assert len(graphs) > 300
    program = cuda_source_many(graphs)
    compiled = sum(
        1 for steps in program.steps.values() if any(not s.startswith("python") for s in steps)
    )
    assert compiled > len(graphs) // 2  # most cases have kernels; the rest are Python ops
    assert program.n_kernels > 200
    src = program.source
    assert src.count('extern "C" int t') == sum(len(d) for d in program.drivers.values())
    out = compile_cuda(src, ARCHES, tmp_path / "table.o")
    assert sorted(_cuda_images(out)) == [80, 90]


# ------------------------------------------------------------------ random graphs

_FLOAT_UNARY = [T.exp, T.tanh, T.nnet.sigmoid, T.sin, T.erf, T.softplus, T.expm1, T.arctan]
_FLOAT_UNARY += [lambda a: T.log1p(abs(a)), lambda a: T.sqrt(abs(a) + 1), T.floor, T.sqr]
_ANY_UNARY = [T.neg, abs, T.sign, lambda a: a * 3, lambda a: T.cast(a, "float32")]
_BINARY = [
    lambda a, b: a + b,
    lambda a, b: a - b,
    lambda a, b: a * b,
    T.maximum,
    T.minimum,
    lambda a, b: a / (abs(b) + 1),
    lambda a, b: a // (abs(b) + 1),
    lambda a, b: T.switch(T.lt(a, b), a, b * 2),
]
_REDUCE = [T.sum, T.prod, T.max, T.min, T.mean, T.argmax, T.argmin, T.all, T.any]


def _axis(rng, ndim):
    choice = rng.integers(4)
    if choice == 0 or ndim == 0:
        return None
    if choice == 1 or ndim == 1:
        return int(rng.integers(-ndim, ndim))
    k = int(rng.integers(1, ndim + 1))
    return tuple(int(a) for a in rng.choice(ndim, size=k, replace=False))


def random_graph(seed: int) -> FunctionGraph:
    """Elementwise ops, broadcasting, reductions over random axes, transposes and softmax on
    2-3 inputs of random dtypes and broadcast patterns."""
    rng = np.random.default_rng(seed)
    nd = int(rng.integers(1, 4))
    dtypes = ["float32", "float64", "int32", "int64", "int8", "uint8"]
    inputs = []
    for k in range(int(rng.integers(2, 4))):
        static = tuple(1 if rng.random() < 0.3 else None for _ in range(nd))
        inputs.append(T.tensor(str(rng.choice(dtypes[:2] if k == 0 else dtypes)), static, f"x{k}"))
    pool = list(inputs)
    for _ in range(int(rng.integers(4, 10))):
        kind = rng.random()
        a = pool[int(rng.integers(len(pool)))]
        try:
            if kind < 0.35:
                same = [v for v in pool if v.ndim == a.ndim]
                b = same[int(rng.integers(len(same)))]
                new = _BINARY[int(rng.integers(len(_BINARY)))](a, b)
            elif kind < 0.6:
                ops = _ANY_UNARY + (_FLOAT_UNARY if a.dtype.startswith("float") else [])
                new = ops[int(rng.integers(len(ops)))](a)
            elif kind < 0.85 and a.ndim:
                new = _REDUCE[int(rng.integers(len(_REDUCE)))](a, axis=_axis(rng, a.ndim))
            elif a.ndim >= 2:
                new = a.T if rng.random() < 0.5 else T.nnet.softmax(T.cast(a, "float64"), axis=-1)
            else:
                new = a + 1
        except (TypeError, ValueError):
            continue  # an op that refuses this dtype or axis: draw another
        pool.append(new)
    made = pool[len(inputs) :]
    picks = {int(i) for i in rng.choice(len(made), size=min(3, len(made)), replace=False)}
    outs = [made[-1]] + [made[i] for i in sorted(picks) if i != len(made) - 1]
    return rewrite(FunctionGraph(inputs, outs), "fast_run")


def test_random_graphs_render_without_fallbacks():
    graphs = {f"r{seed}": random_graph(seed) for seed in range(30)}
    program = cuda_source_many(graphs)
    assert program.fallback_ops == []
    assert all(
        steps and all(s.startswith(f"{g}_seg") for s in steps) for g, steps in program.steps.items()
    )
    ops = {type(n.op).__name__ for fg in graphs.values() for n in fg.toposort()}
    assert {"Elemwise", "FusedElemwise", "Reduce", "Argmax", "Softmax", "DimShuffle"} <= ops
    dtypes = {v.dtype for fg in graphs.values() for v in fg.inputs}
    assert {"float32", "float64", "int8", "uint8"} <= dtypes


@needs_nvcc
@pytest.mark.slow
def test_random_graphs_compile_for_sm80_and_sm90(tmp_path):
    graphs = {f"r{seed}": random_graph(seed) for seed in range(30)}
    program = cuda_source_many(graphs)
    out = compile_cuda(program.source, ARCHES, tmp_path / "random.o")
    assert sorted(_cuda_images(out)) == [80, 90]


# ------------------------------------------------------------------ one fused graph


def _fused_graph():
    x, y = T.fmatrix("x"), T.tensor("float32", (1, None), "y")
    out = T.tanh(x * y + T.exp(-x * x)) * T.nnet.sigmoid(y) - T.log1p(abs(x))
    return rewrite(FunctionGraph([x, y], [out]), "fast_run")


def test_fused_graph_source_snapshot():
    src = cuda_source(_fused_graph())
    kernels = re.findall(r"FLOWC_KERNEL void (\w+)\(", src)
    assert kernels == ["flowc_k0_0_map0_strided"]  # y broadcasts: the strided loop only
    body = src[src.index("FLOWC_KERNEL void") : src.index('extern "C" int flowc_seg0')]
    assert "FLOWC_PARALLEL_ROWS(r, rows) {" in body
    # The whole expression is one body, written twice: for rows of unit stride and any stride.
    assert body.count("if (x0_s1 == 1 && x1_s1 == 1) {") == 1
    for fn in ("flowc_tanh(", "flowc_exp(", "flowc_sigmoid(", "flowc_log1p(", "flowc_abs("):
        assert body.count(fn) == 2, fn
    lines = src.splitlines()
    assert (
        'extern "C" int flowc_seg0(void* in0_, void* in1_, void* out0_, int64_t* shapes_out, '
        "cudaStream_t flowc_stream, void* flowc_blas) {"
    ) in lines
    assert (
        "  FLOWC_LAUNCH(flowc_k0_0_map0_strided, v2_size, v2_n0, v2_n1, x0, x0_s0, x0_s1, "
        "x1, 0, x1_s1, v2);"
    ) in lines
    assert "  float* v2 = (float*)(out0->data);" in lines  # straight into the output
    assert "flowc_cuda_scratch scratch(scratch_bytes, flowc_stream);" in src


@needs_nvcc
def test_fused_graph_is_one_global_kernel_with_a_grid_stride_loop(tmp_path):
    src = cuda_source(_fused_graph())
    cubin = compile_cuda(src, "sm_80", tmp_path / "fused.cubin", kind="cubin")
    assert _cubin_kernels(cubin) == {"flowc_k0_0_map0_strided"}
    ptx = compile_cuda(src, "sm_90", tmp_path / "fused.ptx", kind="ptx").read_text()
    assert re.findall(r"\.entry (\w+)\(", ptx) == ["flowc_k0_0_map0_strided"]
    pre = subprocess.run(
        ["nvcc", "-std=c++17", "-E", "-I", str(HEADER.parent), str(cubin.with_suffix(".cu"))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kernel = pre[pre.index("flowc_k0_0_map0_strided(") :]
    kernel = kernel[: kernel.index("\n}")]
    head = re.sub(r"\s+", " ", pre[: pre.index("flowc_k0_0_map0_strided(")][-200:])
    assert re.search(r'extern "C" (__global__|__attribute__\(\(global\)\)) void$', head.rstrip())
    flat = re.sub(r"\s+", " ", kernel)
    assert "for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;" in flat
    assert "r += (int64_t)blockDim.x * gridDim.x)" in flat


def test_cuda_source_takes_a_compiled_function():
    import flowc

    x, y = T.fmatrix("x"), T.tensor("float32", (1, None), "y")
    f = flowc.function([x, y], T.exp(x) * y)
    src = cuda_source_of_function(f)
    assert "flowc_exp(" in src and 'extern "C" int flowc_seg0(' in src
    with pytest.raises(TypeError, match="FunctionGraph or a compiled flowc.function"):
        cuda_source(x)


# ------------------------------------------------------------------ fallbacks


class _NoEmitter(Op):
    def make_node(self, x):
        x = T.as_tensor_variable(x)
        return Apply(self, [x], [x.type()])

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = inputs[0] * 3


def _fallback_graph():
    x, y = T.dmatrix("x"), T.dmatrix("y")
    outs = [T.cumsum(T.exp(x), axis=0) * y + 1, _NoEmitter()(T.sum(x * y, axis=1)) - 2]
    return FunctionGraph([x, y], outs)


def test_fallbacks_are_reported_as_on_the_cpu():
    fg = _fallback_graph()
    program = cuda_program(fg)
    assert program.fallback_ops == ["CumOp{0, add, False}", "_NoEmitter"]
    steps = program.steps["flowc"]
    assert [s for s in steps if s.startswith("python: ")] == [
        "python: CumOp{0, add, False}",
        "python: _NoEmitter",
    ]
    assert program.drivers["flowc"] == [s for s in steps if not s.startswith("python")]
    assert len(program.drivers["flowc"]) >= 2  # the kernels around the fallbacks
    for name in program.drivers["flowc"]:
        assert f'extern "C" int {name}(' in program.source
    if compiler.find_compiler() is not None:
        assert compile_function(fg).fallback_ops == program.fallback_ops


@needs_nvcc
def test_fallbacks_do_not_break_the_build(tmp_path):
    out = compile_cuda(cuda_source(_fallback_graph()), "sm_80", tmp_path / "fallback.o")
    assert _cuda_images(out) == [80]


# ------------------------------------------------------------------ driver forms


def _sections(src) -> tuple[str, str]:
    """The kernels of a unit, and its drivers."""
    start = src.index("// " + "-" * 60 + " kernels")
    graphs = src.index("// " + "-" * 60 + " graph ")
    return src[start:graphs], src[graphs:]


def _stream_graph():
    A, v, i = T.imatrix("A"), T.dvector("v"), T.lscalar("i")
    F, G = T.fmatrix("F"), T.fmatrix("G")
    outs = [T.dot(A, A), T.sum(v) * v, T.alloc(T.constant(1.5), T.sum(A)) * 2, v[i]]
    outs += [T.dot(F, G) * 2 + F[:1], T.shape(F), F.T, T.dot(F, T.cast(v, "float32")[:3])]
    return FunctionGraph([A, v, i, F, G], outs)


def test_host_statements_become_stream_operations():
    # On the CPU, Dot zeroes its output with a loop, Shape stores its sizes, and a 0-d sum is
    # passed to the next kernel by value: plain host code on host memory. Here the memory
    # is the device's, so they become a memset, one-thread stores and a read on the stream.
    program = cuda_program(_stream_graph())
    _, drivers = _sections(program.source)
    assert not re.search(r"^\s*(for \(|(?!shapes_out)\w+\[\w+\] = )", drivers, re.M)
    assert "flowc_cuda_zero(" in drivers and "flowc_cuda_store(" in drivers
    fetch = re.search(r"\{ FLOWC_CUDA_FETCH\((v\d+)\); FLOWC_LAUNCH\(.*\b\1_h\b", drivers)
    if getattr(CUDA, "host_memory", True):
        assert fetch  # the driver reads the 0-d sum to pass it by value
    else:
        assert not fetch and re.search(r"const double x\d+ = x\d+_p\[0\];", program.source)
    assert "(flowc_matmul_naive<int32_t, int32_t, int32_t>)" in drivers  # int32: no BLAS
    assert "FLOWC_TRY(flowc_cuda_gemm(flowc_stream, flowc_blas, " in drivers  # float32
    # the 0-d input i is read through the stream: its pointer may be device memory
    assert re.search(r"FLOWC_TRY\(flowc_cuda_read\(&x\d+, in\d+->data", drivers)
    assert program.fallback_ops == []


@needs_nvcc
def test_stream_operations_compile(tmp_path):
    src = cuda_source(_stream_graph())
    # The naive GEMM kernel serves float32 too where cuBLAS is not compiled in.
    out = compile_cuda(src, "sm_90", tmp_path / "stream.o", flags=["-DFLOWC_USE_CUBLAS=0"])
    assert _cuda_images(out) == [90]


def test_the_cuda_target_flags():
    assert CUDA.name == "cuda" and not CUDA.parallel_reductions and CUDA.blas
    x = T.dtensor3("x")
    src = cuda_source(FunctionGraph([x], [T.sum(x), T.prod(x, axis=(0, 2))]))
    # No OpenMP reduction kernel: each thread of a reduction makes one output element.
    assert "omp parallel" not in src and "_flat(" not in src
    assert src.count("FLOWC_PARALLEL_ROWS(o, n_out)") == 2


def test_graphs_share_a_unit_with_their_own_symbols():
    x = T.fvector("x")
    g1 = FunctionGraph([x], [T.exp(x) + 1])
    y = T.fvector("y")
    g2 = FunctionGraph([y], [T.exp(y) + 1])
    program = cuda_source_many({"alpha": g1, "beta": g2})
    src = program.source
    assert 'extern "C" int alpha_seg0(' in src and 'extern "C" int beta_seg0(' in src
    assert "flowc_k0" not in src
    # The same kernel text is written once; both drivers launch it.
    defs = re.findall(r"FLOWC_KERNEL void (\w+)\(", src)
    assert len(defs) == len(set(defs)) == program.n_kernels
    assert all(d.startswith("alpha_k") for d in defs)
    beta = src[src.index('extern "C" int beta_seg0(') :]
    assert "FLOWC_LAUNCH(alpha_k0_0_map0_flat" in beta
    with pytest.raises(ValueError, match="C identifier"):
        cuda_source_many({"not an identifier": g1})
    with pytest.raises(TypeError, match="mapping"):
        cuda_source_many([g1])


# ------------------------------------------------------------------ nvcc


def test_compile_cuda_refuses_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="sm_75 or newer"):
        _compile_cuda("", "sm_70", tmp_path / "a.o")
    with pytest.raises(ValueError, match="sm_75 or newer"):
        _compile_cuda("", "ampere", tmp_path / "a.o")
    with pytest.raises(ValueError, match="kind must be one of"):
        _compile_cuda("", "sm_80", tmp_path / "a.o", kind="shared")
    with pytest.raises(ValueError, match="one architecture"):
        _compile_cuda("", ARCHES, tmp_path / "a.cubin", kind="cubin")
    with pytest.raises(TypeError, match="source must be a str"):
        _compile_cuda(b"", "sm_80", tmp_path / "a.o")
    with pytest.raises(ValueError, match=r"\.cu path"):
        _compile_cuda("", "sm_80", tmp_path / "a.cu")


def test_missing_nvcc_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWC_NVCC", str(tmp_path / "no-such-nvcc"))
    assert find_nvcc() is None
    with pytest.raises(CompileError, match="nvcc not found"):
        _compile_cuda("int x;", "sm_80", tmp_path / "a.o")


@needs_nvcc
def test_nvcc_errors_carry_its_message(tmp_path):
    bad = cuda_source(_fused_graph()) + "\n__global__ void broken() { undefined_thing(); }\n"
    with pytest.raises(CompileError, match="undefined_thing") as info:
        _compile_cuda(bad, "sm_80", tmp_path / "bad.o")
    assert "nvcc failed" in str(info.value) and info.value.source_path.is_file()
    assert "-arch=sm_80" in info.value.command
