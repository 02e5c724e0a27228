"""`reproduce robustness` and fig3's hot paths, before and after the compiled cap mask and projection
and run_rounds' zero-product shortcuts.

    python benchmarks/reproduce_speed.py [--images 200] [--models plastic-T3 plastic-T1 gd-T3]
        [--models-dir DIR] [--fig3-retrainings 2] [--repeats 1] [--out FILE.json]

Two code paths in one process, alternating within each repeat (the machine's
load drifts):

* ``old``: the cap's kept set by ``torch.topk`` and the tie check
  (:func:`metaplastic.network.cap`'s torch form), the L2-ball-and-box
  projection in torch (``attacks._project_torch``), the Square attack's
  candidates in torch (``_square_candidates_torch``), and
  ``SimpleRNN.forward`` and ``network.predict`` computing the firing words
  they throw away, and ``network.run_rounds`` computing every product
  ``h @ W``, as before;
* ``new``: :mod:`metaplastic.capmask`, :mod:`metaplastic._projkernel` and
  :mod:`metaplastic._squarekernel` (numba), forwards without firing words, and
  ``run_rounds`` skipping products that are exactly zero (a silent round, an
  all-zero W; ``network._may_shortcut``).

Robustness: the whole protocol of :func:`metaplastic.robustness.evaluate`
(every attack, stand-alone sweeps, eps=0 gate) and the U-scale check, with the
section's default budgets, on the first ``--images`` MNIST test images, per
model (trained models from ``--models-dir``, e.g. a finished run's
``robustness/models``; else trained here once, at the section's sizes).  fig3:
one cell (T=3, |V|=1000, MNIST, 10,000 training and test images) per method
with ``--fig3-retrainings`` networks.  Reports seconds per path, the ratio,
and whether every decision (per-image first-broken eps of every attack, the
worst case, the gates; fig3's accuracies) is the same in both paths.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from metaplastic import network
from metaplastic import robustness as rb
from metaplastic.attacks import gradient_free, projection
from metaplastic.network import SimpleRNN, run_rounds

_NEW = {"keep_mask": network.keep_mask, "capped": network.capped, "project": projection._project_compiled,
        "forward": SimpleRNN.forward, "square": gradient_free._square_candidates, "predict": network.predict,
        "shortcut": network._may_shortcut}


def _old_forward(self, x):
    c = self.config
    P = (x.to(self.A.dtype) @ self.A)[None]
    h, _ = run_rounds(P, None if self.W is None else self.W[None], c.k, c.rounds, **c.semantics)
    return (h @ self.U)[0]


def _old_predict(nets, x, batch_size=2048):
    out = [network.forward(nets, x[i:i + batch_size])[0].argmax(-1) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(out, dim=1)


def use(path: str) -> None:
    """Switch the process between the two code paths."""
    old = path == "old"
    network.keep_mask = (lambda zd, k: None) if old else _NEW["keep_mask"]
    network.capped = (lambda zd, k: None) if old else _NEW["capped"]
    projection._project_compiled = (lambda *a: None) if old else _NEW["project"]
    SimpleRNN.forward = _old_forward if old else _NEW["forward"]
    network.predict = _old_predict if old else _NEW["predict"]
    gradient_free._square_candidates = gradient_free._square_candidates_torch if old else _NEW["square"]
    network._may_shortcut = (lambda *a: False) if old else _NEW["shortcut"]  # run_rounds' zero-product skips


DECISIONS = ("correct", "worst_first", "worst_main_first", "first", "standalone_first", "eps0_broken",
             "in_ball_failures", "survivors_per_eps", "masking", "broken_by")


def robustness_case(name, models, x, y, proto):
    model, source = models[name], models.get(rb.transfer_source(name))
    seed = 1000 * 0 + rb.MODELS.index(name)
    t0 = time.perf_counter()
    res = rb.evaluate(model, x, y, proto, source=source, seed=seed, fig_images=2)
    sc = rb.scale_check(model, x, y, proto, res, source=source, seed=seed)
    secs = time.perf_counter() - t0
    dec = {k: res[k] for k in DECISIONS}
    dec["scale"] = {c: f["worst"] for c, f in sc["factors"].items()}
    return secs, dec, {a: round(c["seconds"], 2) for a, c in res["cost"].items()}


def fig3_case(method, retrainings):
    from metaplastic.reproduce import fig3
    from metaplastic.semantics import record
    rules, zero, _ = fig3.shipped_rules("text")
    tables = {"GD on output weights": None, "zero graph rule": zero[3], "plasticity (learned rules)": rules[3]}
    sp = dict(name=method, model="T=3, |V|=1000", dataset="mnist", method=method, T=3, V=1000, k=500,
              tables=tables[method], seeds=list(range(retrainings)), n_train=10000, n_test=10000,
              gd_lr=1e-2, gd_batch=10, sem=record({}))
    cell = fig3.run_cell(sp)
    return cell["seconds"], {"train": cell["train"], "test": cell["test"]}, {}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--models", nargs="*", default=["plastic-T3", "plastic-T1", "gd-T3"])
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--fig3-retrainings", type=int, default=2)
    ap.add_argument("--fig3-methods", nargs="*", default=["GD on output weights", "zero graph rule",
                                                          "plasticity (learned rules)"])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from metaplastic.data import load_dataset
    from metaplastic.reproduce.robustness import DEFAULTS, _protocol
    proto = _protocol(DEFAULTS)
    cases = []
    if a.models:
        train = load_dataset("mnist", n_train=10000, n_test=10000, seed=0)
        ev = load_dataset("mnist", n_train=10000, n_test=a.images, seed=0)
        need = set(a.models) | {rb.transfer_source(m) for m in a.models}
        setup = rb.ModelSetup(models=tuple(m for m in rb.MODELS if m in need))
        mdir = Path(a.models_dir) if a.models_dir else Path("runs/bench-models")
        trained = rb.train_models(setup, [0], mdir, train, log=lambda s: print(s, file=sys.stderr))
        models = {m: trained[m][0][0] for m in trained}
        for m in a.models:
            cases.append((f"robustness {m}", lambda m=m: robustness_case(m, models, ev.x_test, ev.y_test, proto)))
    for meth in a.fig3_methods:
        if a.fig3_retrainings > 0:
            cases.append((f"fig3 T=3 |V|=1000 mnist {meth}", lambda meth=meth: fig3_case(meth, a.fig3_retrainings)))
    for path in ("new", "old"):  # compile the kernels, load the data, before any timing
        use(path)
        network.cap(torch.rand(32, 1000), 500)
        projection.project_l2_box(torch.rand(2, 4), torch.rand(2, 4), 0.5)
        i = torch.zeros(2, dtype=torch.long)
        gradient_free._square_candidates(torch.rand(2, 4), torch.rand(2, 4), torch.ones(2, dtype=torch.float64),
                                         i, i, i, i, torch.ones(2, dtype=torch.float64), 1, 1, 2, 2,
                                         torch.ones(1, dtype=torch.float64))
    report = {"images": a.images, "fig3_retrainings": a.fig3_retrainings, "cases": {}}
    for label, fn in cases:
        row = {"seconds": {"old": [], "new": []}, "same_decisions": True}
        for r in range(a.repeats):
            decs = {}
            for path in (("old", "new") if r % 2 == 0 else ("new", "old")):
                use(path)
                secs, dec, costs = fn()
                row["seconds"][path].append(round(secs, 2))
                row.setdefault("attack_seconds", {})[path] = costs
                decs[path] = json.loads(json.dumps(dec))
                print(f"{label} [{path}] {secs:.1f} s", file=sys.stderr, flush=True)
            row["same_decisions"] &= decs["old"] == decs["new"]
            if decs["old"] != decs["new"]:
                row["differing"] = [k for k in decs["old"] if decs["old"][k] != decs["new"].get(k)]
        row["ratio_old_over_new"] = round(min(row["seconds"]["old"]) / min(row["seconds"]["new"]), 2)
        report["cases"][label] = row
        print(json.dumps({label: row}), flush=True)
    use("new")
    text = json.dumps(report, indent=2)
    if a.out:
        Path(a.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
