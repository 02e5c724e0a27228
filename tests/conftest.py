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


# ---------------------------------------------------------------- comparisons
# A BLAS picks its kernels by shape, batch and CPU (MKL rounds a one-row product
# differently from a several-row one, an AVX2 kernel differently from an AVX-512
# one), so the same math computed in differently shaped or batched products agrees
# to rounding, not bit for bit.  Tests compare such results this way:
#   * decisions exactly: mistake sequences, firing words / fired sets, predictions;
#   * values to the tolerance of their dtype below, relative to the tensor's scale;
#   * bit for bit only where every machine guarantees it: the same call on the same
#     data twice, pure copies and selections (cap, masks), or arithmetic that is
#     exact (integers and powers of two well inside the mantissa).
# Inputs of decision tests are float64 or built with margins so that no decision
# lies within rounding of a tie.

#: Relative tolerance per dtype (about 50x the unit roundoff of a long sum).
RTOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def assert_close(actual, expected, dtype=None):
    """``actual`` equals ``expected`` to :data:`RTOL` of their dtype, relative to the tensor's scale."""
    rtol = RTOL[dtype or expected.dtype]
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * max(scale, 1.0))
