"""Issue 11, part 2: is there a recurrent (T > 1) configuration whose later rounds
stay active and pay off?  Resumable search, one JSON per configuration.

    python -m metaplastic.experiments.recurrence_search PHASE [--out DIR] [--seeds N]
    python -m metaplastic.experiments.recurrence_search summary [--out DIR]

The model is the paper's simple RNN (section 2): ``h <- cap_k(relu(h @ W + x @ A))``
for T rounds from h = 0, output rule r_o on the final firing words (A.1).  A
configuration fixes the dataset, |V|, k, T, how W starts (zero as in A.1, or a
fixed random W on the graph's edges: our control, not the paper's), the output
rule, an optional graph rule (additive, A.1 step 3) and optional homeostasis
(:mod:`metaplastic.homeostasis`, not in the paper).  Scales of W are given as
``s``: each column of W gets L2 norm ``s * sigma_P * sqrt(|V|) / ||h1||``
(sigma_P: the standard deviation over units of the input drive x @ A, ||h1||: the
norm of round 1's state, both averaged over 1,000 training examples), for which a
random-sign W gives a recurrent drive ``h1 @ W`` of about ``s`` times the input
drive's spread (:mod:`metaplastic.fixed_recurrence`, where the robustness section
also gets it from).  The measured ratio is recorded as ``drive_ratio``.

Each result records the test accuracy of every network (data seed 0, network
seeds 0..B-1, as ``metaplastic train --ensemble B``), the fraction of units firing
in each round and ``diff13``: the share of round 3's firing set not in round 1's
(mean over 2,000 test inputs).  Results go to ``DIR/configs/NAME.json``
(atomic; an existing file is skipped, so a stopped run resumes) and
``summary`` writes ``DIR/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from ..data import load_dataset
from ..errors import TrainingDiverged
from ..fixed_recurrence import column_norm, drive_stats, random_w
from ..homeostasis import Homeostasis, train_rules_homeostatic
from ..io import classic_rule, load_rule, write_json
from ..learner import Scheme, Tables, data_orders
from ..network import (NetworkConfig, accuracy, fired_mask, init_networks, predict, project,
                       run_rounds)

HALFSPACE_T1 = Path(__file__).resolve().parents[3] / "rules" / "halfspace-output-T1.json"
DATASETS6 = ("halfspace", "relu1", "relu2", "rnn", "mnist", "fashion-mnist")
_DATA: dict = {}


def dataset(name: str, n_train: int, n_test: int, seed: int = 0):
    key = (name, n_train, n_test, seed)
    if key not in _DATA:
        _DATA.clear()  # one at a time: MNIST at 10,000 + 10,000 is 60 MB
        _DATA[key] = load_dataset(name, n_train=n_train, n_test=n_test, seed=key[3])
    return _DATA[key]


def output_table(name: str, T: int) -> torch.Tensor:
    """``halfspace``: the shipped T=1 output table, read off the last round's bit at T > 1;
    ``perceptron``: Table 1's perceptron (last round's bit)."""
    if name == "perceptron":
        return classic_rule("perceptron", T).table().detach()
    path = HALFSPACE_T1 if name == "halfspace" else Path(name)
    if name == "halfspace" or path.suffix == ".json":
        t = load_rule(path, kind="output").table().detach()   # [2^T', 2]
        if t.shape[0] == 2**T:
            return t
        if t.shape[0] == 2:                                     # a T = 1 table: the last round's bit
            return t[torch.arange(2**T) & 1]
        raise ValueError(f"{name}: a {t.shape[0]}-row output table at T = {T}")
    raise ValueError(name)


def graph_table(spec, T: int) -> torch.Tensor | None:
    """``None``/``hebb``/``antihebb``/a rule file/an explicit ``2^T x 2^T`` list."""
    if spec is None:
        return None
    if spec == "hebb":
        return classic_rule("hebb", T).table().detach()
    if spec == "antihebb":
        return -classic_rule("hebb", T).table().detach()
    if spec in ("cov", "anticov"):  # covariance rule (Sejnowski 1977), same-round terms
        w = torch.arange(2**T)
        c = ((w[:, None] >> torch.arange(T - 1, -1, -1)) & 1).float() - 0.5   # [2^T, T]
        return (c @ c.T) * (1.0 if spec == "cov" else -1.0)
    if isinstance(spec, str):
        return load_rule(spec, kind="graph").table().detach()
    return torch.tensor(spec, dtype=torch.float32)


@torch.no_grad()
def round_stats(nets, x: torch.Tensor, n: int = 2000) -> dict:
    c = nets.config
    states: list = []
    P = project(x[:n].to(nets.A.dtype), nets.A)
    run_rounds(P, nets.W, c.k, c.rounds, states=states, words=False, recurrence=c.recurrence)
    active = [(h != 0) for h in states]                      # T x [B, n, V]
    fired = [fired_mask(h, c.k, c.firing) for h in states]   # the config's notion of firing
    out = {"firing_per_round": [float(f.double().mean()) for f in fired]}
    if c.firing != "nonzero":
        out["active_per_round"] = [float(f.double().mean()) for f in active]
    if c.rounds > 1:
        def new_share(F1, FT):
            return float(((FT & ~F1).sum(-1).double() / FT.sum(-1).clamp_min(1).double()).mean())
        out["diff1T"] = new_share(fired[0], fired[-1])
        if c.firing != "nonzero":
            out["diff1T_active"] = new_share(active[0], active[-1])
        out["firing_per_round_per_network"] = [[float(f[b].double().mean()) for f in fired]
                                               for b in range(nets.batch)]
    if nets.W is not None:
        m = min(n, 1000)
        into = states[0][:, :m] + (P[:, :m] if c.recurrence == "w(h+ax)" else 0)
        rec = torch.bmm(into, nets.W)
        out["drive_ratio"] = float(rec.std(-1).mean() / P[:, :m].std(-1).mean())
    return out


def run_config(cfg: dict) -> dict:
    """Train B networks under ``cfg`` and measure them (see the module docstring)."""
    torch.manual_seed(0)
    T, V, k = cfg["T"], cfg["V"], cfg["k"]
    data = dataset(cfg["dataset"], cfg.get("n_train", 10000), cfg.get("n_test", 10000),
                   cfg.get("data_seed", 0))
    seeds = list(range(cfg.get("seed0", 0), cfg.get("seed0", 0) + cfg["seeds"]))
    nc = NetworkConfig(d=data.dim, n_classes=data.n_classes, vertices=V, cap=k, rounds=T,
                       recurrence=cfg.get("recurrence", "wh+ax"), firing=cfg.get("firing", "nonzero"))
    gmode = cfg.get("graph_mode", "additive")
    nets = init_networks(nc, seeds, mode=gmode)
    sigma, hnorm = drive_stats(nets, data.x_train)
    info = {"sigma_P": sigma, "h1_norm": hnorm}
    if T > 1 and cfg.get("w_init", "zero") != "zero":
        norm = column_norm(cfg["w_scale"], sigma, hnorm, V)
        nets.W = random_w(nets.G, cfg["w_init"], seeds, norm)
        info["w_column_norm"] = norm
    homeo = None
    if T > 1 and (cfg.get("homeo_scale") or cfg.get("decay")):
        norm = column_norm(cfg["homeo_scale"], sigma, hnorm, V) if cfg.get("homeo_scale") else None
        homeo = Homeostasis(norm, cfg.get("homeo_interval", 100), cfg.get("homeo_center", False),
                            cfg.get("decay", 0.0))
        info["homeo_column_norm"] = norm
    graph = graph_table(cfg.get("graph"), T) if T > 1 else None
    if graph is not None and gmode == "multiplicative":
        graph = graph.exp()      # tables in the linear domain: factors m = exp(log-factor table)
    tables = Tables(output_table(cfg["output"], T), output_eta=cfg.get("output_eta", 1e-2),
                    graph=graph, graph_mode=gmode, graph_eta=cfg.get("graph_eta", 1e-2))
    scheme = Scheme(cfg.get("update_on", "misclassified"), cfg.get("output_rows", "true-and-predicted"),
                    cfg.get("output_input", "value"))
    orders = data_orders(data.x_train.shape[0], cfg.get("epochs", 1), seeds)
    t0 = time.perf_counter()
    mistakes = train_rules_homeostatic(nets, data.x_train, data.y_train, tables, orders, scheme,
                                       homeostasis=homeo)
    if cfg.get("retrain_output"):
        # the drift test: keep the learned W, reset U and train the output alone on
        # the same sequence, so the output layer sees a fixed representation
        te0 = accuracy(nets, data.x_test, data.y_test)
        info["test_accuracy_before_retrain"] = te0.tolist()
        nets.U.zero_()
        fixed = Tables(tables.output, output_eta=tables.output_eta)
        train_rules_homeostatic(nets, data.x_train, data.y_train, fixed, orders, scheme)
    secs = time.perf_counter() - t0
    te = accuracy(nets, data.x_test, data.y_test)
    pred = predict(nets, data.x_test)                         # [B, n]
    pred_share = [float(torch.bincount(p, minlength=data.n_classes).max()) / p.numel() for p in pred]
    res = {"config": cfg, "test_accuracy_per_network": te.tolist(),
           "test_accuracy": float(te.mean()), "test_accuracy_ci95": ci95(te.tolist()),
           "online_mistakes": mistakes.tolist(), "seconds": secs, **info,
           **round_stats(nets, data.x_test)}
    if pred_share is not None:
        res["majority_prediction_share"] = pred_share
    return res


T_CRIT = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
          9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 18: 2.101, 20: 2.086}


def tcrit(dof: int) -> float:
    if dof in T_CRIT:
        return T_CRIT[dof]
    return T_CRIT[max(d for d in T_CRIT if d <= dof)] if dof > 0 else float("nan")


def ci95(xs) -> float:
    """Half-width of the 95% t-interval of the mean."""
    n = len(xs)
    if n < 2:
        return float("nan")
    m = sum(xs) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in xs) / (n - 1))
    return tcrit(n - 1) * sd / math.sqrt(n)


def paired_ci95(a, b) -> tuple[float, float]:
    """Mean of a - b over paired runs (same seed: same A, same data order) and its 95% half-width."""
    d = [u - v for u, v in zip(a, b)]
    return sum(d) / len(d), ci95(d)


def diff_ci95(a, b) -> tuple[float, float]:
    """Mean of a minus mean of b and the half-width of its 95% (Welch) interval."""
    na, nb = len(a), len(b)
    ma, mb = sum(a) / na, sum(b) / nb
    va = sum((v - ma) ** 2 for v in a) / (na - 1)
    vb = sum((v - mb) ** 2 for v in b) / (nb - 1)
    se2 = va / na + vb / nb
    dof = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1)) if se2 > 0 else na + nb - 2
    return ma - mb, tcrit(int(dof)) * math.sqrt(se2)


# ---------------------------------------------------------------------------
# Phases: named lists of configurations.
# ---------------------------------------------------------------------------

def _base(ds, V=1000, T=3, seeds=3, **kw):
    return {"dataset": ds, "V": V, "k": V // 2, "T": T, "seeds": seeds, **kw}


def phase_controls(seeds: int):
    """Fixed random W (no graph plasticity) against T = 1, on relu2, rnn, mnist."""
    out = []
    for ds in ("relu2", "rnn", "mnist"):
        out.append(("t1-halfspace-" + ds, _base(ds, T=1, seeds=seeds, output="halfspace")))
        if ds == "relu2":  # equals T = 1 by construction (W = 0): checked once
            out.append(("t3-zeroW-halfspace-" + ds, _base(ds, seeds=seeds, output="halfspace")))
        # all-positive W only on relu2 (it lost 3-5 points there; too slow to repeat)
        for kind in (("normal", "absnormal", "positive") if ds == "relu2" else ("normal",)):
            for s in ((0.3, 1.0, 3.0) if kind == "normal" else (1.0, 3.0)):
                for o in ("halfspace", "perceptron"):
                    if o == "perceptron" and (kind != "normal" or s != 1.0):
                        continue
                    out.append((f"t3-fixed-{kind}-s{s}-{o}-{ds}",
                                _base(ds, seeds=seeds, output=o, w_init=kind, w_scale=s)))
    return out


def phase_homeo(seeds: int):
    """Graph plasticity from W = 0 (A.1) with homeostasis (column norms) at scale s."""
    learned = str(Path(__file__).resolve().parents[3] / "rules" / "relu1-mlp-T3.json")
    out = []
    for ds in ("relu2", "rnn"):
        for g, gname in (("hebb", "hebb"), ("antihebb", "antihebb"), (learned, "relu1mlp"),
                         ("cov", "cov"), ("anticov", "anticov")):
            for s in (1.0,):
                out.append((f"t3-plastic-{gname}-homeo-s{s}-{ds}",
                            _base(ds, seeds=seeds, output="halfspace", graph=g, homeo_scale=s,
                                  homeo_interval=100)))
        for g in ("anticov",):
            out.append((f"t3-randomW-s1.0-plastic-{g}-homeo-s1.0-{ds}",
                        _base(ds, seeds=seeds, output="halfspace", graph=g, homeo_scale=1.0,
                              homeo_interval=100, w_init="normal", w_scale=1.0)))
    return out


def phase_homeo2(seeds: int):
    """As :func:`phase_homeo`, with columns centred (E/I balance) before the rescaling."""
    learned = str(Path(__file__).resolve().parents[3] / "rules" / "relu1-mlp-T3.json")
    out = []
    for ds in ("relu2",):
        for g, gname, s, c in (("antihebb", "antihebb", 1.0, True), (learned, "relu1mlp", 1.0, True),
                               ("antihebb", "antihebb", 0.3, True), ("hebb", "hebb", 0.3, True),
                               ("anticov", "anticov", 0.3, False)):
            out.append((f"t3-plastic-{gname}-homeo{'-centered' if c else ''}-s{s}-{ds}",
                        _base(ds, seeds=seeds, output="halfspace", graph=g, homeo_scale=s,
                              homeo_interval=100, homeo_center=c)))
    return out


def phase_drift(seeds: int):
    """The drift test: the plastic configurations again, then U reset and retrained on the
    final (now fixed) W.  If the concurrent drift of the representation under the output
    layer were the loss, retraining would recover T = 1's accuracy or better."""
    out = []
    for s in (0.3, 1.0):
        out.append((f"drift-antihebb-homeo-centered-s{s}-retrain-relu2",
                    _base("relu2", seeds=seeds, output="halfspace", graph="antihebb", homeo_scale=s,
                          homeo_interval=100, homeo_center=True, retrain_output=True)))
    return out


#: Candidates confirmed with 10 retrainings on all six datasets (chosen from the screens).
CANDIDATES = {
    "fixed-normal-s1.0": dict(output="halfspace", w_init="normal", w_scale=1.0),
    "antihebb-centered-s0.3": dict(output="halfspace", graph="antihebb", homeo_scale=0.3,
                                   homeo_interval=100, homeo_center=True),
}


def confirm_cells(seeds: int, candidates: dict, prefix: str, datasets=DATASETS6):
    """Per dataset: the text's T = 1 reference, then each candidate at T = 3 (``{prefix}{name}-{ds}``)."""
    out = []
    for ds in datasets:
        out.append((f"confirm-t1-halfspace-{ds}", _base(ds, T=1, seeds=seeds, output="halfspace")))
        for cname, kw in candidates.items():
            out.append((f"{prefix}{cname}-{ds}", _base(ds, seeds=seeds, **kw)))
    return out


def phase_confirm(seeds: int):
    return confirm_cells(seeds, CANDIDATES, "confirm-t3-",
                         datasets=("relu2", "halfspace", "relu1", "rnn", "fashion-mnist", "mnist"))


def confirm_table(out: Path) -> str:
    """Per dataset: T=1 against each candidate, difference and its 95% (Welch) interval."""
    res = {p.stem: json.loads(p.read_text()) for p in (out / "configs").glob("confirm-*.json")}
    lines = ["| candidate | dataset | T=1 (95% CI) | T=3 (95% CI) | difference (95% CI) | wins | "
             "paired difference (95% CI) | firing per round | new in round 3 vs 1 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for cname in CANDIDATES:
        wins = measured = 0
        for ds in DATASETS6:
            a, b = res.get(f"confirm-t3-{cname}-{ds}"), res.get(f"confirm-t1-halfspace-{ds}")
            if a is None or b is None:
                continue
            d, h = diff_ci95(a["test_accuracy_per_network"], b["test_accuracy_per_network"])
            measured += 1
            pd, ph = paired_ci95(a["test_accuracy_per_network"], b["test_accuracy_per_network"])
            win = d - h > 0
            wins += win
            fr = " / ".join(f"{f:.2f}" for f in a["firing_per_round"])
            lines.append(f"| {cname} | {ds} | {b['test_accuracy']:.4f} ± {b['test_accuracy_ci95']:.4f} | "
                         f"{a['test_accuracy']:.4f} ± {a['test_accuracy_ci95']:.4f} | {d:+.4f} ± {h:.4f} | "
                         f"{'yes' if win else ('loss' if d + h < 0 else 'no')} | {pd:+.4f} ± {ph:.4f} | {fr} | {a.get('diff1T', 0):.2f} |")
        lines.append(f"| {cname} | **wins** | | | | {wins} of {measured} measured | | | |")
    return "\n".join(lines) + "\n"


PHASES = {"controls": phase_controls, "homeo": phase_homeo, "homeo2": phase_homeo2, "drift": phase_drift, "confirm": phase_confirm}


def run_phase(phase: str, out: Path, seeds: int, only: str | None = None) -> None:
    run_configs(PHASES[phase](seeds), phase, out, only)


def run_configs(cfgs, phase: str, out: Path, only: str | None = None) -> None:
    """Run (name, config) pairs not yet in ``out/configs`` and write one JSON each."""
    (out / "configs").mkdir(parents=True, exist_ok=True)
    for name, cfg in cfgs:
        if only and only not in name:
            continue
        path = out / "configs" / f"{name}.json"
        if path.exists():
            continue
        t0 = time.perf_counter()
        try:
            res = run_config(cfg)
        except TrainingDiverged as e:      # a result too: the rule blows the weights up
            write_json(path, {"name": name, "phase": phase, "config": cfg, "diverged": str(e)})
            print(f"{name:55s} diverged: {e}", flush=True)
            continue
        res["name"], res["phase"] = name, phase
        write_json(path, res)
        fr = ",".join(f"{f:.2f}" for f in res.get("active_per_round", res["firing_per_round"]))
        print(f"{name:55s} acc {res['test_accuracy']:.4f}±{res['test_accuracy_ci95']:.4f} "
              f"fire [{fr}] d13 {res.get('diff1T', float('nan')):.2f} "
              f"ratio {res.get('drive_ratio', float('nan')):.2f} ({time.perf_counter() - t0:.0f}s)",
              flush=True)


def summary(out: Path) -> str:
    rows = []
    for p in sorted((out / "configs").glob("*.json")):
        r = json.loads(p.read_text())
        if r.get("phase") != "es" and "diverged" not in r:
            rows.append(r)
    lines = ["| configuration | dataset | B | test acc (95% CI) | firing per round | new in round T vs 1 | drive ratio |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (r.get("phase", ""), r["config"]["dataset"], r["name"])):
        c = r["config"]
        fr = " / ".join(f"{f:.2f}" for f in r["firing_per_round"])
        d = r.get("diff1T")
        dr = r.get("drive_ratio")
        lines.append(f"| {r['name']} | {c['dataset']} | {c['seeds']} | {r['test_accuracy']:.4f} "
                     f"± {r['test_accuracy_ci95']:.4f} | {fr} | {'' if d is None else f'{d:.2f}'} | "
                     f"{'' if dr is None else f'{dr:.2f}'} |")
    text = "\n".join(lines) + "\n"
    if any((out / "configs").glob("confirm-*.json")):
        text += "\n" + confirm_table(out)
    es = [json.loads(p.read_text()) for p in sorted((out / "configs").glob("es-*.json"))]
    for r in es:
        text += (f"\nES {r['name']}: T=1 on the same networks and data {r.get('t1_accuracy_same_networks', float('nan')):.4f}; theta {[round(t, 3) for t in r['theta']]}; curve "
                 + "; ".join(f"step {c['step']} acc {c['accuracy']:.4f} fire "
                             f"{[round(f, 2) for f in c['firing_per_round']]} new {c['diff1T']:.2f}"
                             for c in r["curve"]) + "\n")
    (out / "summary.md").write_text(text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phase", choices=sorted(PHASES) + ["es", "summary"])
    ap.add_argument("--out", default="runs/recurrence-search")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--es-datasets", default="rnn")
    ap.add_argument("--es-steps", type=int, default=8)
    ap.add_argument("--only", default=None, help="run only configurations whose name contains this")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out)
    if a.phase == "es":
        from .recurrence_es import es_search
        for ds in a.es_datasets.split(","):
            es_search(f"es-bilinear-centered-{ds}-V100" + ("" if a.es_steps == 8 else f"-steps{a.es_steps}"),
                      out, ds, steps=a.es_steps)
    elif a.phase == "summary":
        sys.stdout.write(summary(out))
    else:
        run_phase(a.phase, out, a.seeds, a.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
