"""Every flowc flag in one place, read from ``FLOWC_FLAGS`` and changed with ``change``.

``FLOWC_FLAGS="floatX=float32,verify=True"`` sets flags for a process;
``with flowc.config.change(floatX="float32"):`` sets them for a block.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os


@dataclasses.dataclass
class Config:
    """The flags. Attribute names follow Theano where Theano had the flag."""

    floatX: str = "float64"  # dtype of float constructors and Python float constants
    mode: str = "fast_run"  # default mode of ``function``
    verify: bool = False  # run ``graph.verify`` after every pipeline step
    on_unused_input: str = "raise"  # default of ``function(on_unused_input=...)``
    constant_folding_max_bytes: int = 1 << 20  # never fold a constant bigger than this
    unsafe_mul_zero: bool = False  # rewrite float x * 0 to 0 (wrong for x = NaN or inf)
    linker: str = "c"  # "c": compiled C++ kernels where a compiler exists; "py": perform only
    cxx_native: bool = True  # compile kernels with -march=native
    cxx_flags: str = ""  # extra compiler flags, space-separated (after -O3: "-O1" wins)
    devices: str = "cpu:1"  # "cpu:N" splits the CPU into N virtual devices
    streams: int = 1  # streams (worker threads on CPU) per device
    schedule: str = "serial"  # placement strategy: serial, heft, user, critical_path
    print_after: str = ""  # pipeline steps after which to print the graph, '+'-separated

    def change(self, **flags):
        """Set ``flags`` for the duration of a ``with`` block."""
        return _changed(self, flags)


@contextlib.contextmanager
def _changed(cfg: Config, flags: dict):
    old = {k: getattr(cfg, k) for k in flags if hasattr(cfg, k)}
    for k, v in flags.items():
        _set(cfg, k, v)
    try:
        yield cfg
    finally:
        for k, v in old.items():
            setattr(cfg, k, v)


def _set(cfg: Config, key: str, value) -> None:
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    if key not in fields:
        raise ValueError(f"unknown flowc flag {key!r}; known flags: {sorted(fields)}")
    default = fields[key].default
    if isinstance(value, str) and not isinstance(default, str):
        if isinstance(default, bool):
            if value.lower() not in ("1", "0", "true", "false"):
                raise ValueError(f"flag {key!r} wants a boolean, got {value!r}")
            value = value.lower() in ("1", "true")
        else:
            value = type(default)(value)
    if key == "floatX" and value not in ("float16", "float32", "float64"):
        raise ValueError(f"floatX must be float16, float32 or float64, got {value!r}")
    if key == "linker" and value not in ("c", "py"):
        raise ValueError(f"linker must be 'c' or 'py', got {value!r}")
    setattr(cfg, key, value)


def _from_env(text: str) -> Config:
    cfg = Config()
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"FLOWC_FLAGS entry {item!r} is not of the form key=value")
        _set(cfg, key.strip(), value.strip())
    return cfg


config = _from_env(os.environ.get("FLOWC_FLAGS", ""))
change = config.change
