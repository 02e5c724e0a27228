"""The attack protocol's configuration: the attack order, :class:`Protocol` (budgets) and the
Wilson interval of its rates (paper section 4; the package docstring describes the protocol)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

#: The attacks in the order they run at each eps.
ORDER = ("paper", "apgd-dlr", "apgd-ce", "noise", "blend", "square", "bpda-st", "bpda-soft",
         "transfer", "nes")


@dataclass
class Protocol:
    """Attack budgets and the evaluation protocol (the :mod:`metaplastic.robustness` docstring)."""

    eps: tuple = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 10.0)
    attacks: tuple = ORDER
    paper_steps: int = 20
    paper_alpha_rel: float = 0.25
    apgd_iters: int = 50
    dlr_targets: int = 3
    square_queries: int = 500
    noise_draws: int = 10
    blend_k: int = 10
    bpda_iters: int = 50
    bpda_tau_rel: float = 0.1
    transfer_iters: int = 50
    nes_images: int = 100
    nes_steps: int = 20
    nes_pairs: int = 25
    nes_sigma: float = 0.01
    per_attack_images: int = 100
    scale_factors: tuple = (0.01, 100.0)
    scale_images: int = 100
    scale_tolerance: float = 0.05
    large_eps_max: float = 0.02

    def budget(self) -> dict:
        return {k: v for k, v in asdict(self).items()
                if k.split("_")[0] in ("paper", "apgd", "dlr", "square", "noise", "blend", "bpda",
                                       "transfer", "nes")}


EPS0_BUDGET = dict(paper_steps=2, apgd_iters=3, dlr_targets=1, square_queries=3, noise_draws=2, blend_k=2,
                   bpda_iters=3, transfer_iters=2, nes_steps=1, nes_pairs=2)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for k successes out of n."""
    if n <= 0:
        return (float("nan"), float("nan"))
    ph = k / n
    den = 1 + z * z / n
    mid = (ph + z * z / (2 * n)) / den
    half = z * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))
