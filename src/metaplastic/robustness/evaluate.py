"""One model's evaluation under the protocol (:func:`evaluate`), the curves read from it, the
U-scale check and the sanity gates."""

from __future__ import annotations

import time

import torch

from .. import attacks as at
from ..errors import MetaplasticError
from .models import is_capped, scaled
from .protocol import Protocol
from .sweep import (_Attacker, _eps0_check, _fig_rows, _in_ball_failures, _main_sweep, _masking, _select_attacks,
                    _standalone_sweeps)

def evaluate(model, x, y, proto: Protocol, *, source=None, seed: int = 0, standalone: bool = True,
             eps0: bool = True, fig_images: int = 8, log=None) -> dict:
    """Robust accuracy of ``model`` on ``x, y`` under every attack of ``proto`` (the protocol: the
    :mod:`metaplastic.robustness` docstring).

    Returns a JSON-able dict: clean correctness, per-image first-broken eps
    index (``len(eps)`` = never) for the worst case and per attack, curves,
    counts, per-attack costs, zero-gradient fractions and the adversarial
    inputs of the first ``fig_images`` images.  The stored adversarial inputs of
    all broken images are re-verified at the end (``in_ball``).
    """
    t_start = time.perf_counter()
    N = x.shape[0]
    eps = [float(e) for e in proto.eps]
    if eps != sorted(eps) or any(e <= 0 for e in eps):
        raise MetaplasticError("the eps grid must be increasing and positive (eps = 0 is checked separately)")
    J = len(eps)
    pred = at.predict(model, x)
    correct = pred == y
    attacks, skipped = _select_attacks(proto, is_capped(model), source)
    attack = _Attacker(model, x, y, attacks, proto.budget(), seed, source, pred)
    eps0_broken = _eps0_check(attack, attacks, correct) if eps0 else {}
    sw = _main_sweep(attack, attacks, eps, correct, proto.nes_images, log, t_start)
    worst_main = sw.worst.clone()
    P = torch.zeros(N, dtype=torch.bool)
    P[:min(proto.per_attack_images, N)] = True
    alone = (_standalone_sweeps(attack, attacks, eps, correct, P, sw)
             if standalone and proto.per_attack_images > 0 else {})
    in_ball_fail = _in_ball_failures(model, x, y, eps, sw)

    def curve(firsts, mask):
        return {"n": int(mask.sum()), "clean": int((mask & correct).sum()),
                "robust": [int((mask & correct & (firsts > j)).sum()) for j in range(J)]}

    allmask = torch.ones(N, dtype=torch.bool)
    masking = _masking(sw, alone, attacks, correct, P, J)
    correct_idx = correct.nonzero()[:, 0]
    zg = at.zero_gradient_fractions(model, x[correct_idx], y[correct_idx]) if correct_idx.numel() else {}
    fig = _fig_rows(model, x, y, pred, eps, sw, fig_images)
    paper_ratios = attack.paper_ratios
    return {
        "eps": eps, "n": N, "clean_correct": int(correct.sum()),
        "correct": correct.int().tolist(),
        "worst_first": sw.worst.tolist(), "worst_main_first": worst_main.tolist(),
        "first": {a: f.tolist() for a, f in sw.first.items()},
        "standalone_first": {a: f.tolist() for a, f in alone.items()},
        "standalone_n": int(P.sum()) if alone else 0,
        "curves": {"worst": curve(sw.worst, allmask), "worst_main": curve(worst_main, allmask),
                   "paper": curve(sw.first["paper"], allmask) if "paper" in sw.first else None,
                   "standalone": {a: curve(f, nes_subset(correct, proto.nes_images, proto.per_attack_images)
                                           if a == "nes" else P) for a, f in alone.items()}},
        "survivors_per_eps": sw.survivors,
        "eps0_broken": eps0_broken,
        "in_ball_failures": in_ball_fail,
        "broken_by": {a: sum(1 for b in sw.adv_by if b == a) for a in set(sw.adv_by) if a},
        "masking": masking,
        "zero_gradients": zg,
        "paper_median_step_over_eps": (sorted(paper_ratios)[len(paper_ratios) // 2] if paper_ratios else None),
        "cost": attack.cost, "skipped": skipped, "attacks": attacks,
        "fig": fig, "seconds": time.perf_counter() - t_start,
    }


def nes_subset(correct: torch.Tensor, nes_images: int, per_attack_images: int) -> torch.Tensor:
    """The first images of the evaluation set whose correctly classified members NES attacks.

    NES runs on the first ``nes_images`` correctly classified images; its
    stand-alone curve is over the leading images up to the last of those (and
    at most ``per_attack_images``), so that every correct image in it was attacked.
    """
    idx = correct.nonzero()[:, 0][:nes_images]
    cut = int(idx[-1]) + 1 if idx.numel() else 0
    return torch.arange(correct.shape[0]) < min(cut, per_attack_images)


def standalone_curve(res: dict, a: str, proto: Protocol) -> dict:
    """Stand-alone curve of attack ``a`` from the per-image results of :func:`evaluate`."""
    correct = torch.tensor(res["correct"]).bool()
    f = torch.tensor(res["standalone_first"][a])
    N, J = correct.shape[0], len(res["eps"])
    mask = (nes_subset(correct, proto.nes_images, proto.per_attack_images) if a == "nes"
            else torch.arange(N) < min(proto.per_attack_images, N))
    return {"n": int(mask.sum()), "clean": int((mask & correct).sum()),
            "robust": [int((mask & correct & (f > j)).sum()) for j in range(J)]}


def rate(curve: dict, j: int) -> float:
    return curve["robust"][j] / curve["n"] if curve and curve["n"] else float("nan")


def scale_check(model, x, y, proto: Protocol, main: dict, *, source=None, seed: int = 0) -> dict:
    """Worst-case robust accuracy with U scaled by each of ``proto.scale_factors`` (first
    ``scale_images`` images, main sweep only) against the unscaled main sweep on the same images."""
    K = min(proto.scale_images, x.shape[0])
    if K == 0 or not proto.scale_factors:
        return {"factors": {}, "max_abs_diff": 0.0, "n": 0}
    J = len(proto.eps)
    ref_first = torch.tensor(main["worst_main_first"][:K])
    ref_corr = torch.tensor(main["correct"][:K]).bool()
    ref = [int((ref_corr & (ref_first > j)).sum()) / K for j in range(J)]
    ref_paper = [int((ref_corr & (torch.tensor(main["first"]["paper"][:K]) > j)).sum()) / K
                 for j in range(J)] if "paper" in main["first"] else None
    out = {"n": K, "reference": ref, "reference_paper": ref_paper, "factors": {}}
    worst_diff = 0.0
    for c in proto.scale_factors:
        r = evaluate(scaled(model, c), x[:K], y[:K], proto, source=source, seed=seed + 7919,
                     standalone=False, eps0=False, fig_images=0)
        w = [rate(r["curves"]["worst_main"], j) for j in range(J)]
        pp = [rate(r["curves"]["paper"], j) for j in range(J)] if r["curves"]["paper"] else None
        diff = max(abs(a - b) for a, b in zip(w, ref))
        worst_diff = max(worst_diff, diff)
        out["factors"][str(c)] = {"worst": w, "paper": pp, "max_abs_diff": diff,
                                  "zero_gradients": r["zero_gradients"], "seconds": r["seconds"]}
    out["max_abs_diff"] = worst_diff
    return out


def gates(res: dict, proto: Protocol, scale: dict | None) -> dict:
    """The sanity gates of one evaluated model: ``{gate: {"ok": bool, "detail": str}}``."""
    g = {}
    J = len(res["eps"])
    clean = res["clean_correct"] / res["n"]
    b0 = sum(res["eps0_broken"].values()) if res["eps0_broken"] else 0
    un = res.get("unstable")
    g["eps0"] = {"ok": b0 == 0 and bool(res["eps0_broken"]),
                 "detail": (f"robust at eps=0 = {(res['clean_correct'] - b0) / res['n']:.4f}, "
                            f"clean = {clean:.4f}; attacks run at eps=0: "
                            f"{', '.join(res['eps0_broken']) or 'none'}"
                            + (f"; broken at eps=0 by: "
                               f"{', '.join(f'{a} {k}' for a, k in res['eps0_broken'].items() if k)}" if b0 else "")
                            + (f"; the predicted label of {un['count']} unperturbed image(s) (e.g. #{un['indices'][0]}) "
                               "changes with the batch it is evaluated in -- float32 rounding flips the network's "
                               "output there, so an attack that returns x itself can count it as broken"
                               if un and un["count"] else ""))}
    bad = []
    for name, c in [("worst", res["curves"]["worst"]), ("paper", res["curves"]["paper"])] + \
            [(a, c) for a, c in res["curves"]["standalone"].items()]:
        if not c:
            continue
        seq = [c["clean"]] + c["robust"]
        if any(b > a for a, b in zip(seq, seq[1:])):
            bad.append(name)
    g["monotone"] = {"ok": not bad, "detail": "non-increasing" if not bad else "increases: " + ", ".join(bad)}
    big = rate(res["curves"]["worst"], J - 1)
    g["large_eps"] = {"ok": big <= proto.large_eps_max,
                      "detail": f"worst-case robust accuracy {big:.3f} at eps={res['eps'][-1]:g} "
                                f"(gate: <= {proto.large_eps_max})"}
    g["in_ball"] = {"ok": res["in_ball_failures"] == 0,
                    "detail": f"{res['in_ball_failures']} stored adversarial inputs failed re-verification "
                              f"(within eps + 1e-6, in [0,1], misclassified)"}
    m = res["masking"]
    nconf = m["gradient_free_before_gradient"] + m["gradient_free_before_gradient_standalone"]
    g["masking"] = {"ok": nconf == 0,
                    "detail": (f"{m['gradient_free_before_gradient']} images (main sweep) and "
                               f"{m['gradient_free_before_gradient_standalone']} (stand-alone subset) broken by "
                               f"a gradient-free attack at a smaller eps than by every own-gradient attack; "
                               f"adaptive attacks (BPDA/transfer) beat own gradients on "
                               f"{m['adaptive_before_gradient']}")}
    if scale is not None and scale.get("factors"):
        g["scale"] = {"ok": scale["max_abs_diff"] <= proto.scale_tolerance,
                      "detail": (f"U x {', '.join(scale['factors'])}: largest change of worst-case robust "
                                 f"accuracy over the grid {scale['max_abs_diff']:.3f} on {scale['n']} images "
                                 f"(gate: <= {proto.scale_tolerance})")}
    return g
