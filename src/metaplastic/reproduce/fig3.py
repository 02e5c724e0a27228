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

``semantics`` (``reproduce fig3 --paper-code``): the same under the paper's
code (metaplastic.semantics), with the rules learned under it
(``rules/*-paper-code.json``).  Its cells are keyed ``... :: paper-code``; a run
into a folder that holds the other semantics' results keeps them, so the
report has one column per semantics.  Every cell records the fraction of
units active (non-zero) in each round and firing under its own notion.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

from ..errors import MetaplasticError
from ..io import read_json, write_json
from ..gd import train_gd
from ..learner import Scheme, Tables, data_orders, train_rules
from ..network import NetworkConfig, accuracy, firing_fractions, init_networks
from ..rules import perceptron_table
from ..semantics import name_of, record
from ..sweep.executor import current as current_executor
from .common import earlier_results, finish, md_table, pyplot, save_fig, summarize
from .rules import load_shipped

DATASETS = ["halfspace", "relu1", "relu2", "rnn", "mnist", "fashion-mnist"]
MODELS = {"T=1, |V|=100": (1, 100, 50), "T=3, |V|=100": (3, 100, 50),
          "T=1, |V|=1000": (1, 1000, 500), "T=3, |V|=1000": (3, 1000, 500)}


def shipped_rules(tag: str = "text"):
    """The Fig. 3 rules learned under semantics ``tag`` ("text": the shipped ones; "paper-code":
    ``rules/*-paper-code.json``; other mixes fall back to the text's, with a note)."""
    suffix = "-paper-code" if tag == "paper-code" else ""
    out1 = load_shipped(f"halfspace-output-T1{suffix}", kind="output")
    out3 = load_shipped(f"relu1-mlp-T3{suffix}", kind="output")
    graph3 = load_shipped(f"relu1-mlp-T3{suffix}", kind="graph")
    notes = []
    if tag not in ("text", "paper-code"):
        notes.append(f"no rules were learned under {tag}: the text's rules are used")
    if out1 is None:
        notes.append(f"rules/halfspace-output-T1{suffix}.json missing: T=1 models use the perceptron table")
    if out3 is None or graph3 is None:
        notes.append(f"rules/relu1-mlp-T3{suffix}.json missing: T=3 models use the perceptron table, no graph rule")
    t1 = out1.table().detach() if out1 is not None else perceptron_table(1)
    t3 = out3.table().detach() if out3 is not None else perceptron_table(3)
    g3 = graph3.table().detach() if graph3 is not None else None
    return {1: Tables(output=t1), 3: Tables(output=t3, graph=g3)}, {1: Tables(output=t1), 3: Tables(output=t3)}, notes


def run(out: Path, quick: bool = False, semantics: dict | None = None) -> dict:
    t_start = time.perf_counter()
    sem = record(semantics or {})
    tag = name_of(sem)
    tail = "" if tag == "text" else f" :: {tag}"  # cell keys of the text keep their old form
    cfg = dict(datasets=DATASETS, models=list(MODELS), n_train=10000, n_test=10000, retrainings=10,
               gd_lr=1e-2, gd_batch=10)
    models = dict(MODELS)
    if quick:
        cfg.update(datasets=["halfspace", "rnn"], n_train=300, n_test=200, retrainings=2)
        models = {"T=1, |V|=40": (1, 40, 20), "T=3, |V|=40": (3, 40, 20)}
        cfg["models"] = list(models)
    rules, zero_graph, notes = shipped_rules(tag)
    results = {"config": cfg, "cells": {}, "notes": notes, "skipped": {}, "semantics": tag,
               "rules": {"output_T1": rules[1].output.tolist(), "output_T3": rules[3].output.tolist(),
                         "graph_T3": None if rules[3].graph is None else rules[3].graph.tolist()}}
    results["semantics_settings"] = {tag: sem}
    results["rules_by_semantics"] = {tag: results["rules"]}
    # the other semantics' cells of an earlier run into this folder (same configuration) are kept
    kept = _other_semantics(out / "results.json", cfg, tag)
    rows = []
    seeds = list(range(cfg["retrainings"]))
    # Finished cells are saved as they come (a long run that is interrupted
    # keeps them); a rerun into the same folder with the same configuration
    # and rules reuses them.
    partial_path = out / "cells.partial.json"
    key = {"config": cfg, "rules": results["rules"], **({} if tag == "text" else {"semantics": sem})}
    old = read_json(partial_path)
    done = old.get("cells", {}) if old is not None and old.get("key") == json.loads(json.dumps(key)) else {}
    specs = []
    for ds in cfg["datasets"]:
        for mname, (T, V, k) in models.items():
            methods = {"plasticity (learned rules)": rules[T]}
            if T > 1:
                methods["zero graph rule"] = zero_graph[T]
            methods["GD on output weights"] = None
            for meth, tables in methods.items():
                specs.append({"name": f"{mname} :: {ds} :: {meth}{tail}", "model": mname, "dataset": ds,
                              "method": meth, "T": T, "V": V, "k": k, "tables": tables, "seeds": seeds,
                              "n_train": cfg["n_train"], "n_test": cfg["n_test"], "gd_lr": cfg["gd_lr"],
                              "gd_batch": cfg["gd_batch"], "sem": sem})
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
        print(f"[fig3] {sp['model']} / {sp['dataset']} / {sp['method']} ({tag}): test "
              f"{cell['test']['mean']:.3f} ({cell['seconds']:.0f} s)", file=sys.stderr, flush=True)
    results["cells"] = {}  # in the grid's order, whatever order the cells finished in
    for sp in specs:
        cell = got[sp["name"]]
        if "skipped" in cell:
            results["skipped"].setdefault(sp["dataset"], cell["skipped"])
            continue
        results["cells"][sp["name"]] = cell
        rows.append(_row(sp["model"], sp["dataset"], sp["method"], cell, tag))
    for other, (cells, rules_o, settings) in kept.items():
        results["cells"].update(cells)
        results["rules_by_semantics"][other] = rules_o
        results["semantics_settings"][other] = settings
        for name, cell in cells.items():
            m, ds, meth = name.split(" :: ")[:3]
            rows.append(_row(m, ds, meth, cell, other))
    # the text's cells first, then each other semantics' (whichever ran first)
    results["cells"] = dict(sorted(results["cells"].items(), key=lambda kv: _tag(kv[0]) != "text"))
    rows.sort(key=lambda r: r["semantics"] != "text")
    results["seconds"] = time.perf_counter() - t_start
    return finish(out, "fig3", cfg, results, rows, plot, report)


def run_cell(sp: dict) -> dict:
    """One cell of Fig. 3: ``retrainings`` networks of one model trained on one dataset by one method,
    under the cell's semantics (``sp["sem"]``), with the fraction of units active and firing per round."""
    from ..sweep.tasks import cached_dataset
    try:
        data = cached_dataset(sp["dataset"], n_train=sp["n_train"], n_test=sp["n_test"], seed=0)
    except MetaplasticError as e:
        return {"skipped": str(e)}
    sem = sp["sem"]
    t0 = time.perf_counter()
    netcfg = NetworkConfig(d=data.dim, n_classes=data.n_classes, vertices=sp["V"], cap=sp["k"], rounds=sp["T"],
                           recurrence=sem["recurrence"], firing=sem["firing"])
    nets = init_networks(netcfg, sp["seeds"])
    orders = data_orders(data.x_train.shape[0], 1, sp["seeds"])
    if sp["tables"] is None:
        train_gd(nets, data.x_train, data.y_train, orders, which="output", lr=sp["gd_lr"],
                 batch_size=sp["gd_batch"])
    else:
        train_rules(nets, data.x_train, data.y_train, sp["tables"], orders,
                    Scheme(output_input=sem["output_input"]))
    tr = accuracy(nets, data.x_train, data.y_train).tolist()
    te = accuracy(nets, data.x_test, data.y_test).tolist()
    probe = data.x_test[:1000]
    return {"train": summarize(tr), "test": summarize(te), "seconds": time.perf_counter() - t0,
            "active_per_round": firing_fractions(nets, probe, firing="nonzero").mean(0).tolist(),
            "firing_per_round": firing_fractions(nets, probe).mean(0).tolist()}


def _tag(key: str) -> str:
    """The semantics of a cell key (``model :: dataset :: method[ :: semantics]``)."""
    parts = key.split(" :: ")
    return parts[3] if len(parts) > 3 else "text"


def _other_semantics(path: Path, cfg: dict, tag: str) -> dict:
    """``{semantics: (cells, rules, settings)}`` of an earlier results.json with the same config."""
    old = earlier_results(path, cfg)
    if old is None:
        return {}
    by = {}
    for key, cell in old.get("cells", {}).items():
        t = _tag(key)
        if t != tag:
            by.setdefault(t, {})[key] = cell
    rules = old.get("rules_by_semantics", {"text": old.get("rules")})
    settings = old.get("semantics_settings", {"text": record({})})
    return {t: (cells, rules.get(t), settings.get(t, record({}))) for t, cells in by.items()}


def _row(mname: str, ds: str, meth: str, cell: dict, tag: str = "text") -> dict:
    return {"model": mname, "dataset": ds, "method": meth, "semantics": tag, "test_mean": cell["test"]["mean"],
            "test_std": cell["test"]["std"], "test_ci95": cell["test"]["ci95"],
            "train_mean": cell["train"]["mean"], "train_std": cell["train"]["std"], "seconds": cell["seconds"],
            "active_per_round": cell.get("active_per_round")}


def word_labels(rounds: int) -> list[str]:
    return [format(w, f"0{rounds}b") for w in range(2**rounds)]


def _file_tag(tag: str) -> str:
    return "" if tag == "text" else "-" + "".join(ch if ch.isalnum() or ch == "-" else "_" for ch in tag)


def plot(results: dict, out: Path) -> None:
    """``fig3.png`` and ``fig3_rules.png`` for the text; ``fig3-paper-code.png`` ... for the code."""
    by_tag = {}
    for key, cell in results["cells"].items():
        parts = key.split(" :: ")
        by_tag.setdefault(_tag(key), {})[" :: ".join(parts[:3])] = cell
    rules = results.get("rules_by_semantics") or {"text": results["rules"]}
    for tag in dict.fromkeys(list(by_tag) + list(rules)):
        _plot_one(by_tag.get(tag, {}), results["config"], rules.get(tag), out, _file_tag(tag))


def _plot_one(cells: dict, cfg: dict, r: dict | None, out: Path, ftag: str) -> None:
    plt = pyplot()
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
        save_fig(fig, out / f"fig3{ftag}.png")
    if r is None:
        return
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
    save_fig(fig, out / f"fig3_rules{ftag}.png")


def _view(results: dict, tag: str) -> dict:
    """The results of one semantics, with the text's cell keys (model :: dataset :: method)."""
    cells = {" :: ".join(k.split(" :: ")[:3]): c for k, c in results["cells"].items() if _tag(k) == tag}
    rules = (results.get("rules_by_semantics") or {"text": results["rules"]}).get(tag) or {}
    return {"config": results["config"], "cells": cells, "rules": {"graph_T3": None, **rules},
            "semantics_settings": results.get("semantics_settings", {}).get(tag, record({}))}


def _tags(results: dict) -> list[str]:
    return list(dict.fromkeys(_tag(k) for k in results["cells"])) or [results.get("semantics", "text")]


def report(results: dict) -> str:
    cfg = results["config"]
    tags = _tags(results)
    views = {t: _view(results, t) for t in tags}
    rows = []
    for key in dict.fromkeys(" :: ".join(k.split(" :: ")[:3]) for k in results["cells"]):
        m, ds, meth = key.split(" :: ")
        row = [m, ds, meth]
        for t in tags:
            c = views[t]["cells"].get(key)
            if c is None:
                row += ["-", "-"]
                continue
            act = c.get("active_per_round")
            row += [f"{c['test']['mean']:.3f} ± {c['test']['ci95']:.3f}",
                    "-" if act is None else ", ".join(f"{a:.2f}" for a in act)]
        rows.append(row)
    header = ["model", "dataset", "training"]
    for t in tags:
        header += [f"test acc, {t} (mean ± 95% CI)", f"active per round, {t}"]
    notes = "".join(f"\n\nNote: {n}" for n in results["notes"])
    claims = "\n\n".join(f"**{t}**: " + claims_text(views[t]) for t in tags)
    summary = claims_summary({t: views[t] for t in tags})
    skipped = "".join(f"\n\nSkipped {d}: {why}" for d, why in results["skipped"].items())
    figs = "".join(f"\n\n![Fig. 3, {t}](fig3{_file_tag(t)}.png)\n\n![learned rules, {t}](fig3_rules{_file_tag(t)}.png)"
                   for t in tags)
    sem = results.get("semantics_settings", {})
    sem_line = ("" if tags == ["text"] else "Semantics (metaplastic.semantics): " + "; ".join(
        f"{t} = " + ", ".join(f"{k} {v}" for k, v in sem.get(t, {}).items()) for t in tags) + ". ")
    return ("## Fig. 3: cross-task generalization of learned rules\n\n"
            f"{cfg['retrainings']} retrainings per cell (mean ± 95% interval half-width), {cfg['n_train']} "
            "training examples, one pass. " + sem_line +
            "'Active per round': the fraction of units with a non-zero value in each round (test inputs; "
            "under top-k firing every round also *fires* k units). "
            "The paper reports only a bar chart (no numbers in the text); its claims: all four models "
            "perform well on other datasets, the large recurrent model is best, and on some datasets the "
            "small recurrent model beats the large feedforward one.\n\n"
            + md_table(header, rows)
            + "\n\nChecked against the paper's claims:\n\n" + claims + summary
            + figs + notes + skipped)


def claims_summary(views: dict) -> str:
    """Whether each recurrent claim holds under each semantics: text, code, both or neither."""
    if not views:
        return ""
    verdicts = {t: claim_verdicts(v) for t, v in views.items()}
    names = list(next(iter(verdicts.values())))
    lines = []
    for c in names:
        holds = [t for t in verdicts if verdicts[t].get(c)]
        where = ("all semantics run (" + ", ".join(holds) + ")" if len(holds) == len(verdicts) > 1
                 else ", ".join(holds) if holds else "none of the semantics run")
        lines.append(f"* {c}: holds under {where}.")
    if not lines:
        return ""
    return "\n\nSummary (criteria: best mean test accuracy on more than half the datasets; a win outside " \
           "both 95% intervals on at least one dataset):\n\n" + "\n".join(lines)


def claim_verdicts(view: dict) -> dict:
    cells, models = view["cells"], view["config"]["models"]
    dsets = [d for d in view["config"]["datasets"] if any(k.split(" :: ")[1] == d for k in cells)]
    learned = "plasticity (learned rules)"

    def st(m, d):
        c = cells.get(f"{m} :: {d} :: {learned}")
        return None if c is None else (c["test"]["mean"], c["test"]["ci95"])
    big_rec = next((m for m in models if m.startswith("T=3") and "1000" in m), None)
    small_rec = next((m for m in models if m.startswith("T=3") and "1000" not in m), None)
    big_ff = next((m for m in models if m.startswith("T=1") and "1000" in m), None)
    out = {}
    if big_rec and dsets:
        best = [d for d in dsets if st(big_rec, d) and all(st(m, d) is None or st(m, d)[0] <= st(big_rec, d)[0]
                                                           for m in models)]
        out["the large recurrent model is best"] = len(best) > len(dsets) / 2
    if small_rec and big_ff and dsets:
        sep = [d for d in dsets if st(small_rec, d) and st(big_ff, d)
               and st(small_rec, d)[0] - st(small_rec, d)[1] > st(big_ff, d)[0] + st(big_ff, d)[1]]
        out["the small recurrent model beats the large feed-forward one on some datasets"] = bool(sep)
    return out


def claims_text(results: dict) -> str:
    """The paper's three claims about Fig. 3, checked against the measured cells."""
    cells = results["cells"]
    models = results["config"]["models"]
    dsets = [d for d in results["config"]["datasets"] if any(k.split(" :: ")[1] == d for k in cells)]
    learned = "plasticity (learned rules)"

    def test(m, d, meth=learned):
        c = cells.get(f"{m} :: {d} :: {meth}")
        return None if c is None else c["test"]["mean"]

    def ci(m, d):
        c = cells.get(f"{m} :: {d} :: {learned}")
        return "" if c is None or c["test"]["ci95"] != c["test"]["ci95"] else f" ± {c['test']['ci95']:.3f}"
    lines = []
    best = {d: max((m for m in models if test(m, d) is not None), key=lambda m: test(m, d), default=None)
            for d in dsets}
    big_rec = next((m for m in models if m.startswith("T=3") and "1000" in m), None)
    if big_rec:
        wins = [d for d in dsets if best[d] == big_rec]
        lines.append(f"* 'The large recurrent network consistently outperforms the other three': best on "
                     f"{len(wins)} of {len(dsets)} datasets ({', '.join(wins) or 'none'}); best per dataset: "
                     + "; ".join(f"{d}: {best[d]} ({test(best[d], d):.3f}{ci(best[d], d)})"
                                 for d in dsets if best[d]) + ".")
    small_rec = next((m for m in models if m.startswith("T=3") and "1000" not in m), None)
    big_ff = next((m for m in models if m.startswith("T=1") and "1000" in m), None)
    if small_rec and big_ff:
        beats = [d for d in dsets if None not in (test(small_rec, d), test(big_ff, d))
                 and test(small_rec, d) > test(big_ff, d)]
        lines.append(f"* 'On certain datasets the small recurrent network outperforms the large feedforward "
                     f"network': on {len(beats)} of {len(dsets)} ({', '.join(beats) or 'none'}); "
                     + "; ".join(f"{d}: {test(small_rec, d):.3f}{ci(small_rec, d)} vs {test(big_ff, d):.3f}"
                                 f"{ci(big_ff, d)}" for d in dsets
                                 if None not in (test(small_rec, d), test(big_ff, d))) + ".")
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
    acts = [c["active_per_round"] for k, c in cells.items()
            if k.startswith("T=3") and k.endswith(learned) and c.get("active_per_round")]
    collapsed = bool(acts) and all(a[1] < 0.05 and abs(a[2] - a[0]) < 0.1 for a in acts)
    through_w = results.get("semantics_settings", {}).get("recurrence") == "w(h+ax)"
    if through_w:
        lines.append("* Under the code's recurrence W (h + A x), W = 0 silences rounds 2..T: the T=3 networks "
                     "with a zero graph rule or with GD on the output weights end every input at h = 0 and "
                     "predict one class. A negative graph rule does not silence them (the input's negative "
                     "entries pass through negative weights); active units per round are in the table.")
    if g3 is not None and max(max(row) for row in g3) < 0 and (collapsed or not acts) and not through_w:
        lines.append("* The shipped graph rule is negative for every pair of firing words. Starting from W = 0, "
                     "its first updates make the recurrent input negative, so round 2 goes silent and round 3 "
                     "repeats round 1: the T=3 networks compute the T=1 representation, and the learned graph rule "
                     "acts only through which firing words (101 instead of 111) the output rule sees. The paper's "
                     "explanation, that 'an appropriate RNN plasticity rule represents a general strategy for "
                     "producing separable representations', is not what this rule does.")
    return "\n" + "\n".join(lines) if lines else "no claim could be checked."
