"""Issue 11, part 2, round 2 of the recurrence search: the directions round 1
(:mod:`~metaplastic.experiments.recurrence_search`, docs/RECURRENCE.md) did not try.

    python -m metaplastic.experiments.recurrence_round2 PHASE [--out DIR] [--seeds N]
    python -m metaplastic.experiments.recurrence_round2 summary [--out DIR]

Phases (each a list of configurations run by round 1's resumable runner, one JSON
per configuration in ``DIR/configs``):

* ``code``: the paper's code semantics (appendix A's released code; issue 11
  part 1): ``h <- cap_k(relu(W (h + A x)))`` after round 1, top-k firing, the
  bit-form output update (``--paper-code``), and the mixed setting
  ``w(h+ax)`` with non-zero firing and the value-weighted output update.  Under
  ``w(h+ax)`` W also multiplies the input drive, so round 2 is a second layer
  of the input.  Screens: fixed random W at a few scales (a control: does a good
  W exist under this recurrence?), Hebb at a few step sizes, Hebb and anti-Hebb
  under centred homeostasis.
* ``decay``: graph rules with decay towards the start (``W <- W0 + (1 - lambda)
  (W - W0)`` every 100 examples, :class:`~metaplastic.homeostasis.Homeostasis`):
  additive Hebb / anti-Hebb from W = 0, and multiplicative ones from a random W.
* ``learned``: graph rules learned by ``metaplastic learn-rule`` (exact replay
  meta-gradient, |V| = 100, T = 3, relu2 and rnn teachers, long batches with a
  held-out loss; the commands are in docs/RECURRENCE.md) screened at |V| = 1000;
  the files are listed in ``--learned DIR`` (every ``*.json`` there); relu2 and rnn only.
* ``mix``: two learned code-semantics graph rules with the text's output update.
* ``tape``: MLP graph rules learned through centred homeostasis by autograd
  (:mod:`.recurrence_tape`, |V| = 100) screened at |V| = 1000 with that homeostasis.
* ``confirm2``: a candidate named by ``--candidate`` with 10 retrainings on the six
  datasets (with the T = 1 references of round 1's ``confirm`` phase).

The reference is the text-semantics T = 1 network with the shipped T = 1 output
rule (``rules/halfspace-output-T1.json``), the issue's target; the paper-code
T = 1 network (``rules/halfspace-output-T1-paper-code.json``) is measured too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from .recurrence_search import _base, confirm_cells, diff_ci95, run_configs

RULES = Path(__file__).resolve().parents[3] / "rules"
#: The paper's code (``--paper-code``, without the meta-loss, which only matters when learning).
CODE = dict(recurrence="w(h+ax)", firing="top-k", output_input="bit")
#: Mixed: the code's recurrence with the text's firing and output update.
MIXED = dict(recurrence="w(h+ax)", firing="nonzero", output_input="value")
#: The T = 1 output rule learned under the code's semantics, read off the last round's bit.
OUT_CODE = str(RULES / "halfspace-output-T1-paper-code.json")


def references(ds: str, seeds: int):
    """T = 1 under the text (the target) and under the code."""
    return [(f"t1-halfspace-{ds}", _base(ds, T=1, seeds=seeds, output="halfspace")),
            (f"r2-t1-code-{ds}", _base(ds, T=1, seeds=seeds, output=OUT_CODE, **CODE))]


def phase_code(seeds: int):
    out = []
    for ds in ("relu2", "rnn", "mnist"):
        out += references(ds, seeds)
        for s in ((0.3, 1.0, 3.0) if ds == "relu2" else (1.0, 3.0)):
            out.append((f"r2-code-fixed-normal-s{s}-{ds}",
                        _base(ds, seeds=seeds, output=OUT_CODE, w_init="normal", w_scale=s, **CODE)))
        for s in (1.0, 3.0):
            out.append((f"r2-mixed-fixed-normal-s{s}-{ds}",
                        _base(ds, seeds=seeds, output="halfspace", w_init="normal", w_scale=s, **MIXED)))
        for eta in ((1e-2, 1e-3, 1e-4) if ds == "relu2" else (1e-3,)):
            out.append((f"r2-code-hebb-eta{eta:g}-{ds}",
                        _base(ds, seeds=seeds, output=OUT_CODE, graph="hebb", graph_eta=eta, **CODE)))
        if ds != "mnist":
            for g in ("hebb", "antihebb"):
                out.append((f"r2-code-{g}-homeo-centered-s1.0-{ds}",
                            _base(ds, seeds=seeds, output=OUT_CODE, graph=g, homeo_scale=1.0,
                                  homeo_interval=100, homeo_center=True, **CODE)))
            out.append((f"r2-mixed-hebb-eta0.001-{ds}",
                        _base(ds, seeds=seeds, output="halfspace", graph="hebb", graph_eta=1e-3, **MIXED)))
    return out


def phase_decay(seeds: int):
    out = []
    for ds in ("relu2", "rnn"):
        for g in ("hebb", "antihebb"):
            # additive from W = 0 (A.1), forgetting 10% of W per 100 examples
            out.append((f"r2-decay-additive-{g}-lam0.1-{ds}",
                        _base(ds, seeds=seeds, output="halfspace", graph=g, decay=0.1,
                              homeo_interval=100)))
            # multiplicative from a random-sign W at drive ratio 1, decaying back to it
            # multiplicative from a random-sign W at drive ratio 1, decaying back to it; at eta
            # 1e-3 a unit pair that co-fires on every update grows by at most e^0.1 per 100
            # examples, about what the decay takes back (at 1e-2 the weights overflow)
            out.append((f"r2-decay-mult-{g}-eta0.001-fromrandom-lam0.1-{ds}",
                        _base(ds, seeds=seeds, output="halfspace", graph=g, graph_mode="multiplicative",
                              graph_eta=1e-3, w_init="normal", w_scale=1.0, decay=0.1, homeo_interval=100)))
            out.append((f"r2-decay-code-mult-{g}-eta0.001-fromrandom-lam0.1-{ds}",
                        _base(ds, seeds=seeds, output=OUT_CODE, graph=g, graph_mode="multiplicative",
                              graph_eta=1e-3, w_init="normal", w_scale=1.0, decay=0.1, homeo_interval=100,
                              **CODE)))
    return out


def learned_rules(folder: Path):
    """(name, file, semantics) of every rule set in ``folder``; the semantics it was learned under."""
    out = []
    for p in sorted(folder.glob("*.json")):
        meta = json.loads(p.read_text()).get("meta", {})
        sem = meta.get("semantics") or {}
        out.append((p.stem, str(p), {k: sem[k] for k in ("recurrence", "firing", "output_input") if k in sem}))
    return out


def phase_learned(seeds: int, folder: Path | None = None):
    out = []
    if folder is None or not folder.exists():
        return out
    for name, path, sem in learned_rules(folder):
        for ds in ("relu2", "rnn"):
            out.append((f"r2-learned-{name}-{ds}",
                        _base(ds, seeds=seeds, output=path, graph=path, **sem)))
    return out


def phase_mix(seeds: int, folder: Path | None = None):
    """The two learned code-semantics graph rules whose networks beat the code's T = 1 on the
    screens, used with the text's value-weighted output update and T = 1 output table (read off
    the last round's bit) under the code's recurrence and firing: is the code's bit-form output
    update what costs them the points against the text's T = 1?"""
    out = []
    if folder is None:
        return out
    for stem in ("code-table-relu2-perceptron-b10000", "code-table-rnn-perceptron"):
        p = folder / f"{stem}.json"
        if not p.exists():
            continue
        for ds in ("relu2", "rnn"):
            out.append((f"r2-mix-{stem}-valueout-{ds}",
                        _base(ds, seeds=seeds, output="halfspace", graph=str(p), recurrence="w(h+ax)",
                              firing="top-k", output_input="value")))
    return out


def phase_tape(seeds: int, folder: Path | None = None):
    """Graph rules learned through centred homeostasis (:mod:`.recurrence_tape`), used with the
    homeostasis they were learned under (centred, the same scale and interval) and the perceptron."""
    out = []
    if folder is None or not folder.exists():
        return out
    for p in sorted(folder.glob("*.json")):
        st = json.loads(p.read_text())["meta"]["config"]
        for ds in ("relu2", "rnn"):
            out.append((f"r2-tape-{p.stem}-{ds}",
                        _base(ds, seeds=seeds, output="perceptron", graph=str(p), homeo_scale=st["scale"],
                              homeo_interval=st["interval"], homeo_center=True)))
    return out


def phase_confirm2(seeds: int, candidate: dict | None = None, name: str = ""):
    return confirm_cells(seeds, {name: candidate} if candidate is not None else {}, "confirm2-")


def summary(out: Path) -> str:
    """Round 2's table: every ``r2-*``/``confirm2-*`` result against the text T = 1 reference."""
    res = {p.stem: json.loads(p.read_text()) for p in (out / "configs").glob("*.json")}
    lines = ["| configuration | dataset | B | test acc (95% CI) | vs text T=1 (95% CI) | "
             "vs code T=1 (95% CI) | active per round | new in round 3 vs 1 | drive ratio | majority share |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    rows = [r for n, r in res.items() if n.startswith(("r2-", "confirm2-")) and "diverged" not in r]
    diverged = [r for n, r in res.items() if n.startswith(("r2-", "confirm2-")) and "diverged" in r]
    for r in sorted(rows, key=lambda r: (r["config"]["dataset"], r["name"])):
        c = r["config"]
        ref = res.get(("confirm-" if r["name"].startswith("confirm2-") else "")
                      + f"t1-halfspace-{c['dataset']}")
        def versus(ref):
            if ref is None or ref is r or len(ref["test_accuracy_per_network"]) < 2:
                return ""
            d, h = diff_ci95(r["test_accuracy_per_network"], ref["test_accuracy_per_network"])
            return f"{d:+.4f} ± {h:.4f}" + (" **win**" if d - h > 0 else "")
        vs = versus(ref)
        text = all(c.get(k, v) == v for k, v in
                   (("recurrence", "wh+ax"), ("firing", "nonzero"), ("output_input", "value")))
        vc = (versus(res.get(f"r2-t1-code-{c['dataset']}"))
              if c["T"] > 1 and not text and r["name"].startswith("r2-") else "")
        act = r.get("active_per_round", r["firing_per_round"])
        fr = " / ".join(f"{f:.2f}" for f in act)
        d13 = r.get("diff1T_active", r.get("diff1T"))
        dr = r.get("drive_ratio")
        ms = r.get("majority_prediction_share")
        lines.append(f"| {r['name']} | {c['dataset']} | {c['seeds']} | {r['test_accuracy']:.4f} "
                     f"± {r['test_accuracy_ci95']:.4f} | {vs} | {vc} | {fr} | {'' if d13 is None else f'{d13:.2f}'} | "
                     f"{'' if dr is None else f'{dr:.2f}'} | {'' if ms is None else f'{max(ms):.2f}'} |")
    refs = [res[n] for n in sorted(res) if n.startswith("t1-halfspace-")]
    text = "\n".join(lines) + "\n\nReferences (T = 1, text semantics, `rules/halfspace-output-T1.json`):\n\n"
    text += "\n".join(f"- {r['config']['dataset']}: {r['test_accuracy']:.4f} ± {r['test_accuracy_ci95']:.4f} "
                      f"(B = {r['config']['seeds']})" for r in refs) + "\n"
    conf = [r for r in rows if r["name"].startswith("confirm2-")]
    if conf:
        wins = 0
        for r in conf:
            ref = res.get(f"confirm-t1-halfspace-{r['config']['dataset']}")
            if ref is not None:
                d, h = diff_ci95(r["test_accuracy_per_network"], ref["test_accuracy_per_network"])
                wins += d - h > 0
        text += f"\nconfirm2 (10 retrainings): wins on {wins} of {len(conf)} datasets measured.\n"
    if diverged:
        text += "\nDiverged (weights overflowed):\n\n" + "\n".join(
            f"- {r['name']}: {r['diverged']}" for r in sorted(diverged, key=lambda r: r["name"])) + "\n"
    (out / "summary-round2.md").write_text(text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phase", choices=["code", "decay", "learned", "mix", "tape", "confirm2", "summary"])
    ap.add_argument("--out", default="runs/recurrence-search")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--learned", default="runs/recurrence-round2-rules",
                    help="folder of learned rule sets for the 'learned' phase")
    ap.add_argument("--tape-rules", default="runs/recurrence-round2-tape",
                    help="folder of rule sets learned through homeostasis for the 'tape' phase")
    ap.add_argument("--candidate", default=None,
                    help="confirm2: a JSON object of configuration keys (as in a result's 'config')")
    ap.add_argument("--name", default="candidate", help="confirm2: the candidate's name")
    ap.add_argument("--only", default=None, help="run only configurations whose name contains this")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out)
    if a.phase == "summary":
        sys.stdout.write(summary(out))
        return 0
    if a.phase == "code":
        cfgs = phase_code(a.seeds)
    elif a.phase == "decay":
        cfgs = phase_decay(a.seeds)
    elif a.phase == "learned":
        cfgs = phase_learned(a.seeds, Path(a.learned))
    elif a.phase == "mix":
        cfgs = phase_mix(a.seeds, Path(a.learned))
    elif a.phase == "tape":
        cfgs = phase_tape(a.seeds, Path(a.tape_rules))
    else:
        cand = json.loads(a.candidate) if a.candidate else None
        if cand is not None:
            cand = {k: v for k, v in cand.items() if k not in ("dataset", "seeds", "V", "k", "T")}
        cfgs = phase_confirm2(a.seeds, cand, a.name)
    run_configs(cfgs, a.phase, out, a.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
