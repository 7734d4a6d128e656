"""Lock-free, content-addressed cache of compiled shared objects.

An entry is ``<key>.so`` plus ``<key>.json`` (its size and sha256), each put in place with
``os.replace``; the metadata goes last, so a valid pair always means a complete library.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shutil
import sys
from pathlib import Path

__all__ = [
    "cache_dir",
    "clear",
    "entry_path",
    "info",
    "lookup",
    "make_key",
    "new_build_dir",
    "reset_memo",
    "store",
]

_SUFFIX = ".dll" if sys.platform == "win32" else ".so"
_META_SUFFIX = ".json"
_TMP_PREFIX = ".tmp-"
_FAILED = "failed"
_KEY_LEN = 64

# (cache dir, key) -> stat signature of the .so and .json last validated by this process;
# while both files still stat the same, the entry is known good without hashing it again.
_memo: dict[tuple[str, str], tuple] = {}


def cache_dir() -> Path:
    """The cache directory: ``FLOWC_CACHE_DIR``, else the platform's per-user cache folder."""
    env = os.environ.get("FLOWC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(base) / "flowc" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "flowc"
    xdg = os.environ.get("XDG_CACHE_HOME")
    # XDG says a relative value is invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "flowc"
    return home / ".cache" / "flowc"


def make_key(source: str, compiler_path: str, compiler_version: str, flags) -> str:
    """sha256 (hex) of everything that determines the built library."""
    import flowc  # late: this module may be imported while flowc/__init__ runs

    if not isinstance(source, str):
        raise TypeError(f"source must be str, got {type(source).__name__}")
    payload = {
        "source": source,
        "compiler_path": str(compiler_path),
        "compiler_version": str(compiler_version),
        "flags": [str(f) for f in flags],
        "flowc_version": getattr(flowc, "__version__", "unknown"),
        # A library built for another OS or architecture is never valid here, even if a
        # cache folder is shared between machines.
        "platform": [sys.platform, platform.machine()],
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def _check_key(key) -> str:
    if not (
        isinstance(key, str) and len(key) == _KEY_LEN and all(c in "0123456789abcdef" for c in key)
    ):
        raise ValueError(f"key must be a 64-digit lowercase hex sha256, got {key!r}")
    return key


def entry_path(key: str) -> Path:
    """Where the shared object of ``key`` lives (whether or not it exists yet)."""
    return cache_dir() / (_check_key(key) + _SUFFIX)


def _meta_path(key: str) -> Path:
    return cache_dir() / (key + _META_SUFFIX)


def _signature(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read_meta(path: Path) -> dict | None:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not (
        isinstance(meta, dict)
        and isinstance(meta.get("size"), int)
        and isinstance(meta.get("sha256"), str)
    ):
        return None
    return meta


def lookup(key: str) -> Path | None:
    """The path of a valid entry for ``key``, or None if it is missing, truncated or corrupt.

    Never deletes anything: an invalid entry is simply rebuilt and replaced, because another
    process may be replacing it with a good one at this very moment.
    """
    so, meta_path = entry_path(key), _meta_path(key)
    memo_key = (str(so.parent), key)
    try:
        sig = (_signature(os.stat(so)), _signature(os.stat(meta_path)))
    except OSError:
        _memo.pop(memo_key, None)
        return None
    if _memo.get(memo_key) == sig:
        return so
    meta = _read_meta(meta_path)
    if meta is None:
        return None
    # Hash through one open file so the size and the digest describe the same inode even if
    # another process replaces the entry meanwhile.
    try:
        with open(so, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_size != meta["size"]:
                return None
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None
    if digest != meta["sha256"]:
        return None
    _memo[memo_key] = (_signature(st), _signature(os.stat(meta_path)))
    return so


def _tmp_name(key: str, suffix: str) -> str:
    return f"{_TMP_PREFIX}{key[:16]}-{os.getpid()}-{secrets.token_hex(6)}{suffix}"


def new_build_dir(key: str) -> Path:
    """A fresh private folder inside the cache dir (same file system, so ``store`` can
    ``os.replace`` out of it). The caller removes it when done."""
    root = cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(
            f"cannot create the flowc cache directory {str(root)!r} ({e}); "
            "set FLOWC_CACHE_DIR to a writable folder"
        ) from e
    path = root / _tmp_name(_check_key(key), "")
    path.mkdir()
    return path


def store(key: str, built_path) -> Path:
    """Put the library at ``built_path`` into the cache as ``key``; return its final path.

    ``built_path`` is moved (not copied) when it is on the cache's file system.
    """
    so, meta_path = entry_path(key), _meta_path(key)
    built = Path(built_path)
    if not built.is_file():
        raise ValueError(f"built_path {str(built)!r} is not a file")
    root = so.parent
    root.mkdir(parents=True, exist_ok=True)
    staged = None
    if not built.resolve().is_relative_to(root.resolve()):
        # os.replace only works within one file system: stage a private copy first.
        staged = built = root / _tmp_name(key, _SUFFIX)
        shutil.copyfile(built_path, staged)
    with open(built, "rb") as f:
        st = os.fstat(f.fileno())
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    meta = {"key": key, "size": st.st_size, "sha256": digest, "pid": os.getpid()}
    tmp_meta = root / _tmp_name(key, _META_SUFFIX)
    tmp_meta.write_text(json.dumps(meta, indent=1))
    meta_sig = _signature(os.stat(tmp_meta))
    try:
        # Library first, metadata last: whoever sees valid metadata sees a whole library.
        os.replace(built, so)
        os.replace(tmp_meta, meta_path)
    except BaseException:
        tmp_meta.unlink(missing_ok=True)
        if staged is not None:
            staged.unlink(missing_ok=True)
        raise
    # os.replace keeps the inode and mtime, so these are the final files' signatures unless
    # another process replaced them since, in which case the next lookup re-validates.
    _memo[(str(root), key)] = (_signature(st), meta_sig)
    return so


def reset_memo() -> None:
    """Forget what this process has validated (as if it were a fresh process)."""
    _memo.clear()


def _scan(root: Path):
    entries, temps, failed, total = [], [], [], 0
    if not root.is_dir():
        return entries, temps, failed, total
    for p in root.iterdir():
        try:
            if p.is_dir():
                for q in p.rglob("*"):
                    if q.is_file():
                        total += q.stat().st_size
                (temps if p.name.startswith(_TMP_PREFIX) else failed).append(p)
                continue
            total += p.stat().st_size
        except OSError:  # removed by another process while we looked
            continue
        if p.name.startswith(_TMP_PREFIX):
            temps.append(p)
        elif p.suffix == _META_SUFFIX and len(p.stem) == _KEY_LEN:
            if (root / (p.stem + _SUFFIX)).exists():
                entries.append(p.stem)
    return entries, temps, failed, total


def info() -> dict:
    """``dir``, number of ``entries`` (library + metadata pairs), total ``bytes`` on disk,
    leftover ``temp`` files of interrupted builds, and kept sources of ``failed`` builds."""
    root = cache_dir()
    entries, temps, failed, total = _scan(root)
    n_failed = 0
    for d in failed:
        if d.name == _FAILED:
            n_failed += sum(1 for q in d.glob("*.cpp"))
    return {
        "dir": str(root),
        "entries": len(entries),
        "bytes": total,
        "temp": len(temps),
        "failed": n_failed,
    }


def clear() -> int:
    """Remove every entry, leftover temp file and kept failed source; return how many
    entries were removed. Libraries already loaded by running processes stay usable."""
    root = cache_dir()
    _memo.clear()
    if not root.is_dir():
        return 0
    entries, _, _, _ = _scan(root)
    for p in root.iterdir():
        is_ours = (
            p.name.startswith(_TMP_PREFIX)
            or p.name == _FAILED
            or (len(p.stem) == _KEY_LEN and p.suffix in (_SUFFIX, _META_SUFFIX))
        )
        if not is_ours:  # never delete files flowc did not write
            continue
        try:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                # A concurrent reader that loses either file just sees a miss and rebuilds.
                p.unlink()
        except OSError:
            pass
    return len(entries)
