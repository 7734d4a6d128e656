"""Cost model: an estimated run time per node and device kind, from its FLOPs and bytes moved.

Rates come from a sub-second NumPy calibration, run once per machine and cached as JSON in
the flowc cache dir; ``CostModel.from_profile`` replaces estimates with measured times.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import tempfile
import time

import numpy as np

__all__ = [
    "KINDS",
    "NOMINAL_RATES",
    "CostModel",
    "Rates",
    "calibrate",
    "load_rates",
    "node_bytes",
    "node_flops",
    "transfer_time",
]

KINDS = ("cpu", "cuda")

# Bytes/s and latency of a link between two devices (PCIe 4 x16 as measured, not as
# advertised); a copy between CPU virtual devices is a memcpy of about the same speed.
LINK_BANDWIDTH = 12e9
LINK_LATENCY = 10e-6

_CACHE_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Rates:
    """Throughputs of one device kind: ``gflops`` (GFLOP/s), ``gbps`` (GB/s), and
    ``overhead`` (seconds per kernel, paid even by an empty one)."""

    gflops: float
    gbps: float
    overhead: float

    def __post_init__(self):
        for name in ("gflops", "gbps", "overhead"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"Rates.{name} must be a finite number >= 0, got {value!r}")
        if self.gflops == 0 or self.gbps == 0:
            raise ValueError("Rates.gflops and Rates.gbps must be positive")


# NumPy cannot time a GPU, so CUDA starts from a data-centre GPU's sustained figures
# (FP32 without tensor cores, HBM bandwidth); a measured profile replaces them.
NOMINAL_RATES = {"cuda": Rates(gflops=20_000.0, gbps=1_500.0, overhead=5e-6)}


def transfer_time(nbytes: float, src, dst) -> float:
    """Seconds to move ``nbytes`` from device ``src`` to device ``dst`` (0 on one device).

    The default ``comm_cost`` of the placement strategies.

    >>> transfer_time(1 << 20, "cuda:0", "cuda:0")
    0.0
    >>> round(transfer_time(12e9, "cpu:0", "cpu:1"), 5)
    1.00001
    """
    if src == dst:
        return 0.0
    return LINK_LATENCY + nbytes / LINK_BANDWIDTH


# ------------------------------------------------------------------ calibration
def _best_time(fn, budget: float) -> float:
    """The fastest of repeated calls of ``fn`` (at least 3, at most 50, about ``budget``
    seconds): the minimum is what the machine can do when nothing else runs."""
    fn()  # warm caches and BLAS threads
    best, spent, calls = math.inf, 0.0, 0
    while calls < 3 or (spent < budget and calls < 50):
        t0 = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - t0
        best, spent, calls = min(best, elapsed), spent + elapsed, calls + 1
    return max(best, 1e-9)


def calibrate(budget: float = 0.3) -> Rates:
    """Time a NumPy matmul, a large copy and a tiny ufunc call on this machine's CPU, for
    about ``budget`` seconds in all (a 256 x 256 matmul, an 8 MB copy, a 1-element add)."""
    rng = np.random.default_rng(0)
    n = 256
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    c = np.empty((n, n))
    t_matmul = _best_time(lambda: np.matmul(a, b, out=c), budget / 3)
    src = np.ones(1 << 20)
    dst = np.empty_like(src)
    t_copy = _best_time(lambda: np.copyto(dst, src), budget / 3)
    tiny, tiny_out = np.ones(1), np.empty(1)
    t_call = _best_time(lambda: np.add(tiny, tiny, out=tiny_out), budget / 3)
    return Rates(
        gflops=2.0 * n**3 / t_matmul / 1e9,
        gbps=2.0 * src.nbytes / t_copy / 1e9,  # a copy reads and writes every byte
        overhead=t_call,
    )


def _cache_dir() -> str:
    try:
        from flowc.kernels.cache import cache_dir
    except ImportError:
        default = os.path.join(os.path.expanduser("~"), ".cache", "flowc")
        return os.environ.get("FLOWC_CACHE_DIR") or default
    return os.fspath(cache_dir())


def _fingerprint() -> str:
    # A cache dir may sit on a shared file system: the file is per machine.
    return "|".join(
        [platform.node(), platform.machine(), platform.processor(), str(os.cpu_count())]
        + [np.__version__]
    )


def _cache_path() -> str:
    digest = hashlib.sha256(_fingerprint().encode()).hexdigest()[:16]
    return os.path.join(_cache_dir(), f"costmodel-{digest}.json")


def _read_cached(path: str) -> Rates | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("format") != _CACHE_FORMAT or data.get("fingerprint") != _fingerprint():
            return None
        return Rates(**data["cpu"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # missing, truncated or from another machine: calibrate again


def _write_cached(path: str, rates: Rates) -> None:
    data = {
        "format": _CACHE_FORMAT,
        "fingerprint": _fingerprint(),
        "cpu": dataclasses.asdict(rates),
    }
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Lock-free: many processes may calibrate at once; the last os.replace wins.
        # The ".tmp-" prefix lets flowc.kernels.cache.clear() sweep what a crash leaves.
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-costmodel-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache dir only costs a recalibration next time


def load_rates(refresh: bool = False) -> dict[str, Rates]:
    """``{kind: Rates}``: the CPU's calibrated rates (from the cache file when there is one,
    else measured and written there) and the nominal CUDA rates."""
    path = _cache_path()
    cpu = None if refresh else _read_cached(path)
    if cpu is None:
        cpu = calibrate()
        _write_cached(path, cpu)
    return {"cpu": cpu, **NOMINAL_RATES}


# ------------------------------------------------------------------ per-node work
def _size(shape) -> int:
    return math.prod(shape)


def _itemsize(var) -> int:
    dtype = getattr(var.type, "dtype", None)
    return 0 if dtype is None else np.dtype(dtype).itemsize


def _contracted(node, shapes) -> int:
    name = type(node.op).__name__
    if name in ("Dot", "MatMul"):
        return shapes[node.inputs[0]][-1] if shapes[node.inputs[0]] else 1
    if name == "Gemm":  # inputs C, alpha, A, B, beta
        return shapes[node.inputs[2]][1]
    # TensorDot
    a_shape = shapes[node.inputs[0]]
    return math.prod(a_shape[i] for i in node.op.axes_a)


_CONTRACTIONS = frozenset({"Dot", "MatMul", "Gemm", "TensorDot"})

# Leading-term operation counts of the dense LAPACK routines, in units of n**3.
_CUBIC = {
    "Cholesky": 1 / 3,
    "Det": 2 / 3,
    "SLogDet": 2 / 3,
    "Solve": 2 / 3,
    "MatrixInverse": 2.0,
    "Eigh": 9.0,
    "Pinv": 20.0,
}

# The ops whose cost is their arithmetic, not their bytes (node_flops > 0 for them).
FLOP_HEAVY = _CONTRACTIONS | frozenset(_CUBIC)


def node_flops(node, shapes: dict) -> float:
    """Floating-point operations of ``node``: ``2*m*n*k`` for a GEMM-like contraction,
    the LAPACK count for a dense factorization, and 0 for the (memory-bound) rest.

    ``shapes`` maps each input and output variable of ``node`` to a tuple of ints.
    """
    name = type(node.op).__name__
    if name in _CONTRACTIONS:
        return 2.0 * _size(shapes[node.outputs[0]]) * _contracted(node, shapes)
    if name in _CUBIC:
        shape = shapes[node.inputs[0]]
        n = max(shape[-2:], default=1)
        return _CUBIC[name] * float(n) ** 3 * _size(shape[:-2])
    return 0.0


def node_bytes(node, shapes: dict) -> float:
    """Bytes ``node`` reads and writes; a view (``view_map``) moves none."""
    if getattr(node.op, "view_map", None):
        return 0.0
    return float(sum(_size(shapes[v]) * _itemsize(v) for v in (*node.inputs, *node.outputs)))


# ------------------------------------------------------------------ the model
def _check_time(key, value):
    if isinstance(value, dict):
        return {k: _check_time(key, v) for k, v in value.items()}
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"measured time of {key!r} must be a finite number >= 0, got {value!r}")
    return float(value)


class CostModel:
    """Seconds per node on each device kind: ``overhead + max(flops / rate, bytes / bandwidth)``.

    ``rates`` is ``{kind: Rates}`` (default: this machine's calibration, loaded on first
    use, and ``NOMINAL_RATES``). ``times`` holds measured seconds keyed by Apply node or by
    node index (its place in ``fgraph.toposort()``): a number replaces the estimate on every
    kind, a ``{kind: seconds}`` dict only on those kinds.

    >>> cm = CostModel(rates={"cpu": Rates(gflops=1.0, gbps=1.0, overhead=0.0)}, times={3: 0.5})
    >>> cm.kinds
    ('cpu',)
    >>> cm.costs(None, {}, key=3)
    {'cpu': 0.5}
    """

    def __init__(self, rates: dict | None = None, times: dict | None = None):
        if rates is not None:
            if not isinstance(rates, dict) or not all(isinstance(r, Rates) for r in rates.values()):
                raise TypeError(f"rates must be a dict of kind -> Rates, got {rates!r}")
            rates = dict(rates)
        if times is not None and not isinstance(times, dict):
            raise TypeError(f"times must be a dict of node -> seconds, got {type(times).__name__}")
        self._rates = rates
        self.times = {k: _check_time(k, v) for k, v in (times or {}).items()}

    @classmethod
    def from_profile(cls, times: dict, rates: dict | None = None) -> CostModel:
        """A model whose per-node times are the measured ``times`` (estimates elsewhere)."""
        return cls(rates=rates, times=times)

    @property
    def rates(self) -> dict[str, Rates]:
        if self._rates is None:
            self._rates = load_rates()
        return self._rates

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._rates) if self._rates is not None else KINDS

    def estimate(self, node, shapes: dict, kind: str) -> float:
        """The roofline estimate of ``node`` on device kind ``kind`` (seconds)."""
        if kind not in self.rates:
            raise ValueError(f"no rates for device kind {kind!r}; known: {sorted(self.rates)}")
        r = self.rates[kind]
        compute = node_flops(node, shapes) / (r.gflops * 1e9)
        memory = node_bytes(node, shapes) / (r.gbps * 1e9)
        return r.overhead + max(compute, memory)

    def costs(self, node, shapes: dict, key=None) -> dict[str, float]:
        """``{kind: seconds}`` for ``node``: measured where ``times`` has it (by node, then
        by ``key``), else estimated."""
        measured = self.times.get(node) if node is not None else None
        if measured is None and key is not None:
            measured = self.times.get(key)
        if isinstance(measured, float):
            return dict.fromkeys(self.kinds, measured)
        out = {}
        for kind in self.kinds:
            if measured is not None and kind in measured:
                out[kind] = measured[kind]
            else:
                out[kind] = self.estimate(node, shapes, kind)
        return out
