"""The rewrite pipeline: ONE ordered list of named passes, and the modes that pick from it.

``FLOWC_FLAGS=print_after=merge`` (or a comma-free list ``merge+constant_folding``)
prints the graph after the named steps; ``verify=True`` checks it after every step.
"""

from __future__ import annotations

from flowc.config import config
from flowc.graph.merge import constant_folding, merge
from flowc.graph.verify import verify

PIPELINE = [
    ("merge", merge),
    ("constant_folding", lambda fg: constant_folding(fg, config.constant_folding_max_bytes)),
    ("merge_again", merge),
]

_ALL = tuple(name for name, _ in PIPELINE)
MODES = {
    "fast_run": _ALL,
    "fast_compile": ("merge", "constant_folding"),
    "py": _ALL,
    "check": _ALL,
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
    if mode not in MODES and mode != "nanguard":
        raise ValueError(f"unknown mode {mode!r}; use one of {sorted(MODES) + sorted(ALIASES)}")
    return mode


def rewrite(fgraph, mode: str):
    """Run the passes of ``mode`` over ``fgraph`` in PIPELINE order; return it."""
    steps = MODES.get(mode, _ALL)
    dump = set(filter(None, config.print_after.split("+")))
    if config.verify:
        verify(fgraph, "building the graph")
    for name, step in PIPELINE:
        if name not in steps:
            continue
        fgraph = step(fgraph)
        if config.verify:
            verify(fgraph, name)
        if name in dump:
            from flowc.printing import debugprint

            print(f"--- after {name}")
            debugprint(fgraph)
    return fgraph
