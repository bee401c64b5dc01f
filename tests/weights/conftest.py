"""A tiny formal-language zoo shared by the tests of this folder (built once, ~1 s)."""

import pytest
import torch

from adaptmem.weights.zoo import ZooConfig, generate_zoo

TINY = dict(
    num_runs=40,
    steps=12,
    checkpoints=3,
    group_size=40,
    batch_size=8,
    hidden_size=8,
    rollouts=3,
    accept_samples=16,
    max_n=4,
    save_every=5,
)


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    generate_zoo(root, ZooConfig(**TINY), show_progress=False)
    return root


@pytest.fixture(autouse=True)
def _one_thread():
    """These tests run many tiny ops, which a second OpenMP thread only slows down (a lot on a
    shared machine); zoo units use one thread anyway."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
