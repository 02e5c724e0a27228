"""Does the GD baseline's robustness come from its cap?  (A check of the robustness section, section 4 / A.3.)

    python -m metaplastic.experiments.gd_cap [--lrs 1e-2 3e-4 1e-4] [--rounds 1] [--n-images 300]
                                             [--out FILE.json]

The robustness section's GD models (Adam, lr 1e-2, batch 10, all weights through the cap)
end with 2-6% of their units positive, so their cap (k = |V|/2) never binds and the capped
and cap-free twins differ only in training.  This trains the GD model (T=1, or T=3 with
``--rounds 3``; |V|=1000, k=500, MNIST, 10,000 training images, 2 epochs, seed 0) at smaller
Adam learning rates, where the
cap does bind, capped and cap-free, and attacks each with the section's protocol
(:func:`metaplastic.robustness.evaluate`, its default budgets) on the first ``--n-images``
test images, in its main sweep (worst case over the attacks; the stand-alone per-attack
sweeps are skipped).  The transfer attack needs a source model and is left out; everything
else (the paper's attack, APGD-CE/DLR, Square, noise, blend, BPDA, NES) runs.

Printed and written: per learning rate and cap, clean accuracy, the share of images on which
the cap binds (:func:`metaplastic.robustness.cap_binding`; at T=3 in the round where it binds
most), the share of units positive before it in round 1, and the worst-case and paper-attack
robust accuracy per eps.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict

import torch

from .. import robustness as rb
from ..checks import ADAM_STEP_PER_LR, check_number
from ..data import load_dataset
from ..errors import MetaplasticError
from ..gd import train_gd
from ..learner import data_orders
from ..network import NetworkConfig, SimpleRNN, init_networks


def run_one(data, x, y, lr: float, capped: bool, proto, *, vertices: int = 1000, cap: int = 500,
            epochs: int = 2, seed: int = 0, rounds: int = 1) -> dict:
    """Train one GD network (capped or not) at Adam learning rate ``lr`` and attack it."""
    cfg = NetworkConfig(d=data.dim, n_classes=data.n_classes, vertices=vertices, cap=cap, rounds=rounds,
                        capped=capped)
    nets = init_networks(cfg, [seed])
    n = data.x_train.shape[0]
    t0 = time.perf_counter()
    train_gd(nets, data.x_train, data.y_train, data_orders(n, epochs, [seed]), which="all", lr=lr, batch_size=10)
    train_seconds = time.perf_counter() - t0
    model = SimpleRNN(nets, 0)
    res = rb.evaluate(model, x, y, proto, seed=seed + 7, standalone=False, fig_images=0)
    w, p = res["curves"]["worst"], res["curves"]["paper"]
    binding = rb.cap_binding(model, x)
    return {"lr": lr, "capped": capped, "rounds": rounds, "n": w["n"], "clean": w["clean"], "eps": list(proto.eps),
            "worst": w["robust"], "paper": p["robust"],
            "cap_binds": None if binding is None else max(binding["binds"]),  # the round where it binds most
            "units_positive": None if binding is None else binding["positive"][0],
            "train_seconds": train_seconds,
            "attack_seconds": res["seconds"]}


def table(rows: list[dict]) -> str:
    """The results as a markdown table (robust shares at eps 0.5, 1, 1.5 and 2)."""
    eps = rows[0]["eps"]
    cols = [j for j, e in enumerate(eps) if e in (0.5, 1.0, 1.5, 2.0)]
    head = ["lr", "cap", "clean", "cap binds", "units positive"] + [f"worst eps={eps[j]:g}" for j in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        pct = lambda k: f"{100 * k / r['n']:.1f}%"  # noqa: E731
        lines.append("| " + " | ".join([f"{r['lr']:g}", "yes" if r["capped"] else "no", pct(r["clean"]),
                                        "-" if r["cap_binds"] is None else f"{100 * r['cap_binds']:.0f}%",
                                        "-" if r["units_positive"] is None else f"{100 * r['units_positive']:.1f}%"]
                                       + [pct(r["worst"][j]) for j in cols]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m metaplastic.experiments.gd_cap", description=__doc__.split("\n\n")[0])
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-2, 3e-4, 1e-4])
    ap.add_argument("--n-images", type=int, default=300)
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--vertices", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=1, help="T (the section's GD models: 1 and 3)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true", help="tiny budgets (a smoke run)")
    a = ap.parse_args(argv)
    try:
        return _run(a)
    except MetaplasticError as e:  # bad input or missing data: one line, before the work
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(a) -> int:
    from ..reproduce.robustness.config import DEFAULTS, QUICK, _protocol
    for lr in a.lrs:
        check_number("--lrs", lr, "float32", factor=ADAM_STEP_PER_LR, why="Adam's first step, 10 x lr")
    torch.set_num_threads(1)
    budget = dict(DEFAULTS, **(QUICK if a.quick else {}))
    budget["attacks"] = tuple(x for x in rb.ORDER if x != "transfer")
    proto = _protocol(budget)
    data = load_dataset("mnist", n_train=a.n_train, n_test=10, seed=0)
    ev = load_dataset("mnist", n_train=a.n_train, n_test=a.n_images, seed=0)
    rows = []
    for lr in a.lrs:
        for capped in (True, False):
            r = run_one(data, ev.x_test, ev.y_test, lr, capped, proto, vertices=a.vertices, cap=a.vertices // 2,
                        epochs=1 if a.quick else 2, rounds=a.rounds)
            rows.append(r)
            print(f"lr {lr:g} {'capped' if capped else 'cap-free'}: clean {r['clean']}/{r['n']}, worst {r['worst']}, "
                  f"cap binds {r['cap_binds']}", file=sys.stderr, flush=True)
    print(table(rows))
    if a.out:
        from ..io import write_json
        write_json(a.out, {"rows": rows, "protocol": asdict(proto), "n_train": a.n_train, "vertices": a.vertices})
    return 0


if __name__ == "__main__":
    sys.exit(main())
