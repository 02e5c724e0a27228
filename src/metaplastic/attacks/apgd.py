"""APGD (Croce & Hein 2020), L2: untargeted CE, targeted DLR, margin."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import MetaplasticError
from .common import (AttackResult, _chunks, _finish, _loss_grad, _random_sphere, _unit, dlr_targeted, logits_of,
                     margin)
from .projection import _eps_vector, check_ball, project_l2_box


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
