"""The compiled hot paths of the attacks and the forward pass against their torch forms: the cap's
kept set (metaplastic.capmask), the L2-ball-and-box projection (metaplastic._projkernel) and the
Square attack's candidates (metaplastic._squarekernel)."""

import pytest
import torch
from conftest import assert_close

from metaplastic import attacks as at
from metaplastic import capmask, network
from metaplastic.network import NetworkConfig, SimpleRNN, init_networks


_torch_keep = network.torch_keep  # network.cap's torch form of the kept set (topk, then ties to the lowest index)


def _rows(kind, m, V, g, dtype):
    if kind == "normal":
        return torch.randn(m, V, generator=g, dtype=dtype)
    if kind == "relu":  # half the entries 0, as after the ReLU
        return torch.relu(torch.randn(m, V, generator=g, dtype=dtype))
    if kind == "ints":  # heavy ties, negative ones too
        return torch.randint(-2, 3, (m, V), generator=g).to(dtype)
    if kind == "negative":
        return -torch.randn(m, V, generator=g, dtype=dtype).abs()
    if kind == "few-positive":  # fewer than k non-zero entries
        z = torch.zeros(m, V, dtype=dtype)
        z[:, 5:8] = 1.0
        return z
    if kind == "signed-zeros":  # -0 and +0 are one value; infinities
        z = torch.randint(0, 3, (m, V), generator=g).to(dtype) - 1.0
        z = torch.where(z == 0, torch.where(torch.rand(m, V, generator=g) < 0.5, -0.0, 0.0), z).to(dtype)
        z[:, 0] = float("inf")
        z[:, 1] = -float("inf")
        return z
    raise ValueError(kind)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["normal", "relu", "ints", "negative", "few-positive", "signed-zeros"])
def test_keep_mask_is_the_torch_forms_set(dtype, kind):
    g = torch.Generator().manual_seed(3)
    for V, k in [(1000, 500), (100, 50), (64, 1), (64, 63), (300, 10), (1000, 999)]:
        z = _rows(kind, 40, V, g, dtype)
        keep = capmask.keep_mask(z, k)
        assert keep is not None and keep.dtype == torch.bool
        assert torch.equal(keep, _torch_keep(z, k)), (V, k)
        assert torch.equal(capmask.keep_mask(z[None, :3], k)[0], keep[:3])  # any leading dimensions


def test_keep_mask_declines_what_it_does_not_cover():
    z = torch.randn(3, 100)
    assert capmask.keep_mask(z[:, :10], 5) is None          # short rows: torch's calls are cheap
    assert capmask.keep_mask(z, 100) is None                # k = |V|
    assert capmask.keep_mask(z.half(), 50) is None          # another dtype
    bad = z.clone()
    bad[1, 4] = float("nan")
    assert capmask.keep_mask(bad, 50) is None               # NaN: the torch form decides


def test_cap_and_its_gradient_unchanged(monkeypatch):
    """network.cap with the compiled mask gives the same values and input gradients as its torch form."""
    cfg = NetworkConfig(d=20, n_classes=3, vertices=200, cap=100, rounds=3)
    model = SimpleRNN(init_networks(cfg, [0]), 0)
    model.W.copy_(0.1 * torch.randn(model.W.shape, generator=torch.Generator().manual_seed(1)) * model.G)
    x = torch.rand(30, 20, generator=torch.Generator().manual_seed(2))

    def run():
        xr = x.clone().requires_grad_(True)
        z = model(xr)
        g, = torch.autograd.grad(z.square().sum(), xr)
        return z.detach(), g

    z_new, g_new = run()
    monkeypatch.setattr(network, "keep_mask", lambda zd, k: None)
    monkeypatch.setattr(network, "capped", lambda zd, k: None)
    z_old, g_old = run()
    assert torch.equal(z_new, z_old)
    assert torch.equal(g_new, g_old)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_projection_equals_torch_form(dtype):
    """Equal to rounding: every elementwise step is the torch form's, but the float64 sums run in
    another order, so t can differ in its last bits (in float32 that almost never shows)."""
    g = torch.Generator().manual_seed(5)
    for trial in range(12):
        n, d = 30, (784 if trial % 2 else 7)
        x = torch.rand(n, d, generator=g, dtype=dtype)
        if trial % 3 == 0:
            x = (x > 0.7).to(dtype) * x
        xa = x + torch.randn(n, d, generator=g, dtype=dtype) * (0.05 + trial / 10)
        if trial == 4:
            xa[0, 0], xa[1, 1], xa[2, 2] = float("nan"), float("inf"), -float("inf")
        eps = torch.rand(n, generator=g, dtype=torch.float64) * 3
        eps[0] = 0.0
        e = at._eps_vector(eps, n)
        new, ref = at._project_compiled(xa, x, e), at._project_torch(xa, x, e)
        assert_close(new, ref)
        at.check_ball(new, x, eps)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_capped_values_are_the_product(dtype):
    g = torch.Generator().manual_seed(9)
    for kind in ("normal", "relu", "ints", "signed-zeros"):
        z = _rows(kind, 30, 500, g, dtype)
        out = capmask.capped(z, 250)
        ref = z * _torch_keep(z, 250)
        assert out.dtype == dtype
        torch.testing.assert_close(out, ref, rtol=0, atol=0, equal_nan=True)  # -inf * 0 is NaN in both
        assert torch.equal(torch.signbit(out), torch.signbit(ref))  # the same bits, zeros' signs too


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(28, 28), (1, 30)])
def test_compiled_square_candidates_equal_torch_form(dtype, shape):
    from metaplastic.attacks import gradient_free as gf
    g = torch.Generator().manual_seed(11)
    H, W = shape
    k, dim = 40, H * W
    for sh, sw in ([(1, 1), (3, 3), (9, 9)] if H > 1 else [(1, 1), (1, 7)]):
        xb = torch.rand(k, dim, generator=g, dtype=dtype)
        cur = (xb + 0.1 * torch.randn(k, dim, generator=g, dtype=dtype)).clamp(0, 1)
        cur[0] = xb[0]  # nothing in window 1 yet
        eb = torch.rand(k, generator=g, dtype=torch.float64) * 3
        r1, r2 = (torch.randint(0, H - sh + 1, (k,), generator=g) for _ in range(2))
        c1, c2 = (torch.randint(0, W - sw + 1, (k,), generator=g) for _ in range(2))
        sign = torch.randint(0, 2, (k,), generator=g).double() * 2 - 1
        bump = (gf._bump(sh, torch.float64, "cpu").flatten() if sh > 1 and sw > 1
                else torch.full((sh * sw,), (sh * sw) ** -0.5, dtype=torch.float64))
        new = gf._square_candidates(cur, xb, eb, r1, c1, r2, c2, sign, sh, sw, H, W, bump)
        ref = gf._square_candidates_torch(cur, xb, eb, r1, c1, r2, c2, sign, sh, sw, H, W, bump)
        assert new.dtype == dtype
        assert_close(new, ref)
