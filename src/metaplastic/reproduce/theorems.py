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
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from ..theory import ab_rule, trace_ab_unit, train_single_unit
from .common import finish, md_table, pyplot, save_fig

# An exact counterexample to Theorem 3 (found by a search over small cases):
# n = 5, w* = (3, -4, 2, 0, -1)/sqrt(30) (sum 0, unit), margin 2/sqrt(30).
CE_WSTAR = [3.0, -4.0, 2.0, 0.0, -1.0]
CE_X = [[-1, -1, -1, -1, 1],
        [-1, 1, 1, 1, -1],
        [1, -1, 1, 1, -1],
        [1, 1, -1, -1, -1],
        [1, 1, -1, 1, 1]]
CE_A, CE_B = 1.0, 3.0
TOL = 1e-9


def theorem3_bound(a: float, b: float, n: int, gamma: float) -> float:
    """The proof's last line: ``t < 2 b^2 n / (a^2 gamma^2)``."""
    return 2 * b * b * n / (a * a * gamma * gamma)


def proof_constant(a: float, b: float, n: int) -> float:
    """The proof's claimed per-step bound on the growth of ||w||^2: ``b^2 n + 2 (b - a) sqrt(n)``."""
    return b * b * n + 2 * (b - a) * math.sqrt(n)


def theorem4_expression(a: float, b: float, R2: float, D2: float, gamma: float) -> float:
    """Theorem 4's ``(b^2 / a^2) (R^2 + D^2 + 2 gamma) / gamma^2`` (its O() without a constant)."""
    return (b * b) / (a * a) * (R2 + D2 + 2 * gamma) / (gamma * gamma)


def margin_data(n: int, m: int, gamma: float, rng: np.random.Generator, sum_zero: bool = True,
                shift: float = 0.0):
    """A unit w* (``sum(w*) = 0`` if asked, else a Gaussian plus ``shift`` in every
    coordinate) and m points of {-1,1}^n drawn uniformly, kept when ``|w*.x| >= gamma``."""
    w = rng.standard_normal(n)
    if sum_zero:
        w -= w.mean()
    else:
        w = w / np.linalg.norm(w) + shift
    w /= np.linalg.norm(w)
    xs = []
    while sum(len(x) for x in xs) < m:
        X = rng.choice([-1.0, 1.0], size=(4 * m, n))
        xs.append(X[np.abs(X @ w) >= gamma])
    X = np.concatenate(xs)[:m]
    return w, X, np.sign(X @ w)


def check_proof_steps(steps: list, a: float, b: float, n: int, gamma: float) -> dict:
    """Check each step of the proof of Theorem 3 on the recorded updates.

    (1) ``sum_{x_i = 1} w*_i >= gamma/2`` for a positive example (and
    ``sum_{x_i = 1} w*_i <= -gamma/2`` for a negative one, what the mirrored
    argument needs); (2) ``w*.w`` grows by
    at least ``a gamma``; (3) ``||w||^2`` grows by at most
    ``b^2 n + 2 (b - a) sum_{x_i=1} w_i`` (mirrored for a negative example);
    (4) ... by at most ``C = b^2 n + 2 (b - a) sqrt(n)``.  Returns violation
    counts, the largest ratio of growth to C, and the first violation of (4).
    """
    C = proof_constant(a, b, n)
    out = {"updates": len(steps), "half_margin_violations": 0, "numerator_violations": 0,
           "norm_step_violations": 0, "C_violations": 0, "max_growth_over_C": 0.0, "first_C_violation": None}
    for k, s in enumerate(steps):
        y = s["label"]
        half = s["wstar_on"] if y > 0 else -s["wstar_on"]
        if half < gamma / 2 - TOL:
            out["half_margin_violations"] += 1
        if s["wstar_dot_w_after"] - s["wstar_dot_w"] < a * gamma - TOL:
            out["numerator_violations"] += 1
        growth = s["w_norm2_after"] - s["w_norm2"]
        mid = b * b * n + 2 * (b - a) * s["sum_w_on"] * (1 if y > 0 else -1)
        if growth > mid + TOL * max(1.0, abs(mid)):
            out["norm_step_violations"] += 1
        out["max_growth_over_C"] = max(out["max_growth_over_C"], growth / C)
        if growth > C + TOL * C:
            out["C_violations"] += 1
            if out["first_C_violation"] is None:
                out["first_C_violation"] = {"update": k + 1, "epoch": s["epoch"], "example": s["index"],
                                            "label": y, "norm2_before": s["w_norm2"],
                                            "norm2_after": s["w_norm2_after"], "growth": growth, "C": C,
                                            "sum_w_on": s["sum_w_on"]}
    return out


def run_single_unit(rule, X: np.ndarray, y: np.ndarray, epochs: int) -> tuple[int, np.ndarray, list[int]]:
    """:func:`train_single_unit`, epoch after epoch (w carried over): mistakes, final w, mistakes per epoch."""
    Xt = torch.tensor(X, dtype=torch.float64)
    yt = torch.tensor((y > 0).astype(np.int64))
    w = torch.zeros(X.shape[1], dtype=torch.float64)
    per_epoch = []
    for _ in range(epochs):
        w, _, mis = train_single_unit(rule, Xt, yt, w0=w, epochs=1)
        per_epoch.append(mis)
    return sum(per_epoch), w.numpy(), per_epoch


# ---------------------------------------------------------------------------
# parts of the section
# ---------------------------------------------------------------------------

def counterexample(cfg: dict) -> dict:
    """The exact counterexample: certificate, train_single_unit over many epochs, proof steps, Theorem 4."""
    X = np.array(CE_X, dtype=np.float64)
    wstar = np.array(CE_WSTAR) / np.linalg.norm(CE_WSTAR)
    y = np.sign(X @ wstar)
    n = X.shape[1]
    gamma = float(np.min(np.abs(X @ wstar)))
    a, b = CE_A, CE_B
    E = cfg["ce_epochs"]
    res = {"X": CE_X, "wstar_unnormalized": CE_WSTAR, "wstar": wstar.tolist(), "labels": y.astype(int).tolist(),
           "a": a, "b": b, "n": n, "gamma": gamma, "sum_wstar": float(wstar.sum()),
           "margins": (y * (X @ wstar)).tolist(), "bound": theorem3_bound(a, b, n, gamma),
           "C": proof_constant(a, b, n)}
    certs = {}
    for name, tie_pos in (("sign(0) = -1 (ours, as the perceptron)", False), ("sign(0) = +1", True)):
        tr = trace_ab_unit(a, b, X, y, epochs=50, tie_positive=tie_pos, certify=True)
        certs[name] = {"certificate": tr["certificate"], "epochs_until_certified": tr["epochs"],
                       "mistakes_until_certified": tr["mistakes"],
                       "patterns": [[j for j, _ in p] for p in tr["patterns"]]}
    res["certificates"] = certs
    # train_single_unit (the rule code) for E epochs, and the instrumented trace for the same epochs
    rule = ab_rule(a, b)
    total, w_rule, per_epoch = run_single_unit(rule, X, y, E)
    tr = trace_ab_unit(a, b, X, y, epochs=E, certify=False, record_steps=True, wstar=wstar)
    res["train_single_unit"] = {"epochs": E, "mistakes": total, "mistakes_per_epoch": per_epoch,
                                "cumulative": np.cumsum(per_epoch).tolist(), "w": w_rule.tolist(),
                                "trace_agrees": bool(tr["mistakes"] == total and np.array_equal(tr["w"], w_rule))}
    over = [e + 1 for e, c in enumerate(np.cumsum(per_epoch)) if c >= res["bound"]]
    res["epoch_mistakes_exceed_bound"] = over[0] if over else None
    res["proof_steps"] = check_proof_steps(tr["steps"], a, b, n, gamma)
    # Theorem 4 on the same data (D = 0: separable with margin gamma), updates also within gamma
    R2 = float(np.max((X * X).sum(1)))
    expr = theorem4_expression(a, b, R2, 0.0, gamma)
    t4 = {}
    for label, normalized in (("y w.x <= gamma ||w||", True), ("|w.x| < gamma", False)):
        tr4 = trace_ab_unit(a, b, X, y, epochs=E, margin=gamma, normalized=normalized, certify=False)
        cum = np.cumsum(tr4["epoch_mistakes"]).tolist()
        t4[label] = {"mistakes": tr4["mistakes"], "updates": tr4["updates"], "cumulative": cum,
                     "mistakes_last_half": int(cum[-1] - cum[len(cum) // 2 - 1]) if len(cum) > 1 else cum[-1]}
    res["theorem4"] = {"R2": R2, "D2": 0.0, "expression": expr, "runs": t4}
    return res


def random_grid(cfg: dict, setting: dict, sum_zero: bool, rng: np.random.Generator) -> list[dict]:
    """The rule over a grid of (a, b) on random margin data; train_single_unit cross-checks each run."""
    rows = []
    n, m, g0 = setting["n"], setting["m"], setting["gamma"]
    data = [margin_data(n, m, g0, rng, sum_zero=sum_zero, shift=cfg["shift"]) for _ in range(setting["datasets"])]
    for a, b in cfg["ab"]:
        rule = ab_rule(a, b)
        for k, (wstar, X, y) in enumerate(data):
            gamma = float(np.min(np.abs(X @ wstar)))
            tr = trace_ab_unit(a, b, X, y, epochs=cfg["max_epochs"], certify=True,
                               record_steps=True, wstar=wstar)
            status = "converged" if tr["converged"] else ("never (certified)" if tr["certificate"] else "undecided")
            row = {"setting": setting_name(setting), "sum_zero": sum_zero, "a": a, "b": b, "dataset": k, "n": n,
                   "m": m, "gamma_min": g0, "gamma": gamma,
                   "sum_wstar": float(wstar.sum()), "status": status, "mistakes": tr["mistakes"],
                   "epochs": tr["epochs"], "bound": theorem3_bound(a, b, n, gamma),
                   "certificate_period": tr["certificate"]["period_epochs"] if tr["certificate"] else None,
                   "certificate_drift_zero": bool(tr["certificate"]) and not any(tr["certificate"]["drift"])}
            # a run that provably never converges exceeds any bound; an undecided one is not counted
            row["exceeds_bound"] = tr["mistakes"] >= row["bound"] or status == "never (certified)"
            if cfg["cross_check"]:
                total, w_rule, _ = run_single_unit(rule, X, y, tr["epochs"])
                row["train_single_unit_mistakes"] = total
                row["train_single_unit_agrees"] = bool(total == tr["mistakes"] and np.array_equal(w_rule, tr["w"]))
            chk = check_proof_steps(tr["steps"], a, b, n, gamma)
            row.update({f"proof_{key}": v for key, v in chk.items() if key != "first_C_violation"})
            row["proof_first_C_violation"] = chk["first_C_violation"]
            rows.append(row)
    return rows


def setting_name(setting: dict) -> str:
    return f"n={setting['n']}, m={setting['m']}, |w*.x|>={setting['gamma']:g}"


def scale_check(cfg: dict, rng: np.random.Generator) -> dict:
    """(a, b) and (s a, s b) make the same mistakes; the proof's C is not scale-free.

    The scales are powers of two, so w scales exactly and ties ``w.x = 0`` stay ties.
    """
    st = cfg["grids"][0]
    wstar, X, y = margin_data(st["n"], st["m"], st["gamma"], rng)
    out = {}
    for s in (1.0, 1 / 4, 1 / 16, 1 / 64):
        tr = trace_ab_unit(s * 1.0, s * 2.0, X, y, epochs=cfg["max_epochs"], certify=False)
        out[str(s)] = {"a": s, "b": 2 * s, "mistakes": tr["mistakes"], "epochs": tr["epochs"],
                       "converged": tr["converged"],
                       "C": proof_constant(s, 2 * s, st["n"]), "2 b^2 n": 2 * (2 * s) ** 2 * st["n"]}
    return out


def theorem4_runs(cfg: dict, rng: np.random.Generator) -> list[dict]:
    """Noisy +-1 data, one pass with updates on mistakes and within gamma; mistakes vs the expression."""
    rows = []
    n, m = cfg["t4_n"], cfg["t4_m"]
    for flip in cfg["t4_flips"]:
        for k in range(cfg["t4_datasets"]):
            w = rng.standard_normal(n)
            w -= w.mean()
            w /= np.linalg.norm(w)
            X = rng.choice([-1.0, 1.0], size=(m, n))
            y = np.sign(X @ w)
            y[y == 0] = 1
            y = np.where(rng.random(m) < flip, -y, y)
            R2 = float(np.max((X * X).sum(1)))
            for gamma in cfg["t4_gammas"]:
                hinge = np.maximum(0.0, gamma - y * (X @ w))
                D_paper, D_sq = float(hinge.sum()), float((hinge ** 2).sum())
                for a, b in cfg["t4_ab"]:
                    tr = trace_ab_unit(a, b, X, y, epochs=1, margin=gamma, normalized=True,
                                       stop_when_clean=False, certify=False)
                    e_paper = theorem4_expression(a, b, R2, D_paper, gamma)
                    e_sq = theorem4_expression(a, b, R2, D_sq, gamma)
                    rows.append({"flip": flip, "dataset": k, "gamma": gamma, "a": a, "b": b, "m": m, "n": n,
                                 "R2": R2, "D2_paper": D_paper, "D2_squared": D_sq, "mistakes": tr["mistakes"],
                                 "updates": tr["updates"], "expr_paper": e_paper, "expr_squared": e_sq,
                                 "ratio_paper": tr["mistakes"] / e_paper, "ratio_squared": tr["mistakes"] / e_sq,
                                 "freund_schapire": ((math.sqrt(R2) + math.sqrt(D_sq)) / gamma) ** 2})
    return rows


def theorem2(cfg: dict) -> dict:
    """Theorem 2 (convexity of the output-rule problem), measured.

    The claim holds where the trained U is linear in the rule: updates on all
    examples to all rows (appendix B), where ``logits = Phi r`` and the
    cross-entropy of an affine map is convex.  Where updates depend on the
    network's own decisions (on mistakes only; or the predicted row) the map
    rule -> U is piecewise linear with rule-dependent pieces and need not be
    convex.  Measured on halfspace, T = 1 (|V|, k below), float64: (1) the
    Hessian of the CE in the 4 rule entries at random rules (closed form), and
    (2) the midpoint test ``L((r1 + r2)/2) <= (L(r1) + L(r2))/2`` on random
    pairs, with the networks actually trained by each scheme (train_rules, one
    pass, eta = 1; an ensemble of copies of one network, one rule each).
    """
    from ..data import load_dataset
    from ..learner import Scheme, Tables, data_orders, train_rules
    from ..network import NetworkConfig, first_round, init_networks, project
    from ..theory import class_sums, closed_form_features
    c2 = cfg["t2"]
    data = load_dataset("halfspace", n_train=c2["n"], n_test=10, seed=0)
    x, y = data.x_train.double(), data.y_train
    netcfg = NetworkConfig(d=data.dim, n_classes=2, vertices=c2["V"], cap=c2["V"] // 2, rounds=1)
    g = torch.Generator().manual_seed(cfg["seed"])
    pairs = torch.randn(c2["pairs"], 2, 2, 2, generator=g, dtype=torch.float64)   # [P, 2 rules, 2, 2]
    mids = pairs.mean(1, keepdim=True)
    rules = torch.cat([pairs, mids], 1).reshape(-1, 2, 2)                      # [3P, 2, 2]
    B = rules.shape[0]
    nets = init_networks(netcfg, [cfg["seed"]] * B, dtype=torch.float64)
    H = first_round(project(x, nets.A[:1]), netcfg.k)[0]                        # [n, V]
    eta = 1.0 / x.shape[0]
    Phi = closed_form_features(H, class_sums(H, y, 2), eta)                     # [n, 2, 4]

    def ce_closed(r):
        return torch.nn.functional.cross_entropy(Phi @ r, y)
    eigs = [torch.linalg.eigvalsh(torch.autograd.functional.hessian(ce_closed, r.reshape(4)))
            for r in rules[:c2["hessians"]]]
    eig = [float(e.min() / e.max().clamp_min(1e-300)) for e in eigs]  # smallest / largest
    order = data_orders(x.shape[0], 1, [cfg["seed"]]).expand(B, -1).contiguous()
    schemes = {"all examples, all rows (appendix B)": Scheme("all", "all"),
               "all examples, true and predicted rows": Scheme("all", "true-and-predicted"),
               "mistakes only, true and predicted rows (default)": Scheme("misclassified", "true-and-predicted")}
    out = {"n": x.shape[0], "vertices": c2["V"], "pairs": c2["pairs"],
           "hessian_min_over_max_eigenvalue": eig, "schemes": {}}
    for name, scheme in schemes.items():
        trained = nets.clone()
        train_rules(trained, x, y, Tables(output=rules, output_eta=eta), order, scheme)
        logits = H @ trained.U                                                 # [3P, n, 2]
        L = torch.stack([torch.nn.functional.cross_entropy(lg, y) for lg in logits]).reshape(-1, 3)
        gap = L[:, 2] - (L[:, 0] + L[:, 1]) / 2        # > 0: the midpoint lies above the chord
        tol = 1e-9 * L.abs().max()
        k = int(gap.argmax())
        out["schemes"][name] = {"violations": int((gap > tol).sum()), "max_gap": float(gap.max()),
                                "worst_pair": {"r1": pairs[k, 0].tolist(), "r2": pairs[k, 1].tolist(),
                                               "L1": float(L[k, 0]), "L2": float(L[k, 1]),
                                               "L_mid": float(L[k, 2])}}
    lin = out["schemes"]["all examples, all rows (appendix B)"]
    out["holds_where_linear"] = lin["violations"] == 0 and min(eig) > -1e-9
    return out


def run(out: Path, quick: bool = False) -> dict:
    t0 = time.perf_counter()
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


def summarize_grid(grid: list, grid_nonzero: list, ce: dict, t4: list) -> dict:
    conv = [r for r in grid if r["status"] == "converged"]
    s = {
        "runs": len(grid),
        "converged": len(conv),
        "never_certified": sum(r["status"] == "never (certified)" for r in grid),
        "undecided": sum(r["status"] == "undecided" for r in grid),
        "converged_over_bound": sum(r["mistakes"] >= r["bound"] for r in conv),
        "max_ratio_converged": max((r["mistakes"] / r["bound"] for r in conv), default=None),
        "half_margin_violations": sum(r.get("proof_half_margin_violations", 0) for r in grid),
        "numerator_violations": sum(r.get("proof_numerator_violations", 0) for r in grid),
        "norm_step_violations": sum(r.get("proof_norm_step_violations", 0) for r in grid),
        "C_violations": sum(r.get("proof_C_violations", 0) for r in grid),
        "runs_with_C_violation": sum(r.get("proof_C_violations", 0) > 0 for r in grid),
        "train_single_unit_agrees": all(r.get("train_single_unit_agrees", True) for r in grid + grid_nonzero),
        "nonzero_runs": len(grid_nonzero),
        "nonzero_converged": sum(r["status"] == "converged" for r in grid_nonzero),
        "nonzero_never": sum(r["status"] == "never (certified)" for r in grid_nonzero),
        "nonzero_undecided": sum(r["status"] == "undecided" for r in grid_nonzero),
        "nonzero_exact_cycles": sum(r["status"] == "never (certified)" and r.get("certificate_drift_zero", False)
                                    for r in grid_nonzero),
        "nonzero_updates": sum(r.get("proof_updates", 0) for r in grid_nonzero),
        "nonzero_half_margin_violations": sum(r.get("proof_half_margin_violations", 0) for r in grid_nonzero),
        "nonzero_numerator_violations": sum(r.get("proof_numerator_violations", 0) for r in grid_nonzero),
        "counterexample_certified": all(c["certificate"] is not None for c in ce["certificates"].values()),
        "counterexample_C_violations": ce["proof_steps"]["C_violations"],
        "theorem4_max_ratio_paper": max((r["ratio_paper"] for r in t4), default=None),
        "theorem4_max_ratio_squared": max((r["ratio_squared"] for r in t4), default=None),
    }
    s["theorem3_bound_fails"] = s["counterexample_certified"] or s["never_certified"] > 0 or \
        s["converged_over_bound"] > 0
    return s


# ---------------------------------------------------------------------------
# figures and report
# ---------------------------------------------------------------------------

def plot(results: dict, out: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    grid = results["grid"]
    ratios = sorted({r["b"] / r["a"] for r in grid})
    cmap = plt.get_cmap("viridis")
    colors = {q: cmap(i / max(1, len(ratios) - 1)) for i, q in enumerate(ratios)}
    ax = axes[0]
    conv = [r for r in grid if r["status"] == "converged"]
    top = max([r["bound"] for r in grid] + [1.0]) * 3
    for q in ratios:
        rs = [r for r in conv if r["b"] / r["a"] == q]
        if rs:
            ax.scatter([r["bound"] for r in rs], [max(r["mistakes"], 0.8) for r in rs], s=16, color=colors[q],
                       label=f"b/a = {q:g}")
        ns = [r for r in grid if r["b"] / r["a"] == q and r["status"] != "converged"]
        if ns:
            ax.scatter([r["bound"] for r in ns], [top] * len(ns), marker="^", s=40, color=colors[q],
                       edgecolor="red")
    lo = min([r["bound"] for r in grid] + [1.0])
    ax.plot([lo, top], [lo, top], "k--", lw=1, label="mistakes = bound")
    ax.axhline(top, color="red", lw=0.6, ls=":")
    ax.text(lo, top * 1.1, "never converges (red-edged triangles)", fontsize=7, color="red", va="bottom")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("bound 2 b^2 n / (a^2 gamma^2)")
    ax.set_ylabel("mistakes until an epoch without mistakes")
    ax.set_title("Theorem 3 on random data, sum(w*) = 0")
    ax.legend(fontsize=7, loc="center right")
    ax.grid(alpha=0.3)

    ax = axes[1]
    ce = results["counterexample"]
    cum = ce["train_single_unit"]["cumulative"]
    ax.plot(range(1, len(cum) + 1), cum, label="mistakes, rule [-1, 1; 3, -3] (train_single_unit)")
    for label, r in ce["theorem4"]["runs"].items():
        ax.plot(range(1, len(r["cumulative"]) + 1), r["cumulative"], ls="--", label=f"Theorem 4 updates: {label}")
    ax.axhline(ce["bound"], color="k", lw=1, label=f"Theorem 3 bound {ce['bound']:.0f}")
    ax.axhline(ce["theorem4"]["expression"], color="gray", lw=1, ls=":",
               label=f"Theorem 4 expression {ce['theorem4']['expression']:.0f} (D = 0)")
    ax.set_xlabel("epoch over the 5 points")
    ax.set_ylabel("cumulative mistakes")
    ax.set_title("Counterexample (n = 5, sum(w*) = 0): no convergence")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)

    ax = axes[2]
    xs, ys = [], []
    for r in grid:
        if "proof_max_growth_over_C" in r and r["proof_updates"]:
            xs.append(r["b"] / r["a"])
            ys.append(r["proof_max_growth_over_C"])
    ax.scatter(xs, ys, s=14, alpha=0.7)
    ax.axhline(1.0, color="red", lw=1, label="claimed: growth <= C")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("b / a")
    ax.set_ylabel("max per-step growth of ||w||^2 / C")
    ax.set_title("Proof step: C = b^2 n + 2(b-a) sqrt(n)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_fig(fig, out / "theorem3.png")

    t4 = results["theorem4"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, key, title in ((axes[0], "expr_paper", "paper: D^2 = sum max(0, gamma - y w*.x)"),
                           (axes[1], "expr_squared", "Freund-Schapire: D^2 = sum max(0, ...)^2")):
        for flip in sorted({r["flip"] for r in t4}):
            rs = [r for r in t4 if r["flip"] == flip]
            ax.scatter([r[key] for r in rs], [max(r["mistakes"], 0.8) for r in rs], s=16, label=f"label noise {flip:g}")
        # the Theorem 3 counterexample cycled K times: D = 0, so the expression stays put
        ce4 = results["counterexample"]["theorem4"]
        cum = next(iter(ce4["runs"].values()))["cumulative"]
        ks = sorted({max(1, len(cum) * q // 4) for q in (1, 2, 3, 4)})
        ax.scatter([ce4["expression"]] * len(ks), [cum[k - 1] for k in ks], marker="x", color="red", s=30,
                   label=f"counterexample cycled {', '.join(map(str, ks))} times")
        vals = [r[key] for r in t4] + [max(r["mistakes"], 1) for r in t4] + [cum[k - 1] for k in ks]
        lo, hi = min(vals), max(vals)
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="mistakes = expression")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("(b^2/a^2)(R^2 + D^2 + 2 gamma)/gamma^2")
        ax.set_ylabel("mistakes in one pass (red: in K passes)")
        ax.set_title(f"Theorem 4, {title}", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    save_fig(fig, out / "theorem4.png")


def _fmt_cert(c: dict | None) -> str:
    if not c:
        return "none"
    if not any(c["drift"]):
        return (f"an exact cycle: w repeats every {c['period_epochs']} epoch(s) from epoch {c['start_epoch'] + 1}, "
                f"{c['mistakes_per_period']} mistakes per cycle")
    return (f"period {c['period_epochs']} epoch(s) from epoch {c['start_epoch'] + 1}, drift D = "
            f"{[int(v) if float(v).is_integer() else v for v in c['drift']]}, "
            f"{c['mistakes_per_period']} mistakes per period")


def report(results: dict) -> str:
    cfg = results["config"]
    s = results["summary"]
    ce = results["counterexample"]
    grid = results["grid"]
    # Theorem 3 grid table
    rows = []
    for st, a, b in [(setting_name(st), a, b) for st in cfg["grids"] for a, b in cfg["ab"]]:
        rs = [r for r in grid if r["a"] == a and r["b"] == b and r["setting"] == st]
        conv = [r for r in rs if r["status"] == "converged"]
        rows.append([st, f"[-{a:g}, {a:g}; {b:g}, -{b:g}]", len(rs), len(conv),
                     sum(r["status"] == "never (certified)" for r in rs), sum(r["status"] == "undecided" for r in rs),
                     max((r["mistakes"] for r in conv), default="-"),
                     f"{min(r['bound'] for r in rs):.0f}",
                     f"{max((r['mistakes'] / r['bound'] for r in conv), default=float('nan')):.3f}",
                     sum(r["exceeds_bound"] for r in rs),
                     f"{max(r.get('proof_max_growth_over_C', 0) for r in rs):.2f}"])
    nz_rows = []
    for st, a, b in [(setting_name(st), a, b) for st in cfg["grids"] for a, b in cfg["ab"]]:
        rs = [r for r in results["grid_sum_nonzero"] if r["a"] == a and r["b"] == b and r["setting"] == st]
        conv = [r for r in rs if r["status"] == "converged"]
        nz_rows.append([st, f"[-{a:g}, {a:g}; {b:g}, -{b:g}]", len(rs), len(conv),
                        sum(r["status"] == "never (certified)" for r in rs),
                        sum(r["status"] == "undecided" for r in rs),
                        max((r["mistakes"] for r in conv), default="-")])
    nonzero = results["grid_sum_nonzero"]
    mean_sum = float(np.mean([r["sum_wstar"] for r in nonzero])) if nonzero else 0.0
    # proof steps on the counterexample
    ps = ce["proof_steps"]
    fv = ps["first_C_violation"]
    fv_text = ("none within the run" if fv is None else
               f"update {fv['update']} (epoch {fv['epoch'] + 1}, example {fv['example'] + 1}, label {fv['label']:+d}): "
               f"||w||^2 goes from {fv['norm2_before']:.0f} to {fv['norm2_after']:.0f}, a growth of "
               f"{fv['growth']:.0f} > C = {fv['C']:.1f} (sum of w_i over x_i = 1 is {fv['sum_w_on']:.0f})")
    tsu = ce["train_single_unit"]
    cert_lines = "\n".join(f"  * {k}: {_fmt_cert(v['certificate'])}" for k, v in ce["certificates"].items())
    t4c = ce["theorem4"]
    t4c_lines = "\n".join(f"  * update when {k}: {v['mistakes']} mistakes in {tsu['epochs']} epochs "
                          f"({v['mistakes_last_half']} in the last half)" for k, v in t4c["runs"].items())
    sc = results["scale_check"]
    sc_text = "; ".join(f"(a, b) = ({v['a']:g}, {v['b']:g}): {v['mistakes']} mistakes, C = {v['C']:.3g} vs "
                        f"2 b^2 n = {v['2 b^2 n']:.3g}" for v in sc.values())
    # Theorem 4 table
    t4 = results["theorem4"]
    t4_rows = []
    for flip in cfg["t4_flips"]:
        for gamma in cfg["t4_gammas"]:
            for a, b in cfg["t4_ab"]:
                rs = [r for r in t4 if r["flip"] == flip and r["gamma"] == gamma and r["a"] == a and r["b"] == b]
                if not rs:
                    continue
                t4_rows.append([f"{flip:g}", f"{gamma:g}", f"[-{a:g}, {a:g}; {b:g}, -{b:g}]",
                                f"{np.mean([r['mistakes'] for r in rs]):.1f}",
                                f"{np.mean([r['D2_paper'] for r in rs]):.1f}",
                                f"{np.mean([r['D2_squared'] for r in rs]):.1f}",
                                f"{max(r['ratio_paper'] for r in rs):.3f}",
                                f"{max(r['ratio_squared'] for r in rs):.3f}",
                                f"{np.mean([r['freund_schapire'] for r in rs]):.0f}"])
    t2 = results.get("theorem2")
    t2_text = ""
    if t2:
        t2_rows = [[k, f"{v['violations']} of {t2['pairs']}", f"{v['max_gap']:.3g}"] for k, v in t2["schemes"].items()]
        t2_text = (
            "### Theorem 2\n\n"
            "'Finding the output rule that minimizes the cross-entropy is a convex problem.' True where the "
            "trained U is a linear function of the rule: updates on every example to every row (appendix B; "
            "the logits are then Phi r, and the cross-entropy of an affine map is convex). Not true in general "
            "where the updates depend on the network's own decisions (which examples are mistakes, which row "
            "is predicted): the map rule -> U is then piecewise linear with pieces that depend on the rule. "
            f"Measured on halfspace, T = 1, |V| = {t2['vertices']}, {t2['n']} examples, one pass, eta = 1/n, "
            f"float64. Hessian of the CE in the 4 rule entries (closed form) at {len(t2['hessian_min_over_max_eigenvalue'])} "
            f"random rules: smallest eigenvalue / largest >= {min(t2['hessian_min_over_max_eigenvalue']):.2g} "
            "(positive semidefinite to rounding). Midpoint test L((r1 + r2)/2) <= (L(r1) + L(r2))/2 on "
            f"{t2['pairs']} random pairs of N(0, 1) rules, each network trained by the scheme "
            "(violations: the midpoint above the chord by more than 1e-9 of the loss):\n\n"
            + md_table(["update scheme", "violations", "largest L(mid) - chord"], t2_rows)
            + "\n\n" + ("So Theorem 2 holds for the scheme of appendix B and fails for the decision-dependent "
                        "schemes (including the default one, which the rules of Fig. 3 use)."
                        if t2["holds_where_linear"] else "**The linear scheme failed the convexity check.**")
            + "\n\n")
    verdict = ("**Theorem 3 is false as stated** (for b > a)" if s["theorem3_bound_fails"]
               else "No violation of Theorem 3's bound was found")
    return (
        "## Theorems 1-4: the output-rule theory\n\n"
        + theorem1_text(results.get("theorem1"), results.get("theorem1_small_start"))
        + t2_text
        + "### Theorem 3\n\n"
        "Setting: one threshold unit (predicts +1 iff w.x > 0, w = 0 at the start), data in {-1,1}^n, rule "
        "rows = the bit of x_i, columns = the prediction, so a mistake on a positive example adds b where "
        "x_i = 1 and -a where x_i = -1, and the negation on a negative one (`theory.ab_rule` with "
        "`train_single_unit`, cross-checked update by update against an instrumented copy, "
        "`theory.trace_ab_unit`: "
        f"{'identical in every run' if s['train_single_unit_agrees'] else 'MISMATCH'}). Epochs are repeated "
        "until one makes no mistake.\n\n"
        f"{verdict}. Counterexample (exact, found by a search over small data sets): n = 5, "
        f"w* = (3, -4, 2, 0, -1)/sqrt(30) (sum 0, unit), the 5 points\n"
        f"x1..x5 = {ce['X']} with labels {ce['labels']} (margins y w*.x = "
        f"{[round(v, 3) for v in ce['margins']]}, so gamma = 2/sqrt(30) = {ce['gamma']:.4f}), rule a = 1, b = 3. "
        f"The bound says fewer than 2 b^2 n/(a^2 gamma^2) = {ce['bound']:.0f} mistakes. "
        f"`train_single_unit` makes {tsu['mistakes']} mistakes in {tsu['epochs']} epochs, "
        f"{tsu['mistakes_per_epoch'][-1]} in the last epoch"
        + (f"; it passes the bound in epoch {ce['epoch_mistakes_exceed_bound']}" if ce["epoch_mistakes_exceed_bound"]
           else "")
        + ". It never stops: after a few epochs the run is periodic, and the change D of w over a period "
        "satisfies y (D.x) <= 0 for every example updated in the period and >= 0 for the others, so from "
        "w + kD the same updates recur for every k (exact integer arithmetic; "
        "`theory.periodic_certificate`):\n"
        f"{cert_lines}\n\n"
        "(D is orthogonal to the examples that keep being misclassified, so their scores never improve, while "
        "w*.w does grow by at least a gamma per mistake as the proof says: w turns towards D, not w*.)\n\n"
        "**Where the proof breaks.** Checked on every update of every run below and on the counterexample:\n"
        f"* `sum_{{i: x_i=1}} w*_i >= gamma/2` (positive example; `<= -gamma/2` for a negative one): correct "
        f"({s['half_margin_violations']} violations). With sum(w*) = 0 it is `w*.x / 2`.\n"
        f"* growth of w*.w per mistake >= a gamma: correct ({s['numerator_violations']} violations; it is "
        "(a+b)/2 |w*.x|).\n"
        f"* growth of ||w||^2 <= b^2 n + 2(b-a) sum_{{i: x_i=1}} w_i (mirrored for negatives): correct "
        f"({s['norm_step_violations']} violations).\n"
        "* **wrong:** 'we can bound the increase in ||w||^2 in t iterations by Ct for some constant "
        "C <= b^2 n + 2(b-a) sqrt(n)'. The term 2(b-a) sum_{x_i=1} w_i is not bounded by 2(b-a) sqrt(n): "
        "w is unbounded, and the term grows with it (in the counterexample ||w||^2 grows quadratically in "
        f"the number of mistakes). Violations: {s['C_violations']} updates in {s['runs_with_C_violation']} "
        f"of {s['runs']} random runs; on the counterexample {ps['C_violations']} of {ps['updates']} updates, "
        f"the first at {fv_text}.\n"
        "* Also not scale-free: (a, b) and (s a, s b) make exactly the same mistakes (w scales by s), but "
        "C <= 2 b^2 n, needed for the last line, fails for small b (2(b-a) sqrt(n) > b^2 n). Measured "
        "(scales by powers of two, so that w scales exactly): "
        f"{sc_text}.\n"
        "* Only for a = b (the perceptron) does the term vanish; then the classical proof applies.\n\n"
        "Random data: w* a random unit vector with sum 0, m points drawn uniformly from {-1,1}^n and kept "
        "when |w*.x| >= the stated margin (gamma in the bound is each data set's actual minimum margin), "
        f"at most {cfg['max_epochs']} epochs; 'never' = a periodicity certificate (period up to 64 epochs) "
        "proves the mistakes never stop:\n\n"
        + md_table(["data", "rule", "runs", "converged", "never (certified)", "undecided at cap",
                    "max mistakes (converged)", "min bound", "max mistakes/bound (converged)",
                    "runs over the bound (incl. never)", "max growth / C"], rows)
        + "\n\n"
        f"Converged runs stay far below the bound (max ratio {s['max_ratio_converged']:.3f}); the bound fails "
        f"through non-convergence: {s['never_certified']} of {s['runs']} runs provably never converge"
        + (f", {s['undecided']} undecided at the cap" if s["undecided"] else "") + ".\n\n"
        f"**sum(w*) != 0** (w* = a Gaussian direction plus {cfg['shift']} in every coordinate, normalized; "
        f"mean sum(w*) = {mean_sum:.2f}), same data sizes:\n\n"
        + md_table(["data", "rule", "runs", "converged", "never (certified)", "undecided",
                    "max mistakes (converged)"],
                   nz_rows)
        + f"\n\nTheorem 3 makes no claim here. {s['nonzero_never']} of {s['nonzero_runs']} runs provably never "
          f"converge ({s['nonzero_exact_cycles']} of them exact cycles: w returns to an earlier value, which "
          "cannot happen when sum(w*) = 0 because w*.w then grows with every mistake), "
          f"{s['nonzero_undecided']} undecided. The proof's first step needs sum(w*) = 0: "
          f"`sum_{{x_i=1}} w*_i >= gamma/2` fails on {s['nonzero_half_margin_violations']} and "
          f"'w*.w grows by >= a gamma' on {s['nonzero_numerator_violations']} of {s['nonzero_updates']} updates."
        + "\n\n### Theorem 4\n\n"
        "Updates on every mistake and on every example within gamma of the threshold (we read this as "
        "y w.x <= gamma ||w||, the margin in the scale of the unit w*; the literal |w.x| < gamma is also run on "
        "the counterexample). The paper gives no proof. "
        "**Definition issue:** the paper writes D^2 = sum_i max{0, gamma - y_i (w*.x_i)}, a sum of hinge "
        "terms, not squared. Freund and Schapire (1999), whom it follows, define D = sqrt(sum_i d_i^2) with "
        "d_i = max{0, gamma - y_i w*.x_i}, and bound the perceptron's mistakes by ((R + D)/gamma)^2. With "
        "the unsquared sum the expression is not even invariant to rescaling x (R^2 and gamma^2 scale with "
        "s^2, the hinge sum with s, and so does the '2 gamma' term, which has no counterpart in F-S; "
        "(R + D)^2 = R^2 + 2RD + D^2 would suggest 2RD). Both readings are measured.\n\n"
        f"On the Theorem 3 counterexample D = 0 and R^2 = {t4c['R2']:.0f}, so the expression is the constant "
        f"{t4c['expression']:.0f} (times the O's constant), while the mistakes keep growing linearly with the "
        f"number of passes over the sequence:\n{t4c_lines}\n\n"
        "so no constant makes Theorem 4 hold for b > a either (cycling 5 points is a legal sequence; "
        "the bound has no dependence on its length when D = 0).\n\n"
        f"Random data: n = {cfg['t4_n']}, one pass over {cfg['t4_m']} uniform points, labels sign(w*.x) (sum(w*) = 0) "
        f"flipped with the given probability, {cfg['t4_datasets']} data sets per cell; ratio = measured "
        "mistakes / expression (the O() hides a constant, so only the ratio's size and trend are meaningful):\n\n"
        + md_table(["label noise", "gamma", "rule", "mean mistakes", "mean D^2 (paper)", "mean D^2 (squared)",
                    "max ratio (paper D^2)", "max ratio (squared D^2)", "mean F-S ((R+D)/gamma)^2"], t4_rows)
        + f"\n\nLargest ratios: {s['theorem4_max_ratio_paper']:.3f} (paper's D^2), "
          f"{s['theorem4_max_ratio_squared']:.3f} (squared hinge)."
        + "\n\n![Theorem 3](theorem3.png)\n\n![Theorem 4](theorem4.png)")


def theorem1_text(t1: dict | None, small: dict | None = None) -> str:
    """Theorem 1's table: learned output rules from random starts (halfspace, T=1)."""
    if not t1:
        return ""
    fmt = lambda t: "[" + "; ".join(", ".join(f"{v:+.2f}" for v in row) for row in t) + "]"  # noqa: E731
    rows = [[r["seed"], fmt(r["initial_table"]), fmt(r["learned_table"]), "yes" if r["matches_perceptron"] else "no",
             fmt(r["identifiable_part"]), "yes" if r["identifiable_matches_perceptron"] else "no",
             f"{r['test_accuracy']:.3f}"] for r in t1["runs"]]
    n = len(t1["runs"])
    return ("### Theorem 1\n\n"
            "'GD on an additive output rule, from any starting rule, and network weights initialized to zero, "
            f"converges to a rule with sign pattern [-, +; +, -].' The output rule learned on halfspace (|V| = 100, "
            f"k = 50, T = 1, Adam lr 1e-2, L2 0.01, {t1['steps']} meta-steps of batch 100) from {n} random N(0, 1) "
            "tables; rows are the firing bit s, columns the true-label row and the predicted row. The identifiable "
            "part is each row minus its mean over the two columns.\n\n"
            + md_table(["seed", "initial table", "learned table", "sign pattern [-, +; +, -]", "identifiable part",
                        "its sign pattern", "test accuracy"], rows)
            + f"\n\nFull sign pattern in {t1['matches']} of {n} runs; identifiable part in "
            f"{t1['identifiable_matches']} of {n}; every learned rule trains halfspace to at least "
            f"{t1['min_test_accuracy']:.3f} (mean {t1['mean_test_accuracy']:.3f}). On a binary task with updates "
            "on mistakes, a mistake adds column 0 of row s to the true row and column 1 to the predicted one, so "
            "only their difference moves the margin: the common part of each row has exactly zero loss gradient and "
            "is moved only by the L2 term, which under Adam's per-entry normalization moves it by a few percent "
            "in this many steps. "
            + ("So the identifiable part follows the theorem from every start, and the full sign pattern holds "
               "where the start's common part is small against the learned difference. "
               if t1["identifiable_matches"] == n else
               f"Here even the identifiable part missed in {n - t1['identifiable_matches']} of {n} runs: too few "
               "meta-steps for the rule to converge. ")
            + "The regularized stationary point does have the perceptron's pattern (its common part is 0); "
            "'from any starting rule' holds only in that limit."
            + (f" A check of that explanation: from N(0, {small['init_scale']:g}^2) starts (the same seeds, so the "
               f"same directions, {1 / small['init_scale']:g} times smaller), the full sign pattern appears in "
               f"{small['matches']} of {len(small['runs'])} runs and the identifiable part in "
               f"{small['identifiable_matches']} of {len(small['runs'])} (test accuracy at least "
               f"{small['min_test_accuracy']:.3f})." if small else "")
            + "\n\n")
