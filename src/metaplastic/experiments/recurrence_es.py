"""Issue 11, part 2, round 1: evolution strategies over graph tables bilinear in the firing
bits, with homeostasis and a penalty on inactive later rounds ("ES takes anything").

Run through ``python -m metaplastic.experiments.recurrence_search es``; results in
docs/RECURRENCE.md ("Evolution strategies over rules").
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..io import write_json
from .recurrence_search import _base, run_config


def bilinear_table(theta: torch.Tensor, T: int) -> torch.Tensor:
    """``r[a, b] = u_a^T Theta u_b`` with ``u_w = (1, bits of w)``: ``(T+1)^2`` parameters.

    Spans Hebb (diagonal), timing-dependent terms (off-diagonal: pre fired in round t,
    post in round t'), pre- or post-only terms (first row/column) and a constant."""
    w = torch.arange(2**T)
    bits = ((w[:, None] >> torch.arange(T - 1, -1, -1)) & 1).float()
    u = torch.cat([torch.ones(2**T, 1), bits], 1)                 # [2^T, T+1]
    return u @ theta.view(T + 1, T + 1) @ u.T


def es_fitness(res: dict, floor_fire: float = 0.12, floor_new: float = 0.25) -> float:
    fr = res["firing_per_round"]
    pen = sum(max(0.0, floor_fire - f) for f in fr[1:]) + max(0.0, floor_new - res.get("diff1T", 0.0))
    return res["test_accuracy"] - pen


def es_search(name: str, out: Path, dataset_name: str, V: int = 100, T: int = 3, steps: int = 8,
              pairs: int = 3, sigma: float = 0.3, lr: float = 0.1, n_train: int = 2000,
              nets: int = 4, homeo_scale: float = 1.0, graph_eta: float = 1e-2, seed: int = 0) -> dict:
    """Antithetic ES (Adam on the estimate) on a bilinear graph table; fitness = held-out
    accuracy minus the inactivity penalty; data from teacher seed 1 (never the test tasks)."""
    path = out / "configs" / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    g = torch.Generator().manual_seed(seed)
    P = (T + 1) ** 2
    theta = 0.5 * torch.randn(P, generator=g, dtype=torch.float64)
    m = torch.zeros(P, dtype=torch.float64)
    v = torch.zeros(P, dtype=torch.float64)
    curve = []

    def evaluate(th, step):
        cfg = _base(dataset_name, V=V, T=T, seeds=nets, output="halfspace",
                    graph=bilinear_table(th.float(), T).tolist(), graph_eta=graph_eta,
                    homeo_scale=homeo_scale, homeo_interval=100, homeo_center=True,
                    n_train=n_train, n_test=2000,
                    data_seed=1, seed0=1000 + 10 * step)
        return run_config(cfg)

    t1 = run_config(_base(dataset_name, V=V, T=1, seeds=nets, output="halfspace", n_train=n_train,
                          n_test=2000, data_seed=1, seed0=1000 + 10 * 999))["test_accuracy"]
    t0 = time.perf_counter()
    for step in range(steps):
        eps = torch.randn(pairs, P, generator=g, dtype=torch.float64)
        diffs = []
        for e in eps:
            fp = es_fitness(evaluate(theta + sigma * e, step))
            fm = es_fitness(evaluate(theta - sigma * e, step))
            diffs.append(fp - fm)
        grad = sum(d * e for d, e in zip(diffs, eps)) / (2 * sigma * pairs)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        theta = theta + lr * (m / (1 - 0.9 ** (step + 1))) / ((v / (1 - 0.999 ** (step + 1))).sqrt() + 1e-8)
        if step % 4 == 3 or step == steps - 1:
            r = evaluate(theta, 999)
            curve.append({"step": step + 1, "accuracy": r["test_accuracy"], "fitness": es_fitness(r),
                          "firing_per_round": r["firing_per_round"], "diff1T": r.get("diff1T"),
                          "seconds": time.perf_counter() - t0})
            print(f"{name} step {step + 1}: acc {r['test_accuracy']:.4f} fire "
                  f"{[round(f, 2) for f in r['firing_per_round']]} d13 {r.get('diff1T', 0):.2f}", flush=True)
    res = {"name": name, "phase": "es", "dataset": dataset_name, "V": V, "T": T, "theta": theta.tolist(),
           "t1_accuracy_same_networks": t1,
           "table": bilinear_table(theta.float(), T).tolist(), "curve": curve,
           "settings": {"steps": steps, "pairs": pairs, "sigma": sigma, "lr": lr, "n_train": n_train,
                        "nets": nets, "homeo_scale": homeo_scale, "graph_eta": graph_eta, "seed": seed}}
    (out / "configs").mkdir(parents=True, exist_ok=True)
    write_json(path, res)
    return res
