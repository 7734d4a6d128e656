"""The rewrite pipeline: ONE ordered list of named steps, and the modes that pick from it.

``FLOWC_FLAGS=print_after=canonicalize+fusion`` prints the graph after those steps;
``verify=True`` checks it after every step.
"""

from __future__ import annotations

from flowc.config import config
from flowc.graph.merge import constant_folding, merge
from flowc.graph.verify import verify
from flowc.tensor.rewrites import canonicalize, fusion, inplace, specialize, stabilize

PIPELINE = [
    ("merge", merge),
    ("constant_folding", constant_folding),
    ("canonicalize", canonicalize.run),
    ("stabilize", stabilize.run),
    ("specialize", specialize.run),
    ("merge_again", merge),
    ("fusion", fusion.fuse_elemwise),
    ("inplace", inplace.insert_inplace),
]

_ALL = tuple(name for name, _ in PIPELINE)
MODES = {
    "fast_run": _ALL,
    "check": _ALL,
    # Unfused, so that the first node producing a NaN is named as the user wrote it.
    "nanguard": tuple(n for n in _ALL if n not in ("fusion", "inplace")),
    "fast_compile": ("merge", "constant_folding"),
    "py": ("merge", "constant_folding"),
    "none": (),
}
ALIASES = {
    "FAST_RUN": "fast_run",
    "FAST_COMPILE": "fast_compile",
    "DebugMode": "check",
    "DEBUG_MODE": "check",
    "NanGuardMode": "nanguard",
}


def resolve_mode(mode) -> str:
    """The canonical mode name for ``mode`` (None: ``config.mode``)."""
    mode = config.mode if mode is None else mode
    mode = ALIASES.get(mode, mode)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {sorted(MODES) + sorted(ALIASES)}")
    return mode


def rewrite(fgraph, mode: str, steps=None):
    """Run the steps of ``mode`` (or the named ``steps``) over ``fgraph`` in PIPELINE order."""
    wanted = MODES[mode] if steps is None else tuple(steps)
    dump = set(filter(None, config.print_after.split("+")))
    if config.verify:
        verify(fgraph, "building the graph")
    for name, step in PIPELINE:
        if name not in wanted:
            continue
        fgraph = step(fgraph)
        if config.verify:
            verify(fgraph, name)
        if name in dump:
            from flowc.printing import debugprint

            print(f"--- after {name}")
            debugprint(fgraph)
    return fgraph
