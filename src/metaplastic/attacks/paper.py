"""The paper's attack (section 4, A.3): targeted multi-step raw-gradient L2 attack on all other labels."""

from __future__ import annotations


import torch
import torch.nn.functional as F

from .common import AttackResult, _chunks, _finish, _loss_grad, logits_of, predict
from .projection import _eps_vector, project_l2_box


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
