"""Theorems 1-4 (section 3.1 and appendix B): the output-rule theory.

* Theorem 1 (GD finds the sign pattern ``[-, +; +, -]`` from any start): the
  output rule learned on halfspace (|V|=100, k=50, T=1) from 10 random N(0, 1)
  tables (:func:`metaplastic.experiments.rule_learning.theorem1`, run here),
  with each learned table's full sign pattern and that of its identifiable
  part (the part the loss sees on a binary task); then again from starts ten
  times smaller, which tests why the full pattern misses.
* Theorem 2 (the output-rule problem is convex): measured where U is linear
  in the rule (updates on all examples to all rows) and where it is not
  (:func:`theorem2`).
* Theorem 3: on data in {-1, 1}^n strictly separable by a unit w* with
  ``sum(w*) = 0``, the rule ``[-a, a; b, -b]`` with ``b >= a > 0`` is claimed to
  converge, after fewer than ``2 b^2 n / (a^2 gamma^2)`` mistakes (the proof's last
  line).  We run :func:`metaplastic.theory.train_single_unit` with such rules
  epoch after epoch on random data sets, check every step of the proof on
  every update (:func:`metaplastic.theory.trace_ab_unit`), and give an exact
  counterexample: a 5-point data set on which the rule with a = 1, b = 3
  never stops making mistakes (proved by a periodicity certificate,
  :func:`metaplastic.theory.periodic_certificate`).
* Theorem 4: updates on mistakes and on examples within gamma of the
  threshold, non-separable data; mistakes against
  ``(b^2/a^2) (R^2 + D^2 + 2 gamma) / gamma^2`` with the paper's D^2 (a sum of
  hinge terms) and with Freund and Schapire's (a sum of squared hinge terms).

Theorem 2 lives in :mod:`.theorems_convexity`, Theorems 3 and 4 in
:mod:`.theorems_perceptron`, the figures and the report in :mod:`.theorems_report`
(Theorem 1 is :mod:`metaplastic.experiments.rule_learning`'s); this module holds the
configuration and :func:`run`, and re-exports the parts' public names.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .common import finish
# the section's parts (importable from here, as before the split)
from .theorems_convexity import theorem2
from .theorems_perceptron import (CE_A, CE_B, CE_WSTAR, CE_X, TOL, check_proof_steps, counterexample,
                                  margin_data, proof_constant, random_grid, run_single_unit, scale_check,
                                  setting_name, summarize_grid, theorem3_bound, theorem4_expression,
                                  theorem4_runs)
from .theorems_report import plot, report, theorem1_text

__all__ = ["CE_A", "CE_B", "CE_WSTAR", "CE_X", "TOL", "check_proof_steps", "config", "counterexample",
           "margin_data", "plot", "proof_constant", "random_grid", "report", "run", "run_single_unit",
           "scale_check", "setting_name", "summarize_grid", "theorem1_text", "theorem2", "theorem3_bound",
           "theorem4_expression", "theorem4_runs"]


def config(quick: bool) -> dict:
    cfg = dict(grids=[dict(n=10, m=200, gamma=0.2, datasets=12), dict(n=8, m=50, gamma=0.1, datasets=60)],
               shift=0.5, max_epochs=400, cross_check=True,
               ab=[(1.0, 1.0), (1.0, 1.25), (1.0, 1.5), (1.0, 2.0), (1.0, 3.0), (1.0, 5.0), (1.0, 10.0)],
               ce_epochs=400, t4_n=10, t4_m=400, t4_flips=[0.0, 0.05, 0.1, 0.2], t4_datasets=4,
               t4_gammas=[0.25, 0.5], t4_ab=[(1.0, 1.0), (1.0, 2.0), (1.0, 4.0)], seed=0,
               t2=dict(n=2000, V=100, pairs=60, hessians=20))
    if quick:
        cfg.update(grids=[dict(n=8, m=50, gamma=0.1, datasets=3)], max_epochs=30,
                   ab=[(1.0, 1.0), (1.0, 2.0), (1.0, 5.0)], ce_epochs=40, t4_m=100, t4_flips=[0.0, 0.1],
                   t4_datasets=1, t4_gammas=[0.5], t4_ab=[(1.0, 1.0), (1.0, 2.0)],
                   t2=dict(n=300, V=30, pairs=20, hessians=5))
    return cfg


def run(out: Path, quick: bool = False) -> dict:
    t0 = time.perf_counter()
    cfg = config(quick)
    rng = np.random.default_rng(cfg["seed"])
    ce = counterexample(cfg)
    grid = [r for st in cfg["grids"] for r in random_grid(cfg, st, True, rng)]
    grid_nonzero = [r for st in cfg["grids"] for r in random_grid(cfg, st, False, rng)]
    scale = scale_check(cfg, rng)
    t4 = theorem4_runs(cfg, rng)
    t2 = theorem2(cfg)
    from ..experiments.rule_learning import theorem1
    (out / "theorem1").mkdir(parents=True, exist_ok=True)
    t1 = theorem1(out / "theorem1", quick=quick)
    # the same from starts ten times smaller: tests the explanation of the misses (the start's common part)
    t1_small = theorem1(out / "theorem1", quick=quick, init_scale=0.1)
    results = {"config": cfg, "theorem1": t1, "theorem1_small_start": t1_small, "theorem2": t2,
               "counterexample": ce, "grid": grid, "grid_sum_nonzero": grid_nonzero,
               "scale_check": scale, "theorem4": t4, "summary": summarize_grid(grid, grid_nonzero, ce, t4),
               "seconds": time.perf_counter() - t0}
    rows = [dict(part="theorem3", **{k: v for k, v in r.items() if k != "proof_first_C_violation"})
            for r in grid + grid_nonzero] + [dict(part="theorem4", **r) for r in t4]
    return finish(out, "theorems", cfg, results, rows, plot, report)
