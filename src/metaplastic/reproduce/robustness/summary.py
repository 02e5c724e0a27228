"""Pooled curves, Wilson intervals and per-model summaries over seeds (results.json)."""

from __future__ import annotations



from ... import robustness as rb


def _summ(curves_by_seed: list, J: int) -> dict:
    """Pooled rates and Wilson intervals over seeds for one curve."""
    curves_by_seed = [c for c in curves_by_seed if c]
    if not curves_by_seed:
        return None
    n = sum(c["n"] for c in curves_by_seed)
    clean = sum(c["clean"] for c in curves_by_seed)
    ks = [sum(c["robust"][j] for c in curves_by_seed) for j in range(J)]
    return {"n": n, "clean": clean / n, "clean_ci": rb.wilson(clean, n),
            "rate": [k / n for k in ks], "ci": [rb.wilson(k, n) for k in ks],
            "per_seed": [[c["robust"][j] / c["n"] for j in range(J)] for c in curves_by_seed]}


def summarize(cfg, proto, evals, seeds, names, train_seconds, trained) -> dict:
    J = len(proto.eps)
    models = {}
    for name in names:
        rs = [evals[(name, s)] for s in seeds if (name, s) in evals]
        if not rs:
            continue
        attacks = rs[0]["attacks"]
        standalone = {a: _summ([r["curves"]["standalone"].get(a) for r in rs], J) for a in attacks
                      if any(r["curves"]["standalone"].get(a) for r in rs)}
        cost = {a: {k: sum(r["cost"].get(a, {}).get(k, 0) for r in rs) for k in ("seconds", "grads", "queries",
                                                                                  "zero_grads")}
                for a in attacks}
        models[name] = {
            "label": rb.label(name),
            "worst": _summ([r["curves"]["worst"] for r in rs], J),
            "paper": _summ([r["curves"]["paper"] for r in rs], J),
            "standalone": standalone,
            "test_accuracy": [r["train"]["test_accuracy"] for r in rs],
            "train_seconds": [r["train"]["train_seconds"] for r in rs],
            "gates": {str(r["seed"]): r["gates"] for r in rs},
            "masked": any(not r["gates"]["masking"]["ok"] for r in rs),
            "masking": [r["masking"] for r in rs],
            "zero_gradients": [r["zero_gradients"] for r in rs],
            "paper_median_step_over_eps": [r["paper_median_step_over_eps"] for r in rs],
            "scale": [r["scale"] for r in rs],
            "cost": cost,
            "attack_seconds": [r["seconds"] + sum(f["seconds"] for f in r["scale"]["factors"].values()) for r in rs],
            "broken_by": [r["broken_by"] for r in rs],
            "fig": rs[0]["fig"],
            "source": rs[0]["source"],
            "skipped": rs[0]["skipped"],
            "survivors_per_eps": [r["survivors_per_eps"] for r in rs],
            "rounds": rs[0].get("rounds"),
            "cap": rs[0].get("cap"),
            "recurrent_w": [trained[name][s][1].get("recurrent_w") for s in seeds
                            if name in trained and s in trained[name]] or None,
            "unstable": [r.get("unstable") for r in rs],
        }
    recorded = sum(sum(m["train_seconds"]) for m in models.values())
    return {"config": cfg, "eps": list(proto.eps), "models": models, "order": list(models), "seeds": seeds,
            "train_seconds": train_seconds, "train_seconds_recorded": recorded, "n_images": cfg["n_images"],
            "standalone_n": cfg["per_attack_images"]}
