"""Suite-wide settings: the graph verifier runs after every pipeline step in every test."""

import pytest

from flowc.config import config


@pytest.fixture(autouse=True)
def _verify_graphs():
    with config.change(verify=True):
        yield
