"""L2 adversarial attacks on the logits of any module mapping flat inputs ``[N, d]`` to logits.

Used by :mod:`metaplastic.robustness` to reproduce section 4 / A.3 of the paper
(robustness to a targeted multi-step L2 attack) and to tell real robustness from
gradient masking (the cap is k-winners-take-all, whose reported robustness was
masking, Tramer et al. 2020).  Every attack

* works on the **logits** of ``model`` (softmax appears only inside losses),
* is batched (chunks of ``batch_size`` inputs; with ``stop_on_success`` an
  input leaves the batch as soon as it is misclassified),
* draws all randomness from an explicit :class:`torch.Generator`,
* returns an :class:`AttackResult` whose every output was verified to lie
  within ``eps`` of its input (tolerance :data:`TOL` = 1e-6) and in [0, 1]^d
  (:func:`check_ball`), and
* counts an input as *broken* when the model's argmax (ties to the lower
  label) differs from the true label at **any** point it evaluated; the point
  returned is then the first such point.

Attacks (``ATTACKS``):

``paper``      section 4 / A.3: for each of the 9 targets y' != y,
               ``x <- Proj(x - alpha * grad_x CE(logits(x), y'))`` with the
               *raw* gradient, from x itself, ``steps`` steps.  The paper gives
               neither alpha nor the number of steps; defaults: 20 steps and
               ``alpha = eps / 4`` (a gradient of unit L2 norm moves eps/4 per
               step).  Because the step is the raw gradient, the attack depends
               on the logit scale: the result records how often the gradient is
               exactly zero and the median ratio ``alpha * ||g|| / eps``.
``apgd-ce``    APGD (Croce & Hein 2020), L2, untargeted cross-entropy.
``apgd-dlr``   APGD with the targeted DLR loss, for the ``dlr_targets`` (3)
               highest non-true classes by clean logits (AutoAttack uses 9).
``square``     Square attack (Andriushchenko et al. 2020), L2, gradient-free,
               simplified (see :func:`square_attack`).
``noise``      ``draws`` random directions of norm eps (projected to the box).
``blend``      gradient-free line to the nearest reference images of another
               predicted class (a decision-based start point): the point
               ``x + t (x' - x)`` with the largest t the ball allows.
``bpda-st``    APGD (margin loss) through a surrogate whose forward is the model's exact
               forward and whose backward treats the cap as the identity
               (straight-through; BPDA, Athalye et al. 2018).
``bpda-soft``  the same with a soft top-k backward,
               ``z * sigmoid((z - t) / tau)``, t between the k-th and (k+1)-th
               values, tau = ``tau_rel`` x the standard deviation of z.
``nes``        normalized-step PGD on an antithetic-Gaussian finite-difference
               (NES) estimate of the margin gradient (gradient-free, queries only).
``transfer``   APGD (margin loss) crafted on another model (the GD-trained
               twin), the highest-loss point on that model evaluated on this one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .errors import MetaplasticError

TOL = 1e-6  # every output is within eps + TOL of its input (L2) and inside [0, 1]

ATTACKS = ("noise", "blend", "square", "paper", "apgd-ce", "apgd-dlr", "bpda-st", "bpda-soft",
           "transfer", "nes")
GRADIENT = ("paper", "apgd-ce", "apgd-dlr")            # the model's own input gradient
GRADIENT_FREE = ("noise", "blend", "square", "nes")    # forward queries only
ADAPTIVE = ("bpda-st", "bpda-soft", "transfer")        # gradients of another function


@dataclass
class AttackResult:
    """Outcome of one attack on ``N`` inputs.

    ``x_adv[i]`` is the first misclassified point found for input i when
    ``success[i]``, else the attack's final (or best-loss) point; ``grads`` and
    ``queries`` count gradient and forward evaluations (per input, summed);
    ``zero_grads`` counts gradients that were exactly zero (all entries);
    ``stats`` holds attack-specific numbers.
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    grads: int = 0
    queries: int = 0
    zero_grads: int = 0
    stats: dict = field(default_factory=dict)


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
        from ._projkernel import project_rows
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


# --------------------------------------------------------------------------- #
# Losses on logits, evaluation helpers
# --------------------------------------------------------------------------- #

def margin(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{j != y} z_j`` (negative: misclassified)."""
    zy = z.gather(1, y[:, None])[:, 0]
    other = z.scatter(1, y[:, None], -math.inf).amax(1)
    return zy - other


def dlr_targeted(z: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Targeted DLR loss (Croce & Hein 2020), to be maximized.

    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``; with fewer than 4 classes
    the denominator is ``z_pi1 - z_pi_last`` (scale invariance kept).
    """
    zs = z.sort(dim=1, descending=True).values
    if z.shape[1] >= 4:
        den = zs[:, 0] - 0.5 * (zs[:, 2] + zs[:, 3])
    else:
        den = zs[:, 0] - zs[:, -1]
    return -(z.gather(1, y[:, None])[:, 0] - z.gather(1, t[:, None])[:, 0]) / (den + 1e-12)


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, x.shape[0], batch_size)]) \
            if x.shape[0] else torch.zeros(0, dtype=torch.long, device=x.device)


def logits_of(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def _loss_grad(model, x, lossfn):
    """Per-example loss, its input gradient and the logits at x."""
    xr = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        z = model(xr)
        loss = lossfn(z)
        g, = torch.autograd.grad(loss.sum(), xr)
    return loss.detach(), g.detach(), z.detach()


def _unit(g: torch.Tensor) -> torch.Tensor:
    n = g.double().norm(dim=1, keepdim=True)
    return torch.where(n > 0, g / n.clamp_min(1e-300).to(g.dtype), torch.zeros_like(g))


def _random_sphere(n, d, eps, gen, dtype, device):
    u = torch.randn(n, d, generator=gen, dtype=torch.float64).to(device)
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return (u * eps[:, None].to(device)).to(dtype)


def _chunks(n, size):
    for s in range(0, n, size):
        yield slice(s, min(n, s + size))


def _finish(x_adv, x, eps, success, **kw) -> AttackResult:
    check_ball(x_adv, x, eps)
    return AttackResult(x_adv, success, **kw)


# --------------------------------------------------------------------------- #
# The paper's attack (section 4, A.3)
# --------------------------------------------------------------------------- #

def paper_attack(model, x, y, eps, *, steps: int = 20, alpha=None, alpha_rel: float = 0.25,
                 batch_size: int = 100, generator=None, n_classes: int | None = None) -> AttackResult:
    """Targeted multi-step raw-gradient attack of section 4 / A.3, all 9 (l-1) targets.

    ``x_t+1 = Proj_{B(x, eps) ∩ [0,1]^d}(x_t - alpha * grad CE(logits(x_t), y'))``
    from ``x_0 = x``; ``alpha = alpha_rel * eps`` unless given.  Broken when any
    iterate of any target is misclassified.  Deterministic (``generator`` unused).
    """
    n, _dim = x.shape
    e = _eps_vector(eps, n).to(x.device)
    if n_classes is None:
        n_classes = int(logits_of(model, x[:1]).shape[1]) if n else 2
    L = n_classes
    x_adv = x.clone()
    success = torch.zeros(n, dtype=torch.bool, device=x.device)
    grads = zero = 0
    ratios = []
    for sl in _chunks(n, batch_size):
        xb, yb, eb = x[sl], y[sl], e[sl]
        m = xb.shape[0]
        # rows: every (image, target != y) pair
        tg = torch.arange(L, device=x.device)[None].expand(m, L)
        keep = tg != yb[:, None]
        img = torch.arange(m, device=x.device)[:, None].expand(m, L)[keep]
        tgt = tg[keep]
        x0 = xb[img]
        er = eb[img]
        a = (alpha_rel * er) if alpha is None else torch.full_like(er, float(alpha))
        cur = x0.clone()
        yr = yb[img]
        done = torch.zeros(m, dtype=torch.bool, device=x.device)
        found = xb.clone()
        for _ in range(steps):
            act = ~done[img]
            if not bool(act.any()):
                break
            ia = act.nonzero()[:, 0]
            _, g, _ = _loss_grad(model, cur[ia], lambda z: F.cross_entropy(z, tgt[ia], reduction="none"))
            grads += ia.numel()
            gn = g.double().norm(dim=1)
            zero += int((gn == 0).sum())
            ratios.append((a[ia] * gn / er[ia].clamp_min(1e-300)).float())
            step = cur[ia] - (a[ia, None] * g.double()).to(x.dtype)
            cur[ia] = project_l2_box(step, x0[ia], er[ia])
            pred = predict(model, cur[ia], batch_size=4096)
            wrong = pred != yr[ia]
            if bool(wrong.any()):
                rows = ia[wrong]
                for r in rows.tolist():  # first misclassified point per image
                    i = int(img[r])
                    if not done[i]:
                        done[i] = True
                        found[i] = cur[r]
        x_adv[sl] = found
        success[sl] = done
    r = torch.cat(ratios) if ratios else torch.zeros(0)
    stats = {"alpha_rel": alpha_rel if alpha is None else None, "steps": steps,
             "median_step_over_eps": float(r.median()) if r.numel() else None,
             "zero_grad_fraction": zero / grads if grads else None}
    return _finish(x_adv, x, e, success, grads=grads, queries=grads, zero_grads=zero, stats=stats)


# --------------------------------------------------------------------------- #
# APGD (Croce & Hein 2020), L2
# --------------------------------------------------------------------------- #

def _checkpoints(iters: int) -> list[int]:
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    w = sorted({int(math.ceil(q * iters)) for q in p[1:] if math.ceil(q * iters) < iters})
    return [c for c in w if c > 0]


def apgd(model, x, y, eps, *, loss: str = "ce", target=None, iters: int = 50,
         generator: torch.Generator | None = None, rho: float = 0.75, momentum: float = 0.75,
         stop_on_success: bool = True, random_start: bool = True, batch_size: int = 500) -> AttackResult:
    """APGD, L2 (Croce & Hein 2020, Alg. 1), maximizing ``loss`` of the logits.

    ``loss``: "ce" (untargeted cross-entropy), "dlr-t" (targeted DLR, needs
    ``target``), "margin" (``-margin``) or a callable ``f(z, y) -> [n]``.  Step
    size starts at 2 eps per input and is halved at the checkpoints
    ``w_j = ceil(p_j * iters)`` (``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j +
    max(p_j - p_{j-1} - 0.03, 0.06)``) when fewer than ``rho`` of the steps since
    the last checkpoint increased the loss, or when the step was not halved at
    the last checkpoint and the best loss has not improved since; on halving
    the iterate restarts from the best point (momentum cleared).  Update:
    ``z = P(x_k + eta g/||g||)``, ``x_{k+1} = P(x_k + m (z - x_k) + (1 - m)(x_k - x_{k-1}))``
    with m = ``momentum`` (0.75; 1 on the first step).  Random start on the
    sphere of radius eps (projected).  With ``stop_on_success`` an input stops
    at its first misclassified iterate; otherwise all run to the end and the
    returned point of an unbroken input is its highest-loss point
    (``stats["x_best"]`` holds the highest-loss points of all inputs).
    """
    n, dim = x.shape
    e = _eps_vector(eps, n).to(x.device)
    if loss == "ce":
        def lf(z, yy, tt):
            return F.cross_entropy(z, yy, reduction="none")
    elif loss == "dlr-t":
        if target is None:
            raise MetaplasticError("targeted DLR needs target labels")
        lf = dlr_targeted
    elif loss == "margin":
        def lf(z, yy, tt):
            return -margin(z, yy)
    elif callable(loss):
        def lf(z, yy, tt):
            return loss(z, yy)
    else:
        raise MetaplasticError(f"unknown APGD loss {loss!r}")
    tgt = target if target is not None else y
    ckpts = set(_checkpoints(iters))
    x_out = x.clone()
    x_best_all = x.clone()
    success = torch.zeros(n, dtype=torch.bool, device=x.device)
    grads = zero = 0
    for sl in _chunks(n, batch_size):
        xb, yb, tb, eb = x[sl], y[sl], tgt[sl], e[sl]
        m = xb.shape[0]
        if random_start:
            x0 = project_l2_box(xb + _random_sphere(m, dim, eb, generator, xb.dtype, xb.device), xb, eb)
        else:
            x0 = xb.clone()
        eta = 2.0 * eb.clone()
        cur = x0
        f, g, z = _loss_grad(model, cur, lambda zz: lf(zz, yb, tb))
        grads += m
        zero += int((g.double().norm(dim=1) == 0).sum())
        done = z.argmax(1) != yb
        found = torch.where(done[:, None], cur, xb)
        f_best, x_best, g_best = f.clone(), cur.clone(), g.clone()
        prev = cur.clone()
        n_inc = torch.zeros(m, device=x.device)
        last_ck = 0
        reduced_last = torch.ones(m, dtype=torch.bool, device=x.device)
        f_best_last = f_best.clone()
        f_prev = f.clone()
        for k in range(1, iters):
            act = ~done if stop_on_success else torch.ones(m, dtype=torch.bool, device=x.device)
            if not bool(act.any()):
                break
            ia = act.nonzero()[:, 0]
            mom = 1.0 if k == 1 else momentum
            zst = project_l2_box(cur[ia] + eta[ia, None].to(x.dtype) * _unit(g[ia]), xb[ia], eb[ia])
            nxt = cur[ia] + mom * (zst - cur[ia]) + (1 - mom) * (cur[ia] - prev[ia])
            nxt = project_l2_box(nxt, xb[ia], eb[ia])
            prev[ia] = cur[ia]
            cur[ia] = nxt
            fk, gk, zk = _loss_grad(model, nxt, lambda zz: lf(zz, yb[ia], tb[ia]))
            grads += ia.numel()
            zero += int((gk.double().norm(dim=1) == 0).sum())
            g[ia] = gk
            n_inc[ia] += (fk > f_prev[ia]).float()
            f_prev[ia] = fk
            better = fk > f_best[ia]
            if bool(better.any()):
                ib = ia[better]
                f_best[ib], x_best[ib], g_best[ib] = fk[better], nxt[better], gk[better]
            wrong = zk.argmax(1) != yb[ia]
            newly = ia[wrong & ~done[ia]]
            if newly.numel():
                found[newly] = cur[newly]
                done[newly] = True
            if k in ckpts:
                span = k - last_ck
                cond1 = n_inc < rho * span
                cond2 = ~reduced_last & (f_best_last >= f_best)
                red = (cond1 | cond2) & act
                eta = torch.where(red, eta / 2, eta)
                if bool(red.any()):
                    cur[red] = x_best[red]
                    prev[red] = x_best[red]
                    g[red] = g_best[red]
                    f_prev[red] = f_best[red]
                reduced_last = red
                f_best_last = f_best.clone()
                n_inc.zero_()
                last_ck = k
        x_out[sl] = torch.where(done[:, None], found, x_best if not stop_on_success else cur)
        x_best_all[sl] = x_best
        success[sl] = done
    stats = {"iters": iters, "loss": loss if isinstance(loss, str) else "custom",
             "zero_grad_fraction": zero / grads if grads else None}
    if not stop_on_success:
        check_ball(x_best_all, x, e)
        stats["x_best"] = x_best_all
    return _finish(x_out, x, e, success, grads=grads, queries=grads, zero_grads=zero, stats=stats)


def apgd_dlr_targeted(model, x, y, eps, *, n_targets: int = 3, iters: int = 50, generator=None,
                      batch_size: int = 500) -> AttackResult:
    """APGD-DLR, targeted at the ``n_targets`` highest non-true classes by clean logits.

    Targets are attacked in order (most likely first); an input broken by one
    target is not attacked with the next.
    """
    n = x.shape[0]
    e = _eps_vector(eps, n).to(x.device)
    z = logits_of(model, x)
    order = z.scatter(1, y[:, None], -math.inf).argsort(1, descending=True)
    x_adv = x.clone()
    success = torch.zeros(n, dtype=torch.bool, device=x.device)
    grads = zero = 0
    for r in range(min(n_targets, z.shape[1] - 1)):
        idx = (~success).nonzero()[:, 0]
        if idx.numel() == 0:
            break
        res = apgd(model, x[idx], y[idx], e[idx], loss="dlr-t", target=order[idx, r], iters=iters,
                   generator=generator, batch_size=batch_size)
        grads += res.grads
        zero += res.zero_grads
        x_adv[idx] = torch.where(res.success[:, None], res.x_adv, x_adv[idx])
        success[idx] = res.success
    return _finish(x_adv, x, e, success, grads=grads, queries=grads, zero_grads=zero,
                   stats={"iters": iters, "targets": n_targets,
                          "zero_grad_fraction": zero / grads if grads else None})


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
            rr = torch.arange(H)[None, :, None]
            cc = torch.arange(W)[None, None, :]
            w1 = ((rr >= r1[:, None, None]) & (rr < (r1 + sh)[:, None, None]) &
                  (cc >= c1[:, None, None]) & (cc < (c1 + sw)[:, None, None])).reshape(k, dim).to(xb.device)
            w2 = ((rr >= r2[:, None, None]) & (rr < (r2 + sh)[:, None, None]) &
                  (cc >= c2[:, None, None]) & (cc < (c2 + sw)[:, None, None])).reshape(k, dim).to(xb.device)
            w2 = w2 & ~w1
            delta = (cur[act] - xb[act]).double()
            if sh > 1 and sw > 1:
                bump = _bump(sh, torch.float64, xb.device).flatten()
            else:
                bump = torch.full((sh * sw,), 1 / math.sqrt(sh * sw), dtype=torch.float64, device=xb.device)
            newd = torch.zeros_like(delta)
            newd[w1] = (bump[None].expand(k, -1) * sign[:, None].to(xb.device)).reshape(-1)
            old = torch.where(w1, delta, torch.zeros_like(delta))
            oldn = old.norm(dim=1, keepdim=True)
            win = torch.where(oldn > 0, old / oldn.clamp_min(1e-300), torch.zeros_like(old)) + newd
            rest = torch.where(w1 | w2, torch.zeros_like(delta), delta)
            budget = (eb[act] ** 2 - rest.square().sum(1)).clamp_min(0).sqrt()
            win = win / win.norm(dim=1, keepdim=True).clamp_min(1e-300) * budget[:, None]
            cand = project_l2_box((xb[act].double() + rest + win).to(xb.dtype), xb[act], eb[act])
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


# --------------------------------------------------------------------------- #
# Adaptive attacks on the cap: BPDA surrogates, transfer
# --------------------------------------------------------------------------- #

class _CapBPDA(torch.autograd.Function):
    """Forward: the exact cap; backward: identity or a soft top-k derivative."""

    @staticmethod
    def forward(ctx, z, k, mode, tau_rel):
        from .network import cap
        out = cap(z, k)
        ctx.save_for_backward(z)
        ctx.k, ctx.mode, ctx.tau_rel = k, mode, tau_rel
        return out

    @staticmethod
    def backward(ctx, g):
        z, = ctx.saved_tensors
        if ctx.mode == "identity":
            return g, None, None, None
        k = ctx.k
        top = z.topk(k + 1, dim=-1).values
        t = 0.5 * (top[..., k - 1:k] + top[..., k:k + 1])
        tau = (ctx.tau_rel * z.std(dim=-1, keepdim=True)).clamp_min(1e-12)
        s = torch.sigmoid((z - t) / tau)
        return g * (s + z * s * (1 - s) / tau), None, None, None


class BPDASurrogate(nn.Module):
    """A :class:`~metaplastic.network.SimpleRNN` whose cap has a replaced backward.

    Forward equals the model's forward exactly (same operations, the exact
    cap); the backward of every cap is the identity (``mode="identity"``,
    straight-through) or the derivative of ``z * sigmoid((z - t) / tau)``
    (``mode="soft"``).  ReLU keeps its own derivative.
    """

    def __init__(self, model: nn.Module, mode: str = "identity", tau_rel: float = 0.1):
        super().__init__()
        if mode not in ("identity", "soft"):
            raise MetaplasticError(f"BPDA mode must be identity or soft, got {mode!r}")
        for name in ("A", "U"):
            if not hasattr(model, name):
                raise MetaplasticError("BPDA surrogates need a SimpleRNN (buffers A, W, U)")
        self.model = model
        self.mode, self.tau_rel = mode, tau_rel

    def _cap(self, z):
        k = self.model.config.k
        if k is None:
            return z
        return _CapBPDA.apply(z, k, self.mode, self.tau_rel)

    def forward(self, x):
        m = self.model  # the operations of SimpleRNN.forward / network.run_rounds
        P = (x.to(m.A.dtype) @ m.A)[None]
        h = self._cap(torch.relu(P))
        through = getattr(m.config, "recurrence", "wh+ax") == "w(h+ax)"  # the paper's code: W (h + A x)
        for _ in range(m.config.rounds - 1):
            z = torch.bmm(h + P, m.W[None]) if through else torch.bmm(h, m.W[None]) + P
            h = self._cap(torch.relu(z))
        return (h @ m.U)[0]


def bpda_attack(model, x, y, eps, *, mode: str = "identity", tau_rel: float = 0.1, iters: int = 50,
                loss: str = "margin", generator=None, batch_size: int = 500) -> AttackResult:
    """APGD through a BPDA surrogate of ``model`` (a SimpleRNN).

    The loss defaults to the logit margin (``"margin"``), not cross-entropy:
    on networks whose softmax saturates in float32 (the plasticity-trained
    ones, logits in the hundreds) the CE gradient is exactly zero, which would
    make the surrogate fail for a reason unrelated to the cap.  ``loss="ce"``
    gives APGD-CE.  Success is judged on the surrogate's forward, which
    equals the model's; the points found are re-checked on the model itself.
    """
    sur = BPDASurrogate(model, mode, tau_rel)
    res = apgd(sur, x, y, eps, loss=loss, iters=iters, generator=generator, batch_size=batch_size)
    if res.success.any():
        real = predict(model, res.x_adv[res.success]) != y[res.success]
        s = res.success.clone()
        s[res.success] = real
        res.success = s
    res.stats.update(mode=mode, tau_rel=tau_rel)
    return res


def transfer_attack(model, x, y, eps, *, source: nn.Module | None = None, x_src=None, iters: int = 50,
                    generator=None, batch_size: int = 500) -> AttackResult:
    """Adversarial inputs crafted by APGD on ``source``, evaluated on ``model``.

    APGD runs all ``iters`` iterations on the source with the margin loss
    (cross-entropy saturates in float32 on confident inputs, see
    :func:`bpda_attack`) and the highest-loss (most confidently wrong) point
    is transferred.  ``x_src`` may pass points already crafted on the source.
    """
    n = x.shape[0]
    e = _eps_vector(eps, n).to(x.device)
    grads = 0
    if x_src is None:
        if source is None:
            raise MetaplasticError("transfer needs a source model")
        r = apgd(source, x, y, e, loss="margin", iters=iters, generator=generator, stop_on_success=False,
                 batch_size=batch_size)
        x_src = r.stats["x_best"]
        grads = r.grads
    check_ball(x_src, x, e)
    success = predict(model, x_src) != y
    return _finish(x_src.clone(), x, e, success, queries=n, stats={"source_grads": grads})


# --------------------------------------------------------------------------- #
# Diagnostics
# --------------------------------------------------------------------------- #

def zero_gradient_fractions(model, x, y, batch_size: int = 500) -> dict:
    """Fraction of inputs whose input gradient is exactly zero (every entry), for

    * ``softmax``: the true class's softmax probability ``p_y(x)``,
    * ``ce``: the cross-entropy ``-log p_y`` (as APGD-CE uses it),
    * ``logits``: the logit margin ``z_y - max_{j != y} z_j``.
    Also the median L2 norm of each gradient.
    """
    out = {}
    for name, fn in (("softmax", lambda z, yy: z.softmax(1).gather(1, yy[:, None])[:, 0]),
                     ("ce", lambda z, yy: F.cross_entropy(z, yy, reduction="none")),
                     ("logits", margin)):
        zeros, norms = 0, []
        for sl in _chunks(x.shape[0], batch_size):
            _, g, _ = _loss_grad(model, x[sl], lambda z: fn(z, y[sl]))
            gn = g.double().norm(dim=1)
            zeros += int((gn == 0).sum())
            norms.append(gn)
        nn_ = torch.cat(norms) if norms else torch.zeros(0)
        out[name] = {"zero_fraction": zeros / max(x.shape[0], 1),
                     "median_norm": float(nn_.median()) if nn_.numel() else None}
    return out


def run_attack(name: str, model, x, y, eps, *, generator=None, source=None, budget=None,
               reference=None, reference_pred=None) -> AttackResult:
    """Run attack ``name`` (one of :data:`ATTACKS`) with the settings in ``budget`` (a dict)."""
    b = dict(budget or {})
    if name == "paper":
        return paper_attack(model, x, y, eps, steps=b.get("paper_steps", 20),
                            alpha_rel=b.get("paper_alpha_rel", 0.25), generator=generator)
    if name == "apgd-ce":
        return apgd(model, x, y, eps, loss="ce", iters=b.get("apgd_iters", 50), generator=generator)
    if name == "apgd-dlr":
        return apgd_dlr_targeted(model, x, y, eps, n_targets=b.get("dlr_targets", 3),
                                 iters=b.get("apgd_iters", 50), generator=generator)
    if name == "square":
        return square_attack(model, x, y, eps, queries=b.get("square_queries", 500), generator=generator)
    if name == "noise":
        return noise_attack(model, x, y, eps, draws=b.get("noise_draws", 10), generator=generator)
    if name == "blend":
        return blend_attack(model, x, y, eps, reference=reference, reference_pred=reference_pred,
                            k=b.get("blend_k", 10))
    if name in ("bpda-st", "bpda-soft"):
        return bpda_attack(model, x, y, eps, mode="identity" if name == "bpda-st" else "soft",
                           tau_rel=b.get("bpda_tau_rel", 0.1), iters=b.get("bpda_iters", 50),
                           generator=generator)
    if name == "nes":
        return nes_attack(model, x, y, eps, steps=b.get("nes_steps", 20), pairs=b.get("nes_pairs", 25),
                          sigma=b.get("nes_sigma", 0.01), generator=generator)
    if name == "transfer":
        return transfer_attack(model, x, y, eps, source=source, iters=b.get("transfer_iters", 50),
                               generator=generator)
    raise MetaplasticError(f"unknown attack {name!r}; choose from {', '.join(ATTACKS)}")
