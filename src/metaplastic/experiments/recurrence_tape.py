"""Issue 11, part 2, round 2, direction 3: an MLP graph rule learned *through* homeostasis.

    python -m metaplastic.experiments.recurrence_tape --dataset relu2 --out FILE.json

The replay meta-gradient assumes W is linear in the rule table, which the
rescaling of :mod:`metaplastic.homeostasis` breaks; autograd through the updates
(:func:`metaplastic.meta.train_with_tape`, the ground truth) supports it.  Here
each inner training is cut into slices of ``interval`` examples; after each
slice W's columns are centred and rescaled (differentiably), exactly as
:func:`~metaplastic.homeostasis.train_rules_homeostatic` does when the rule is
used.  The meta-loss is the cross-entropy of the trained networks on held-out
examples of the same task (A.1); the output rule is fixed (the perceptron, read
off the last round); the graph rule is an MLP (section 2, parameterization 2,
A.3's width 20) learned by Adam.  Data: teacher seed 1, never the test tasks.
Small by necessity: |V| = 100, T = 3, short sequences.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ..data import load_dataset
from ..homeostasis import rescale_columns
from ..io import save_ruleset
from ..learner import Scheme
from ..meta import RuleSet, meta_loss, train_with_tape
from ..network import NetworkConfig, Networks, init_networks
from ..rules import MLPRule, perceptron_rule
from ..semantics import record
from .recurrence_search import column_norm, drive_stats


def train_homeostatic_tape(rules: RuleSet, nets0: Networks, x, y, orders, scheme: Scheme,
                           out_t, gr_t, norm: float, interval: int, center: bool = True):
    """:func:`~metaplastic.meta.train_with_tape` on slices of ``interval`` examples, W's
    columns (centred and) rescaled to ``norm`` after each slice; differentiable in the tables."""
    G = nets0.G if center else None
    W, U = rescale_columns(nets0.W, norm, G=G), nets0.U
    for a in range(0, orders.shape[1], interval):
        part = Networks(nets0.config, nets0.A, nets0.G, W, U)
        W, U = train_with_tape(rules, part, x, y, orders[:, a:a + interval], scheme, out_t, gr_t)
        W = rescale_columns(W, norm, G=G)
    return W, U


def learn(dataset: str = "relu2", V: int = 100, T: int = 3, seq: int = 300, interval: int = 50,
          scale: float = 1.0, steps: int = 60, tasks: int = 4, n_eval: int = 500, lr: float = 0.01,
          eta: float = 1e-2, seed: int = 0, log=print) -> tuple[RuleSet, list[dict], dict]:
    """Adam on an MLP graph rule through centred homeostasis; returns the rules, the curve
    (loss, held-out accuracy, per step) and the settings."""
    g = torch.Generator().manual_seed(seed)
    data = load_dataset(dataset, n_train=5000, n_test=1000, seed=1)
    nc = NetworkConfig(d=data.dim, n_classes=data.n_classes, vertices=V, cap=V // 2, rounds=T)
    graph = MLPRule("graph", T, "additive", eta, hidden=20, generator=g)
    out = perceptron_rule(T, eta=1e-2)
    for p in out.parameters():
        p.requires_grad_(False)
    rules = RuleSet(out, graph, learn_output=False, learn_graph=True)
    opt = torch.optim.Adam(rules.parameters(), lr=lr)
    scheme = Scheme("misclassified", "true-and-predicted", "value")
    probe = init_networks(nc, [10_000])
    sigma, hnorm = drive_stats(probe, data.x_train)
    norm = column_norm(scale, sigma, hnorm, V)
    curve = []
    t0 = time.perf_counter()
    N = data.x_train.shape[0]
    for step in range(steps):
        seeds = [step * tasks + i for i in range(tasks)]
        nets = init_networks(nc, seeds)
        idx = torch.stack([torch.randperm(N, generator=g)[:seq + n_eval] for _ in seeds])
        orders, ev = idx[:, :seq], idx[:, seq:]
        opt.zero_grad()
        with torch.enable_grad():
            out_t, gr_t = rules.tables(grad=True)
            W, U = train_homeostatic_tape(rules, nets, data.x_train, data.y_train, orders, scheme,
                                          out_t, gr_t, norm, interval)
            per, acc = meta_loss(nets, W, U, data.x_train[ev], data.y_train[ev])
            loss = per.mean()
            loss.backward()
        opt.step()
        curve.append({"step": step + 1, "loss": float(loss.detach()), "accuracy": float(acc.mean()),
                      "seconds": time.perf_counter() - t0})
        if step % 10 == 9 or step == steps - 1:
            log(f"step {step + 1}: loss {float(loss.detach()):.4f} held-out acc {float(acc.mean()):.4f}")
    settings = {"dataset": dataset, "V": V, "T": T, "seq": seq, "interval": interval, "scale": scale,
                "steps": steps, "tasks": tasks, "n_eval": n_eval, "lr": lr, "eta": eta, "seed": seed,
                "homeostasis": {"center": True, "column_norm": norm}, "teacher_seed": 1}
    return rules, curve, settings


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="relu2")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--seq", type=int, default=300)
    ap.add_argument("--interval", type=int, default=50)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    rules, curve, settings = learn(a.dataset, steps=a.steps, seq=a.seq, interval=a.interval,
                                   scale=a.scale, tasks=a.tasks, lr=a.lr)
    meta = {"made_by": "metaplastic.experiments.recurrence_tape", "config": settings,
            "semantics": record({}), "curve": curve}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    save_ruleset(a.out, {"output": rules.output, "graph": rules.graph}, meta)
    print(json.dumps({"out": a.out, "final": curve[-1]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
