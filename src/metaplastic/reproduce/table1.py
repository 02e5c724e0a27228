"""Table 1 (section 3.1): the perceptron and MW tables drive one output unit exactly
as the classical perceptron (Rosenblatt) and Winnow (Littlestone 1987) do.

The rule side is :func:`metaplastic.theory.train_single_unit` with the shipped
classic rules (``classic_rule("perceptron" / "winnow", 1, eta=1.0)``, float64);
the classical side is :func:`metaplastic.theory.classical_perceptron` /
:func:`~metaplastic.theory.classical_winnow`, written in plain Python floats
without any rule table.  Every run records both weight trajectories (w after
every mistake) and compares them entry by entry.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..io import classic_rule
from ..theory import classical_perceptron, classical_winnow, train_single_unit
from .common import finish, md_table, pyplot, save_fig

SHOW_COORDS = 5      # weight coordinates drawn in the figure
SHOW_MISTAKES = 300  # trajectory prefix kept for the figure


def perceptron_data(n: int, d: int, seed: int):
    """+-1 features, labels of a random halfspace through the origin (y in {0, 1})."""
    g = torch.Generator().manual_seed(10_000 + seed)
    X = torch.randint(0, 2, (n, d), generator=g).double() * 2 - 1
    wstar = torch.randn(d, generator=g, dtype=torch.float64)
    return X, (X @ wstar > 0).long()


def winnow_data(n: int, d: int, k: int, seed: int):
    """0/1 features, a k-literal monotone disjunction as target (Littlestone 1987).

    Each feature is on with probability ``1 - 2^(-1/k)`` so that about half of
    the points are positive; the k relevant variables are drawn at random.
    """
    g = torch.Generator().manual_seed(20_000 + seed)
    p = 1 - 2 ** (-1 / k)
    X = (torch.rand(n, d, generator=g, dtype=torch.float64) < p).double()
    relevant = torch.randperm(d, generator=g)[:k]
    return X, (X[:, relevant].sum(1) > 0).long(), relevant.tolist()


def _compare(traj_rule, traj_ref, w_rule, w_ref) -> float:
    """Max |difference| over every recorded weight vector (inf if the lengths differ)."""
    if len(traj_rule) != len(traj_ref):
        return float("inf")
    diff = float((w_rule - w_ref).abs().max())
    for a, b in zip(traj_rule, traj_ref):
        diff = max(diff, float((a - b).abs().max()))
    return diff


def run(out: Path, quick: bool = False) -> dict:
    t0 = time.perf_counter()
    cfg = dict(n=1000, d=50, k=5, seeds=list(range(5)), max_epochs=20)
    if quick:
        cfg.update(n=200, d=20, k=3, seeds=list(range(5)), max_epochs=2)
    n, d, k = cfg["n"], cfg["d"], cfg["k"]
    perceptron = classic_rule("perceptron", 1, eta=1.0, dtype=torch.float64)
    winnow = classic_rule("winnow", 1, eta=1.0, dtype=torch.float64)
    rows = []
    shown = {}
    for algo in ("perceptron", "winnow"):
        for seed in cfg["seeds"]:
            if algo == "perceptron":
                X, y = perceptron_data(n, d, seed)
                threshold = 0.0
                rule = perceptron
                classical = lambda e: classical_perceptron(X, y, epochs=e)  # noqa: E731
            else:
                X, y, relevant = winnow_data(n, d, k, seed)
                threshold = float(d)
                rule = winnow
                classical = lambda e: classical_winnow(X, y, threshold, epochs=e)  # noqa: E731
            epochs = cfg["max_epochs"]
            w_r, traj_r, mis_r = train_single_unit(rule, X, y, threshold=threshold, epochs=epochs)
            w_c, traj_c, mis_c = classical(epochs)
            diff = _compare(traj_r, traj_c, w_r, w_c)
            # did the last epoch make mistakes? (one more epoch of the rule from w_r)
            _, _, extra = train_single_unit(rule, X, y, threshold=threshold, w0=w_r, epochs=1)
            rows.append({"algorithm": algo, "seed": seed, "n": n, "d": d, "epochs": epochs,
                         "mistakes_rule": mis_r, "mistakes_classical": mis_c,
                         "trajectory_length_rule": len(traj_r), "trajectory_length_classical": len(traj_c),
                         "max_abs_diff": diff, "identical": diff == 0.0 and mis_r == mis_c,
                         "converged": extra == 0,
                         "train_accuracy": float(((X @ w_r > threshold).long() == y).double().mean()),
                         **({"relevant": relevant} if algo == "winnow" else {})})
            if seed == cfg["seeds"][0]:
                # the figure shows a few coordinates: for Winnow the relevant
                # variables and two irrelevant ones
                coords = list(range(SHOW_COORDS))
                if algo == "winnow":
                    coords = sorted(relevant)[:SHOW_COORDS - 2]
                    coords += [i for i in range(d) if i not in relevant][:2]
                idx = torch.tensor(coords)
                take = slice(0, SHOW_MISTAKES)
                shown[algo] = {
                    "coords": coords,
                    "rule": [t[idx].tolist() for t in traj_r[take]],
                    "classical": [t[idx].tolist() for t in traj_c[take]],
                }
    all_identical = all(r["identical"] for r in rows)
    max_diff = max(r["max_abs_diff"] for r in rows)
    results = {"config": cfg, "runs": rows, "trajectories": shown, "all_identical": all_identical,
               "max_abs_diff": max_diff, "seconds": time.perf_counter() - t0}
    return finish(out, "table1", cfg, results, rows, plot, report)


def plot(results: dict, out: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, algo in zip(axes, ("perceptron", "winnow")):
        tr = results["trajectories"].get(algo)
        if not tr or not tr["rule"]:
            continue
        steps = list(range(1, len(tr["rule"]) + 1))
        coords = tr.get("coords", list(range(len(tr["rule"][0]))))
        for i, c in enumerate(coords):
            line, = ax.plot(steps, [w[i] for w in tr["rule"]], lw=2.5, alpha=0.45,
                            label=f"w_{c} rule table (train_single_unit)")
            ax.plot(steps, [w[i] for w in tr["classical"]], ls="none", marker=".", ms=3,
                    color=line.get_color(), label="classical algorithm (dots)" if i == 0 else None)
        if algo == "winnow":
            ax.set_yscale("log", base=2)
        ax.set_xlabel("mistake number")
        ax.set_ylabel("weight")
        title = "Perceptron table vs perceptron" if algo == "perceptron" else "MW table vs Winnow"
        ax.set_title(f"{title} (seed 0)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_fig(fig, out / "table1.png")


def report(results: dict) -> str:
    cfg = results["config"]
    rows = []
    for algo in ("perceptron", "winnow"):
        rs = [r for r in results["runs"] if r["algorithm"] == algo]
        same = all(r["identical"] for r in rs)
        rows.append([algo, len(rs), " / ".join(str(r["mistakes_rule"]) for r in rs),
                     " / ".join(str(r["mistakes_classical"]) for r in rs),
                     f"{max(r['max_abs_diff'] for r in rs):g}",
                     f"{sum(r['converged'] for r in rs)}/{len(rs)}",
                     "identical" if same else "DIFFERENT"])
    verdict = (f"identical (max |diff| = {results['max_abs_diff']:g})" if results["all_identical"]
               else f"NOT identical (max |diff| = {results['max_abs_diff']:g})")
    return (
        "## Table 1: the perceptron and MW tables are the classical algorithms\n\n"
        f"One output unit trained by the rule tables (`classic_rule(..., eta=1.0)`, float64, "
        f"`theory.train_single_unit`) and by independent plain-Python implementations of the "
        f"perceptron (+-1 data, a random halfspace, threshold 0, w = 0) and of Winnow "
        f"(0/1 data, a {cfg['k']}-literal disjunction, threshold n = {cfg['d']}, w = 1, factor 2), "
        f"{len(cfg['seeds'])} random data sets each, {cfg['n']} points in d = {cfg['d']}, "
        f"{cfg['max_epochs']} epochs. The paper (section 3.1) states that the Table 1 rules "
        "*are* these algorithms.\n\n"
        f"Weight trajectories (w after every mistake) and mistake counts: **{verdict}**.\n\n"
        + md_table(["algorithm", "runs", "mistakes (rule)", "mistakes (classical)", "max abs diff",
                    "converged", "trajectories"], rows)
        + "\n\n![Table 1 trajectories](table1.png)")
