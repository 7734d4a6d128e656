"""In-place: let nodes overwrite an input that nothing else reads."""


def insert_inplace(fgraph):
    return fgraph
