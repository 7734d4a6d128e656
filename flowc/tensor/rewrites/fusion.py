"""Fusion: maximal groups of elementwise nodes become one ``Composite`` elementwise node."""


def fuse_elemwise(fgraph):
    return fgraph
