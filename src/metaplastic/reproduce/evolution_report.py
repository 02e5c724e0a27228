"""The ``evolution`` section's figures and REPORT.md text, from its saved results only
(see :mod:`metaplastic.reproduce.evolution`)."""

from __future__ import annotations

import math
from pathlib import Path

from .common import md_table, pyplot, save_fig

PAPER = ("Appendix C gives no numbers; it claims x' = x - theta dL/dx (2 - 2x) + O(theta^2 + eps^2), "
         "\"GD on z = 2x - x^2\"")
FORMS = {
    "paper": "appendix C's GD form (C.3), factor 2-2x",
    "selection": "selection GD form (S'), factor x(1-x)",
    "linear": "(S) to first order in theta (finite differences kept)",
    "plain_y": "plain GD on Y, lr theta n eps^2",
}
ENTRY_NAMES = ["r(0,0)", "r(0,1)", "r(1,0)", "r(1,1)"]


def plot(results: dict, out: Path) -> None:
    plt = pyplot()
    _plot_trajectories(plt, results, out)
    _plot_scaling(plt, results, out)
    _plot_rule_learning(plt, results, out)
    _plot_wright_fisher(plt, results, out)


def _plot_trajectories(plt, results: dict, out: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    tq = results["quadratic"]["trajectory"]
    ax = axes[0]
    styles = {"selection_recursion": ("k", "-", "selection recursion (S)"),
              "paper": ("C3", "--", "appendix C GD form (C.3), 2-2x"),
              "selection": ("C0", ":", "selection GD form (S'), x(1-x)"),
              "plain_y": ("C2", "-.", "plain GD on Y")}
    for k, (c, ls, lab) in styles.items():
        ax.plot(tq["tau"], [v[0] for v in tq[k]], color=c, ls=ls, label=lab)
    pr = tq["printed_C1"]
    ax.plot(pr["tau"], [v[0] for v in pr["ybar"]], color="C1", ls="-", alpha=0.7,
            label="recursion as printed (C.1)")
    ax.axhline(results["config"]["quadratic"]["target"], color="gray", lw=0.6)
    ax.set_ylim(-4.5, 2.5)
    ax.set_xlabel("time tau = theta n eps^2 t")
    ax.set_ylabel("Ybar")
    ax.set_title(f"L=(Y-1)^2, theta={tq['theta']}, eps={tq['eps']}, n={tq['n']}", fontsize=9)
    ax.legend(fontsize=7)
    th = results["halfspace"]["trajectory"]
    for j, ax in ((0, axes[1]), (1, axes[2])):
        for p in (2 * j, 2 * j + 1):
            for k, (c, ls, lab) in styles.items():
                ax.plot(th["tau"], [v[p] for v in th[k]], color=c, ls=ls,
                        label=lab if p == 2 * j else None, lw=1.4 if p % 2 == 0 else 0.9)
            ax.annotate(ENTRY_NAMES[p], (th["tau"][-1], th["selection_recursion"][-1][p]), fontsize=8)
        ax.set_xlabel("time tau")
        ax.set_ylabel("rule entry")
        ax.set_title(f"halfspace output rule, row {j} (theta={th['theta']}, eps={th['eps']})", fontsize=9)
        ax.legend(fontsize=7)
    save_fig(fig, out / "trajectories.png")


def _plot_scaling(plt, results: dict, out: Path) -> None:
    from matplotlib.ticker import NullFormatter
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for r, study in enumerate(("quadratic", "halfspace")):
        s = results[study]
        for cidx, (var, other) in enumerate((("theta", "eps"), ("eps", "theta"))):
            ax = axes[r, cidx]
            for m, (metric, col) in enumerate((("diff_paper", "C3"), ("diff_selection", "C0"),
                                               ("diff_linear", "C2"))):
                fit = s["fits"][metric]
                slope = fit[f"{var}_exponent"]
                for oi, ov in enumerate(sorted({c[other] for c in s["cells"]})):
                    cs = sorted((c for c in s["cells"] if c[other] == ov), key=lambda c: c[var])
                    ax.plot([c[var] for c in cs], [c[metric] for c in cs], color=col, marker="o", ms=3,
                            alpha=0.35 + 0.65 * (oi + 1) / 4,
                            label=f"{metric[5:]}: slope {slope:.2f}" if oi == 0 else None)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(var)
            ax.set_ylabel("max_t |x_(S) - x_form|")
            ax.set_title(f"{study}: against {var} (one line per {other})", fontsize=9)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
    save_fig(fig, out / "scaling.png")


def _plot_rule_learning(plt, results: dict, out: Path) -> None:
    """Evolution against replay and ES, by network trainings."""
    rr = results["rules"]["seeds"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    cols = {"evolution": "C3", "replay": "C0", "es": "C2"}
    for s, row in rr.items():
        for method, res in row.items():
            xs = [max(c["trainings"], 1) for c in res["curve"]]
            axes[0].plot(xs, [c["meta_loss"] for c in res["curve"]], color=cols[method], marker="o", ms=3,
                         alpha=0.8, label=method if s == next(iter(rr)) else None)
            axes[1].plot(xs, [c["test_accuracy"] for c in res["curve"]], color=cols[method], marker="o",
                         ms=3, alpha=0.8, label=method if s == next(iter(rr)) else None)
    axes[0].set_yscale("log")
    for ax, lab in ((axes[0], "mean meta-loss (fixed eval tasks)"), (axes[1], "test accuracy (one network)")):
        ax.set_xscale("log")
        ax.set_xlabel("network trainings (1 = start)")
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].axhline(0.9, color="gray", lw=0.6)
    axes[0].set_title("halfspace output rule, T=1, |V|=100: one line per seed", fontsize=9)
    save_fig(fig, out / "rule_learning.png")


def _plot_wright_fisher(plt, results: dict, out: Path) -> None:
    wf = results["wright_fisher"]
    fig, ax = plt.subplots(figsize=(6, 4))
    gens = list(range(len(wf["recursion"])))
    for p in range(len(wf["target"])):
        ax.plot(gens, [v[p] for v in wf["recursion"]], color="k", lw=1.5, label="recursion (S)" if p == 0 else None)
        for i, (N, curve) in enumerate(wf["wf"].items()):
            ax.plot(gens, [v[p] for v in curve], color=f"C{i}", lw=0.8, alpha=0.8,
                    label=f"Wright-Fisher N={N}" if p == 0 else None)
    ax.set_xlabel("generation")
    ax.set_ylabel("Ybar")
    ax.set_title(f"4 parameters, L = sum (Y - Y*)^2, theta={wf['theta']}, eps={wf['eps']}, n={wf['n']}",
                 fontsize=9)
    ax.legend(fontsize=7)
    save_fig(fig, out / "wright_fisher.png")


def _grid_table(study: dict, metric: str) -> str:
    epss = study["epss"]
    rows = []
    for th in study["thetas"]:
        r = [f"{th:g}"]
        for e in epss:
            c = next(c for c in study["cells"] if c["theta"] == th and c["eps"] == e)
            r.append(f"{c[metric]:.3g}")
        rows.append(r)
    return md_table(["theta \\ eps"] + [f"{e:g} (n={round(study['ymax'] / e)})" for e in epss], rows)


def _median(v):
    """Lower median, with None ("never") counted as larger than everything."""
    v = sorted(v, key=lambda x: math.inf if x is None else x)
    return v[(len(v) - 1) // 2] if v else None


def _rules_verdict(sm: dict) -> str:
    e = sm["evolution"]
    acc_ok = all(a >= 0.90 for a in e["test_accuracy"]["values"])
    lines = [f"**Evolved rule.** The identifiable part has the perceptron's signs in {e['identifiable_pattern']}/"
             f"{e['runs']} runs and the full table in {e['full_pattern']}/{e['runs']}; test accuracy "
             f"{'is at least 0.90 in every run' if acc_ok else 'is below 0.90 in some run'} "
             f"(mean {e['test_accuracy']['mean']:.3f}). "
             + ("Only the identifiable part is reliable: the common part of each row is neutral except for "
                "the weak L2 term, so it drifts." if e["full_pattern"] < e["runs"] else "")]
    rows = []
    for m in ("evolution", "replay", "es"):
        r = sm[m]
        rows.append([m, _fmt_tr(_median(r["first_identifiable_pattern_trainings"])),
                     _fmt_tr(_median(r["stable_identifiable_pattern_trainings"])),
                     _fmt_tr(_median(r["stable_full_pattern_trainings"])),
                     ", ".join(_fmt_tr(v) for v in r["stable_identifiable_pattern_trainings"])])
    lines.append("Network trainings to the sign pattern (lower median over seeds, never = infinite; 'held' = from then on to the end; "
                 "evolution spends N trainings per generation):\n\n"
                 + md_table(["method", "identifiable first", "identifiable held", "full held",
                             "identifiable held, per seed"], rows))
    return "\n\n".join(lines)


def _fmt_tr(v):
    return "never" if v is None else str(v)


def report(results: dict) -> str:
    parts = [f"## Appendix C: evolution against GD\n\nPaper: {PAPER}. Model and the derivation's errors: "
             "`src/metaplastic/evolution.py`. (S) = haploid selection x' = x w+ / (x w+ + (1-x) w-), "
             "w± = 1 + theta (L(Ybar) - L(Ybar|±eps)), whose denominator is the appendix's Z. (S) is the recursion "
             "used everywhere below; the recursion as printed, (C.1) x' = (x - theta D+)/Z, appears only in part 1 "
             "and in the trajectory figure, to show that it fails.",
             _report_derivation(results["derivation"]), *_report_scaling(results["quadratic"], results["halfspace"]),
             _report_wright_fisher(results["wright_fisher"]), _report_rules(results)]
    secs = results["seconds_by_part"]
    parts.append("Wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in secs.items())
                 + f"; total {results['seconds']:.0f} s.")
    return "\n\n".join(parts)


def _report_derivation(d: dict) -> str:
    rows = [[f"{r['x']:g}", f"{r['selection_S']:.4f}", f"{r['x(1-x)']:.4f}", f"{r['printed_C1']:.4f}",
             f"{r['printed_C2']:.4f}", f"{r['additive_sign_corrected']:.4f}", f"{r['paper_C3']:.4f}",
             f"{r['gd_on_z_2x-x2']:.4f}", f"{r['(2-2x)^-2']:.4f}", f"{r['printed_allele_sum_minus_1']:.2e}",
             f"{r['selection_allele_sum_minus_1']:.1e}"] for r in d["rows"]]
    b = d["boundary"]
    return (
        "### 1. What each recursion does to first order\n\n"
        f"Effective GD factor f = -(x' - x) / (theta dL/dx) of one step (theta={d['theta']:g}, eps={d['eps']:g}, "
        f"n={d['n']}, L = (Y - {d['target']:g})^2, every gene at x). A GD form with factor f gives f; "
        "a negative f moves uphill. Last two columns: (x'_+ + x'_-) - 1 at theta = 0.01 "
        "(a recursion must keep it 0).\n\n"
        + md_table(["x", "(S)", "x(1-x)", "(C.1) printed", "(C.2) printed", "(x+theta D+)/Z", "(C.3) = 2-2x",
                    "GD on z=2x-x^2", "(2-2x)^-2", "(C.1) sum-1", "(S) sum-1"], rows)
        + f"\n\nAt x = 0 (allele absent), theta = 0.01: (C.1) gives x' = {b['printed_C1_next']:.3g}, "
        f"(C.3) gives {b['paper_C3_next']:.3g}, (S) gives {b['selection_next']:.3g}.\n\n"
        "Reading: (S) moves x by theta x(1-x) dL/dx downhill, not theta (2-2x) dL/dx; the printed (C.1) moves "
        "uphill with factor 1-x, does not keep the allele frequencies summing to 1 and leaves [0, 1]; the printed "
        "expansion (C.2) is not (C.1)'s (it is, with the sign flipped, the expansion of (x + theta D+)/Z, factor "
        "1-x); literal GD on z = 2x - x^2 has the factor (2-2x)^-2, not 2-2x.")


def _report_scaling(q: dict, hs: dict) -> list[str]:
    """Part 2: the grids, the fits, the frozen-record check and the verdict on O(theta^2 + eps^2)."""
    parts = []
    for name, s, title in (("quadratic", q, "1-D quadratic L = (Y - 1)^2"),
                           ("halfspace", hs, "halfspace output rule, frozen-record meta-loss (4 entries)")):
        fits = s["fits"]
        frows = [[FORMS.get(m[5:], m[5:]) + (" (one step)" if m.startswith("step") else " (trajectory)"),
                  f"{fits[m]['theta_exponent']:.2f}", f"{fits[m]['eps_exponent']:.2f}", f"{fits[m]['r2']:.3f}"]
                 for m in ("diff_paper", "diff_selection", "diff_linear", "diff_plain_y",
                           "step_paper", "step_selection", "step_linear")]
        parts.append(
            f"### 2. Scaling: {title}\n\n"
            f"Genetic range n eps = {s['ymax']:g} fixed, start Ybar = {[round(v, 3) for v in s['ybar0']]}, "
            f"run to tau = theta n eps^2 t = {s['tau_end']:g}. Entry: max over the trajectory (all steps, "
            "all entries) of |x_(S) - x_form|, frequency units.\n\n"
            "(S) against the appendix's GD form (C.3):\n\n" + _grid_table(s, "diff_paper")
            + "\n\n(S) against the selection GD form (S'), factor x(1-x):\n\n" + _grid_table(s, "diff_selection")
            + "\n\n(S) against its first order in theta (finite differences kept):\n\n"
            + _grid_table(s, "diff_linear")
            + "\n\nFitted err = C theta^a eps^b (log-log least squares over the grid; 'one step' = max over 12 "
              "states on (S)'s trajectory of |S(x) - form(x)|):\n\n"
            + md_table(["difference", "a (theta)", "b (eps)", "R^2"], frows))
    chk = hs.get("surrogate_check", [])
    if chk:
        parts.append("Frozen-record loss against the true meta-loss (networks retrained with the rule, same 8 "
                     "tasks):\n\n" + md_table(["rule", "frozen-record loss", "true meta-loss"],
                                                [[c["rule"], f"{c['surrogate']:.5f}", f"{c['true_meta_loss']:.5f}"]
                                                 for c in chk]))
    fq = q["fits"]
    parts.append(
        "**Verdict on O(theta^2 + eps^2).** Per step every form is within O(theta eps) of (S), and theta eps <= "
        "(theta^2 + eps^2)/2, so the appendix's bound holds trivially and says nothing. Over a fixed time "
        f"(~1/(theta eps) steps) the appendix's form (C.3) stays a fixed distance from (S) (exponents "
        f"{fq['diff_paper']['theta_exponent']:.2f}, {fq['diff_paper']['eps_exponent']:.2f}): it is a different "
        "dynamics (the same fixed point, reached at another speed, and one that can leave [0, 1]). The factor "
        f"x(1-x) makes the difference vanish, as eps^{fq['diff_selection']['eps_exponent']:.2f} "
        f"(theta^{fq['diff_selection']['theta_exponent']:.2f}): the eps^2 L'' term is a systematic drift, "
        "(for a quadratic loss exactly the gradient of the genetic variance term (L''/2) Var(Y)), not noise, "
        f"and shrinking theta alone does not remove it. With that term kept, the remaining gap is "
        f"theta^{fq['diff_linear']['theta_exponent']:.2f} eps^{fq['diff_linear']['eps_exponent']:.2f}. Plain GD on "
        "Y is the selection form only near Ybar = 0: evolution is GD on Y preconditioned by "
        "1 - (Ybar / (n eps))^2.")
    return parts


def _report_wright_fisher(wf: dict) -> str:
    rows = [[r["N"], f"{r['max_dev_mean']:.4f} ± {r['max_dev_std']:.4f}"] for r in wf["rows"]]
    return (
        "### 3. Wright-Fisher against the recursion\n\n"
        f"4 parameters, n={wf['n']} genes each, eps={wf['eps']}, theta={wf['theta']}, fitness exp(-theta L), "
        f"L = sum_p (Y_p - Y*_p)^2 with Y* = {wf['target']}, {wf['generations']} generations from x = 1/2; "
        f"entry: max over generations and parameters of |Ybar_WF - Ybar_(S)| / (2 n eps), mean ± sd over "
        f"{wf['reps']} runs. Fitted slope against N: {wf['slope_vs_N']:.2f} (drift: -0.5).\n\n"
        + md_table(["N", "max deviation (frequency units)"], rows) + "\n\n![Wright-Fisher](wright_fisher.png)")


def _report_rules(results: dict) -> str:
    """Part 4: the learned tables, per seed and summarized, and the figures."""
    rr = results["rules"]
    c = results["config"]["rules"]
    e = c["evolution"]
    rows = []
    for s, row in rr["seeds"].items():
        for method in ("evolution", "replay", "es"):
            r = row[method]
            tab = [[round(v, 2) for v in rowv] for rowv in r["table"]]
            rows.append([s, method, r["trainings"], str(tab), "yes" if r["full_pattern"] else "no",
                         "yes" if r["identifiable_pattern"] else "no",
                         _fmt_tr(r["first_identifiable_pattern_trainings"]),
                         _fmt_tr(r["stable_identifiable_pattern_trainings"]),
                         _fmt_tr(r["first_full_pattern_trainings"]), _fmt_tr(r["stable_full_pattern_trainings"]),
                         _fmt_tr(r["first_test_accuracy_0.90_trainings"]),
                         f"{r['final']['meta_loss']:.3f}", f"{r['final']['test_accuracy']:.3f}"])
    sm = rr["summary"]
    srows = [[m, f"{sm[m]['full_pattern']}/{sm[m]['runs']}", f"{sm[m]['identifiable_pattern']}/{sm[m]['runs']}",
              f"{sm[m]['meta_loss']['mean']:.3f}", f"{sm[m]['test_accuracy']['mean']:.3f}"]
             for m in ("evolution", "replay", "es")]
    return (
        "### 4. The halfspace output rule learned by evolution\n\n"
        f"T=1, |V|=100, k=50, batch 100. Evolution: Wright-Fisher, N={e['population']}, {e['generations']} "
        f"generations, {e['genes']} genes of ±{e['eps']} per entry (range ±{e['genes'] * e['eps']:g}), "
        f"fitness exp(-{e['theta']:g} (meta-loss + {e['l2']} ||Y||^2)) on the generation's task (the task the "
        f"gradient learners see at that step), mutation {e['mutation']}; the rule is the population mean Ybar. "
        f"Replay: {c['replay_steps']} steps, Adam lr 0.01, weight decay 0.01 (1 training per step). ES: "
        f"{c['es_steps']} steps, population {c['es_population']} (9 trainings per step), sigma {c['es_sigma']}, "
        f"lr {c['es_lr']}. All start from the same N(0,1) table (build_rules, the run's seed). Meta-loss: mean "
        f"over {c['eval_tasks']} fixed task draws; test accuracy: {c['final_networks']} networks trained on the "
        f"{c['n_train']}-example pool. Pattern columns give the network trainings at which the sign pattern "
        "was first reached and from which on it held to the end (identifiable part: r(s,0) - r(s,1), the only "
        "part the loss sees in a binary task; the common part (r(s,0) + r(s,1))/2 is moved only by the L2 term).\n\n"
        + md_table(["seed", "method", "trainings", "final table", "[[-,+],[+,-]]", "identifiable",
                    "id. first", "id. held from", "full first", "full held from", "acc >= 0.90 at",
                    "meta-loss", "test acc"], rows)
        + "\n\n" + md_table(["method", "full pattern", "identifiable pattern", "mean meta-loss",
                              "mean test acc"], srows)
        + "\n\n" + _rules_verdict(sm)
        + "\n\n![trajectories](trajectories.png)\n\n![scaling](scaling.png)\n\n![rule learning](rule_learning.png)")
