"""One entry point for every attack by name (with its budget), and the zero-gradient diagnostic."""

from __future__ import annotations


import torch
import torch.nn.functional as F

from ..errors import MetaplasticError
from .adaptive import bpda_attack, transfer_attack
from .apgd import apgd, apgd_dlr_targeted
from .common import ATTACKS, AttackResult, _chunks, _loss_grad, margin
from .gradient_free import blend_attack, nes_attack, noise_attack, square_attack
from .paper import paper_attack


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
