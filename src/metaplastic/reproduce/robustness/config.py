"""The section's defaults (about 40 minutes on a 2-core CPU), its quick version, and the paper's figures."""

from __future__ import annotations

from dataclasses import fields


from ... import robustness as rb


PAPER = {"plastic-T3": (0.60, 0.36), "plastic-T1star": (0.12, 0.00), "plastic-T1": (0.00, 0.00)}

DEFAULTS = dict(
    n_images=1000, seeds=[0], n_train=10000, vertices=1000, cap=500, epochs=2,
    models=list(rb.MODELS), graph_rule="auto", threads=None,
    gd_lr=1e-2,  # the GD models' Adam step: the paper's Fig. 2 setting (experiments/gd_cap.py tries smaller ones)
    # attack budgets (Protocol fields)
    eps=[0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 10.0],
    paper_steps=20, paper_alpha_rel=0.25, apgd_iters=50, dlr_targets=3, square_queries=300,
    noise_draws=10, blend_k=10, bpda_iters=50, transfer_iters=50, nes_images=50, nes_steps=20,
    nes_pairs=20, per_attack_images=100, scale_factors=[0.01, 100.0], scale_images=100, fig_images=8,
)

QUICK = dict(n_images=30, seeds=[0], n_train=500, vertices=40, cap=20, epochs=1,
             eps=[1.0, 2.0, 4.0, 10.0], paper_steps=3, apgd_iters=4, square_queries=10, noise_draws=2,
             blend_k=3, bpda_iters=3, transfer_iters=3, nes_images=4, nes_steps=2, nes_pairs=3,
             per_attack_images=6, scale_images=6, fig_images=4)


def _protocol(cfg: dict) -> rb.Protocol:
    names = {f.name for f in fields(rb.Protocol)}
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if k in names}
    return rb.Protocol(**kw)
