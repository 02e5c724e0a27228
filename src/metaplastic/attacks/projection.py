"""The L2 ball intersected with the box [0, 1]^d: exact projection and the check every attack result passes."""

from __future__ import annotations

import math

import torch

from ..errors import MetaplasticError


TOL = 1e-6  # every output is within eps + TOL of its input (L2) and inside [0, 1]


# --------------------------------------------------------------------------- #
# Projection and checks
# --------------------------------------------------------------------------- #

def _eps_vector(eps, n: int) -> torch.Tensor:
    e = torch.as_tensor(eps, dtype=torch.float64).flatten()
    if e.numel() == 1:
        e = e.expand(n)
    if e.numel() != n:
        raise MetaplasticError(f"eps must be a number or one per input ({n}), got {e.numel()}")
    if not bool(torch.isfinite(e).all()) or bool((e < 0).any()):
        raise MetaplasticError("eps must be finite and >= 0")
    return e.clone()


def project_l2_box(x_adv: torch.Tensor, x: torch.Tensor, eps) -> torch.Tensor:
    """Exact Euclidean projection of ``x_adv`` onto ``{z: ||z - x||_2 <= eps} ∩ [0,1]^d``.

    KKT: the projection is ``z(lam) = clip((v + lam x) / (1 + lam), 0, 1)`` with
    the smallest ``lam >= 0`` for which ``||z(lam) - x|| <= eps``.  Writing
    ``t = 1 / (1 + lam)`` and ``d = v - x``, ``z = clip(x + t d)`` and
    ``f(t) = ||z - x||^2 = sum_i min(t |d_i|, c_i)^2`` (``c_i`` the distance from
    x_i to the face of the box that d_i points at) is nondecreasing and
    piecewise quadratic in t with breakpoints ``b_i = c_i / |d_i|``.  The root
    of ``f(t) = eps^2`` is found exactly by an active-set iteration from t = 0:
    with S the coordinates saturated at the current t, ``t <- sqrt((eps^2 -
    sum_S c^2) / sum_{not S} d^2)``.  Each iterate is feasible (the quadratic
    over-estimates f beyond t), the sequence increases, and it stops when S no
    longer changes, at the exact root (typically 2-4 iterations; rows not done
    after 30 fall back to sorting the breakpoints).  Elementwise work in x's
    dtype, sums in float64; if rounding leaves a row outside the ball by more
    than 1e-7, its t is shrunk until it is not.  ``x`` must lie in [0, 1]^d;
    ``eps`` is a number or one per row.
    """
    if x_adv.shape != x.shape or x.dim() != 2:
        raise MetaplasticError(f"project_l2_box needs two [N, d] tensors, got {tuple(x_adv.shape)} "
                               f"and {tuple(x.shape)}")
    n = x.shape[0]
    if n == 0:
        return x_adv.clone()
    lo, hi = x.aminmax()
    if float(lo) < 0 or float(hi) > 1:
        raise MetaplasticError("project_l2_box: the centre x must lie in [0, 1]^d")
    e = _eps_vector(eps, n).to(x.device)
    out = _project_compiled(x_adv, x, e)
    if out is not None:
        return out
    return _project_torch(x_adv, x, e)


def _project_compiled(x_adv, x, e):
    """:func:`project_l2_box` by the compiled kernel (:mod:`metaplastic._projkernel`), or None
    where it does not apply (a GPU, another dtype, no numba)."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or x_adv.dtype != x.dtype:
        return None
    try:
        from .._projkernel import project_rows
    except ImportError:  # pragma: no cover - numba is a dependency
        return None
    xa, xc = x_adv.detach().contiguous(), x.detach().contiguous()
    out = torch.empty_like(xc)
    unsettled = torch.from_numpy(project_rows(xa.numpy(), xc.numpy(), e.numpy(), out.numpy(), 30))
    if bool(unsettled.any()):  # rare: the torch form's sorting fallback for those rows
        rows = unsettled.nonzero()[:, 0]
        out[rows] = _project_torch(xa[rows], xc[rows], e[rows])
    return out


def _project_torch(x_adv, x, e):
    """The torch form of :func:`project_l2_box` (the reference; any device)."""
    n = x.shape[0]
    e2 = e * e
    d = torch.nan_to_num(x_adv - x, nan=0.0, posinf=1.0, neginf=-1.0)
    c = torch.where(d > 0, 1.0 - x, x)
    a = d.abs()
    b = c / a            # inf where d = 0 < c, nan where d = c = 0: never saturated (nan <= t is False)
    a2 = a * a
    c2 = c * c
    S = b <= 0
    t = torch.zeros(n, dtype=torch.float64, device=x.device)
    todo = torch.ones(n, dtype=torch.bool, device=x.device)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    for _ in range(30):
        A = torch.where(S, zero, a2).sum(1, dtype=torch.float64)
        C = torch.where(S, c2, zero).sum(1, dtype=torch.float64)
        t_new = torch.sqrt((e2 - C).clamp_min(0.0) / A.clamp_min(1e-300)).clamp(0.0, 1.0)
        t_new = torch.where(A > 0, t_new, torch.ones_like(t_new))
        t = torch.where(todo, t_new, t)
        S_new = b <= t.to(b.dtype)[:, None]
        todo = (S_new != S).any(1) & todo & (t < 1)
        S = S_new
        if not bool(todo.any()):
            break
    if bool(todo.any()):
        rows = todo.nonzero()[:, 0]
        t[rows] = _root_by_sorting(d[rows].double(), c[rows].double(), e2[rows])
    t = torch.where(e == 0, torch.zeros_like(t), t)
    x64 = x.double()
    d64 = d.double()
    out = (x64 + t[:, None] * d64).clamp(0.0, 1.0).to(x.dtype)
    for _ in range(60):  # rounding repair (rare)
        bad = (out.double() - x64).norm(dim=1) > e + 1e-7
        if not bool(bad.any()):
            break
        t = torch.where(bad, t * (1 - 1e-6) - 1e-12, t).clamp_min(0.0)
        out = torch.where(bad[:, None], (x64 + t[:, None] * d64).clamp(0.0, 1.0).to(x.dtype), out)
    return out


def _root_by_sorting(d, c, e2):
    """The root t of ``sum_i min(t |d_i|, c_i)^2 = eps^2`` (capped at 1) by sorting the breakpoints."""
    n = d.shape[0]
    a = d.abs()
    b = torch.where(a > 0, c / a.clamp_min(1e-300), torch.full_like(a, math.inf))
    bs, idx = b.sort(dim=1)
    a2 = (a * a).gather(1, idx)
    c2 = (c * c).gather(1, idx)
    A = a2.flip(1).cumsum(1).flip(1)                       # A[j] = sum_{i >= j} a_i^2
    C = c2.cumsum(1) - c2                                  # C[j] = sum_{i < j} c_i^2
    fb = torch.where(torch.isfinite(bs), bs * bs * A + C, torch.full_like(bs, math.inf))
    over = fb > e2[:, None]
    j = torch.where(over.any(1), over.float().argmax(1), torch.full((n,), d.shape[1], device=d.device))
    A_ext = torch.cat([A, torch.zeros(n, 1, dtype=A.dtype, device=A.device)], 1)
    C_ext = torch.cat([C, c2.sum(1, keepdim=True)], 1)
    Aj = A_ext.gather(1, j[:, None])[:, 0]
    Cj = C_ext.gather(1, j[:, None])[:, 0]
    return torch.sqrt((e2 - Cj).clamp_min(0.0) / Aj.clamp_min(1e-300)).clamp(0.0, 1.0)


def check_ball(x_adv: torch.Tensor, x: torch.Tensor, eps, tol: float = TOL) -> None:
    """Raise unless every row of x_adv is within eps (+ tol) of x in L2 and inside [0, 1]."""
    if x_adv.shape != x.shape:
        raise MetaplasticError(f"adversarial inputs {tuple(x_adv.shape)} do not match {tuple(x.shape)}")
    if x.shape[0] == 0:
        return
    e = _eps_vector(eps, x.shape[0]).to(x.device)
    if not bool(torch.isfinite(x_adv).all()):
        raise MetaplasticError("an adversarial input is not finite")
    dist = (x_adv.double() - x.double()).norm(dim=1)
    worst = float((dist - e).max())
    if worst > tol:
        raise MetaplasticError(f"an adversarial input is {worst:.3g} outside its eps ball")
    if float(x_adv.min()) < 0 or float(x_adv.max()) > 1:
        raise MetaplasticError("an adversarial input leaves [0, 1]")
