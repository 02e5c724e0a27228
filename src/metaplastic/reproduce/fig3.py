"""Fig. 3 (section 3, A.2): one set of learned rules retrains four models on six datasets.

Rules (rules/): the output rule learned at |V|=100, k=50, T=1 on halfspace
drives the T=1 models; the MLP graph rule and its output rule learned at
|V|=100, k=50, T=3 on relu1 drive the T=3 models.  Models: T in {1, 3} x
(|V|=100, k=50) and (|V|=1000, k=500), p=0.5.  Datasets: halfspace, relu1,
relu2, rnn, MNIST, Fashion-MNIST (10,000 training and test examples).  Each
cell: 10 retrainings (new graph, new data order), one pass, updates on
mistakes; train and test accuracy.  Baselines in the same table: the T=3
networks with a zero graph rule (same output rule), and Adam (lr 1e-2, batch
10, one pass) on the output weights of the same networks.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

from ..errors import MetaplasticError
from ..io import write_json
from ..learner import Scheme, Tables, data_orders, train_gd, train_rules
from ..network import NetworkConfig, accuracy, init_networks
from ..rules import perceptron_table
from ..sweep.executor import current as current_executor
from .common import finish, md_table, pyplot, save_fig, summarize
from .rules import load_shipped

DATASETS = ["halfspace", "relu1", "relu2", "rnn", "mnist", "fashion-mnist"]
MODELS = {"T=1, |V|=100": (1, 100, 50), "T=3, |V|=100": (3, 100, 50),
          "T=1, |V|=1000": (1, 1000, 500), "T=3, |V|=1000": (3, 1000, 500)}


def shipped_rules():
    out1 = load_shipped("halfspace-output-T1", kind="output")
    out3 = load_shipped("relu1-mlp-T3", kind="output")
    graph3 = load_shipped("relu1-mlp-T3", kind="graph")
    notes = []
    if out1 is None:
        notes.append("rules/halfspace-output-T1.json missing: T=1 models use the perceptron table")
    if out3 is None or graph3 is None:
        notes.append("rules/relu1-mlp-T3.json missing: T=3 models use the perceptron table, no graph rule")
    t1 = out1.table().detach() if out1 is not None else perceptron_table(1)
    t3 = out3.table().detach() if out3 is not None else perceptron_table(3)
    g3 = graph3.table().detach() if graph3 is not None else None
    return {1: Tables(output=t1), 3: Tables(output=t3, graph=g3)}, {1: Tables(output=t1), 3: Tables(output=t3)}, notes


def run(out: Path, quick: bool = False) -> dict:
    t_start = time.perf_counter()
    cfg = dict(datasets=DATASETS, models=list(MODELS), n_train=10000, n_test=10000, retrainings=10,
               gd_lr=1e-2, gd_batch=10)
    models = dict(MODELS)
    if quick:
        cfg.update(datasets=["halfspace", "rnn"], n_train=300, n_test=200, retrainings=2)
        models = {"T=1, |V|=40": (1, 40, 20), "T=3, |V|=40": (3, 40, 20)}
        cfg["models"] = list(models)
    rules, zero_graph, notes = shipped_rules()
    results = {"config": cfg, "cells": {}, "notes": notes, "skipped": {},
               "rules": {"output_T1": rules[1].output.tolist(), "output_T3": rules[3].output.tolist(),
                         "graph_T3": None if rules[3].graph is None else rules[3].graph.tolist()}}
    rows = []
    seeds = list(range(cfg["retrainings"]))
    # Finished cells are saved as they come (a long run that is interrupted
    # keeps them); a rerun into the same folder with the same configuration
    # and rules reuses them.
    partial_path = out / "cells.partial.json"
    key = {"config": cfg, "rules": results["rules"]}
    done = {}
    if partial_path.is_file():
        try:
            old = json.loads(partial_path.read_text())
            if old.get("key") == json.loads(json.dumps(key)):
                done = old.get("cells", {})
        except ValueError:
            pass
    specs = []
    for ds in cfg["datasets"]:
        for mname, (T, V, k) in models.items():
            methods = {"plasticity (learned rules)": rules[T]}
            if T > 1:
                methods["zero graph rule"] = zero_graph[T]
            methods["GD on output weights"] = None
            for meth, tables in methods.items():
                specs.append({"name": f"{mname} :: {ds} :: {meth}", "model": mname, "dataset": ds, "method": meth,
                              "T": T, "V": V, "k": k, "tables": tables, "seeds": seeds, "n_train": cfg["n_train"],
                              "n_test": cfg["n_test"], "gd_lr": cfg["gd_lr"], "gd_batch": cfg["gd_batch"]})
    # the cells run through the executor `reproduce --workers/--scheduler` chose (serial by default)
    todo = [sp for sp in specs if sp["name"] not in done]
    for sp in specs:
        if sp["name"] in done:
            print(f"[fig3] {sp['model']} / {sp['dataset']} / {sp['method']}: kept from the interrupted run",
                  file=sys.stderr)
    got = {sp["name"]: done[sp["name"]] for sp in specs if sp["name"] in done}
    results["cells"].update(got)
    for i, cell in current_executor().run(run_cell, todo):
        sp = todo[i]
        if isinstance(cell, BaseException):
            raise cell
        got[sp["name"]] = cell
        if "skipped" in cell:
            continue
        results["cells"][sp["name"]] = cell
        out.mkdir(parents=True, exist_ok=True)
        write_json(partial_path, {"key": key, "cells": results["cells"]}, sort_keys=False)
        print(f"[fig3] {sp['model']} / {sp['dataset']} / {sp['method']}: test {cell['test']['mean']:.3f} "
              f"({cell['seconds']:.0f} s)", file=sys.stderr, flush=True)
    results["cells"] = {}  # in the grid's order, whatever order the cells finished in
    for sp in specs:
        cell = got[sp["name"]]
        if "skipped" in cell:
            results["skipped"].setdefault(sp["dataset"], cell["skipped"])
            continue
        results["cells"][sp["name"]] = cell
        rows.append(_row(sp["model"], sp["dataset"], sp["method"], cell))
    results["seconds"] = time.perf_counter() - t_start
    return finish(out, "fig3", cfg, results, rows, plot, report)


def run_cell(sp: dict) -> dict:
    """One cell of Fig. 3: ``retrainings`` networks of one model trained on one dataset by one method."""
    from ..sweep.tasks import cached_dataset
    try:
        data = cached_dataset(sp["dataset"], n_train=sp["n_train"], n_test=sp["n_test"], seed=0)
    except MetaplasticError as e:
        return {"skipped": str(e)}
    t0 = time.perf_counter()
    netcfg = NetworkConfig(d=data.dim, n_classes=data.n_classes, vertices=sp["V"], cap=sp["k"], rounds=sp["T"])
    nets = init_networks(netcfg, sp["seeds"])
    orders = data_orders(data.x_train.shape[0], 1, sp["seeds"])
    if sp["tables"] is None:
        train_gd(nets, data.x_train, data.y_train, orders, which="output", lr=sp["gd_lr"],
                 batch_size=sp["gd_batch"])
    else:
        train_rules(nets, data.x_train, data.y_train, sp["tables"], orders, Scheme())
    tr = accuracy(nets, data.x_train, data.y_train).tolist()
    te = accuracy(nets, data.x_test, data.y_test).tolist()
    return {"train": summarize(tr), "test": summarize(te), "seconds": time.perf_counter() - t0}


def _row(mname: str, ds: str, meth: str, cell: dict) -> dict:
    return {"model": mname, "dataset": ds, "method": meth, "test_mean": cell["test"]["mean"],
            "test_std": cell["test"]["std"], "test_ci95": cell["test"]["ci95"],
            "train_mean": cell["train"]["mean"], "train_std": cell["train"]["std"], "seconds": cell["seconds"]}


def word_labels(rounds: int) -> list[str]:
    return [format(w, f"0{rounds}b") for w in range(2**rounds)]


def plot(results: dict, out: Path) -> None:
    plt = pyplot()
    cells = results["cells"]
    cfg = results["config"]
    dsets = [d for d in cfg["datasets"] if any(k.split(" :: ")[1] == d for k in cells)]
    if dsets:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), sharey=True)
        lowest = 1.0
        for ax, split in zip(axes, ("train", "test")):
            names = cfg["models"]
            w = 0.8 / len(names)
            for j, m in enumerate(names):
                vals = [cells.get(f"{m} :: {d} :: plasticity (learned rules)", {}).get(split, {}).get("mean", float("nan"))
                        for d in dsets]
                ax.bar([i + j * w for i in range(len(dsets))], vals, w, label=m)
                lowest = min([lowest] + [v for v in vals if v == v])
            ax.set_xticks([i + 0.4 - w / 2 for i in range(len(dsets))], dsets, rotation=20)
            ax.set_title(f"{split} accuracy (learned rules, mean of {cfg['retrainings']})")
            ax.grid(axis="y", alpha=0.3)
        # the differences between models are a few points: start the axis near the lowest bar
        axes[0].set_ylim(max(0.0, math.floor(lowest * 10 - 0.5) / 10), 1.0)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
        fig.subplots_adjust(bottom=0.27, wspace=0.08)
        save_fig(fig, out / "fig3.png")
    r = results["rules"]
    panels = [("output rule, T=1 (halfspace)", r["output_T1"]), ("output rule, T=3 (relu1)", r["output_T3"])]
    if r["graph_T3"] is not None:
        panels.append(("graph rule, T=3 (relu1), rows pre, cols post", r["graph_T3"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.0), constrained_layout=True)
    for ax, (title, table) in zip(axes, panels):
        t = torch.tensor(table)
        rounds = max(1, (t.shape[0] - 1).bit_length())
        lim = float(t.abs().max()) or 1.0
        im = ax.imshow(t.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_yticks(range(t.shape[0]), word_labels(rounds))
        if t.shape[1] == 2:
            ax.set_xticks([0, 1], ["true row", "pred. row"])
        else:
            ax.set_xticks(range(t.shape[1]), word_labels(rounds), rotation=90)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    save_fig(fig, out / "fig3_rules.png")


def report(results: dict) -> str:
    cfg = results["config"]
    rows = []
    for key, c in results["cells"].items():
        m, ds, meth = key.split(" :: ")
        rows.append([m, ds, meth, f"{c['train']['mean']:.3f} ± {c['train']['std']:.3f}",
                     f"{c['test']['mean']:.3f} ± {c['test']['std']:.3f}", f"{c['seconds']:.0f} s"])
    notes = "".join(f"\n\nNote: {n}" for n in results["notes"])
    claims = claims_text(results)
    skipped = "".join(f"\n\nSkipped {d}: {why}" for d, why in results["skipped"].items())
    return ("## Fig. 3: cross-task generalization of learned rules\n\n"
            f"{cfg['retrainings']} retrainings per cell (mean ± sd), {cfg['n_train']} training examples, one pass. "
            "The paper reports only a bar chart (no numbers in the text); its claims: all four models "
            "perform well on other datasets, the large recurrent model is best, and on some datasets the "
            "small recurrent model beats the large feedforward one.\n\n"
            + md_table(["model", "dataset", "training", "train acc", "test acc", "time"], rows)
            + "\n\n" + claims
            + "\n\n![Fig. 3](fig3.png)\n\n![learned rules](fig3_rules.png)" + notes + skipped)


def claims_text(results: dict) -> str:
    """The paper's three claims about Fig. 3, checked against the measured cells."""
    cells = results["cells"]
    models = results["config"]["models"]
    dsets = [d for d in results["config"]["datasets"] if any(k.split(" :: ")[1] == d for k in cells)]
    learned = "plasticity (learned rules)"

    def test(m, d, meth=learned):
        c = cells.get(f"{m} :: {d} :: {meth}")
        return None if c is None else c["test"]["mean"]
    lines = []
    best = {d: max((m for m in models if test(m, d) is not None), key=lambda m: test(m, d), default=None)
            for d in dsets}
    big_rec = next((m for m in models if m.startswith("T=3") and "1000" in m), None)
    if big_rec:
        wins = [d for d in dsets if best[d] == big_rec]
        lines.append(f"* 'The large recurrent network consistently outperforms the other three': best on "
                     f"{len(wins)} of {len(dsets)} datasets ({', '.join(wins) or 'none'}); best per dataset: "
                     + "; ".join(f"{d}: {best[d]} ({test(best[d], d):.3f})" for d in dsets if best[d]) + ".")
    small_rec = next((m for m in models if m.startswith("T=3") and "1000" not in m), None)
    big_ff = next((m for m in models if m.startswith("T=1") and "1000" in m), None)
    if small_rec and big_ff:
        beats = [d for d in dsets if None not in (test(small_rec, d), test(big_ff, d))
                 and test(small_rec, d) > test(big_ff, d)]
        lines.append(f"* 'On certain datasets the small recurrent network outperforms the large feedforward "
                     f"network': on {len(beats)} of {len(dsets)} ({', '.join(beats) or 'none'}).")
    gains = []
    for m in models:
        if not m.startswith("T=3"):
            continue
        for d in dsets:
            a, b = test(m, d), test(m, d, "zero graph rule")
            if None not in (a, b):
                gains.append((m, d, a - b))
    if gains:
        pos = [g for g in gains if g[2] > 0]
        lines.append(f"* The learned graph rule against a zero graph rule (same output rule): higher test accuracy "
                     f"in {len(pos)} of {len(gains)} T=3 cells; differences "
                     + ", ".join(f"{m} / {d}: {g:+.3f}" for m, d, g in gains) + ".")
    g3 = results["rules"].get("graph_T3")
    if g3 is not None and max(max(row) for row in g3) < 0:
        lines.append("* The shipped graph rule is negative for every pair of firing words. Starting from W = 0, "
                     "its first updates make the recurrent input negative, so round 2 goes silent and round 3 "
                     "repeats round 1: the T=3 networks compute the T=1 representation, and the learned graph rule "
                     "acts only through which firing words (101 instead of 111) the output rule sees. The paper's "
                     "explanation, that 'an appropriate RNN plasticity rule represents a general strategy for "
                     "producing separable representations', is not what this rule does.")
    return "Checked against the paper's claims:\n\n" + "\n".join(lines) if lines else ""
