"""Theorems 3 and 4 of the ``theorems`` section: the rule ``[-a, a; b, -b]`` on one threshold
unit, checked against the claimed mistake bounds and step by step against the proof of
Theorem 3 (see :mod:`metaplastic.reproduce.theorems`): the exact counterexample, random
margin data with and without ``sum(w*) = 0``, the scale check, and Theorem 4 on noisy data.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..theory import ab_rule, trace_ab_unit, train_single_unit

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
