import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


def shared_data_dir():
    env = os.environ.get("METAPLASTIC_DATA")
    if env and Path(env).is_dir():
        return Path(env)
    cand = REPO.parent / "shared" / "data"
    return cand if cand.is_dir() else None


def halfspace(n, d=10, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    w = torch.randn(d, generator=g, dtype=dtype)
    return x, (x @ w > 0).long()
