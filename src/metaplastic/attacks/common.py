"""What every attack shares: the attack families, the result, losses on logits, evaluation helpers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .projection import check_ball


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
