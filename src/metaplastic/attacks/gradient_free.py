"""Gradient-free attacks (forward queries only): Square, noise, blend, NES."""

from __future__ import annotations

import math

import torch

from ..errors import MetaplasticError
from .common import AttackResult, _chunks, _finish, _random_sphere, _unit, logits_of, margin, predict
from .projection import _eps_vector, project_l2_box


# --------------------------------------------------------------------------- #
# Gradient-free: square, noise, blend, NES
# --------------------------------------------------------------------------- #

def _square_p(p_init: float, it: int, n_iters: int) -> float:
    i = int(it / max(n_iters, 1) * 10000)
    for k, th in enumerate((10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)):
        if i <= th:
            return p_init / 2 ** k
    return p_init / 2 ** 9


def _bump(s: int, dtype, device) -> torch.Tensor:
    r = torch.arange(s, dtype=torch.float64) - (s - 1) / 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * max(s / 4, 0.5) ** 2))
    return (g / g.norm()).to(dtype=dtype, device=device)


def _square_candidates(cur, xb, eb, r1, c1, r2, c2, sign, sh, sw, H, W, bump) -> torch.Tensor:
    """The Square attack's candidates before projection (:func:`square_attack`): the compiled kernel
    (:mod:`metaplastic._squarekernel`) on the CPU, else the torch form."""
    if cur.device.type == "cpu" and cur.dtype in (torch.float32, torch.float64):
        try:
            from .._squarekernel import square_candidates
        except ImportError:  # pragma: no cover - numba is a dependency
            square_candidates = None
        if square_candidates is not None:
            out = torch.empty(cur.shape, dtype=torch.float64)
            square_candidates(cur.contiguous().numpy(), xb.contiguous().numpy(), eb.contiguous().numpy(),
                              r1.numpy(), c1.numpy(), r2.numpy(), c2.numpy(), sign.contiguous().numpy(),
                              sh, sw, H, W, bump.contiguous().numpy(), out.numpy())
            return out.to(cur.dtype)
    return _square_candidates_torch(cur, xb, eb, r1, c1, r2, c2, sign, sh, sw, H, W, bump)


def _square_candidates_torch(cur, xb, eb, r1, c1, r2, c2, sign, sh, sw, H, W, bump) -> torch.Tensor:
    """The torch form of :func:`_square_candidates` (the reference; any device)."""
    k, dim = cur.shape
    rr = torch.arange(H)[None, :, None]
    cc = torch.arange(W)[None, None, :]
    w1 = ((rr >= r1[:, None, None]) & (rr < (r1 + sh)[:, None, None]) &
          (cc >= c1[:, None, None]) & (cc < (c1 + sw)[:, None, None])).reshape(k, dim).to(xb.device)
    w2 = ((rr >= r2[:, None, None]) & (rr < (r2 + sh)[:, None, None]) &
          (cc >= c2[:, None, None]) & (cc < (c2 + sw)[:, None, None])).reshape(k, dim).to(xb.device)
    w2 = w2 & ~w1
    delta = (cur - xb).double()
    newd = torch.zeros_like(delta)
    newd[w1] = (bump[None].expand(k, -1) * sign[:, None].to(xb.device)).reshape(-1)
    old = torch.where(w1, delta, torch.zeros_like(delta))
    oldn = old.norm(dim=1, keepdim=True)
    win = torch.where(oldn > 0, old / oldn.clamp_min(1e-300), torch.zeros_like(old)) + newd
    rest = torch.where(w1 | w2, torch.zeros_like(delta), delta)
    budget = (eb ** 2 - rest.square().sum(1)).clamp_min(0).sqrt()
    win = win / win.norm(dim=1, keepdim=True).clamp_min(1e-300) * budget[:, None]
    return (xb.double() + rest + win).to(xb.dtype)


def square_attack(model, x, y, eps, *, queries: int = 500, p_init: float = 0.3, generator=None,
                  image_shape=None, batch_size: int = 1000) -> AttackResult:
    """Square attack, L2, simplified (Andriushchenko et al. 2020).

    Inputs of dimension d = h*h (784 -> 28x28) are treated as images with
    square windows; otherwise as 1-D signals with windows of length s.  Start:
    vertical stripes of random sign with norm eps (projected).  Each query: a
    window of side s (``s^2 ~ p * d``, p halved on the usual schedule) gets a
    Gaussian bump of random sign added to its current (normalized) content, a
    second window of the same size is zeroed, and the window's new content is
    rescaled to take all the norm the ball has left; the candidate is then
    projected exactly onto ball ∩ box and kept if it lowers the margin
    ``z_y - max_{j != y} z_j``.  Simplifications against the paper: one
    Gaussian bump instead of the meta-pseudo-Gaussian pattern, no
    channel handling, one candidate per query.  Forward queries only.
    """
    n, dim = x.shape
    e = _eps_vector(eps, n).to(x.device)
    if image_shape is None:
        h = int(round(math.sqrt(dim)))
        image_shape = (h, h) if h * h == dim else (1, dim)
    H, W = image_shape
    if H * W != dim:
        raise MetaplasticError(f"image shape {image_shape} does not match d={dim}")
    x_adv = x.clone()
    success = torch.zeros(n, dtype=torch.bool, device=x.device)
    nq = 0
    for sl in _chunks(n, batch_size):
        xb, yb, eb = x[sl], y[sl], e[sl]
        m = xb.shape[0]
        cols = torch.randint(0, 2, (m, 1, W), generator=generator).to(xb.device).double() * 2 - 1
        stripes = cols.expand(m, H, W).reshape(m, dim)
        delta0 = stripes / stripes.norm(dim=1, keepdim=True) * eb[:, None]
        cur = project_l2_box(xb + delta0.to(xb.dtype), xb, eb)
        z = logits_of(model, cur)
        nq += m
        best = margin(z, yb)
        done = z.argmax(1) != yb
        found = torch.where(done[:, None], cur, xb)
        for it in range(1, queries):
            act = (~done).nonzero()[:, 0]
            if act.numel() == 0:
                break
            k = act.numel()
            p = _square_p(p_init, it, queries)
            if H > 1:
                s = max(1, min(H - 1, int(round(math.sqrt(p * dim)))))
                sh, sw = s, s
            else:
                sh, sw = 1, max(1, min(W - 1, int(round(p * dim))))
            r1 = torch.randint(0, H - sh + 1, (k,), generator=generator)
            c1 = torch.randint(0, W - sw + 1, (k,), generator=generator)
            r2 = torch.randint(0, H - sh + 1, (k,), generator=generator)
            c2 = torch.randint(0, W - sw + 1, (k,), generator=generator)
            sign = torch.randint(0, 2, (k,), generator=generator).double() * 2 - 1
            if sh > 1 and sw > 1:
                bump = _bump(sh, torch.float64, xb.device).flatten()
            else:
                bump = torch.full((sh * sw,), 1 / math.sqrt(sh * sw), dtype=torch.float64, device=xb.device)
            cand = _square_candidates(cur[act], xb[act], eb[act], r1, c1, r2, c2, sign, sh, sw, H, W, bump)
            cand = project_l2_box(cand, xb[act], eb[act])
            zc = logits_of(model, cand)
            nq += k
            mc = margin(zc, yb[act])
            wrong = zc.argmax(1) != yb[act]
            imp = (mc < best[act]) | wrong
            ii = act[imp]
            cur[ii] = cand[imp]
            best[ii] = mc[imp]
            nw = act[wrong]
            found[nw] = cand[wrong]
            done[nw] = True
        x_adv[sl] = torch.where(done[:, None], found, cur)
        success[sl] = done
    return _finish(x_adv, x, e, success, queries=nq, stats={"queries_per_input": queries, "p_init": p_init})


def noise_attack(model, x, y, eps, *, draws: int = 10, generator=None, batch_size: int = 2000) -> AttackResult:
    """``draws`` random directions of norm eps per input, projected onto ball ∩ box."""
    n, dim = x.shape
    e = _eps_vector(eps, n).to(x.device)
    x_adv = x.clone()
    success = torch.zeros(n, dtype=torch.bool, device=x.device)
    nq = 0
    for _ in range(draws):
        idx = (~success).nonzero()[:, 0]
        if idx.numel() == 0:
            break
        cand = project_l2_box(x[idx] + _random_sphere(idx.numel(), dim, e[idx], generator, x.dtype, x.device),
                              x[idx], e[idx])
        wrong = predict(model, cand, batch_size) != y[idx]
        nq += idx.numel()
        x_adv[idx[wrong]] = cand[wrong]
        success[idx[wrong]] = True
    return _finish(x_adv, x, e, success, queries=nq, stats={"draws": draws})


def blend_attack(model, x, y, eps, *, reference=None, reference_pred=None, k: int = 10,
                 generator=None, batch_size: int = 2000) -> AttackResult:
    """Line to the ``k`` nearest reference images the model puts in another class.

    For input x and reference x' (predicted label != y), the point
    ``x + t (x' - x)`` with ``t = min(1, eps / ||x' - x||)`` (inside the box,
    within the ball).  ``reference`` defaults to ``x`` itself with the model's
    predictions.  Deterministic.
    """
    n, _dim = x.shape
    e = _eps_vector(eps, n).to(x.device)
    if reference is None:
        reference = x
    if reference_pred is None:
        reference_pred = predict(model, reference)
    x_adv = x.clone()
    success = torch.zeros(n, dtype=torch.bool, device=x.device)
    nq = 0
    for sl in _chunks(n, 500):
        xb, yb, eb = x[sl], y[sl], e[sl]
        dist = torch.cdist(xb.double(), reference.double())
        dist = torch.where(reference_pred[None] == yb[:, None], torch.full_like(dist, math.inf), dist)
        kk = min(k, reference.shape[0])
        dv, di = dist.topk(kk, dim=1, largest=False)
        done = torch.zeros(xb.shape[0], dtype=torch.bool, device=x.device)
        found = xb.clone()
        for r in range(kk):
            ok = torch.isfinite(dv[:, r]) & ~done
            idx = ok.nonzero()[:, 0]
            if idx.numel() == 0:
                continue
            ref = reference[di[idx, r]].double()
            t = (eb[idx] / dv[idx, r].clamp_min(1e-300)).clamp(max=1.0)
            cand = (xb[idx].double() + t[:, None] * (ref - xb[idx].double())).clamp(0, 1).to(x.dtype)
            cand = project_l2_box(cand, xb[idx], eb[idx])  # guards rounding only
            wrong = predict(model, cand, batch_size) != yb[idx]
            nq += idx.numel()
            found[idx[wrong]] = cand[wrong]
            done[idx[wrong]] = True
        x_adv[sl] = found
        success[sl] = done
    return _finish(x_adv, x, e, success, queries=nq, stats={"k": k})


def nes_attack(model, x, y, eps, *, steps: int = 20, pairs: int = 25, sigma: float = 0.01,
               alpha_rel: float | None = None, generator=None, batch_size: int = 50) -> AttackResult:
    """Normalized-step PGD on a smoothed finite-difference gradient (NES).

    Gradient of the margin ``z_y - max_{j!=y} z_j`` estimated from ``pairs``
    antithetic Gaussian probes ``x ± sigma u`` (clipped to the box):
    ``g = sum_i (L(x + s u_i) - L(x - s u_i)) u_i / (2 s pairs)``; step
    ``x <- P(x - alpha g / ||g||)`` with ``alpha = 2.5 eps / steps`` (unless
    ``alpha_rel`` gives alpha/eps).  Start at x.  Forward queries only
    (``2 pairs + 1`` per step).
    """
    n, dim = x.shape
    e = _eps_vector(eps, n).to(x.device)
    ar = 2.5 / steps if alpha_rel is None else alpha_rel
    x_adv = x.clone()
    success = torch.zeros(n, dtype=torch.bool, device=x.device)
    nq = zero = 0
    for sl in _chunks(n, batch_size):
        xb, yb, eb = x[sl], y[sl], e[sl]
        cur = xb.clone()
        done = torch.zeros(xb.shape[0], dtype=torch.bool, device=x.device)
        found = xb.clone()
        for _ in range(steps):
            act = (~done).nonzero()[:, 0]
            if act.numel() == 0:
                break
            k = act.numel()
            u = torch.randn(k, pairs, dim, generator=generator).to(x.device, x.dtype)
            base = cur[act][:, None]
            q = torch.cat([(base + sigma * u), (base - sigma * u)], 1).clamp(0, 1).reshape(-1, dim)
            zq = logits_of(model, q, 4096)
            nq += q.shape[0]
            lq = margin(zq, yb[act].repeat_interleave(2 * pairs)).reshape(k, 2 * pairs)
            diff = (lq[:, :pairs] - lq[:, pairs:]).double()
            g = (diff[:, :, None] * u.double()).sum(1) / (2 * sigma * pairs)
            zero += int((g.norm(dim=1) == 0).sum())
            nxt = project_l2_box(cur[act] - (ar * eb[act])[:, None].to(x.dtype) * _unit(g).to(x.dtype),
                                 xb[act], eb[act])
            cur[act] = nxt
            wrong = predict(model, nxt) != yb[act]
            nq += k
            nw = act[wrong]
            found[nw] = nxt[wrong]
            done[nw] = True
        x_adv[sl] = torch.where(done[:, None], found, cur)
        success[sl] = done
    return _finish(x_adv, x, e, success, queries=nq, zero_grads=zero,
                   stats={"steps": steps, "pairs": pairs, "sigma": sigma})
