"""Fig. 4 and Fig. 5 of the section: per-model curves, the summary panel, adversarial examples."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ... import robustness as rb
from ..common import pyplot, save_fig
from .config import PAPER


def _xpos(eps):
    """Plot positions: the grid up to 4 as is, a larger eps one step further."""
    pos, last = [], 0.0
    for e in eps:
        if e <= 4.0 + 1e-9:
            pos.append(e)
            last = e
        else:
            last = last + 0.75
            pos.append(last)
    return pos


def _ordered(results: dict) -> dict:
    """The models in run order (results.json stores keys sorted)."""
    m = results["models"]
    order = results.get("order") or [n for n in rb.SELECTABLE if n in m] + [n for n in m if n not in rb.SELECTABLE]
    return {n: m[n] for n in order if n in m}


def plot(results: dict, out: Path) -> None:
    out = Path(out)
    models = _ordered(results)
    if not models:
        return
    plt = pyplot()
    eps = results["eps"]
    xs = [0.0] + _xpos(eps)
    ticks = [0.0] + _xpos(eps)
    tlabels = ["0"] + [f"{e:g}" for e in eps]
    names = list(models)
    # Fig. 5: one panel per model
    ncol = min(5, len(names))
    nrow = math.ceil(len(names) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.9 * nrow), squeeze=False, sharey=True)
    colors = {}
    cmap = plt.get_cmap("tab10")
    for ax, name in zip(axes.flat, names):
        m = models[name]
        for i, (a, c) in enumerate(m["standalone"].items()):
            col = colors.setdefault(a, cmap(len(colors) % 10))
            if a == "paper":
                continue
            ax.plot(xs, [c["clean"]] + c["rate"], color=col, lw=0.9, alpha=0.8, label=a)
        if m["paper"]:
            ax.plot(xs, [m["paper"]["clean"]] + m["paper"]["rate"], color="tab:red", lw=1.6, ls="--",
                    label="paper attack (all images)")
        w = m["worst"]
        ax.plot(xs, [w["clean"]] + w["rate"], color="k", lw=2.6, label="worst case (all images)")
        ax.fill_between(xs, [w["clean_ci"][0]] + [c[0] for c in w["ci"]],
                        [w["clean_ci"][1]] + [c[1] for c in w["ci"]], color="k", alpha=0.12)
        if name in PAPER:
            px = [e for e in (2.0, 4.0) if e in eps]
            ax.scatter([_xpos(eps)[eps.index(e)] for e in px], [PAPER[name][(2.0, 4.0).index(e)] for e in px],
                       marker="x", s=60, color="tab:red", zorder=5, label="paper's reported")
        flag = " [masked]" if m["masked"] else ""
        ax.set_title(m["label"] + flag, fontsize=9)
        ax.set_xticks(ticks, tlabels, fontsize=7)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("robust accuracy")
    for ax in axes[-1]:
        ax.set_xlabel("eps (L2)")
    handles, labels_ = [], []
    for ax in axes.flat:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels_:
                handles.append(h)
                labels_.append(l)
    fig.legend(handles, labels_, loc="lower center", ncol=min(7, len(labels_)), fontsize=7,
               bbox_to_anchor=(0.5, -0.04 if nrow > 1 else -0.12))
    fig.suptitle(f"Fig. 5: robust accuracy vs eps (worst case bold; per-attack curves stand-alone on the first "
                 f"{results['standalone_n']} images)", fontsize=10)
    save_fig(fig, out / "fig5.png")
    # summary: every model's worst case and paper-attack curve
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, name in enumerate(names):
        m = models[name]
        col = cmap(i % 10)
        ls = "-" if not name.endswith("-nocap") else ":"
        ax.plot(xs, [m["worst"]["clean"]] + m["worst"]["rate"], color=col, lw=2.2, ls=ls, label=m["label"])
        if m["paper"]:
            ax.plot(xs, [m["paper"]["clean"]] + m["paper"]["rate"], color=col, lw=1, ls="--", alpha=0.7)
    ax.set_xticks(ticks, tlabels)
    ax.set_xlabel("eps (L2)")
    ax.set_ylabel("robust accuracy")
    ax.set_title("worst case over all attacks (thick) and the paper's attack alone (dashed)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    save_fig(fig, out / "fig5_summary.png")
    # Fig. 4: originals and each model's smallest-eps adversarial input found
    figs = [(n, models[n]["fig"]) for n in names if models[n]["fig"]]
    if figs:
        k = len(figs[0][1])
        d = len(figs[0][1][0]["adv"])
        side = int(round(math.sqrt(d)))
        shape = (side, side) if side * side == d else (1, d)
        fig, axes = plt.subplots(len(figs) + 1, k, figsize=(1.25 * k, 1.35 * (len(figs) + 1)), squeeze=False)
        for c in range(k):
            ax = axes[0, c]
            ax.imshow(torch.tensor(figs[0][1][c]["x"]).reshape(shape).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"label {figs[0][1][c]['label']}", fontsize=6)
        for r, (name, items) in enumerate(figs, start=1):
            for c, it in enumerate(items):
                ax = axes[r, c]
                ax.imshow(torch.tensor(it["adv"]).reshape(shape).numpy(), cmap="gray", vmin=0, vmax=1)
                if it["eps"] is None:
                    t = "not broken" if it["pred"] == it["label"] else "misclassified"
                else:
                    t = f"eps {it['eps']:g} -> {it['adv_pred']}"
                ax.set_title(t, fontsize=6)
            axes[r, 0].set_ylabel(models[name]["label"], fontsize=6, rotation=0, ha="right", va="center")
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, 0].set_ylabel("original", fontsize=6, rotation=0, ha="right", va="center")
        fig.suptitle("Fig. 4: each model's adversarial input at the smallest eps any attack broke it",
                     fontsize=8, y=1.0)
        fig.tight_layout()
        save_fig(fig, out / "fig4.png")
