"""The compiler driver and the lock-free compile cache: keys, hits, corruption, races, CLI."""

import ctypes
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from flowc.kernels import cache, compiler
from flowc.kernels.compiler import CompileError, compile_shared, find_compiler, load_library

REPO = Path(__file__).resolve().parents[2]

needs_cxx = pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None, reason="no C++ compiler"
)

# Each test gets a unique function name so no two tests ever share a dlopen'ed library.
SCALE_SRC = """
extern "C" void {name}(double* x, long n, double a) {{
    #pragma omp parallel for
    for (long i = 0; i < n; ++i) x[i] *= a;
}}
"""


def scale_source(name):
    return SCALE_SRC.format(name=name)


def call_scale(path, name, x, a):
    fn = getattr(load_library(path), name)
    fn.restype = None
    fn.argtypes = [ctypes.POINTER(ctypes.c_double), ctypes.c_long, ctypes.c_double]
    fn(x.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), x.size, a)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Every test gets an empty cache dir and a process that has validated nothing."""
    d = tmp_path / "cache"
    monkeypatch.setenv("FLOWC_CACHE_DIR", str(d))
    cache.reset_memo()
    yield d
    cache.reset_memo()


@pytest.fixture
def count_compiles(monkeypatch):
    """A list that grows by one command line per compiler run."""
    calls = []
    real = compiler._invoke

    def counting(cmd, cwd):
        calls.append(list(cmd))
        return real(cmd, cwd)

    monkeypatch.setattr(compiler, "_invoke", counting)
    return calls


def entry_files(d):
    return sorted(p.name for p in Path(d).iterdir())


def assert_one_valid_entry(d, key=None):
    names = entry_files(d)
    assert len(names) == 2, names
    so = [n for n in names if n.endswith(".so")]
    meta = [n for n in names if n.endswith(".json")]
    assert len(so) == 1 and len(meta) == 1
    k = so[0][: -len(".so")]
    assert meta[0] == k + ".json"
    if key is not None:
        assert k == key
    cache.reset_memo()  # validate from disk, not from this process's memo
    assert cache.lookup(k) == Path(d) / so[0]
    return k


# ---------------------------------------------------------------- keys and directories


def test_key_changes_with_each_ingredient():
    base = dict(
        source="int f();",
        compiler_path="/usr/bin/g++",
        compiler_version="g++ 12.2.0",
        flags=["-O3"],
    )
    k0 = cache.make_key(**base)
    assert len(k0) == 64 and all(c in "0123456789abcdef" for c in k0)
    assert cache.make_key(**base) == k0  # deterministic
    variants = [
        dict(source="int f(); "),
        dict(compiler_path="/usr/local/bin/g++"),
        dict(compiler_version="g++ 13.1.0"),
        dict(flags=["-O2"]),
        dict(flags=["-O3", "-ffast-math"]),
    ]
    keys = {cache.make_key(**{**base, **v}) for v in variants}
    assert len(keys) == len(variants) and k0 not in keys


def test_key_changes_with_flowc_version(monkeypatch):
    import flowc

    k0 = cache.make_key("x", "cc", "1", [])
    monkeypatch.setattr(flowc, "__version__", "999.0")
    assert cache.make_key("x", "cc", "1", []) != k0


def test_key_argument_errors():
    with pytest.raises(TypeError, match="source"):
        cache.make_key(b"int f();", "cc", "1", [])
    with pytest.raises(ValueError, match="key"):
        cache.entry_path("not-a-key")
    with pytest.raises(ValueError, match="key"):
        cache.lookup("A" * 64)


def test_cache_dir_platform_conventions(monkeypatch, tmp_path):
    assert cache.cache_dir() == tmp_path / "cache"  # FLOWC_CACHE_DIR wins
    monkeypatch.delenv("FLOWC_CACHE_DIR")
    monkeypatch.setattr(Path, "home", staticmethod(lambda: tmp_path / "home"))
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "flowc"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "flowc"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "flowc"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert cache.cache_dir() == tmp_path / "home" / "Library" / "Caches" / "flowc"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert cache.cache_dir() == tmp_path / "local" / "flowc" / "Cache"


def test_store_lookup_without_compiler(_own_cache, tmp_path):
    # The cache itself knows nothing about compilers: any file can be an entry.
    key = cache.make_key("payload", "none", "0", [])
    assert cache.lookup(key) is None
    outside = tmp_path / "built.so"
    outside.write_bytes(b"\x7fELF" + bytes(range(256)) * 10)
    path = cache.store(key, outside)
    assert path == cache.entry_path(key)
    assert path.read_bytes() == b"\x7fELF" + bytes(range(256)) * 10
    meta = json.loads((_own_cache / f"{key}.json").read_text())
    assert meta["size"] == 4 + 2560
    cache.reset_memo()
    assert cache.lookup(key) == path
    assert cache.info()["entries"] == 1 and cache.info()["temp"] == 0
    with pytest.raises(ValueError, match="built_path"):
        cache.store(key, tmp_path / "missing.so")


def test_warm_lookup_does_not_rehash(monkeypatch):
    key = cache.make_key("payload", "none", "0", [])
    src = Path(cache.new_build_dir(key)) / "x.so"
    src.write_bytes(b"abc" * 100)
    cache.store(key, src)
    shutil.rmtree(src.parent)
    hashed = []
    real = cache.hashlib.file_digest
    monkeypatch.setattr(cache.hashlib, "file_digest", lambda f, d: hashed.append(1) or real(f, d))
    for _ in range(3):
        assert cache.lookup(key) is not None
    assert hashed == []  # store() already validated it for this process
    cache.reset_memo()
    for _ in range(3):
        assert cache.lookup(key) is not None
    assert hashed == [1]  # a fresh process hashes once, then trusts the memo


# ---------------------------------------------------------------- compiler discovery


@needs_cxx
def test_find_compiler_reports_gxx(monkeypatch):
    monkeypatch.delenv("FLOWC_CXX", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    cc = find_compiler()
    assert cc is not None and os.path.isabs(cc.path) and os.access(cc.path, os.X_OK)
    assert cc.kind in ("gcc", "clang")
    assert any(ch.isdigit() for ch in cc.version)
    assert find_compiler() is cc  # memoized
    with pytest.raises(dataclasses_frozen_error()):
        cc.path = "/bin/false"


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_find_compiler_none_without_compiler(monkeypatch, tmp_path):
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("FLOWC_CXX", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    assert find_compiler() is None
    with pytest.raises(CompileError, match="no C\\+\\+ compiler"):
        compile_shared("int f() { return 1; }")


@needs_cxx
def test_find_compiler_env_overrides(monkeypatch, tmp_path):
    gxx = shutil.which("g++") or shutil.which("c++")
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("FLOWC_CXX", gxx)
    assert find_compiler().path == os.path.abspath(gxx)
    monkeypatch.setenv("FLOWC_CXX", str(tmp_path / "no-such-compiler"))
    with pytest.raises(ValueError, match="FLOWC_CXX"):
        find_compiler()
    # CXX is only a preference: an unusable one falls back to the PATH search.
    monkeypatch.delenv("FLOWC_CXX")
    monkeypatch.setenv("CXX", "no-such-compiler")
    assert find_compiler() is None
    monkeypatch.setenv("CXX", gxx)
    assert find_compiler().path == os.path.abspath(gxx)


# ---------------------------------------------------------------- building and the cache


@needs_cxx
def test_cold_build_then_hit(_own_cache, count_compiles):
    src = scale_source("scale_hit")
    t0 = time.perf_counter()
    path = compile_shared(src)
    cold = time.perf_counter() - t0
    assert len(count_compiles) == 1
    key = assert_one_valid_entry(_own_cache)
    assert path == cache.entry_path(key)
    t0 = time.perf_counter()
    assert compile_shared(src) == path  # memo hit
    cache.reset_memo()
    assert compile_shared(src) == path  # disk hit, as in a fresh process
    warm = time.perf_counter() - t0
    assert len(count_compiles) == 1
    x = np.arange(1000.0)
    call_scale(path, "scale_hit", x, 2.5)
    np.testing.assert_array_equal(x, np.arange(1000.0) * 2.5)
    print(f"cold compile {cold * 1e3:.0f} ms, two warm lookups {warm * 1e3:.2f} ms")


@needs_cxx
def test_flags_and_native_make_distinct_entries(_own_cache, count_compiles):
    src = scale_source("scale_flags")
    p1 = compile_shared(src)
    p2 = compile_shared(src, flags=("-DFLOWC_TEST=1",))
    p3 = compile_shared(src, native=False)
    assert len({p1, p2, p3}) == 3 and len(count_compiles) == 3
    assert "-march=native" in count_compiles[0] and "-DFLOWC_TEST=1" in count_compiles[1]
    assert "-march=native" not in count_compiles[2]
    for flag in ("-O3", "-fopenmp", "-shared", "-fPIC", "-std=c++17"):
        assert all(flag in cmd for cmd in count_compiles)
    assert cache.info()["entries"] == 3


@needs_cxx
def test_compiler_version_changes_key(_own_cache, count_compiles, monkeypatch):
    src = scale_source("scale_version")
    p1 = compile_shared(src)
    cc = find_compiler()
    other = compiler.Compiler(cc.path, cc.version + " (patched)", cc.kind)
    monkeypatch.setattr(compiler, "find_compiler", lambda: other)
    p2 = compile_shared(src)
    assert p1 != p2 and len(count_compiles) == 2


def test_compile_argument_errors():
    with pytest.raises(TypeError, match="source"):
        compile_shared(b"int f();")
    with pytest.raises(TypeError, match="flags"):
        compile_shared("int f();", flags="-O2")
    with pytest.raises(TypeError, match="include_dirs"):
        compile_shared("int f();", include_dirs=[3])


@needs_cxx
def test_truncated_library_is_rebuilt(_own_cache, count_compiles):
    src = scale_source("scale_trunc")
    path = compile_shared(src)
    good = path.read_bytes()
    os.truncate(path, len(good) // 2)  # in place: same inode, as a crash or full disk would
    # No reset_memo: this very process must notice the change, not trust its memo.
    assert compile_shared(src) == path
    assert len(count_compiles) == 2
    assert path.read_bytes() == good
    assert_one_valid_entry(_own_cache)
    x = np.ones(7)
    call_scale(path, "scale_trunc", x, -3.0)
    np.testing.assert_array_equal(x, np.full(7, -3.0))


@needs_cxx
@pytest.mark.parametrize("damage", ["garbage", "wrong_hash", "wrong_size", "missing"])
def test_corrupt_metadata_is_rebuilt(_own_cache, count_compiles, damage):
    name = f"scale_meta_{damage}"
    src = scale_source(name)
    path = compile_shared(src)
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    if damage == "garbage":
        meta_path.write_bytes(b"\x00{not json")
    elif damage == "wrong_hash":
        meta_path.write_text(json.dumps({**meta, "sha256": "0" * 64}))
    elif damage == "wrong_size":
        meta_path.write_text(json.dumps({**meta, "size": meta["size"] + 1}))
    else:
        meta_path.unlink()
    assert cache.lookup(meta["key"]) is None
    assert compile_shared(src) == path
    assert len(count_compiles) == 2
    assert json.loads(meta_path.read_text())["sha256"] == meta["sha256"]
    assert_one_valid_entry(_own_cache)
    x = np.arange(5.0)
    call_scale(path, name, x, 4.0)
    np.testing.assert_array_equal(x, np.arange(5.0) * 4.0)


@needs_cxx
def test_corrupt_library_same_size_is_rebuilt(_own_cache, count_compiles):
    src = scale_source("scale_flip")
    path = compile_shared(src)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    cache.reset_memo()
    assert compile_shared(src) == path and len(count_compiles) == 2
    assert_one_valid_entry(_own_cache)


@needs_cxx
def test_loaded_library_survives_replacement(_own_cache):
    # Another process rebuilding an entry os.replace()s a new inode into place; a library
    # this process already mapped keeps working.
    src = scale_source("scale_replaced")
    path = compile_shared(src)
    x = np.ones(3)
    call_scale(path, "scale_replaced", x, 2.0)
    copy = path.parent / "copy.tmp"
    shutil.copyfile(path, copy)
    old_inode = path.stat().st_ino
    os.replace(copy, path)
    assert path.stat().st_ino != old_inode
    call_scale(path, "scale_replaced", x, 2.0)
    np.testing.assert_array_equal(x, np.full(3, 4.0))


@needs_cxx
def test_compile_error_carries_message(_own_cache, count_compiles):
    src = 'extern "C" int broken() { return flowc_undeclared_thing + 1; }\n'
    with pytest.raises(CompileError) as info:
        compile_shared(src)
    err = info.value
    assert "flowc_undeclared_thing" in err.stderr
    assert "flowc_undeclared_thing" in str(err)
    assert err.source_path is not None and err.source_path.read_text() == src
    assert str(err.source_path) in str(err) and str(err.source_path) in err.command
    # Nothing half-made is left as an entry or a temp folder; the failure is counted.
    assert cache.info()["entries"] == 0 and cache.info()["temp"] == 0
    assert cache.info()["failed"] == 1
    with pytest.raises(CompileError):
        compile_shared(src)
    assert len(count_compiles) == 2  # failures are not cached


@needs_cxx
def test_openblas_dgemm_links_and_computes(_own_cache):
    args = compiler.openblas_build_args()
    assert (Path(args.include_dir) / args.header).is_file()
    assert Path(args.library_dir).is_dir() and args.rpath == args.library_dir
    src = textwrap.dedent(
        f"""
        #include <{args.header}>
        extern "C" void flowc_test_gemm(int m, int n, int k, const double* A,
                                        const double* B, double* C) {{
            {args.symbol_prefix}cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
                m, n, k, 1.0, A, k, B, n, 0.0, C, n);
        }}
        """
    )
    path = compile_shared(src, **args.compile_kwargs())
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((3, 4))
    c = np.full((5, 4), np.nan)
    fn = load_library(path).flowc_test_gemm
    dp = ctypes.POINTER(ctypes.c_double)
    fn.restype = None
    fn.argtypes = [ctypes.c_int] * 3 + [dp] * 3
    fn(5, 4, 3, a.ctypes.data_as(dp), b.ctypes.data_as(dp), c.ctypes.data_as(dp))
    np.testing.assert_allclose(c, a @ b, rtol=1e-12, atol=1e-12)


def test_load_library_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="shared object"):
        load_library(tmp_path / "nope.so")


# ---------------------------------------------------------------- many processes, CLI


CHILD = """
import ctypes, os, sys, time
from pathlib import Path
from flowc.kernels import compiler
runs = []
real = compiler._invoke
compiler._invoke = lambda cmd, cwd: runs.append(1) or real(cmd, cwd)
src = {src!r}
go = Path({go!r})
Path({ready!r}).touch()
deadline = time.time() + 60
while not go.exists() and time.time() < deadline:
    time.sleep(0.001)
path = compiler.compile_shared(src)
lib = compiler.load_library(path)
lib.race_fn.restype = ctypes.c_double
lib.race_fn.argtypes = [ctypes.c_double]
print(path, lib.race_fn(20.0), len(runs))
"""


def run_env(cache_dir):
    env = dict(os.environ, FLOWC_CACHE_DIR=str(cache_dir))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@needs_cxx
def test_two_processes_cold_cache_race(_own_cache, tmp_path):
    src = 'extern "C" double race_fn(double x) { return 2.0 * x + 1.0; }\n'
    go = tmp_path / "go"
    procs, readies = [], []
    for i in range(2):
        ready = tmp_path / f"ready{i}"
        readies.append(ready)
        code = CHILD.format(src=src, go=str(go), ready=str(ready))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code],
                env=run_env(_own_cache),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    deadline = time.time() + 60
    while not all(r.exists() for r in readies) and time.time() < deadline:
        time.sleep(0.005)
    go.touch()  # release both at the same moment
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        path, value, runs = out.split()
        results.append((path, float(value), int(runs)))
    assert results[0][0] == results[1][0]
    assert all(v == 41.0 for _, v, _ in results)
    # Both processes normally compile (nobody waits on a lock); either way exactly one
    # valid entry and no temp files remain.
    assert 1 <= sum(r for _, _, r in results) <= 2
    key = assert_one_valid_entry(_own_cache)
    assert results[0][0] == str(cache.entry_path(key))
    assert cache.info()["temp"] == 0


def test_cli_info_and_clear(_own_cache):
    key = cache.make_key("cli payload", "none", "0", [])
    built = Path(cache.new_build_dir(key)) / "x.so"
    built.write_bytes(b"z" * 1000)
    cache.store(key, built)
    shutil.rmtree(built.parent)
    (_own_cache / "unrelated.txt").write_text("not ours")

    def cli(*args):
        out = subprocess.run(
            [sys.executable, "-m", "flowc", "cache", *args],
            env=run_env(_own_cache),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    text = cli("info")
    fields = dict(line.split(": ", 1) for line in text.strip().splitlines())
    assert fields["dir"] == str(_own_cache)
    assert fields["entries"] == "1"
    assert int(fields["bytes"]) >= 1000
    assert "removed 1 entries" in cli("clear")
    assert entry_files(_own_cache) == ["unrelated.txt"]  # only flowc's files go
    assert cache.info()["entries"] == 0
    from flowc.__main__ import main

    with pytest.raises(SystemExit) as bad:
        main(["cache", "explode"])
    assert bad.value.code != 0
