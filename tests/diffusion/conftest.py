from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Small tensors: one intra-op thread avoids oversubscription on shared CPUs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
