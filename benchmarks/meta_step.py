"""Time and peak memory of one meta-step: count replay against autograd through the updates.

    python benchmarks/meta_step.py [--quick] [--no-big] [--out FILE.json]

Each measurement runs in its own subprocess so that its peak resident memory
(``ru_maxrss``) is its own.  Reported as JSON, with the ratios of the two
estimators measured side by side in this run:

* |V|=100, k=50, T=3, batch 1,000, graph and output rules learned:
  replay with the compiled inner loop, replay with the torch inner loop, and
  the tape, alternating (target: compiled replay at least 6x faster than the
  tape), at the random initial tables (about half the examples are mistakes,
  so half cause an update) and at the learned relu1 rule of rules/ (fewer
  mistakes, fewer updates);
* |V|=1000, k=500, T=3, a 10,000-example sequence (MNIST-sized inputs when
  $METAPLASTIC_DATA has MNIST, else relu1): replay only (target: under 2 GB peak).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(spec: dict) -> dict:
    import torch

    from metaplastic.learner import Scheme
    from metaplastic.meta import ESTIMATOR_FNS
    from metaplastic.metatrain import MetaConfig, build_rules, draw_batch
    from metaplastic.data import load_dataset
    from metaplastic.network import NetworkConfig

    torch.set_num_threads(spec.get("threads", 1))
    if spec.get("backend"):  # the inner loop of the replay estimator (metaplastic.compiled)
        from metaplastic.compiled import set_default_backend
        set_default_backend(spec["backend"])
    cfg = MetaConfig(dataset=spec["dataset"], n_train=max(spec["batch"], 1000), n_test=10,
                     vertices=spec["vertices"], cap=spec["vertices"] // 2, rounds=3, learn="both",
                     batch=spec["batch"], estimator=spec["estimator"], output_input=spec.get("output_input", "value"),
                     init_scale=1.0)  # N(0,1) tables, as these timings were always measured
    try:
        data = load_dataset(cfg.dataset, n_train=cfg.n_train, n_test=10, seed=0)
    except Exception:
        cfg.dataset = "relu1"
        data = load_dataset("relu1", n_train=cfg.n_train, n_test=10, seed=0)
    netcfg = NetworkConfig(d=data.dim, n_classes=data.n_classes, vertices=cfg.vertices, cap=cfg.cap, rounds=3)
    if spec.get("rule_file"):  # learn the rule file's kinds (an MLP graph rule; a table or MLP output rule)
        from metaplastic.io import load_rule
        from metaplastic.rules import TableRule
        cfg.rule_kind = "mlp"
        cfg.output_rule_kind = "table" if isinstance(load_rule(spec["rule_file"], kind="output"), TableRule) else "mlp"
    rules = build_rules(cfg, torch.float32)
    if spec.get("rule_file"):  # start from a learned rule (fewer mistakes, fewer updates)
        from metaplastic.io import load_rule
        with torch.no_grad():
            for kind, rule in (("output", rules.output), ("graph", rules.graph)):
                rule.load_state_dict(load_rule(spec["rule_file"], kind=kind).state_dict())
    scheme = Scheme(output_input=cfg.output_input)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for step in range(spec["repeats"]):
        batch = draw_batch(cfg, data, netcfg, step, torch.float32, "additive")
        t0 = time.perf_counter()
        stats = ESTIMATOR_FNS[cfg.estimator](rules, batch, scheme, "ce")
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {**spec, "dataset": cfg.dataset, "seconds_per_step": min(times), "seconds_all": times,
            "peak_rss_mb": peak / 1024, "rss_before_steps_mb": base / 1024,
            "record_mb": stats.get("record_bytes", 0) / 2**20, "loss": stats["loss"]}


def run(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--child")
    ap.add_argument("--no-big", action="store_true", help="skip the |V|=1000 row")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    q = args.quick
    rows = {}
    b = 200 if q else 1000
    # Side by side: the two estimators alternate (replay, tape, replay, tape), each
    # run in its own subprocess; each row keeps its fastest step.  The machine's
    # load drifts over minutes, so back-to-back blocks would bias the ratio.
    # (the first step of a process also loads the compiled kernels: each row keeps its fastest step)
    variants = (("v100_replay", "replay", "compiled", 3), ("v100_replay_torch", "replay", "torch", 3),
                ("v100_tape", "tape", None, 2))
    for _ in range(2):
        for name, est, backend, rep in variants:
            again = run(dict(vertices=100, batch=b, estimator=est, dataset="relu1", repeats=rep, backend=backend))
            if name not in rows:
                rows[name] = again
                continue
            rows[name]["seconds_all"] += again["seconds_all"]
            rows[name]["seconds_per_step"] = min(rows[name]["seconds_all"])
            rows[name]["peak_rss_mb"] = max(rows[name]["peak_rss_mb"], again["peak_rss_mb"])
    import os
    learned = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "rules", "relu1-mlp-T3.json")
    if os.path.isfile(learned):
        rows["v100_replay_learned_rule"] = run(dict(vertices=100, batch=b, estimator="replay", dataset="relu1",
                                                    repeats=3, rule_file=learned, backend="compiled"))
        rows["v100_tape_learned_rule"] = run(dict(vertices=100, batch=b, estimator="tape", dataset="relu1",
                                                  repeats=2, rule_file=learned))
    if not args.no_big:
        rows["v1000_replay_10k"] = run(dict(vertices=1000, batch=1000 if q else 10000, estimator="replay",
                                            dataset="mnist", repeats=1, backend="compiled"))
    res = {"rows": rows,
           "ratios": {"tape_over_replay_seconds_v100": rows["v100_tape"]["seconds_per_step"]
                      / rows["v100_replay"]["seconds_per_step"],
                      "tape_over_replay_seconds_v100_torch_inner_loop": rows["v100_tape"]["seconds_per_step"]
                      / rows["v100_replay_torch"]["seconds_per_step"],
                      "torch_over_compiled_replay_seconds_v100": rows["v100_replay_torch"]["seconds_per_step"]
                      / rows["v100_replay"]["seconds_per_step"],
                      "tape_over_replay_peak_rss_v100": rows["v100_tape"]["peak_rss_mb"]
                      / rows["v100_replay"]["peak_rss_mb"],
                      "tape_over_replay_seconds_v100_learned_rule":
                          rows["v100_tape_learned_rule"]["seconds_per_step"]
                          / rows["v100_replay_learned_rule"]["seconds_per_step"]
                          if "v100_replay_learned_rule" in rows else None},
           "targets": {"replay_speedup_v100_batch1000": 6.0, "v1000_10k_peak_gb": 2.0}}
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        from metaplastic.io import atomic_write_text
        atomic_write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
