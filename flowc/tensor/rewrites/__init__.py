"""Rewrites of tensor graphs, one module per PIPELINE step (see ``flowc/pipeline.py``)."""
