"""``metaplastic data`` and ``metaplastic attack``."""

from __future__ import annotations

import json
import sys

from ..errors import MetaplasticError
from .args import _semantics
from .train import _finite_json


def cmd_data(args) -> int:
    from .. import data
    if args.data_command == "fetch":
        mirror = None if args.base_url is None else {n: args.base_url for n in args.names}
        rows = data.fetch(tuple(args.names), root=args.data_dir, base_urls=mirror)
        for r in rows:
            print(f"{r.get('status', '?'):8s} {r.get('path', '')}")
        return 0
    if args.data_command == "verify":
        rows = data.verify(args.data_dir)
        if args.json:
            print(json.dumps(rows))
        else:
            for r in rows:
                note = f"  ({r['note']})" if r.get("note") else ""
                print(f"{r['status']:8s} {r['dataset']}/{r['file']}{note}")
        return 0 if all(r["status"] == "ok" for r in rows) else 1
    print("usage: metaplastic data {fetch,verify}", file=sys.stderr)
    return 2


def cmd_attack(args) -> int:
    import time

    import torch

    from .. import attacks, robustness
    from ..data import load_dataset
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.eps >= 0:
        raise MetaplasticError(f"--eps must be >= 0, got {args.eps}")
    if args.attack not in attacks.ATTACKS + ("all",):
        raise MetaplasticError(f"unknown attack {args.attack!r}; choose from {', '.join(attacks.ATTACKS)}, all")
    _check_attack_memory(args)
    model, cfg = _load_attacked(args.model)
    have = _check_attack_semantics(args, model)
    source = _load_attacked(args.source)[0] if args.source else None
    if args.attack == "transfer" and source is None:
        raise MetaplasticError("--attack transfer needs --source RUN_DIR (the model to craft the inputs on)")
    n_test = int(cfg.get("n_test", args.n_images))
    if args.n_images > n_test:
        raise MetaplasticError(f"--n-images {args.n_images} exceeds the {n_test} test images of {args.model}")
    data = load_dataset(cfg.get("dataset", "mnist"), n_train=int(cfg.get("n_train", 10000)), n_test=n_test,
                        seed=int(cfg.get("seed", 0)), data_dir=args.data_dir or cfg.get("data_dir"),
                        n_classes=cfg.get("n_classes"))
    x, y = data.x_test[:args.n_images], data.y_test[:args.n_images]
    t0 = time.perf_counter()
    correct = attacks.predict(model, x) == y
    out = {"model": str(args.model), "attack": args.attack, "eps": args.eps, "n": int(x.shape[0]),
           "clean_accuracy": float(correct.double().mean()), "semantics": have}
    robust = _robust_count(args, model, x, y, correct, source, out)
    out["robust_accuracy"] = robust / max(out["n"], 1)
    out["wilson95"] = list(robustness.wilson(robust, out["n"]))
    out["seconds"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(_finite_json(out), allow_nan=False))
    else:
        lo, hi = out["wilson95"]
        print(f"{args.attack} at eps={args.eps:g}: robust accuracy {out['robust_accuracy']:.4f} "
              f"[{lo:.4f}, {hi:.4f}] (clean {out['clean_accuracy']:.4f}, {out['n']} images, "
              f"{out['seconds']:.1f} s)")
    return 0


def _load_attacked(d):
    """The network saved in RUN_DIR ``d`` and its config.json (empty where there is none)."""
    from pathlib import Path

    from .. import robustness
    d = Path(d)
    model = robustness.load_model(d)
    cfg_p = d / "config.json"
    cfg = json.loads(cfg_p.read_text()) if cfg_p.is_file() else {}
    return model, cfg


def _check_attack_memory(args) -> None:
    """An error before loading anything where the attack would not fit in memory."""
    from ..memory import attack_estimate, check, saved_networks
    info, src = saved_networks(args.model), saved_networks(args.source) if args.source else None
    if info is not None:
        check(attack_estimate(model_bytes=info["bytes"], members=info["members"], V=info["V"],
                              T=info["T"], E=info["E"], source_bytes=src["bytes"] if src else 0,
                              n_images=args.n_images), "use fewer --n-images or a machine with more memory")


def _check_attack_semantics(args, model) -> dict:
    """The semantics the model was trained under; an error where the flags ask for others."""
    mc = getattr(model, "config", None)
    have = {"recurrence": getattr(mc, "recurrence", "wh+ax"), "firing": getattr(mc, "firing", "nonzero")}
    if args.paper_code or args.recurrence is not None or args.firing is not None:
        want = _semantics(args)
        if want != have:
            raise MetaplasticError(f"{args.model} was trained under recurrence={have['recurrence']}, "
                                   f"firing={have['firing']} (its saved config), not "
                                   f"recurrence={want['recurrence']}, firing={want['firing']}")
    return have


def _robust_count(args, model, x, y, correct, source, out: dict) -> int:
    """How many of the images stay correctly classified under ``--attack`` at ``--eps``; the
    attack's own figures go into ``out``."""
    import torch

    from .. import attacks, robustness
    if args.attack == "all":
        if args.eps == 0:
            return int(correct.sum())
        proto = robustness.Protocol(eps=(args.eps,), per_attack_images=0, scale_factors=())
        res = robustness.evaluate(model, x, y, proto, source=source, seed=args.seed, standalone=False,
                                  eps0=False, fig_images=0)
        out["broken_by"] = res["broken_by"]
        out["masking"] = res["masking"]
        return res["curves"]["worst"]["robust"][0]
    idx = correct.nonzero()[:, 0]
    r = attacks.run_attack(args.attack, model, x[idx], y[idx], args.eps,
                           generator=torch.Generator().manual_seed(args.seed), source=source,
                           reference=x, reference_pred=attacks.predict(model, x))
    out.update(grads=r.grads, queries=r.queries, zero_grads=r.zero_grads,
               stats={k: v for k, v in r.stats.items() if not isinstance(v, torch.Tensor)})
    return int(idx.numel() - int(r.success.sum()))
