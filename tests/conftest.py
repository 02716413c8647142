import os

import pytest
import torch

# Two cores: one thread per pytest-xdist worker keeps the run predictable.
torch.set_num_threads(int(os.environ.get("FXTRACT_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
