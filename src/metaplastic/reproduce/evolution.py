"""Appendix C ("Evolution can simulate (a variant of) GD"), run and checked.

Four parts, all seeded (see :mod:`metaplastic.evolution` for the model and
for what is wrong in the appendix's derivation):

1. **Derivation check.**  The exact one-step change of each recursion,
   divided by ``-theta dL/dx``, at small theta and eps: the effective GD
   factor each one implements, against the factors the appendix claims.
2. **Scaling.**  Trajectories of the selection recursion (S), the appendix's
   GD form (C.3) ``x' = x - theta (2 - 2x) dL/dx``, the selection GD form (S')
   ``x' = x - theta x (1 - x) dL/dx``, the first-order-in-theta recursion and
   plain GD on Y (lr ``theta n eps^2``: one common time scale
   ``tau = theta n eps^2 t``), over a theta x eps grid with the genetic range
   ``n eps`` fixed, to a fixed time ``tau``.  Two losses: a 1-D quadratic
   ``(Y - 1)^2`` and the halfspace output rule (4 entries), whose loss is the
   *frozen-record* meta-loss: the cross-entropy of networks (|V|=100, k=50,
   T=1, batch 100, 8 fixed task draws) whose update decisions are those the
   perceptron rule makes.  Given the decisions the trained weights are linear
   in the rule, so this loss is smooth (convex) in the 4 entries, and it
   *equals* the true meta-loss on every rule that makes the perceptron's
   decisions (any positive multiple of it, for one; checked in the results).
   The maximum over the trajectory of the frequency difference is fitted as
   ``C theta^a eps^b`` by log-log least squares.
3. **Wright-Fisher.**  Finite populations (N individuals, genotypes drawn from
   the allele frequencies) against the deterministic recursion with the same
   fitness ``exp(-theta L)``, 4 parameters at once.
4. **A rule learned by evolution.**  The halfspace output rule (T=1,
   |V|=100, k=50) evolved by Wright-Fisher (each individual's rule trains a
   network on the generation's task; fitness ``exp(-theta (meta-loss + 0.005
   ||Y||^2))``, the L2 term the gradient learners use), against the replay
   gradient and ES (:func:`metaplastic.metatrain.learn_rule`'s loop), by
   network trainings.

Parts 1-3 live in :mod:`.evolution_dynamics`, part 4 in :mod:`.evolution_rules`, the
figures and the report in :mod:`.evolution_report`; this module holds the
configuration and :func:`run`, and re-exports the parts' public names.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import evolution as ev
from ..data import load_dataset
from ..metatrain import MetaConfig, build_rules
from ..network import NetworkConfig
from ..rules import perceptron_table
from .common import finish
# the section's parts (importable from here, as before the split)
from .evolution_dynamics import FrozenRecordLoss, derivation_check, scaling_study, wright_fisher_study
from .evolution_report import ENTRY_NAMES, FORMS, PAPER, plot, report
from .evolution_rules import (RuleScorer, evolve_rule, learn_with_estimator, population_loss,
                              rule_comparison, rules_summary)

__all__ = ["ENTRY_NAMES", "FORMS", "PAPER", "FrozenRecordLoss", "RuleScorer", "config", "derivation_check",
           "evolve_rule", "learn_with_estimator", "plot", "population_loss", "report", "rule_comparison",
           "rules_summary", "run", "scaling_study", "wright_fisher_study"]

# ---------------------------------------------------------------------------
# configuration and run (figures and report: evolution_report)
# ---------------------------------------------------------------------------

def config(quick: bool) -> dict:
    cfg = {
        "quadratic": {"target": 1.0, "ybar0": [-1.2], "ymax": 2.0, "tau_end": 3.0,
                      "thetas": [0.16, 0.08, 0.04, 0.02], "epss": [0.2, 0.1, 0.05, 0.025]},
        "halfspace": {"tasks": 8, "ymax": 2.0, "tau_end": 4.0, "init_scale": 0.5,
                      "thetas": [0.64, 0.32, 0.16, 0.08], "epss": [0.2, 0.1, 0.05, 0.025]},
        "wright_fisher": {"sizes": [100, 1000, 10000], "generations": 150, "reps": 3,
                          "theta": 0.1, "eps": 0.1, "n": 20},
        "rules": {"seeds": [0, 1, 2], "n_train": 10000, "n_test": 10000, "eval_tasks": 20,
                  "final_networks": 3, "checkpoints": [100, 200, 400, 800, 1600, 3200, 4800],
                  "evolution": {"population": 32, "theta": 10.0, "genes": 20, "eps": 0.1,
                                "generations": 150, "mutation": 0.005, "l2": 0.005},
                  "replay_steps": 4800, "es_steps": 533, "es_population": 4, "es_sigma": 0.1,
                  "es_lr": 0.05},
    }
    if quick:
        cfg["quadratic"].update(tau_end=1.0, thetas=[0.16, 0.08], epss=[0.2, 0.1])
        cfg["halfspace"].update(tasks=2, tau_end=1.0, thetas=[0.64, 0.32], epss=[0.2, 0.1])
        cfg["wright_fisher"].update(sizes=[100, 1000], generations=20, reps=2)
        cfg["rules"].update(seeds=[0], n_train=1000, n_test=500, eval_tasks=2, final_networks=1,
                            checkpoints=[16, 32], replay_steps=8, es_steps=2,
                            evolution={**cfg["rules"]["evolution"], "population": 8, "generations": 4})
    return cfg


def run(out: Path, quick: bool = False) -> dict:
    t_start = time.perf_counter()
    cfg = config(quick)
    results = {"config": cfg, "quick": quick, "seconds_by_part": {}}

    t0 = time.perf_counter()
    results["derivation"] = derivation_check()
    results["seconds_by_part"]["derivation"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    q = cfg["quadratic"]
    results["quadratic"] = scaling_study(ev.quadratic_loss([q["target"]]), q["ybar0"], q["ymax"], q["tau_end"],
                                         q["thetas"], q["epss"])
    results["seconds_by_part"]["quadratic"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    h = cfg["halfspace"]
    mcfg = MetaConfig(dataset="halfspace", vertices=100, cap=50, rounds=1, n_train=2000, n_test=1000,
                      init_scale=1.0)  # a N(0,1) direction, scaled by h["init_scale"]
    data = load_dataset("halfspace", n_train=2000, n_test=1000, seed=0)
    netcfg = NetworkConfig(d=data.dim, n_classes=data.n_classes, vertices=100, cap=50, rounds=1)
    surrogate = FrozenRecordLoss(mcfg, data, netcfg, tasks=h["tasks"])
    init = h["init_scale"] * build_rules(mcfg, torch.float64).output.values.detach().flatten()
    hs = scaling_study(surrogate, init, h["ymax"], h["tau_end"], h["thetas"], h["epss"])
    p = perceptron_table(1).double().flatten()
    hs["surrogate_check"] = [
        {"rule": name, "surrogate": float(surrogate(r)), "true_meta_loss": surrogate.true_loss(r)}
        for name, r in (("perceptron", p), ("2 x perceptron", 2 * p), ("0.5 x perceptron", 0.5 * p),
                        ("initial table", init), ("(S) end", torch.tensor(hs["cells"][-1]["ybar_end"])))]
    results["halfspace"] = hs
    results["seconds_by_part"]["halfspace"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    w = cfg["wright_fisher"]
    results["wright_fisher"] = wright_fisher_study(w["sizes"], w["generations"], w["reps"], w["theta"],
                                                   w["eps"], w["n"])
    results["seconds_by_part"]["wright_fisher"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    results["rules"] = rule_comparison(cfg["rules"])
    results["rules"]["summary"] = rules_summary(results["rules"])
    results["seconds_by_part"]["rules"] = time.perf_counter() - t0

    results["seconds"] = time.perf_counter() - t_start
    rows = []
    for study in ("quadratic", "halfspace"):
        for cell in results[study]["cells"]:
            rows.append({"study": study, **{k: v for k, v in cell.items() if k != "ybar_end"}})
    return finish(out, "evolution", cfg, results, rows, plot, report)
