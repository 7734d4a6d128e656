"""Stabilize: rewrites that turn overflow-prone forms into numerically stable ones."""

REWRITES = []


def run(fgraph):
    from flowc.graph.rewrite import equilibrium

    return equilibrium(fgraph, REWRITES, name="stabilize")
