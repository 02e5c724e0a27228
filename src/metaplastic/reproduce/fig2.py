"""Fig. 2 (section 2, "Efficiency"): MNIST test accuracy against training samples seen.

The same network (T=1, |V|=1000, k=500) trained by output plasticity -- the
perceptron table and the output rule learned on halfspace (rules/) -- and by
Adam (lr 1e-2) on the output weights with batch sizes 1, 10 and 100.  One pass
over 10,000 training images; test accuracy at log-spaced sample counts, mean
and 95% interval over seeds (each seed its own network and data order).
Plasticity curves are exact snapshots: training is split at the checkpoints
and continued, which is the same sequence of updates.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..data import load_dataset
from ..errors import MetaplasticError
from ..gd import train_gd
from ..learner import Scheme, Tables, data_orders
from ..network import NetworkConfig, accuracy, init_networks
from .common import accuracy_curve, finish, fmt_pm, md_table, pyplot, save_fig, summarize
from .rules import load_shipped

PAPER = "Fig. 2 (a plot; the text claims plasticity converges with fewer samples than GD)"


def checkpoints(n: int) -> list[int]:
    pts = [c for c in (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000) if c < n]
    return pts + [n]


def run(out: Path, quick: bool = False) -> dict:
    t_start = time.perf_counter()
    cfg = dict(dataset="mnist", n_train=10000, n_test=10000, n_eval=2000, vertices=1000, cap=500,
               seeds=[0, 1, 2], batch_sizes=[1, 10, 100], lr=1e-2)
    if quick:
        cfg.update(dataset="halfspace", n_train=600, n_test=300, n_eval=300, vertices=60, cap=30,
                   seeds=[0, 1], batch_sizes=[1, 10])
    try:
        data = load_dataset(cfg["dataset"], n_train=cfg["n_train"], n_test=cfg["n_test"], seed=0)
    except MetaplasticError as e:  # MNIST missing: say so, run on halfspace at full size instead
        cfg["note"] = f"MNIST unavailable ({e}); ran on halfspace"
        cfg["dataset"] = "halfspace"
        data = load_dataset("halfspace", n_train=cfg["n_train"], n_test=cfg["n_test"], seed=0)
    netcfg = NetworkConfig(d=data.dim, n_classes=data.n_classes, vertices=cfg["vertices"],
                           cap=cfg["cap"], rounds=1)
    seeds = cfg["seeds"]
    n = data.x_train.shape[0]
    pts = checkpoints(n)
    xe, ye = data.x_test[:cfg["n_eval"]], data.y_test[:cfg["n_eval"]]
    orders = data_orders(n, 1, seeds)
    curves = {}
    shipped = load_shipped("halfspace-output-T1", kind="output")
    rules = {"plasticity: perceptron": Tables(output=torch.tensor([[-1.0, 1.0], [1.0, -1.0]]))}
    if shipped is not None:
        rules["plasticity: learned output rule"] = Tables(output=shipped.table().detach(),
                                                          output_eta=shipped.eta)
    for name, tables in rules.items():
        nets = init_networks(netcfg, seeds)
        accs = accuracy_curve(nets, data, tables, orders, pts, Scheme(), xe, ye)
        curves[name] = {"samples": pts, "accuracy": accs,
                        "final_test_accuracy": accuracy(nets, data.x_test, data.y_test).tolist()}
    for bs in cfg["batch_sizes"]:
        nets = init_networks(netcfg, seeds)
        accs, pending = [], list(pts)

        def cb(seen, now, accs=accs, pending=pending):
            while pending and seen >= pending[0]:
                accs.append(accuracy(now, xe, ye).tolist())
                pending.pop(0)

        train_gd(nets, data.x_train, data.y_train, orders, which="output", lr=cfg["lr"],
                 batch_size=bs, step_callback=cb)
        curves[f"Adam, batch {bs}"] = {"samples": pts, "accuracy": accs,
                                       "final_test_accuracy": accuracy(nets, data.x_test, data.y_test).tolist()}
    rows = []
    for name, c in curves.items():
        for p, a in zip(c["samples"], c["accuracy"]):
            s = summarize(a)
            rows.append({"method": name, "samples": p, "accuracy_mean": s["mean"], "accuracy_std": s["std"],
                         "accuracy_ci95": s["ci95"], "per_seed": a})
    results = {"config": cfg, "curves": curves, "seconds": time.perf_counter() - t_start}
    return finish(out, "fig2", cfg, results, rows, plot, report)


def plot(results: dict, out: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, c in results["curves"].items():
        m = [summarize(a) for a in c["accuracy"]]
        mean = [s["mean"] for s in m]
        lo = [max(0.0, s["mean"] - s["std"]) for s in m]
        hi = [min(1.0, s["mean"] + s["std"]) for s in m]
        style = "-" if name.startswith("plasticity") else "--"
        ax.plot(c["samples"], mean, style, marker="o", ms=3, label=name)
        ax.fill_between(c["samples"], lo, hi, alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("training samples seen")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Fig. 2: {results['config']['dataset']}, T=1, |V|={results['config']['vertices']} "
                 "(mean, shaded ± 1 sd over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_fig(fig, out / "fig2.png")


def report(results: dict) -> str:
    cfg = results["config"]
    header = ["method"] + [str(p) for p in next(iter(results["curves"].values()))["samples"]] + ["final (full test)"]
    rows = []
    for name, c in results["curves"].items():
        rows.append([name] + [f"{summarize(a)['mean']:.3f}" for a in c["accuracy"]]
                    + [fmt_pm(summarize(c["final_test_accuracy"]))])
    note = f"\n\nNote: {cfg['note']}" if cfg.get("note") else ""
    return (f"## Fig. 2: samples to accuracy ({cfg['dataset']}, T=1, |V|={cfg['vertices']}, k={cfg['cap']})\n\n"
            f"Test accuracy (first {cfg['n_eval']} test images) after each number of training samples, "
            f"mean over {len(cfg['seeds'])} seeds; last column on the full test set (mean ± sd). "
            f"Paper: {PAPER}.\n\n" + md_table(header, rows) + "\n\n![Fig. 2](fig2.png)" + note
            + f"\n\nWall time: {results['seconds']:.0f} s.")
