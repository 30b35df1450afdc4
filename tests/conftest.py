"""Shared fixture: every test starts from torch's generator seeded with 0."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
