"""Suite-wide settings: the graph verifier runs after every pipeline step in every test, and
functions run their NumPy ``perform`` (``linker='py'``) unless a test asks for compiled
kernels with ``flowc.config.change(linker='c')`` (tests/kernels does, on whole tables at
once, so the suite does not pay one compiler run per tiny function)."""

import pytest

from flowc.config import config


@pytest.fixture(autouse=True)
def _verify_graphs():
    with config.change(verify=True, linker="py"):
        yield
