"""The pipeline tests run the tiny model on one intra-op thread: on a shared 2-core machine
OpenMP threads that wait on each other make these small kernels 10-20x slower."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
