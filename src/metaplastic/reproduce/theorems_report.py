"""The ``theorems`` section's figures and REPORT.md text, from its saved results only
(see :mod:`metaplastic.reproduce.theorems`): one function per figure and per theorem."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import md_table, pyplot, save_fig
from .theorems_perceptron import setting_name


def plot(results: dict, out: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    _plot_bound(plt, axes[0], results["grid"])
    _plot_counterexample(axes[1], results["counterexample"])
    _plot_proof_step(axes[2], results["grid"])
    save_fig(fig, out / "theorem3.png")
    _plot_theorem4(plt, results, out)


def _plot_bound(plt, ax, grid: list) -> None:
    """Theorem 3 on random data: mistakes against the bound, non-converging runs on top."""
    ratios = sorted({r["b"] / r["a"] for r in grid})
    cmap = plt.get_cmap("viridis")
    colors = {q: cmap(i / max(1, len(ratios) - 1)) for i, q in enumerate(ratios)}
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


def _plot_counterexample(ax, ce: dict) -> None:
    """Cumulative mistakes on the counterexample, against both theorems' bounds."""
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


def _plot_proof_step(ax, grid: list) -> None:
    """The proof's step that fails: per-update growth of ||w||^2 against its claimed bound C."""
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


def _plot_theorem4(plt, results: dict, out: Path) -> None:
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
    return (
        "## Theorems 1-4: the output-rule theory\n\n"
        + theorem1_text(results.get("theorem1"), results.get("theorem1_small_start"))
        + theorem2_text(results.get("theorem2"))
        + theorem3_text(results)
        + "\n\n" + theorem4_text(results)
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


def theorem2_text(t2: dict | None) -> str:
    """Theorem 2 (convexity), measured; empty where the results have no Theorem 2 part."""
    if not t2:
        return ""
    t2_rows = [[k, f"{v['violations']} of {t2['pairs']}", f"{v['max_gap']:.3g}"] for k, v in t2["schemes"].items()]
    return (
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


def theorem3_text(results: dict) -> str:
    """Theorem 3: the counterexample, where the proof breaks, and the random data sets."""
    s, ce = results["summary"], results["counterexample"]
    tsu = ce["train_single_unit"]
    cert_lines = "\n".join(f"  * {k}: {_fmt_cert(v['certificate'])}" for k, v in ce["certificates"].items())
    verdict = ("**Theorem 3 is false as stated** (for b > a)" if s["theorem3_bound_fails"]
               else "No violation of Theorem 3's bound was found")
    return (
        "### Theorem 3\n\n"
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
        + _proof_steps_text(results)
        + _theorem3_random_text(results))


def _proof_steps_text(results: dict) -> str:
    """Each step of Theorem 3's proof, checked on every update; the one that is wrong."""
    s, ps = results["summary"], results["counterexample"]["proof_steps"]
    fv = ps["first_C_violation"]
    fv_text = ("none within the run" if fv is None else
               f"update {fv['update']} (epoch {fv['epoch'] + 1}, example {fv['example'] + 1}, label {fv['label']:+d}): "
               f"||w||^2 goes from {fv['norm2_before']:.0f} to {fv['norm2_after']:.0f}, a growth of "
               f"{fv['growth']:.0f} > C = {fv['C']:.1f} (sum of w_i over x_i = 1 is {fv['sum_w_on']:.0f})")
    sc = results["scale_check"]
    sc_text = "; ".join(f"(a, b) = ({v['a']:g}, {v['b']:g}): {v['mistakes']} mistakes, C = {v['C']:.3g} vs "
                        f"2 b^2 n = {v['2 b^2 n']:.3g}" for v in sc.values())
    return (
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
        "* Only for a = b (the perceptron) does the term vanish; then the classical proof applies.\n\n")


def _theorem3_random_text(results: dict) -> str:
    """Theorem 3 over random data sets, with sum(w*) = 0 (its setting) and without."""
    cfg, s, grid = results["config"], results["summary"], results["grid"]
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
    return (
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
          f"'w*.w grows by >= a gamma' on {s['nonzero_numerator_violations']} of {s['nonzero_updates']} updates.")


def theorem4_text(results: dict) -> str:
    """Theorem 4 on the Theorem 3 counterexample and on noisy random data, both readings of D^2."""
    cfg, s, ce = results["config"], results["summary"], results["counterexample"]
    tsu = ce["train_single_unit"]
    t4c = ce["theorem4"]
    t4c_lines = "\n".join(f"  * update when {k}: {v['mistakes']} mistakes in {tsu['epochs']} epochs "
                          f"({v['mistakes_last_half']} in the last half)" for k, v in t4c["runs"].items())
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
    return (
        "### Theorem 4\n\n"
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
          f"{s['theorem4_max_ratio_squared']:.3f} (squared hinge).")
