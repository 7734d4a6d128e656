// flowc_kernel.h: the kernel dialect. Every generated kernel is written once in this C++
// subset; g++ builds it for the CPU (OpenMP loops, libmvec SIMD math) and nvcc for CUDA
// (grid-stride loops, device math). Target-specific pieces stay behind __CUDACC__.
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include <cmath>
#include <type_traits>

#ifndef __CUDACC__
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#endif

// ------------------------------------------------------------------------------ loops
// FLOWC_PARALLEL_FOR(i, n): a flat loop whose iterations are independent: spread over
// threads and vectorized on the CPU, one thread per index on a GPU. FLOWC_PARALLEL_ROWS(i, n):
// the same for an outer loop whose body has its own inner loop (not vectorized).
// FLOWC_SIMD_FOR(j, n): a serial inner loop worth vectorizing; FLOWC_SIMD_SUM(acc) and
// FLOWC_SIMD_PROD(acc) mark the next loop as a vectorizable reduction into acc.
// FLOWC_LAUNCH(kernel, work, args...): the driver's call of a kernel over `work` elements.
//
// On the CPU the parallel loops are OpenMP worksharing loops (`omp for`), and FLOWC_LAUNCH
// opens the parallel region (each thread calls the kernel, the loop splits the indices)
// only when `work` reaches FLOWC_PARALLEL_MIN. A small kernel then costs no thread-team
// start at all: `omp parallel for if(...)` pays about a microsecond even when the condition
// is false. A kernel body is therefore only a parallel loop (plus per-thread locals).

#ifndef FLOWC_PARALLEL_MIN
#define FLOWC_PARALLEL_MIN 32768  // elements below which a kernel stays on one thread
#endif

#define FLOWC_PRAGMA(x) _Pragma(#x)

#ifdef __CUDACC__
#define FLOWC_KERNEL extern "C" __global__
#define FLOWC_FUNC static __host__ __device__ __forceinline__
#define FLOWC_RESTRICT __restrict__
#define FLOWC_ASSUME_ALIGNED(p, n) (p)
#define FLOWC_PARALLEL_FOR(i, n)                                                    \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (int64_t)(n); \
       i += (int64_t)blockDim.x * gridDim.x)
#define FLOWC_PARALLEL_ROWS(i, n) FLOWC_PARALLEL_FOR(i, n)
#define FLOWC_SIMD_FOR(j, n) for (int64_t j = 0; j < (int64_t)(n); ++j)
#define FLOWC_SIMD_SUM(acc)
#define FLOWC_SIMD_PROD(acc)
#ifndef FLOWC_BLOCK
#define FLOWC_BLOCK 256
#endif
// Enough blocks to cover `work` indices (grid-stride loops cover the rest).
#define FLOWC_LAUNCH(kernel, work, ...)                                              \
  kernel<<<(unsigned)(((work) + FLOWC_BLOCK - 1) / FLOWC_BLOCK > 65535 ? 65535       \
                      : ((work) + FLOWC_BLOCK - 1) / FLOWC_BLOCK > 0                 \
                          ? ((work) + FLOWC_BLOCK - 1) / FLOWC_BLOCK : 1),           \
           FLOWC_BLOCK>>>(__VA_ARGS__)
#else
#define FLOWC_KERNEL extern "C"
#define FLOWC_FUNC static inline
#define FLOWC_RESTRICT __restrict__
#define FLOWC_ASSUME_ALIGNED(p, n) ((decltype(p))__builtin_assume_aligned((p), (n)))
#define FLOWC_PARALLEL_FOR(i, n) \
  FLOWC_PRAGMA(omp for simd) \
  for (int64_t i = 0; i < (int64_t)(n); ++i)
#define FLOWC_PARALLEL_ROWS(i, n) \
  FLOWC_PRAGMA(omp for) \
  for (int64_t i = 0; i < (int64_t)(n); ++i)
#define FLOWC_SIMD_FOR(j, n) \
  FLOWC_PRAGMA(omp simd) \
  for (int64_t j = 0; j < (int64_t)(n); ++j)
#define FLOWC_SIMD_SUM(acc) FLOWC_PRAGMA(omp simd reduction(+ : acc))
#define FLOWC_SIMD_PROD(acc) FLOWC_PRAGMA(omp simd reduction(* : acc))
#define FLOWC_LAUNCH(kernel, work, ...)     \
  do {                                      \
    if ((work) >= FLOWC_PARALLEL_MIN) {     \
      FLOWC_PRAGMA(omp parallel)            \
      kernel(__VA_ARGS__);                  \
    } else {                                \
      kernel(__VA_ARGS__);                  \
    }                                       \
  } while (0)
#endif

// ------------------------------------------------------------------------ SIMD math
// glibc's libmvec has vector versions of the float and double libm functions; declaring
// them `simd` lets g++ vectorize loops that call them without -ffast-math (libmvec is
// accurate to 4 ulp). The build defines FLOWC_USE_LIBMVEC only where libmvec is linked.
#if !defined(__CUDACC__) && defined(FLOWC_USE_LIBMVEC) && defined(__x86_64__) && \
    defined(__GLIBC__) && !defined(__FAST_MATH__)
#define FLOWC_VEC_DECL(fn) \
  __attribute__((simd("notinbranch"))) float fn##f(float); \
  __attribute__((simd("notinbranch"))) double fn(double);
extern "C" {
#if __GLIBC_PREREQ(2, 22)
FLOWC_VEC_DECL(exp)
FLOWC_VEC_DECL(log)
FLOWC_VEC_DECL(sin)
FLOWC_VEC_DECL(cos)
#endif
#if __GLIBC_PREREQ(2, 35)
FLOWC_VEC_DECL(acos)
FLOWC_VEC_DECL(asin)
FLOWC_VEC_DECL(atan)
FLOWC_VEC_DECL(acosh)
FLOWC_VEC_DECL(asinh)
FLOWC_VEC_DECL(atanh)
FLOWC_VEC_DECL(sinh)
FLOWC_VEC_DECL(cosh)
FLOWC_VEC_DECL(tanh)
FLOWC_VEC_DECL(tan)
FLOWC_VEC_DECL(exp2)
FLOWC_VEC_DECL(expm1)
FLOWC_VEC_DECL(log2)
FLOWC_VEC_DECL(log10)
FLOWC_VEC_DECL(log1p)
FLOWC_VEC_DECL(erf)
FLOWC_VEC_DECL(erfc)
#endif
}
#undef FLOWC_VEC_DECL
#endif

// ------------------------------------------------------------------------ math mapping
// flowc_<name>(x) picks the float or double function by overload, so one expression
// template serves both widths (and both compilers).
#define FLOWC_UNARY(name, ffn, dfn)                      \
  FLOWC_FUNC float flowc_##name(float x) { return ffn(x); } \
  FLOWC_FUNC double flowc_##name(double x) { return dfn(x); }

FLOWC_UNARY(exp, expf, exp)
FLOWC_UNARY(exp2, exp2f, exp2)
FLOWC_UNARY(expm1, expm1f, expm1)
FLOWC_UNARY(log, logf, log)
FLOWC_UNARY(log2, log2f, log2)
FLOWC_UNARY(log10, log10f, log10)
FLOWC_UNARY(log1p, log1pf, log1p)
FLOWC_UNARY(sqrt, sqrtf, sqrt)
FLOWC_UNARY(sin, sinf, sin)
FLOWC_UNARY(cos, cosf, cos)
FLOWC_UNARY(tan, tanf, tan)
FLOWC_UNARY(arcsin, asinf, asin)
FLOWC_UNARY(arccos, acosf, acos)
FLOWC_UNARY(arctan, atanf, atan)
FLOWC_UNARY(sinh, sinhf, sinh)
FLOWC_UNARY(cosh, coshf, cosh)
FLOWC_UNARY(tanh, tanhf, tanh)
FLOWC_UNARY(arcsinh, asinhf, asinh)
FLOWC_UNARY(arccosh, acoshf, acosh)
FLOWC_UNARY(arctanh, atanhf, atanh)
FLOWC_UNARY(erf, erff, erf)
FLOWC_UNARY(erfc, erfcf, erfc)
FLOWC_UNARY(floor, floorf, floor)
FLOWC_UNARY(ceil, ceilf, ceil)
FLOWC_UNARY(rint, nearbyintf, nearbyint)  // ties to even in the default rounding mode
FLOWC_UNARY(round, roundf, round)         // ties away from zero
FLOWC_UNARY(fabs, fabsf, fabs)
#undef FLOWC_UNARY

FLOWC_FUNC float flowc_pow(float x, float y) { return powf(x, y); }
FLOWC_FUNC double flowc_pow(double x, double y) { return pow(x, y); }
FLOWC_FUNC float flowc_fmod(float x, float y) { return fmodf(x, y); }
FLOWC_FUNC double flowc_fmod(double x, double y) { return fmod(x, y); }

// Integers round to themselves (NumPy's round/floor of an int keeps it).
template <typename T> FLOWC_FUNC T flowc_rint(T x) { return x; }
template <typename T> FLOWC_FUNC T flowc_round(T x) { return x; }

template <typename T> FLOWC_FUNC bool flowc_isnan(T x) { return x != x; }
template <typename T> FLOWC_FUNC bool flowc_isinf(T x) {
  if constexpr (std::is_floating_point<T>::value) return isinf(x);
  else return false;
}

// NumPy's maximum/minimum: a NaN in either argument is the result.
template <typename T> FLOWC_FUNC T flowc_max(T a, T b) { return (a >= b || a != a) ? a : b; }
template <typename T> FLOWC_FUNC T flowc_min(T a, T b) { return (a <= b || a != a) ? a : b; }

template <typename T> FLOWC_FUNC T flowc_abs(T x) {
  if constexpr (std::is_floating_point<T>::value) return flowc_fabs(x);
  else if constexpr (std::is_signed<T>::value)
    // Through the unsigned type: abs(INT_MIN) wraps to INT_MIN, as in NumPy, without UB.
    return x < 0 ? (T)(0 - (typename std::make_unsigned<T>::type)x) : x;
  else return x;
}

template <typename T> FLOWC_FUNC T flowc_sign(T x) {
  if constexpr (std::is_floating_point<T>::value) return x > 0 ? T(1) : x < 0 ? T(-1) : x;
  else if constexpr (std::is_signed<T>::value) return (T)((x > 0) - (x < 0));
  else return (T)(x > 0);
}

template <typename T> FLOWC_FUNC T flowc_invert(T x) {
  if constexpr (std::is_same<T, bool>::value) return !x;
  else return (T)~x;
}

template <typename T> FLOWC_FUNC T flowc_reciprocal(T x) { return T(1) / x; }

// Floor division and the modulo that goes with it (Python's sign rules), as NumPy computes
// them: integer division by zero gives 0 (NumPy warns) instead of trapping.
template <typename T> FLOWC_FUNC T flowc_floordiv(T a, T b) {
  if constexpr (std::is_floating_point<T>::value) {
    T mod = flowc_fmod(a, b);
    if (b == 0) return a / b;
    T div = (a - mod) / b;
    if (mod != 0 && ((b < 0) != (mod < 0))) div -= T(1);
    if (div != 0) {
      T fl = flowc_floor(div);
      if (div - fl > T(0.5)) fl += T(1);
      return fl;
    }
    return copysign(T(0), a / b);
  } else if constexpr (std::is_same<T, bool>::value) {
    return b ? a : false;
  } else {
    if (b == 0) return 0;
    if constexpr (std::is_signed<T>::value) {
      if (b == (T)-1) return (T)(0 - (typename std::make_unsigned<T>::type)a);
      T q = (T)(a / b);
      if ((T)(a % b) != 0 && ((a < 0) != (b < 0))) q = (T)(q - 1);
      return q;
    } else {
      return (T)(a / b);
    }
  }
}

template <typename T> FLOWC_FUNC T flowc_mod(T a, T b) {
  if constexpr (std::is_floating_point<T>::value) {
    T mod = flowc_fmod(a, b);
    if (b == 0) return mod;
    if (mod != 0) {
      if ((b < 0) != (mod < 0)) mod += b;
    } else {
      mod = copysign(T(0), b);
    }
    return mod;
  } else if constexpr (std::is_same<T, bool>::value) {
    return false;
  } else {
    if (b == 0) return 0;
    if constexpr (std::is_signed<T>::value) {
      if (b == (T)-1) return 0;
      T r = (T)(a % b);
      if (r != 0 && ((r < 0) != (b < 0))) r = (T)(r + b);
      return r;
    } else {
      return (T)(a % b);
    }
  }
}

template <typename T> FLOWC_FUNC T flowc_sigmoid(T x) { return T(1) / (T(1) + flowc_exp(-x)); }

template <typename T> FLOWC_FUNC T flowc_softplus(T x) {
  return flowc_max(x, T(0)) + flowc_log1p(flowc_exp(-flowc_fabs(x)));
}

// gamma and lgamma: like Python's math module, a pole (0, -1, -2, ...) is NaN for gamma
// and +inf for lgamma; lgamma_r because lgamma writes a global.
template <typename T> FLOWC_FUNC T flowc_gamma(T x) {
  if (x <= 0 && x == flowc_floor(x)) return (T)NAN;
  return (T)tgamma((double)x);
}
template <typename T> FLOWC_FUNC T flowc_gammaln(T x) {
#ifdef __CUDACC__
  return (T)lgamma((double)x);
#else
  int sign;
  return (T)lgamma_r((double)x, &sign);
#endif
}

// The inverse error function: Giles' single-precision polynomial, then two Newton steps.
template <typename T> FLOWC_FUNC T flowc_erfinv(T yt) {
  double y = (double)yt;
  if (y != y || y < -1 || y > 1) return (T)NAN;
  if (y == 1 || y == -1) return (T)copysign((double)INFINITY, y);
  double w = -log((1.0 - y) * (1.0 + y)), p, x;
  if (w < 5.0) {
    w -= 2.5;
    p = 2.81022636e-08;
    p = 3.43273939e-07 + p * w;
    p = -3.5233877e-06 + p * w;
    p = -4.39150654e-06 + p * w;
    p = 0.00021858087 + p * w;
    p = -0.00125372503 + p * w;
    p = -0.00417768164 + p * w;
    p = 0.246640727 + p * w;
    p = 1.50140941 + p * w;
  } else {
    w = sqrt(w) - 3.0;
    p = -0.000200214257;
    p = 0.000100950558 + p * w;
    p = 0.00134934322 + p * w;
    p = -0.00367342844 + p * w;
    p = 0.00573950773 + p * w;
    p = -0.0076224613 + p * w;
    p = 0.00943887047 + p * w;
    p = 1.00167406 + p * w;
    p = 2.83297682 + p * w;
  }
  x = p * y;
  for (int k = 0; k < 2; ++k) {
    double err = erf(x) - y;
    x -= err / (1.1283791670955126 * exp(-x * x));
  }
  return (T)x;
}

// psi (digamma): recurrence up to x >= 10, then the asymptotic series; reflection for x < 0.
template <typename T> FLOWC_FUNC T flowc_psi(T xt) {
  double x = (double)xt;
  if (x <= 0 && x == floor(x)) return (T)NAN;
  const double pi = 3.141592653589793;
  double refl = 0, z = x, acc = 0;
  if (x < 0) {
    refl = pi / tan(pi * x);
    z = 1.0 - x;
  }
  for (int k = 0; k < 10 && z < 10; ++k) {
    acc -= 1.0 / z;
    z += 1.0;
  }
  double r = 1.0 / (z * z);
  double series = 1.0 / 240 - r * (1.0 / 132);
  series = log(z) - 0.5 / z - r * (1.0 / 12 - r * (1.0 / 120 - r * (1.0 / 252 - r * series)));
  return (T)(acc + series - refl);
}

// psi' (trigamma), by the same recurrence and series.
template <typename T> FLOWC_FUNC T flowc_tri_gamma(T xt) {
  double x = (double)xt;
  if (x <= 0 && x == floor(x)) return (T)NAN;
  const double pi = 3.141592653589793;
  double z = x < 0 ? 1.0 - x : x, acc = 0;
  for (int k = 0; k < 10 && z < 10; ++k) {
    acc += 1.0 / (z * z);
    z += 1.0;
  }
  double r = 1.0 / (z * z);
  double out = acc + 1.0 / z + r / 2 + r / z * (1.0 / 6 - r * (1.0 / 30 - r * (1.0 / 42 - r / 30)));
  if (x < 0) {
    double s = pi / sin(pi * x);
    out = -out + s * s;
  }
  return (T)out;
}

// ---------------------------------------------------------------- host driver support
// Everything below runs on the host only: the driver that checks shapes, owns scratch
// memory and calls the kernels (or BLAS) in order.
#ifndef __CUDACC__

enum { FLOWC_OK = 0, FLOWC_NEED_ALLOC = 1, FLOWC_VALUE_ERROR = 2, FLOWC_INDEX_ERROR = 3,
       FLOWC_MEMORY_ERROR = 4 };

// The last error of this thread: its message and the node (or input) it belongs to.
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

#define FLOWC_TRY(...)                   \
  do {                                   \
    int flowc_rc_ = (__VA_ARGS__);       \
    if (flowc_rc_) return flowc_rc_;     \
  } while (0)

// The leading fields of NumPy's PyArrayObject (its stable ABI). FLOWC_PYOBJECT_HEAD is the
// size of CPython's object header, given by the build; the Python side checks the layout
// on the first library it loads.
#ifndef FLOWC_PYOBJECT_HEAD
#define FLOWC_PYOBJECT_HEAD 16
#endif
struct flowc_pyarray {
  char ob_head[FLOWC_PYOBJECT_HEAD];
  char* data;
  int nd;
  int64_t* dims;
  int64_t* strides;
  void* base;
  void* descr;
  int flags;
};
enum { FLOWC_NPY_C_CONTIGUOUS = 0x0001, FLOWC_NPY_ALIGNED = 0x0100,
       FLOWC_NPY_WRITEABLE = 0x0400 };

// Check an input array: its rank, alignment, and strides in whole elements (the stride of
// a dim of size 0 or 1 is never used: NumPy may leave any value there).
static inline int flowc_check_input(const flowc_pyarray* a, int where, int nd,
                                    int64_t itemsize) {
  if (a->nd != nd)
    return flowc_fail(FLOWC_VALUE_ERROR, where, "expected %d dims, got %d", nd, a->nd);
  if (!(a->flags & FLOWC_NPY_ALIGNED) || ((uintptr_t)a->data % (uintptr_t)itemsize) != 0)
    return flowc_fail(FLOWC_VALUE_ERROR, where, "the array is not aligned");
  for (int k = 0; k < nd; ++k)
    if (a->dims[k] > 1 && a->strides[k] % itemsize != 0)
      return flowc_fail(FLOWC_VALUE_ERROR, where, "stride %lld of dim %d is not a multiple of "
                        "the item size %lld", (long long)a->strides[k], k, (long long)itemsize);
  return FLOWC_OK;
}

// Whether an output array given by the caller has exactly this shape and is writable,
// aligned and C-contiguous.
static inline bool flowc_output_fits(const flowc_pyarray* a, int nd, const int64_t* dims) {
  const int need = FLOWC_NPY_C_CONTIGUOUS | FLOWC_NPY_ALIGNED | FLOWC_NPY_WRITEABLE;
  if (a->nd != nd || (a->flags & need) != need) return false;
  for (int k = 0; k < nd; ++k)
    if (a->dims[k] != dims[k]) return false;
  return true;
}

// The number of elements of a shape; -1 if it overflows (sizes from user-given values).
static inline int64_t flowc_count(int nd, const int64_t* dims) {
  int64_t n = 1;
  for (int k = 0; k < nd; ++k) {
    if (dims[k] < 0) return -1;
    if (__builtin_mul_overflow(n, dims[k], &n) || n > ((int64_t)1 << 56)) return -1;
  }
  return n;
}

// Python's slice.indices(n) and the length of the result: the start and the length.
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

// Scratch memory for a driver's intermediates. Each driver owns one flowc_arena that
// outlives its calls: the first call allocates it and later calls of the same (or smaller)
// size reuse it, so a steady loop allocates nothing. A call that finds the arena in use by
// another thread takes a block of its own for that call. flowc_arena_release() frees an
// idle arena (Function.free()); `allocs` counts the blocks an arena has allocated.
struct flowc_arena {
  int busy = 0;  // taken by a call: GCC atomics (no <atomic>: it costs compile time)
  char* base = nullptr;
  size_t bytes = 0;
  size_t allocs = 0;
};

static inline bool flowc_arena_take(flowc_arena& a) {
  int idle = 0;
  return __atomic_compare_exchange_n(&a.busy, &idle, 1, false, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED);
}

static inline void flowc_arena_give(flowc_arena& a) { __atomic_store_n(&a.busy, 0, __ATOMIC_RELEASE); }

static inline size_t flowc_arena_release(flowc_arena& a) {
  if (!flowc_arena_take(a)) return 0;
  const size_t freed = a.bytes;
  free(a.base);
  a.base = nullptr;
  a.bytes = 0;
  flowc_arena_give(a);
  return freed;
}

struct flowc_scratch {
  char* base = nullptr;
  flowc_arena* arena = nullptr;  // held for this call; null: `base` is this call's own
  flowc_scratch(flowc_arena& a, size_t bytes) {
    if (!bytes) return;  // a sum of flowc_round64 sizes: aligned_alloc takes it as it is
    if (flowc_arena_take(a)) {
      arena = &a;
      if (a.bytes < bytes) {
        free(a.base);
        a.base = (char*)aligned_alloc(64, bytes);
        a.bytes = a.base ? bytes : 0;
        a.allocs += 1;
      }
      base = a.base;
    } else {
      base = (char*)aligned_alloc(64, bytes);
    }
  }
  ~flowc_scratch() {
    if (arena) flowc_arena_give(*arena);
    else free(base);
  }
  flowc_scratch(const flowc_scratch&) = delete;
  flowc_scratch& operator=(const flowc_scratch&) = delete;
};

FLOWC_FUNC size_t flowc_round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

// ------------------------------------------------------------------- matrix products
// C (M x N, contiguous) += alpha * A (M x K) B (K x N), A and B given by element strides.
// The naive loop serves integer and mixed dtypes; BLAS serves float32/float64.
// Launch it with FLOWC_LAUNCH: its rows are a worksharing loop.
template <typename TC, typename TA, typename TB>
static void flowc_matmul_naive(int64_t M, int64_t N, int64_t K, TC alpha, const TA* A,
                               int64_t sa0, int64_t sa1, const TB* B, int64_t sb0,
                               int64_t sb1, TC* C) {
  FLOWC_PARALLEL_ROWS(i, M) {
    for (int64_t j = 0; j < N; ++j) {
      TC acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += (TC)A[i * sa0 + k * sa1] * (TC)B[k * sb0 + j * sb1];
      C[i * N + j] += alpha * acc;
    }
  }
}

#ifdef FLOWC_USE_CBLAS
// How BLAS reads a rows x cols operand with element strides (s0, s1): row-major as is
// (trans = false) or as the transpose of a row-major array, with its leading dimension.
// False if neither works (negative or overlapping strides): the caller packs a copy.
static inline bool flowc_blas_layout(int64_t rows, int64_t cols, int64_t s0, int64_t s1,
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

template <typename T>
static T* flowc_pack(int64_t rows, int64_t cols, const T* src, int64_t s0, int64_t s1) {
  T* dst = (T*)malloc(sizeof(T) * (size_t)(rows * cols > 0 ? rows * cols : 1));
  if (dst)
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) dst[i * cols + j] = src[i * s0 + j * s1];
  return dst;
}

FLOWC_FUNC void flowc_cblas_gemm(bool ta, bool tb, int M, int N, int K, float alpha,
                                 const float* A, int lda, const float* B, int ldb, float* C,
                                 int ldc) {
  scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    M, N, K, alpha, A, lda, B, ldb, 1.0f, C, ldc);
}
FLOWC_FUNC void flowc_cblas_gemm(bool ta, bool tb, int M, int N, int K, double alpha,
                                 const double* A, int lda, const double* B, int ldb, double* C,
                                 int ldc) {
  scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    M, N, K, alpha, A, lda, B, ldb, 1.0, C, ldc);
}

template <typename T>
static int flowc_gemm(int where, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                      int64_t sa0, int64_t sa1, const T* B, int64_t sb0, int64_t sb1, T* C) {
  if (M == 0 || N == 0 || K == 0) return FLOWC_OK;
  if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX) {  // beyond 32-bit BLAS
    FLOWC_LAUNCH(flowc_matmul_naive, M * N * K, M, N, K, alpha, A, sa0, sa1, B, sb0, sb1, C);
    return FLOWC_OK;
  }
  bool ta, tb;
  int64_t lda, ldb;
  T *pa = nullptr, *pb = nullptr;
  if (!flowc_blas_layout(M, K, sa0, sa1, &ta, &lda) || lda > INT32_MAX) {
    if (!(pa = flowc_pack(M, K, A, sa0, sa1)))
      return flowc_fail(FLOWC_MEMORY_ERROR, where, "out of memory packing a matrix");
    A = pa, ta = false, lda = K;
  }
  if (!flowc_blas_layout(K, N, sb0, sb1, &tb, &ldb) || ldb > INT32_MAX) {
    if (!(pb = flowc_pack(K, N, B, sb0, sb1))) {
      free(pa);
      return flowc_fail(FLOWC_MEMORY_ERROR, where, "out of memory packing a matrix");
    }
    B = pb, tb = false, ldb = N;
  }
  flowc_cblas_gemm(ta, tb, (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, C, (int)N);
  free(pa);
  free(pb);
  return FLOWC_OK;
}
#endif  // FLOWC_USE_CBLAS

#endif  // !__CUDACC__
