"""The steps of :func:`metaplastic.robustness.evaluate`: the attacks run eps by eps on the
survivors, the stand-alone sweeps, and the checks made on what they found (eps = 0, in-ball,
masking)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .. import attacks as at
from .protocol import EPS0_BUDGET, ORDER, Protocol

def _select_attacks(proto: Protocol, capped: bool, source) -> tuple[list, dict]:
    """The attacks of ``proto`` that apply to this model, and why each other one is skipped."""
    attacks = [a for a in ORDER if a in proto.attacks
               and not (a in ("bpda-st", "bpda-soft") and not capped)
               and not (a == "transfer" and source is None)]
    skipped = {a: ("cap-free model: BPDA equals plain APGD" if a.startswith("bpda") else "no source model")
               for a in proto.attacks if a not in attacks}
    return attacks, skipped


class _Attacker:
    """Runs one attack on a subset of the images, keeping each attack's cost (one generator for all)."""

    def __init__(self, model, x, y, attacks, budget: dict, seed: int, source, pred):
        self.model, self.x, self.y, self.source, self.pred = model, x, y, source, pred
        self.budget = budget
        self.gen = torch.Generator().manual_seed(int(seed))
        self.cost = {a: {"seconds": 0.0, "grads": 0, "queries": 0, "zero_grads": 0, "calls": 0} for a in attacks}
        self.paper_ratios = []

    def __call__(self, a, idx, e, bud=None):
        x = self.x
        if idx.numel() == 0:
            return torch.zeros(0, dtype=torch.bool), x[:0]
        t0 = time.perf_counter()
        r = at.run_attack(a, self.model, x[idx], self.y[idx], e, generator=self.gen, source=self.source,
                          budget=self.budget if bud is None else bud, reference=x, reference_pred=self.pred)
        c = self.cost[a]
        c["seconds"] += time.perf_counter() - t0
        c["grads"] += r.grads + r.stats.get("source_grads", 0)
        c["queries"] += r.queries
        c["zero_grads"] += r.zero_grads
        c["calls"] += 1
        if a == "paper" and r.stats.get("median_step_over_eps") is not None:
            self.paper_ratios.append(r.stats["median_step_over_eps"])
        return r.success, r.x_adv


def _eps0_check(attack: _Attacker, attacks, correct) -> dict:
    """Gate ``eps0``: every attack, on short budgets, at eps = 0 on every correct image."""
    idx = correct.nonzero()[:, 0]
    broken = {}
    for a in attacks:
        s, xa = attack(a, idx, 0.0, {**attack.budget, **EPS0_BUDGET})
        at.check_ball(xa, attack.x[idx], 0.0)
        broken[a] = int(s.sum())
    return broken


@dataclass
class _Sweep:
    """Per-image results: the eps index at which each attack (``first``) and any attack
    (``worst``) first broke an image (``len(eps)`` = never), and the input that did."""

    first: dict
    worst: torch.Tensor
    adv: torch.Tensor
    adv_by: list
    nes_mask: torch.Tensor
    survivors: list


def _candidates(a, S, paper_todo, nes_mask, bG, bF, bnow):
    """The images attack ``a`` sees at this eps (the order of the attacks: the
    :mod:`metaplastic.robustness` docstring)."""
    if a == "paper":
        return paper_todo
    if a in at.GRADIENT:
        return S & ~bG
    if a == "nes":
        return S & nes_mask & ~bnow
    if a in at.GRADIENT_FREE:
        return S & ~bG & ~bF  # what the own gradients left: any success here is a masking sign
    return S & ~bnow


def _main_sweep(attack: _Attacker, attacks, eps, correct, nes_images: int, log, t_start) -> _Sweep:
    """Over the increasing eps grid, attack only the survivors; stop when nothing survives."""
    N, NEVER = correct.shape[0], len(eps)
    sw = _Sweep(first={a: torch.full((N,), NEVER, dtype=torch.long) for a in attacks},
                worst=torch.full((N,), NEVER, dtype=torch.long), adv=attack.x.clone(), adv_by=[""] * N,
                nes_mask=torch.zeros(N, dtype=torch.bool), survivors=[])
    sw.nes_mask[correct.nonzero()[:, 0][:nes_images]] = True
    for j, e in enumerate(eps):
        S = correct & (sw.worst == NEVER)
        paper_todo = (correct & (sw.first["paper"] == NEVER) if "paper" in sw.first
                      else torch.zeros(N, dtype=torch.bool))
        sw.survivors.append(int(S.sum()))
        if not bool(S.any()) and not bool(paper_todo.any()):
            break
        bF = torch.zeros(N, dtype=torch.bool)
        bG = torch.zeros(N, dtype=torch.bool)
        bnow = torch.zeros(N, dtype=torch.bool)
        for a in attacks:
            idx = _candidates(a, S, paper_todo, sw.nes_mask, bG, bF, bnow).nonzero()[:, 0]
            succ, xa = attack(a, idx, e)
            hit = idx[succ]
            xh = xa[succ]
            sw.first[a][hit] = j
            inS = S[hit]
            hit, xh = hit[inS], xh[inS]
            new = ~bnow[hit]
            for i, row in zip(hit[new].tolist(), xh[new]):
                sw.adv[i] = row
                sw.adv_by[i] = a
            bnow[hit] = True
            if a in at.GRADIENT:
                bG[hit] = True
            if a in at.GRADIENT_FREE:
                bF[hit] = True
        sw.worst[bnow] = j
        if log:
            log(f"    eps {e:g}: {int(S.sum())} survivors, {int(bnow.sum())} broken "
                f"({time.perf_counter() - t_start:.0f} s)")
    return sw


def _standalone_sweeps(attack: _Attacker, attacks, eps, correct, P, sw: _Sweep) -> dict:
    """Each attack alone on the images in ``P``; whatever it finds also enters the worst case."""
    N, NEVER = correct.shape[0], len(eps)
    alone = {}
    for a in attacks:
        if a == "paper":
            alone[a] = sw.first[a].clone()
            continue
        f = torch.full((N,), NEVER, dtype=torch.long)
        for j, e in enumerate(eps):
            cand = P & correct & (f == NEVER)
            if a == "nes":
                cand &= sw.nes_mask
            idx = cand.nonzero()[:, 0]
            if idx.numel() == 0:
                break
            succ, xa = attack(a, idx, e)
            hit = idx[succ]
            f[hit] = j
            for i, row in zip(hit.tolist(), xa[succ]):
                if j < int(sw.worst[i]):
                    sw.worst[i] = j
                    sw.adv[i] = row
                    sw.adv_by[i] = a + " (stand-alone)"
        alone[a] = f
    return alone


def _in_ball_failures(model, x, y, eps, sw: _Sweep) -> int:
    """Gate ``in_ball``: stored adversarial inputs outside their ball or box, or classified correctly."""
    broken = (sw.worst < len(eps)).nonzero()[:, 0]
    if not broken.numel():
        return 0
    adv = sw.adv
    e_b = torch.tensor([eps[int(j)] for j in sw.worst[broken]], dtype=torch.float64)
    dist = (adv[broken].double() - x[broken].double()).norm(dim=1)
    outside = (dist > e_b + at.TOL) | (adv[broken].amin(1) < 0) | (adv[broken].amax(1) > 1)
    still = at.predict(model, adv[broken]) != y[broken]
    return int((outside | ~still).sum())


def _earliest(first: dict, attacks, group, N: int, NEVER: int) -> torch.Tensor:
    """Per image, the first eps index at which any attack of ``group`` broke it."""
    rows = [first[a] for a in attacks if a in group]
    return torch.stack(rows).amin(0) if rows else torch.full((N,), NEVER)


def _masking(sw: _Sweep, alone: dict, attacks, correct, P, NEVER: int) -> dict:
    """Gate ``masking``: images a gradient-free (or adaptive) attack broke before every own-gradient one."""
    N = correct.shape[0]
    G_first = _earliest(sw.first, attacks, at.GRADIENT, N, NEVER)
    F_first = _earliest(sw.first, attacks, at.GRADIENT_FREE, N, NEVER)
    A_first = _earliest(sw.first, attacks, at.ADAPTIVE, N, NEVER)
    conflicts = correct & (F_first < G_first)
    adaptive_beats = correct & (A_first < G_first)
    conflicts_alone = torch.zeros(N, dtype=torch.bool)
    if alone:
        Ga = [alone[a] for a in attacks if a in at.GRADIENT]
        Fa = [alone[a] for a in attacks if a in at.GRADIENT_FREE]
        if Ga and Fa:
            conflicts_alone = P & correct & (torch.stack(Fa).amin(0) < torch.stack(Ga).amin(0))
    return {"gradient_free_before_gradient": int(conflicts.sum()),
            "gradient_free_before_gradient_standalone": int(conflicts_alone.sum()),
            "adaptive_before_gradient": int(adaptive_beats.sum()),
            "examples": conflicts.nonzero()[:, 0][:20].tolist()}


def _fig_rows(model, x, y, pred, eps, sw: _Sweep, fig_images: int) -> list:
    """The first ``fig_images`` images with their worst-case adversarial inputs (Fig. 5)."""
    NEVER = len(eps)
    fig = []
    for i in range(min(fig_images, x.shape[0])):
        j = int(sw.worst[i])
        fig.append({"index": i, "label": int(y[i]), "pred": int(pred[i]),
                    "eps": eps[j] if j < NEVER else None, "attack": sw.adv_by[i] if j < NEVER else None,
                    "adv_pred": int(at.predict(model, sw.adv[i:i + 1])[0]),
                    "x": [round(float(v), 4) for v in x[i]],
                    "adv": [round(float(v), 4) for v in sw.adv[i]]})
    return fig
