"""The C++ compiler driver: find g++/clang, build a shared object through the compile cache,
load it with ctypes, and the build arguments that link generated code against OpenBLAS.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import os
import platform
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from flowc.kernels import cache

__all__ = [
    "DEFAULT_FLAGS",
    "CompileError",
    "Compiler",
    "OpenBLASArgs",
    "compile_shared",
    "find_compiler",
    "load_library",
    "openblas_build_args",
]

DEFAULT_FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17")
_NATIVE = "-march=native"
_SEARCH = ("g++", "c++", "clang++")


class CompileError(RuntimeError):
    """The compiler rejected a source. ``stderr`` is its message, ``source_path`` the kept
    copy of the source, ``command`` the command line that failed."""

    def __init__(self, message: str, *, stderr: str = "", source_path=None, command=()):
        self.stderr = stderr
        self.source_path = None if source_path is None else Path(source_path)
        self.command = tuple(command)
        super().__init__(message)


@dataclasses.dataclass(frozen=True)
class Compiler:
    """A C++ compiler: absolute ``path``, first line of ``--version``, ``kind`` gcc/clang."""

    path: str
    version: str
    kind: str


_compilers: dict[tuple, Compiler | None] = {}


def _probe(path: str) -> Compiler | None:
    """Ask ``path --version``; None if it does not run or is neither GCC nor clang."""
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip()
    if out.returncode != 0 or not text:
        return None
    low = text.lower()
    if "clang" in low:
        kind = "clang"
    elif "free software foundation" in low or "gcc" in low or "g++" in low:
        kind = "gcc"
    else:
        return None
    return Compiler(path=path, version=text.splitlines()[0].strip(), kind=kind)


def find_compiler() -> Compiler | None:
    """The C++ compiler to use: ``FLOWC_CXX``, else ``CXX``, else g++, c++ or clang++ on
    ``PATH``; None when there is none. Memoized per value of those variables."""
    env = (os.environ.get("FLOWC_CXX"), os.environ.get("CXX"), os.environ.get("PATH"))
    if env in _compilers:
        return _compilers[env]
    flowc_cxx, cxx, path_var = env
    found = None
    if flowc_cxx:
        # An explicit choice that does not work is an error, not a silent fallback.
        exe = shutil.which(flowc_cxx, path=path_var)
        found = _probe(os.path.abspath(exe)) if exe else None
        if found is None:
            raise ValueError(f"FLOWC_CXX={flowc_cxx!r} is not a runnable GCC or clang C++ compiler")
    else:
        # CXX is a general convention that may name something unusable here (a wrapper
        # command line, a cross compiler): fall back to PATH if it does not probe.
        for name in ((cxx,) if cxx else ()) + _SEARCH:
            exe = shutil.which(name, path=path_var)
            if exe and (found := _probe(os.path.abspath(exe))) is not None:
                break
    _compilers[env] = found
    return found


_host_tag: str | None = None


def _host_cpu_tag() -> str:
    """What ``-march=native`` means on this host, so a cache shared between machines
    never hands one CPU a library built for another's instruction set."""
    global _host_tag
    if _host_tag is None:
        parts = [platform.machine(), platform.processor()]
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    name = line.split(":", 1)[0].strip()
                    if name in ("model name", "flags", "Features", "CPU part"):
                        parts.append(line.strip())
                    elif not line.strip() and len(parts) > 2:
                        break  # the first processor describes them all
        except OSError:
            pass
        _host_tag = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return _host_tag


def _strings(name: str, value) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(
            f"{name} must be a sequence of strings or paths, got {type(value).__name__}"
        )
    out = []
    for v in value:
        if not isinstance(v, (str, os.PathLike)):
            raise TypeError(f"{name} entries must be str or path, got {type(v).__name__}")
        out.append(os.fspath(v))
    return out


def _invoke(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run the compiler (one function, so tests can count compiler runs)."""
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def compile_shared(
    source: str,
    *,
    flags=(),
    include_dirs=(),
    libraries=(),
    library_dirs=(),
    rpaths=(),
    native: bool | None = None,
) -> Path:
    """Path of a shared object built from C++ ``source``, from the cache when it holds one.

    ``flags`` are added after ``DEFAULT_FLAGS``; ``native=False`` drops ``-march=native``
    (None reads ``config.cxx_native`` when that flag exists, else keeps it). Raises
    ``CompileError`` when the compiler fails or none is found.
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be a str of C++ code, got {type(source).__name__}")
    extra = _strings("flags", flags)
    incs = [os.path.abspath(p) for p in _strings("include_dirs", include_dirs)]
    libs = _strings("libraries", libraries)
    lib_dirs = [os.path.abspath(p) for p in _strings("library_dirs", library_dirs)]
    rps = [os.path.abspath(p) for p in _strings("rpaths", rpaths)]
    from flowc.config import config

    if native is None:
        native = bool(config.cxx_native)
    extra = extra + config.cxx_flags.split()  # e.g. "-O1" to trade speed for build time
    cc = find_compiler()
    if cc is None:
        raise CompileError("no C++ compiler found: install g++ or clang++, or set FLOWC_CXX to one")

    front = [f for f in DEFAULT_FLAGS if native or f != _NATIVE] + extra
    if cc.kind == "gcc":
        front.append("-frandom-seed=flowc")  # same bytes from every build of one key
    front += [f"-I{d}" for d in incs]
    back = [f"-L{d}" for d in lib_dirs] + [f"-Wl,-rpath,{d}" for d in rps]
    back += [f"-l{name}" for name in libs]
    key_args = front + back
    if _NATIVE in front:
        key_args = key_args + [f"native-cpu={_host_cpu_tag()}"]
    key = cache.make_key(source, cc.path, cc.version, key_args)

    hit = cache.lookup(key)
    if hit is not None:
        return hit

    build = cache.new_build_dir(key)
    try:
        # The source is named by its key (not the unique folder), and the compiler runs in
        # that folder, so concurrent builds of one key produce identical bytes.
        src_name, out_name = f"{key}.cpp", key + cache.entry_path(key).suffix
        (build / src_name).write_text(source)
        cmd = [cc.path, *front, src_name, "-o", out_name, *back]
        proc = _invoke(cmd, build)
        out = build / out_name
        if proc.returncode != 0 or not out.is_file():
            kept = _keep_failed(build / src_name, key)
            shown = [str(kept) if a == src_name else a for a in cmd]
            raise CompileError(
                f"C++ compilation failed (exit {proc.returncode}); source kept at {kept}\n"
                f"command: {' '.join(shown)}\n{proc.stderr.strip()}",
                stderr=proc.stderr,
                source_path=kept,
                command=shown,
            )
        return cache.store(key, out)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _keep_failed(src: Path, key: str) -> Path:
    """Move a failed source out of its build folder to ``<cache>/failed/<key>.cpp``."""
    try:
        dest_dir = cache.cache_dir() / "failed"
        dest_dir.mkdir(exist_ok=True)
        dest = dest_dir / src.name
        os.replace(src, dest)
        return dest
    except OSError:
        import tempfile

        fd, name = tempfile.mkstemp(prefix=f"flowc-{key[:16]}-", suffix=".cpp")
        with os.fdopen(fd, "w") as f:
            f.write(src.read_text())
        return Path(name)


_libraries: dict[str, ctypes.CDLL] = {}


def load_library(path) -> ctypes.CDLL:
    """``ctypes.CDLL`` of the shared object at ``path`` (loaded once per process).

    Safe while other processes rebuild the entry: they ``os.replace`` a new inode into
    place, and this process keeps mapping the one it opened.
    """
    key = os.path.abspath(os.fspath(path))
    lib = _libraries.get(key)
    if lib is None:
        if not os.path.isfile(key):
            raise FileNotFoundError(f"no shared object at {key!r}")
        lib = _libraries[key] = ctypes.CDLL(key)
    return lib


@dataclasses.dataclass(frozen=True)
class OpenBLASArgs:
    """How generated code includes ``cblas.h`` of ``scipy_openblas32`` and links it.

    Its cblas functions carry ``symbol_prefix``: ``scipy_cblas_dgemm``, ``scipy_cblas_sgemm``.
    """

    include_dir: str
    library_dir: str
    library: str
    rpath: str
    symbol_prefix: str = "scipy_"
    header: str = "cblas.h"

    def compile_kwargs(self) -> dict:
        """Keyword arguments for ``compile_shared``."""
        return {
            "include_dirs": (self.include_dir,),
            "library_dirs": (self.library_dir,),
            "libraries": (self.library,),
            "rpaths": (self.rpath,),
        }


_openblas: OpenBLASArgs | None = None


def openblas_build_args() -> OpenBLASArgs:
    """Include dir, library dir, library name and rpath of the ``scipy_openblas32`` wheel."""
    global _openblas
    if _openblas is None:
        try:
            import scipy_openblas32 as ob
        except ImportError as e:
            raise ImportError(
                "flowc's CPU BLAS kernels need the scipy-openblas32 package "
                "(pip install scipy-openblas32)"
            ) from e
        lib_dir = ob.get_lib_dir()
        # The rpath makes the built library find OpenBLAS wherever the venv lives, without
        # LD_LIBRARY_PATH. (Windows has no rpath; the DLL folder must be on the DLL path.)
        _openblas = OpenBLASArgs(
            include_dir=ob.get_include_dir(),
            library_dir=lib_dir,
            library=ob.get_library(),
            rpath=lib_dir,
        )
    return _openblas
