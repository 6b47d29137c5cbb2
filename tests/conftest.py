from __future__ import annotations

import warnings

import mudata as md
import pytest
import scvi
import torch
from helpers import read_shared, synthetic_mudata, synthetic_setup_kwargs

md.set_options(pull_on_update=False)


def pytest_configure(config):
    # The test models are tiny: one thread avoids oversubscription on small, shared CPUs.
    torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption("--accelerator", default="cpu", help="accelerator for training in tests")
    parser.addoption("--seed", type=int, default=0)


@pytest.fixture(autouse=True)
def set_seed(request):
    scvi.settings.seed = request.config.getoption("--seed")
    warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture
def accelerator(request) -> str:
    return request.config.getoption("--accelerator")


@pytest.fixture
def make_mudata():
    return synthetic_mudata


@pytest.fixture
def setup_kwargs():
    return synthetic_setup_kwargs


@pytest.fixture
def shared_mudata():
    return read_shared
