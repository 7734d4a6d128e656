"""The CUDA build of the kernel dialect: a function graph as ONE CUDA translation unit, its
kernels from the CPU build's emitters (``CUDA`` target) and host drivers launching them in
order on a ``cudaStream_t``; ``compile_cuda`` builds it with nvcc."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from flowc.graph.basic import Apply, Variable
from flowc.kernels.compiled import (
    _DRIVER,
    HEADER,
    _contiguous_strides,
    _CPart,
    _header_digest,
    _plan,
)
from flowc.kernels.compiler import CompileError
from flowc.kernels.render import NodeContext, Segment, Target, Val, _prod, copy_into

__all__ = [
    "CUDA",
    "CudaProgram",
    "compile_cuda",
    "cuda_program",
    "cuda_source",
    "cuda_source_many",
    "find_nvcc",
]

# Reductions and softmax run one thread per output element (no OpenMP reduction clauses);
# float32/float64 matrix products call flowc_gemm, which the prelude maps to cuBLAS where its
# header is found and to a naive GEMM kernel otherwise. Buffers are device memory: where the
# renderer knows that flag, one-element arrays reach kernels by pointer (else _run_lines
# fetches them to the host).
CUDA = Target(
    "cuda",
    parallel_reductions=False,
    blas=True,
    host_memory=False,
)

# The return code of a driver for a CUDA runtime or cuBLAS failure, next to the CPU drivers'
# 2-4 (ValueError, IndexError, MemoryError); the Python side raises RuntimeError for it.
FLOWC_CUDA_ERROR = 5

# ----------------------------------------------------------------------- prelude
# What the CUDA drivers need besides flowc_kernel.h, whose host driver support is written for
# g++ and NumPy arrays (``#ifndef __CUDACC__``). The generic part (error state, FLOWC_TRY,
# sizes, slices) is guarded so that it steps aside if the header ever provides it to nvcc.
_PRELUDE = r"""
// ------------------------------------------------------------ flowc CUDA host support
#include <stdarg.h>
#include <stdio.h>

#include <type_traits>

#ifndef FLOWC_TRY
enum { FLOWC_OK = 0, FLOWC_NEED_ALLOC = 1, FLOWC_VALUE_ERROR = 2, FLOWC_INDEX_ERROR = 3,
       FLOWC_MEMORY_ERROR = 4 };

static thread_local char flowc_error_text[512];
static thread_local int flowc_error_where;

static inline int flowc_fail(int code, int where, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(flowc_error_text, sizeof flowc_error_text, fmt, ap);
  va_end(ap);
  flowc_error_where = where;
  return code;
}

#define FLOWC_TRY(...)               \
  do {                               \
    int flowc_rc_ = (__VA_ARGS__);   \
    if (flowc_rc_) return flowc_rc_; \
  } while (0)

// The element count of a shape; -1 when a size is negative or the count overflows.
static inline int64_t flowc_count(int nd, const int64_t* dims) {
  int64_t n = 1;
  for (int k = 0; k < nd; ++k) {
    if (dims[k] < 0) return -1;
    if (__builtin_mul_overflow(n, dims[k], &n) || n > ((int64_t)1 << 56)) return -1;
  }
  return n;
}

// Python's slice(start, stop, step).indices(n): the first index and the length.
static inline int flowc_slice(int where, int64_t n, bool has_start, int64_t start,
                              bool has_stop, int64_t stop, int64_t step, int64_t* out_start,
                              int64_t* out_len) {
  if (step == 0) return flowc_fail(FLOWC_VALUE_ERROR, where, "slice step cannot be zero");
  const int64_t lo = step < 0 ? -1 : 0, hi = step < 0 ? n - 1 : n;
  if (!has_start) start = step < 0 ? hi : lo;
  else if (start < 0) start = start + n < lo ? lo : start + n;
  else start = start > hi ? hi : start;
  if (!has_stop) stop = step < 0 ? lo : hi;
  else if (stop < 0) stop = stop + n < lo ? lo : stop + n;
  else stop = stop > hi ? hi : stop;
  int64_t len = 0;
  if (step > 0 && stop > start) len = (stop - start - 1) / step + 1;
  if (step < 0 && start > stop) len = (start - stop - 1) / (-step) + 1;
  *out_start = start;
  *out_len = len;
  return FLOWC_OK;
}

static inline size_t flowc_round64(size_t bytes) { return (bytes + 63) / 64 * 64; }
#endif  // FLOWC_TRY

enum { FLOWC_CUDA_ERROR = %(cuda_error)d };

extern "C" const char* flowc_last_error(int* where) {
  *where = flowc_error_where;
  return flowc_error_text;
}

static inline int flowc_cuda_check(cudaError_t err, int where) {
  if (err == cudaSuccess) return FLOWC_OK;
  const int code = err == cudaErrorMemoryAllocation ? (int)FLOWC_MEMORY_ERROR
                                                    : (int)FLOWC_CUDA_ERROR;
  return flowc_fail(code, where, "CUDA error %%s: %%s", cudaGetErrorName(err),
                    cudaGetErrorString(err));
}

// An array as a CUDA driver sees it: ``data`` on the device (a 0-d input may also be host
// memory), ``dims`` and ``strides`` (in bytes, as NumPy's) host arrays of ``nd`` entries.
// The renderer's input code names the CPU's struct, so the descriptor takes its name here.
struct flowc_device_array {
  char* data;
  int nd;
  const int64_t* dims;
  const int64_t* strides;
};
typedef flowc_device_array flowc_pyarray;

// An input's rank, alignment and strides in whole elements (dims of size <= 1: any stride).
static inline int flowc_check_input(const flowc_pyarray* a, int where, int nd,
                                    int64_t itemsize) {
  if (a->nd != nd)
    return flowc_fail(FLOWC_VALUE_ERROR, where, "expected %%d dims, got %%d", nd, a->nd);
  if (((uintptr_t)a->data %% (uintptr_t)itemsize) != 0)
    return flowc_fail(FLOWC_VALUE_ERROR, where, "the array is not aligned");
  for (int k = 0; k < nd; ++k)
    if (a->dims[k] > 1 && a->strides[k] %% itemsize != 0)
      return flowc_fail(FLOWC_VALUE_ERROR, where, "stride %%lld of dim %%d is not a multiple "
                        "of the item size %%lld", (long long)a->strides[k], k,
                        (long long)itemsize);
  return FLOWC_OK;
}

// Whether an output array has exactly this shape and is aligned and C-contiguous.
static inline bool flowc_cuda_output_fits(const flowc_pyarray* a, int nd, const int64_t* dims,
                                          int64_t itemsize) {
  if (a->nd != nd || ((uintptr_t)a->data %% (uintptr_t)itemsize) != 0) return false;
  int64_t expected = itemsize;
  for (int k = nd - 1; k >= 0; --k) {
    if (a->dims[k] != dims[k]) return false;
    if (dims[k] > 1 && a->strides[k] != expected) return false;
    expected *= dims[k];
  }
  return true;
}

// Scratch memory for a driver's intermediates, ordered on its stream: allocated before the
// first kernel, freed after the last one (cudaFreeAsync waits for them in stream order).
struct flowc_cuda_scratch {
  char* base = nullptr;
  cudaStream_t stream;
  flowc_cuda_scratch(size_t bytes, cudaStream_t s) : stream(s) {
    if (bytes && cudaMallocAsync((void**)&base, bytes, s) != cudaSuccess)
      base = nullptr;
  }
  ~flowc_cuda_scratch() {
    if (base) cudaFreeAsync(base, stream);
  }
  flowc_cuda_scratch(const flowc_cuda_scratch&) = delete;
  flowc_cuda_scratch& operator=(const flowc_cuda_scratch&) = delete;
};

// Kernels go on the driver's stream (``flowc_stream``); a launch error names the node that
// is running (``flowc_where``). The grid covers ``work`` indices up to 65535 blocks; the
// grid-stride loops cover the rest.
static inline unsigned flowc_grid(int64_t work) {
  const int64_t blocks = (work + FLOWC_BLOCK - 1) / FLOWC_BLOCK;
  return (unsigned)(blocks > 65535 ? 65535 : blocks > 0 ? blocks : 1);
}
#undef FLOWC_LAUNCH
#define FLOWC_LAUNCH(kernel, work, ...)                                             \
  do {                                                                              \
    kernel<<<flowc_grid(work), FLOWC_BLOCK, 0, flowc_stream>>>(__VA_ARGS__);        \
    FLOWC_TRY(flowc_cuda_check(cudaGetLastError(), flowc_where));                   \
  } while (0)

// A value the host needs from device memory (a 0-d array passed to a kernel by value): read
// on the stream, which waits for the kernels before it. Host pointers work too (UVA).
static inline int flowc_cuda_read(void* dst, const void* src, size_t bytes, int where,
                                  cudaStream_t stream) {
  FLOWC_TRY(flowc_cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream),
                             where));
  return flowc_cuda_check(cudaStreamSynchronize(stream), where);
}
#define FLOWC_CUDA_FETCH(p)                                   \
  std::remove_cv_t<std::remove_pointer_t<decltype(p)>> p##_h; \
  FLOWC_TRY(flowc_cuda_read(&p##_h, p, sizeof(p##_h), flowc_where, flowc_stream))

// One element written on the stream (the CPU driver's plain store into its buffer).
template <typename T> __global__ void flowc_cuda_set1(T* p, T value) { *p = value; }
template <typename T, typename V>
static inline int flowc_cuda_store(T* p, V value, int where, cudaStream_t stream) {
  flowc_cuda_set1<T><<<1, 1, 0, stream>>>(p, (T)value);
  return flowc_cuda_check(cudaGetLastError(), where);
}

template <typename T>
static inline int flowc_cuda_zero(T* p, int64_t n, int where, cudaStream_t stream) {
  if (n <= 0) return FLOWC_OK;
  return flowc_cuda_check(cudaMemsetAsync(p, 0, sizeof(T) * (size_t)n, stream), where);
}

// ------------------------------------------------------------------ matrix products
// C (M x N, contiguous) += alpha * A (M x K) B (K x N), A and B given by element strides:
// one thread per element of C. It serves integer and mixed dtypes, and float32/float64
// where cuBLAS is not available.
template <typename TC, typename TA, typename TB>
__global__ void flowc_matmul_naive(int64_t M, int64_t N, int64_t K, TC alpha, const TA* A,
                                   int64_t sa0, int64_t sa1, const TB* B, int64_t sb0,
                                   int64_t sb1, TC* C) {
  FLOWC_PARALLEL_FOR(t, M * N) {
    const int64_t i = t / N, j = t %% N;
    TC acc = 0;
    for (int64_t k = 0; k < K; ++k) acc += (TC)A[i * sa0 + k * sa1] * (TC)B[k * sb0 + j * sb1];
    C[t] += alpha * acc;
  }
}
%(cublas)s
// The driver's ``flowc_gemm`` call (float32/float64): cuBLAS when it was compiled in, the
// driver got a handle and both operands have a BLAS layout; the naive kernel otherwise.
template <typename T>
static int flowc_cuda_gemm(cudaStream_t flowc_stream, void* blas, int flowc_where, int64_t M,
                           int64_t N, int64_t K, T alpha, const T* A, int64_t sa0, int64_t sa1,
                           const T* B, int64_t sb0, int64_t sb1, T* C) {
  if (M == 0 || N == 0 || K == 0) return FLOWC_OK;
#if FLOWC_USE_CUBLAS
  bool ta, tb;
  int64_t lda, ldb;
  if (blas && M <= INT32_MAX && N <= INT32_MAX && K <= INT32_MAX &&
      flowc_cuda_blas_layout(M, K, sa0, sa1, &ta, &lda) && lda <= INT32_MAX &&
      flowc_cuda_blas_layout(K, N, sb0, sb1, &tb, &ldb) && ldb <= INT32_MAX) {
    // cuBLAS is column-major: the row-major C is C^T there, and C^T = B^T A^T.
    cublasHandle_t handle = (cublasHandle_t)blas;
    const T one = 1;
    cublasStatus_t st = cublasSetStream(handle, flowc_stream);
    if (st == CUBLAS_STATUS_SUCCESS)
      st = flowc_cublas_gemm(handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                             (int)N, (int)M, (int)K, &alpha, B, (int)ldb, A, (int)lda, &one, C,
                             (int)N);
    if (st != CUBLAS_STATUS_SUCCESS)
      return flowc_fail(FLOWC_CUDA_ERROR, flowc_where, "cuBLAS gemm failed with status %%d",
                        (int)st);
    return FLOWC_OK;
  }
#else
  (void)blas;
#endif
  FLOWC_LAUNCH((flowc_matmul_naive<T, T, T>), M * N, M, N, K, alpha, A, sa0, sa1, B, sb0, sb1,
               C);
  return FLOWC_OK;
}
"""

# cuBLAS, when its header is there (it is not part of a bare CUDA toolkit install); building
# an object or cubin needs no link. -DFLOWC_USE_CUBLAS=0 keeps the naive kernel.
_CUBLAS = r"""
#if !defined(FLOWC_USE_CUBLAS) && defined(__has_include)
#if __has_include(<cublas_v2.h>)
#define FLOWC_USE_CUBLAS 1
#endif
#endif
#if FLOWC_USE_CUBLAS
#include <cublas_v2.h>

// How cuBLAS reads a rows x cols row-major operand with element strides (s0, s1): as is
// (trans = false) or as the transpose of a row-major array, with its leading dimension;
// false for layouts BLAS cannot express (negative or overlapping strides).
static inline bool flowc_cuda_blas_layout(int64_t rows, int64_t cols, int64_t s0, int64_t s1,
                                          bool* trans, int64_t* ld) {
  if ((s1 == 1 || cols == 1) && (rows == 1 || s0 >= cols)) {
    *trans = false;
    *ld = rows == 1 ? (cols > 1 ? cols : 1) : s0;
    return *ld >= 1 && *ld >= cols;
  }
  if ((s0 == 1 || rows == 1) && (cols == 1 || s1 >= rows)) {
    *trans = true;
    *ld = cols == 1 ? (rows > 1 ? rows : 1) : s1;
    return *ld >= 1 && *ld >= rows;
  }
  return false;
}

static inline cublasStatus_t flowc_cublas_gemm(cublasHandle_t h, cublasOperation_t ta,
                                               cublasOperation_t tb, int m, int n, int k,
                                               const float* alpha, const float* A, int lda,
                                               const float* B, int ldb, const float* beta,
                                               float* C, int ldc) {
  return cublasSgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
static inline cublasStatus_t flowc_cublas_gemm(cublasHandle_t h, cublasOperation_t ta,
                                               cublasOperation_t tb, int m, int n, int k,
                                               const double* alpha, const double* A, int lda,
                                               const double* B, int ldb, const double* beta,
                                               double* C, int ldc) {
  return cublasDgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
#endif  // FLOWC_USE_CUBLAS
"""


# ------------------------------------------------------------------ driver lines

_NODE = re.compile(r"// (\d+): ")
_KERNEL = re.compile(r"\bflowc_k(?=\d+_)")
_KERNEL_DEF = re.compile(r"FLOWC_KERNEL void (\w+)\(")
_KERNEL_NAME = re.compile(r"\b\w+_k\d+_\d+_\w+")
_DEVICE_ITEM = re.compile(r"\b([vx]\d+)\[0\]")  # a Val's ``item`` of a device array
_ZERO = re.compile(r"for \(int64_t t = 0; t < (.+); \+\+t\) (\w+)\[t\] = 0;")
_STORE = re.compile(r"(\w+)\[(\d+)\] = (.+);")
_POINTER = re.compile(r"[\w ]+\* \w+ = .+;")
_SCALAR_INPUT = re.compile(r"(.+) (\w+) = \*\(const .+\*\)(in(\d+))->data;")


def _input_line(line: str) -> str:
    """An input line of the CPU driver as the CUDA driver runs it: a 0-d input is read
    through the stream, since its data pointer may be device memory."""
    m = _SCALAR_INPUT.fullmatch(line)
    if m is None:
        return line
    ct, name, arr, k = m.groups()
    return (
        f"{ct} {name};\n  FLOWC_TRY(flowc_cuda_read(&{name}, {arr}->data, sizeof({name}), "
        f"{-1 - int(k)}, flowc_stream));"
    )


def _run_lines(lines: list[str]) -> list[str]:
    """The run lines of a CPU driver rewritten for the GPU.

    The renderer writes a few host statements that touch buffer memory (zeroing a product's
    output, storing a shape or a scalar, passing a 0-d array's element by value); on the GPU
    those buffers are device memory, so they become stream operations. Kernel launches,
    views (pointer arithmetic) and the branches between them stay as they are. A line of
    another form is refused, so that a new host statement in an emitter cannot run here
    unnoticed.
    """
    out = []
    for raw in lines:
        pad = raw[: len(raw) - len(raw.lstrip())]
        line = raw.strip()
        node = _NODE.match(line)
        if node:
            out += [raw, f"{pad}flowc_where = {node.group(1)};"]
        elif line.startswith("// output"):
            out += [raw, f"{pad}flowc_where = {_DRIVER};"]
        elif line.startswith("//") or line == "else" or re.fullmatch(r"if \(.*\)", line):
            out.append(raw)
        elif line.startswith("FLOWC_LAUNCH("):
            fetched = list(dict.fromkeys(_DEVICE_ITEM.findall(line)))
            if not fetched:
                out.append(raw)
                continue
            launch = _DEVICE_ITEM.sub(r"\1_h", line)
            fetch = " ".join(f"FLOWC_CUDA_FETCH({p});" for p in fetched)
            out.append(f"{pad}{{ {fetch} {launch} }}")
        elif line.startswith("FLOWC_TRY(flowc_gemm("):
            call = line.replace("flowc_gemm(", "flowc_cuda_gemm(flowc_stream, flowc_blas, ", 1)
            out.append(pad + call)
        elif m := _ZERO.fullmatch(line):
            size, y = m.groups()
            out.append(f"{pad}FLOWC_TRY(flowc_cuda_zero({y}, {size}, flowc_where, flowc_stream));")
        elif m := _STORE.fullmatch(line):
            y, i, value = m.groups()
            at = y if i == "0" else f"{y} + {i}"
            out.append(
                f"{pad}FLOWC_TRY(flowc_cuda_store({at}, {value}, flowc_where, flowc_stream));"
            )
        elif _POINTER.fullmatch(line):
            out.append(raw)
        else:
            raise NotImplementedError(
                f"flowc.kernels.cuda: the driver line {line!r} has no CUDA form; teach "
                "flowc/kernels/cuda.py:_run_lines how it runs on a stream"
            )
    return out


def _render_driver(seg: Segment, outputs: list[Variable], name: str) -> tuple[str, list[str]]:
    """The host driver of ``seg`` (the CPU driver's steps, on a stream and device memory)
    and the kernels that copy outputs which are views into their arrays."""
    n_in = len(seg.inputs)
    vals = [seg.vals[v] for v in outputs]
    params = [f"void* in{k}_" for k in range(n_in)]
    params += [f"void* out{k}_" for k in range(len(outputs))]
    params += ["int64_t* shapes_out", "cudaStream_t flowc_stream", "void* flowc_blas"]
    body = [f"int flowc_where = {_DRIVER};", "(void)flowc_where;", "(void)flowc_blas;"]
    body += ["// inputs", *map(_input_line, seg.input_code)]
    body += ["// shapes and checks", *seg.prologue, "if (shapes_out) {"]
    pos = 0
    for val in vals:
        for s in val.shape:
            body.append(f"  shapes_out[{pos}] = {s};")
            pos += 1
    body += ["  return FLOWC_NEED_ALLOC;", "}"]
    for k, val in enumerate(vals):
        body.append(f"const flowc_pyarray* out{k} = (const flowc_pyarray*)out{k}_;")
        fits = f"flowc_cuda_output_fits(out{k}, {val.ndim}, dims, sizeof({val.ctype}))"
        if val.ndim:
            dims = f"const int64_t dims[] = {{{', '.join(val.shape)}}};"
        else:
            dims, fits = "", fits.replace("dims,", "nullptr,")
        body.append(f"{{ {dims + ' ' if dims else ''}if (!{fits}) return FLOWC_NEED_ALLOC; }}")
    # A buffer made for an output variable is that output's array; the rest are scratch.
    direct: dict[int, int] = {}
    for k, (var, val) in enumerate(zip(outputs, vals, strict=True)):
        if val.buffer and val.var is var:
            direct.setdefault(id(val), k)
    body += ["// memory", "size_t scratch_bytes = 0;"]
    for b in seg.buffers:
        if id(b) not in direct:
            body += [
                f"const size_t {b.name}_at = scratch_bytes;",
                f"scratch_bytes += flowc_round64(sizeof({b.ctype}) * (size_t){b.size});",
            ]
    body += [
        "flowc_cuda_scratch scratch(scratch_bytes, flowc_stream);",
        "if (scratch_bytes && !scratch.base)",
        f'  return flowc_fail(FLOWC_MEMORY_ERROR, {_DRIVER}, "cannot allocate %zu bytes of '
        f'device scratch memory", scratch_bytes);',
    ]
    for b in seg.buffers:
        k = direct.get(id(b))
        where = f"out{k}->data" if k is not None else f"scratch.base + {b.name}_at"
        body.append(f"{b.ctype}* {b.name} = ({b.ctype}*)({where});")
    ctx = NodeContext(seg, None, len(seg.nodes))
    for k, (var, val) in enumerate(zip(outputs, vals, strict=True)):
        if direct.get(id(val)) == k:
            continue
        ct = val.ctype
        ctx.launch(f"// output {k}: a copy", f"{ct}* o{k} = ({ct}*)out{k}->data;")
        strides = _contiguous_strides(val.shape)
        size = _prod(val.shape)
        dst = Val(f"o{k}", val.dtype, val.static, "array", val.shape, strides, var, True, size)
        copy_into(ctx, val, dst)
    body += ["// run", *_run_lines(seg.run + ctx.run), "return FLOWC_OK;"]
    inner = "".join(f"  {line}\n" for line in body)
    text = f'extern "C" int {name}({", ".join(params)}) {{\n{inner}}}\n'
    return text, ctx.kernels


# ------------------------------------------------------------------ programs


@dataclasses.dataclass
class CudaProgram:
    """The CUDA translation unit of one or more graphs.

    ``steps`` is each graph's plan, in run order: its drivers (``<prefix>_seg<k>``) and
    ``python: <op>`` for the nodes without an emitter, which run their NumPy ``perform``
    between drivers; ``fallback_ops`` lists those ops as the CPU build does. ``n_kernels``
    counts the distinct kernels defined (a kernel that several graphs need is written once).
    """

    source: str
    steps: dict[str, list[str]]
    fallback_ops: list[str]
    n_kernels: int

    @property
    def drivers(self) -> dict[str, list[str]]:
        """The host driver functions of each graph, in run order."""
        return {
            g: [s for s in steps if not s.startswith("python: ")] for g, steps in self.steps.items()
        }


@dataclasses.dataclass
class _Unit:
    prefix: str
    kernels: list[str]
    drivers: list[str]
    steps: list[str]
    fallback_ops: set
    needs_blas: bool


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _fgraph_of(fn, what="fgraph"):
    from flowc.graph.fg import FunctionGraph

    fg = getattr(fn, "fgraph", fn)
    if not isinstance(fg, FunctionGraph):
        raise TypeError(
            f"{what} must be a FunctionGraph or a compiled flowc.function, got {type(fn).__name__}"
        )
    return fg


def _render_graph(fgraph, prefix: str) -> _Unit:
    """Every kernel and driver of ``fgraph``, their symbols starting with ``prefix``."""
    if not isinstance(prefix, str) or not _IDENT.fullmatch(prefix):
        raise ValueError(f"prefix must be a C identifier, got {prefix!r}")
    steps = _plan(fgraph, CUDA)
    kernels, drivers, plan = [], [], []
    for s in steps:
        if isinstance(s, Apply):
            plan.append(f"python: {s.op}")
            continue
        assert isinstance(s, _CPart)
        name = f"{prefix}_seg{s.segment.index}"
        text, copies = _render_driver(s.segment, s.outputs, name)
        drivers.append(text)
        kernels += s.segment.kernels + copies
        plan.append(name)
    if prefix != "flowc":
        kernels = [_KERNEL.sub(f"{prefix}_k", k) for k in kernels]
        drivers = [_KERNEL.sub(f"{prefix}_k", d) for d in drivers]
    return _Unit(
        prefix,
        kernels,
        drivers,
        plan,
        {str(s.op) for s in steps if isinstance(s, Apply)},
        any(isinstance(s, _CPart) and s.segment.needs_blas for s in steps),
    )


def _translation_unit(units: list[_Unit]) -> tuple[str, int]:
    """The source of ``units`` and how many distinct kernels it defines."""
    head = [
        "// Generated by flowc: the CUDA build of the kernel dialect, and one host driver per",
        "// segment. A driver takes flowc_device_array* arguments (inputs, then outputs), the",
        "// shapes_out array (NEED_ALLOC protocol of the CPU drivers), a cudaStream_t and a",
        "// cublasHandle_t (or null); it launches its kernels in order on that stream.",
        f"// flowc_kernel.h {_header_digest()}",
        "#include <cuda_runtime.h>",
        '#include "flowc_kernel.h"',
    ]
    cublas = _CUBLAS if any(u.needs_blas for u in units) else ""
    prelude = _PRELUDE % {"cuda_error": FLOWC_CUDA_ERROR, "cublas": cublas}
    # A kernel whose text (but for its name) is already there is not written twice: drivers
    # call the first copy. Graphs repeat ops, so this keeps nvcc's work to distinct kernels.
    kernels, first, alias = [], {}, {}
    for unit in units:
        for text in unit.kernels:
            name = _KERNEL_DEF.search(text).group(1)
            body = text.replace(name, "@", 1)
            if body in first:
                alias[name] = first[body]
            else:
                first[body] = name
                kernels.append(text)
    parts = ["// ------------------------------------------------------------ kernels", *kernels]
    for unit in units:
        parts.append(
            f"// ------------------------------------------------------------ graph {unit.prefix}"
        )
        if unit.steps:
            parts.append("\n".join(["// runs in order:", *(f"//   {p}" for p in unit.steps)]))
        else:
            parts.append("// (nothing to run)")
        for text in unit.drivers:
            parts.append(_KERNEL_NAME.sub(lambda m: alias.get(m[0], m[0]), text) if alias else text)
    return "\n".join(head) + "\n" + prelude + "\n" + "\n".join(parts), len(kernels)


def cuda_program(fgraph, prefix: str = "flowc") -> CudaProgram:
    """The CUDA program of ``fgraph`` (or a compiled function): source, plan and fallbacks.

    Kernels and drivers are named ``<prefix>_k...`` and ``<prefix>_seg<k>``, so units of
    several graphs can share one translation unit (see ``cuda_source_many``).
    """
    return cuda_source_many({prefix: _fgraph_of(fgraph)})


def cuda_source(fgraph, prefix: str = "flowc") -> str:
    """The CUDA translation unit of ``fgraph``: every kernel of the graph rendered by the
    same emitters as the CPU build, and host drivers launching them on a stream.

    >>> import flowc.tensor as T
    >>> from flowc.graph import FunctionGraph
    >>> x = T.fvector('x')
    >>> src = cuda_source(FunctionGraph([x], [T.exp(x) * 2]))
    >>> 'FLOWC_PARALLEL_FOR(i, n)' in src and 'cudaStream_t flowc_stream' in src
    True
    """
    return cuda_program(fgraph, prefix).source


def cuda_source_many(graphs: Mapping) -> CudaProgram:
    """One translation unit for many graphs: ``{prefix: fgraph}``, each graph's symbols
    starting with its prefix (one nvcc run builds them all)."""
    if not isinstance(graphs, Mapping):
        raise TypeError(f"graphs must be a mapping of prefix -> FunctionGraph, got {type(graphs)}")
    units, steps, fallback = [], {}, set()
    for prefix, fg in graphs.items():
        unit = _render_graph(_fgraph_of(fg, f"graphs[{prefix!r}]"), prefix)
        units.append(unit)
        steps[prefix] = unit.steps
        fallback |= unit.fallback_ops
    source, n_kernels = _translation_unit(units)
    return CudaProgram(source, steps, sorted(fallback), n_kernels)


# ------------------------------------------------------------------ nvcc


def find_nvcc() -> str | None:
    """nvcc's path: ``FLOWC_NVCC``, else ``nvcc`` on PATH, else CUDA_HOME's; None if none."""
    env = os.environ.get("FLOWC_NVCC")
    if env:
        return shutil.which(env) or (env if os.access(env, os.X_OK) else None)
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and os.access(os.path.join(root, "bin", "nvcc"), os.X_OK):
            return os.path.join(root, "bin", "nvcc")
    return None


_KINDS = {"object": ("-c", ".o"), "cubin": ("-cubin", ".cubin"), "ptx": ("-ptx", ".ptx")}
_ARCH = re.compile(r"sm_(\d+)[af]?")
# Generated drivers declare every stride and size, used or not: nvcc's notes about unused
# variables (177, 550) say nothing about the code.
DEFAULT_FLAGS = ("-std=c++17", "-diag-suppress=177,550")


def _arches(arch) -> list[str]:
    arches = [arch] if isinstance(arch, str) else list(arch) if arch is not None else []
    for a in arches:
        m = _ARCH.fullmatch(a) if isinstance(a, str) else None
        if m is None or int(m.group(1)) < 75:
            raise ValueError(
                f"arch must be a GPU architecture sm_75 or newer (e.g. 'sm_80') or a list of "
                f"them, got {arch!r}"
            )
    if not arches:
        raise ValueError("arch must name at least one GPU architecture, got none")
    return list(dict.fromkeys(arches))


def compile_cuda(
    source: str,
    arch="sm_80",
    out=None,
    *,
    kind: str = "object",
    flags=(),
    timeout: float = 600,
) -> Path:
    """Build a CUDA translation unit with nvcc; the path of what it built.

    ``arch``: one architecture (``-arch=sm_80``) or a list of them, built in one nvcc run
    into one fat object (``-gencode`` each, on parallel threads). ``kind``: ``"object"``
    (``-c``: kernels and host drivers, to link with cudart and cuBLAS), ``"cubin"`` or
    ``"ptx"`` (device code only, for a module loader such as pycuda: the kernels are
    ``extern "C"``; one architecture). ``out`` defaults to a file in a new temporary folder;
    the source is written beside it (``.cu``). Raises ``CompileError`` with nvcc's messages
    when the build fails or nvcc is missing.
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be a str of CUDA code, got {type(source).__name__}")
    arches = _arches(arch)
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {sorted(_KINDS)}, got {kind!r}")
    if kind != "object" and len(arches) > 1:
        raise ValueError(f"a {kind} holds one architecture; got arch={arches}")
    if isinstance(flags, str) or not all(isinstance(f, str) for f in flags):
        raise TypeError(f"flags must be a sequence of str, got {flags!r}")
    nvcc = find_nvcc()
    if nvcc is None:
        raise CompileError("nvcc not found: put it on PATH or set FLOWC_NVCC (or CUDA_HOME)")
    option, suffix = _KINDS[kind]
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="flowc-cuda-")) / f"flowc{suffix}"
    out = Path(out).absolute()
    if out.suffix == ".cu":
        raise ValueError(f"out must not be a .cu path (the source goes there), got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.with_suffix(".cu")
    src.write_text(source)
    cmd = [nvcc, *DEFAULT_FLAGS]
    if len(arches) == 1:
        cmd.append(f"-arch={arches[0]}")
    else:
        for a in arches:
            cmd.append(f"-gencode=arch=compute_{a[3:]},code={a}")
        cmd.append(f"--threads={min(len(arches), os.cpu_count() or 1)}")
    cmd += ["-I", str(HEADER.parent), *flags, option, str(src), "-o", str(out)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise CompileError(
            f"nvcc did not finish in {timeout} s; source kept at {src}",
            source_path=src,
            command=cmd,
        ) from e
    if proc.returncode != 0 or not out.is_file():
        stderr = proc.stderr.strip()
        shown = stderr if len(stderr) <= 20000 else stderr[:20000] + "\n... (cut)"
        raise CompileError(
            f"nvcc failed (exit {proc.returncode}) for {', '.join(arches)}; source kept at "
            f"{src}\ncommand: {' '.join(cmd)}\n{shown}",
            stderr=proc.stderr,
            source_path=src,
            command=cmd,
        )
    return out
