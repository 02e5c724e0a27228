"""Appendix C, parts 1-3 of the ``evolution`` section: the selection recursion against the
GD forms (see :mod:`metaplastic.reproduce.evolution` for the plan of the section).

1. :func:`derivation_check`, the effective GD factor of each recursion to first order;
2. :func:`scaling_study`, trajectories over a theta x eps grid and the fitted scaling of
   the difference, on a quadratic loss and on :class:`FrozenRecordLoss` (the halfspace
   output-rule meta-loss with the perceptron's update decisions frozen);
3. :func:`wright_fisher_study`, finite populations against the recursion.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import evolution as ev
from ..experiments.rule_learning import EVAL_STEP0
from ..learner import Scheme, Tables, train_rules
from ..meta import meta_loss
from ..metatrain import MetaConfig, draw_batch
from ..network import NetworkConfig, project, run_rounds
from ..rules import perceptron_table
from .common import summarize

# ---------------------------------------------------------------------------
# Part 1: what each recursion does to first order
# ---------------------------------------------------------------------------

def derivation_check(xs=(0.1, 0.3, 0.5, 0.7, 0.9), eps: float = 1e-3, theta: float = 1e-7,
                     ymax: float = 2.0, target: float = 1.0) -> dict:
    """Effective GD factor ``-(x' - x) / (theta dL/dx)`` of each recursion, quadratic loss.

    Each x is a symmetric state (every gene at x) with ``L = (Y - target)^2``,
    ``n = ymax / eps`` genes; a GD form with factor f gives exactly f.
    """
    loss = ev.quadratic_loss([target])
    n = round(ymax / eps)
    rows = []
    for x in xs:
        x0 = torch.full((1, n), float(x), dtype=torch.float64)
        g = float(ev.frequency_gradient(loss, x0, eps)[0, 0])
        eff = lambda nxt: float(-(nxt[0, 0] - x) / (theta * g))  # noqa: E731
        dp, dm, _ = ev.allele_advantages(loss, x0, eps)
        printed_c2 = x - theta * (dp * (1 - x**2) - dm * x * (1 - x))  # (C.2) as printed
        th_big = 0.01
        sum_printed = (ev.paper_printed_step(loss, x0, eps, th_big)
                       + ev.paper_printed_step(loss, x0, eps, th_big, other_allele=True))
        sum_sel = ev.selection_step(loss, x0, eps, th_big)
        sum_sel = sum_sel + (1 - x0) * (1 + th_big * dm) / (1 + th_big * (x0 * dp + (1 - x0) * dm))
        rows.append({
            "x": x, "dL_dx": g,
            "selection_S": eff(ev.selection_step(loss, x0, eps, theta)),
            "x(1-x)": x * (1 - x),
            "printed_C1": eff(ev.paper_printed_step(loss, x0, eps, theta)),
            "printed_C2": eff(printed_c2),
            "additive_sign_corrected": eff(ev.paper_printed_step(loss, x0, eps, theta, sign=1.0)),
            "1-x": 1 - x,
            "paper_C3": eff(ev.gd_form_step(loss, x0, eps, theta, "paper")),
            "2-2x": 2 - 2 * x,
            "gd_on_z_2x-x2": eff(ev.gd_on_z_step(loss, x0, eps, theta, "2x-x^2")),
            "(2-2x)^-2": (2 - 2 * x) ** -2,
            "gd_on_z_2asin": eff(ev.gd_on_z_step(loss, x0, eps, theta, "2asin(sqrt(x))")),
            "printed_allele_sum_minus_1": float(sum_printed[0, 0] - 1),
            "selection_allele_sum_minus_1": float(sum_sel[0, 0] - 1),
        })
    # the printed recursion at the boundary: an absent allele appears (or goes negative)
    x0 = torch.zeros(1, n, dtype=torch.float64)
    boundary = {"x": 0.0, "printed_C1_next": float(ev.paper_printed_step(loss, x0, eps, 0.01)[0, 0]),
                "selection_next": float(ev.selection_step(loss, x0, eps, 0.01)[0, 0]),
                "paper_C3_next": float(ev.gd_form_step(loss, x0, eps, 0.01, "paper")[0, 0])}
    return {"eps": eps, "theta": theta, "n": n, "target": target, "rows": rows, "boundary": boundary}


# ---------------------------------------------------------------------------
# Part 2: trajectories and the scaling of the difference
# ---------------------------------------------------------------------------

class FrozenRecordLoss:
    """The halfspace output-rule meta-loss with the update decisions of a reference rule frozen.

    For networks at T = 1 (U starts at 0, no graph) trained on a batch, the
    firing words never depend on the rule, and given which examples caused an
    update (and the predicted rows) the final ``U`` is linear in the 4 table
    entries.  So the cross-entropy on the evaluation batch is
    ``CE(F r)`` with a fixed ``F [B, m, l, 4]``: smooth and convex in ``r``,
    and equal to the true meta-loss wherever ``r`` makes the same decisions
    as the reference (the perceptron): e.g. on all its positive multiples.
    Callable on ``[..., 4]`` (row-major ``r(0,0), r(0,1), r(1,0), r(1,1)``).
    """

    def __init__(self, cfg: MetaConfig, data, netcfg: NetworkConfig, tasks: int = 8,
                 reference: torch.Tensor | None = None):
        ref = perceptron_table(1) if reference is None else reference
        c = MetaConfig(**{**cfg.__dict__, "tasks_per_step": tasks})
        self.batch = draw_batch(c, data, netcfg, EVAL_STEP0, torch.float32, "additive")
        b = self.batch
        nets = b.nets.clone()
        _, rec = train_rules(nets, b.x, b.y, Tables(output=ref, output_eta=cfg.eta), b.orders, Scheme(),
                             record=True)
        l = netcfg.n_classes
        O = F.one_hot(rec.words.long(), 2).double()
        w = cfg.eta * rec.active.double()[..., None] * rec.gain.double()
        M0 = torch.einsum("sbv,sbvk,sbl->bvlk", w, O, F.one_hot(rec.y, l).double())
        M1 = torch.einsum("sbv,sbvk,sbl->bvlk", w, O, F.one_hot(rec.pred, l).double())
        M = torch.stack([M0, M1], -1)
        h, _ = run_rounds(project(b.x_eval.double(), b.nets.A.double()), None, netcfg.k, 1)
        self.F = torch.einsum("bmv,bvlkc->bmlkc", h, M).reshape(h.shape[0], h.shape[1], l, 4)
        self.onehot = F.one_hot(b.y_eval, l).double()
        self.eta = cfg.eta

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        logits = torch.einsum("bmlq,...q->...bml", self.F, r.to(torch.float64))
        return (torch.logsumexp(logits, -1) - (logits * self.onehot).sum(-1)).mean((-1, -2))

    @torch.no_grad()
    def true_loss(self, r) -> float:
        """The actual meta-loss (networks retrained with ``r``), for the equality check."""
        b = self.batch
        nets = b.nets.clone()
        t = torch.as_tensor(r, dtype=torch.float32).reshape(2, 2)
        train_rules(nets, b.x, b.y, Tables(output=t, output_eta=self.eta), b.orders, Scheme())
        per, _ = meta_loss(nets, nets.W, nets.U, b.x_eval, b.y_eval)
        return float(per.mean())


def _subsample(traj: torch.Tensor, k: int = 200) -> tuple[list[int], torch.Tensor]:
    idx = sorted(set(torch.linspace(0, traj.shape[0] - 1, min(k, traj.shape[0])).round().long().tolist()))
    return idx, traj[idx]


def scaling_study(loss, ybar0, ymax: float, tau_end: float, thetas, epss, trajectory_cell=(1, 1),
                  residual_points: int = 12) -> dict:
    """The recursion against the GD forms over the theta x eps grid (module docstring, part 2)."""
    ybar0 = torch.as_tensor(ybar0, dtype=torch.float64)
    cells, traj = [], None
    for ti, th in enumerate(thetas):
        for ei, e in enumerate(epss):
            n = round(ymax / e)
            x0 = ev.frequencies_for(ybar0, n, e)
            dt = ev.time_per_step(th, n, e)
            steps = max(1, round(tau_end / dt))
            rec = ev.iterate(lambda x: ev.selection_step(loss, x, e, th), x0, steps)
            others = {
                "paper": ev.iterate(lambda x: ev.gd_form_step(loss, x, e, th, "paper"), x0, steps),
                "selection": ev.iterate(lambda x: ev.gd_form_step(loss, x, e, th, "selection"), x0, steps),
                "linear": ev.iterate(lambda x: ev.selection_linear_step(loss, x, e, th), x0, steps),
            }
            y0 = ev.trait_mean(x0, e)
            gy = ev.iterate(lambda y: ev.gd_y_step(loss, y, dt), y0, steps)
            yrec = rec.mean(-1) * 2 * n * e - n * e          # Ybar along (S), [steps+1, P]
            cell = {"theta": th, "eps": e, "n": n, "steps": steps, "tau_per_step": dt,
                    "x_min": float(rec.min()), "x_max": float(rec.max()),
                    "ybar_end": yrec[-1].tolist()}
            for k, t in others.items():
                cell[f"diff_{k}"] = ev.max_difference(rec, t)
            # GD on Y in frequency units: x = (Y / (n eps) + 1) / 2
            cell["diff_plain_y"] = float((yrec - gy).abs().max()) / (2 * n * e)
            # one-step residuals at points along the recursion's trajectory
            pts = torch.linspace(0, steps - 1, min(residual_points, steps)).round().long().tolist()
            for k in ("paper", "selection", "linear"):
                cell[f"step_{k}"] = max(float(ev.one_step_residual(loss, rec[i], e, th, k)) for i in pts)
            cells.append(cell)
            if (ti, ei) == tuple(trajectory_cell):
                idx, _ = _subsample(rec)
                ym = lambda t: (t.mean(-1) * 2 * n * e - n * e)[idx].tolist()  # noqa: E731
                printed = _printed_trajectory(loss, x0, e, th, steps)
                traj = {"theta": th, "eps": e, "n": n, "tau": [i * dt for i in idx],
                        "selection_recursion": yrec[idx].tolist(),
                        "paper": ym(others["paper"]), "selection": ym(others["selection"]),
                        "plain_y": gy[idx].tolist(), "printed_C1": printed}
    fits = {}
    for metric in ("diff_paper", "diff_selection", "diff_linear", "diff_plain_y",
                   "step_paper", "step_selection", "step_linear"):
        fits[metric] = ev.fit_power_law([c["theta"] for c in cells], [c["eps"] for c in cells],
                                        [c[metric] for c in cells])
    return {"ybar0": ybar0.tolist(), "ymax": ymax, "tau_end": tau_end, "thetas": list(thetas),
            "epss": list(epss), "cells": cells, "fits": fits, "trajectory": traj}


def _printed_trajectory(loss, x0, eps, theta, steps, limit: float = 0.5) -> dict:
    """(C.1) as printed, until a frequency leaves [-limit, 1 + limit]."""
    x, ys, taus = x0, [], []
    dt = ev.time_per_step(theta, x0.shape[1], eps)
    n = x0.shape[1]
    left = None
    for t in range(steps + 1):
        ys.append((x.mean(-1) * 2 * n * eps - n * eps).tolist())
        taus.append(t * dt)
        if left is None and ((x < 0) | (x > 1)).any():
            left = t
        if ((x < -limit) | (x > 1 + limit)).any():
            break
        x = ev.paper_printed_step(loss, x, eps, theta)
    k = max(1, len(ys) // 200)
    return {"tau": taus[::k], "ybar": ys[::k], "left_unit_interval_at_step": left}


# ---------------------------------------------------------------------------
# Part 3: Wright-Fisher against the recursion
# ---------------------------------------------------------------------------

def wright_fisher_study(sizes, generations: int, reps: int, theta: float = 0.1, eps: float = 0.1,
                        n: int = 20, target=(-1.0, 1.0, 1.0, -1.0), seed: int = 0) -> dict:
    loss = ev.quadratic_loss(list(target))
    P = len(target)
    x0 = torch.full((P, n), 0.5, dtype=torch.float64)
    rec = ev.iterate(lambda x: ev.selection_step(loss, x, eps, theta, fitness="exp"), x0, generations)
    yrec = torch.stack([ev.trait_mean(x, eps) for x in rec])
    rows, curves = [], {}
    for N in sizes:
        devs = []
        for r in range(reps):
            g = torch.Generator().manual_seed(seed * 1000 + 17 * N + r)
            wf = ev.wright_fisher(loss, x0, eps, theta, N, generations, g, fitness="exp")
            ywf = torch.stack([ev.trait_mean(x, eps) for x in wf])
            devs.append(float((ywf - yrec).abs().max()) / (2 * n * eps))
            if r == 0:
                curves[str(N)] = ywf.tolist()
        s = summarize(devs)
        rows.append({"N": N, "max_dev_mean": s["mean"], "max_dev_std": s["std"], "per_rep": devs})
    slope = float("nan")
    if len(rows) > 1:
        slope = ev._least_squares([[math.log(r["N"]), 1.0] for r in rows],
                                  [math.log(r["max_dev_mean"]) for r in rows])[0]
    return {"theta": theta, "eps": eps, "n": n, "target": list(target), "generations": generations,
            "reps": reps, "rows": rows, "slope_vs_N": slope, "recursion": yrec.tolist(), "wf": curves}
