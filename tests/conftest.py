"""Fixtures shared by several test modules (opt in with ``pytest.mark.usefixtures``)."""

import pytest


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread.

    The probes' many tiny L-BFGS steps: with 2 threads on 2 busy cores, OpenMP's barriers
    cost 50× the arithmetic (measured); the pipeline itself sets each rule's threads.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
