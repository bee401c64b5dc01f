"""Fixtures of the reliability suite."""

import pytest


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    """One scratch folder per test module (the probe tables write their bad files there)."""
    return tmp_path_factory.mktemp("probes")
