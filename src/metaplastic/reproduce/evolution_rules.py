"""Appendix C, part 4 of the ``evolution`` section: the halfspace output rule learned by
evolution (Wright-Fisher on the 4 table entries), by the replay gradient and by ES, scored
on the same fixed tasks and compared by network trainings (see
:mod:`metaplastic.reproduce.evolution`).
"""

from __future__ import annotations

import time

import torch

from .. import evolution as ev
from ..data import load_dataset
from ..experiments.rule_learning import EVAL_STEP0, PERCEPTRON_SIGNS, identifiable_part, sign_pattern
from ..learner import Scheme, Tables, train_rules
from ..meta import ESTIMATOR_FNS, RuleSet, meta_loss
from ..metatrain import MetaConfig, build_rules, draw_batch, evaluate_rules, step_generator
from ..network import NetworkConfig, Networks
from ..rules import TableRule
from .common import summarize

def _repeat(nets: Networks, C: int) -> Networks:
    r = lambda t: None if t is None else t.repeat(C, *([1] * (t.dim() - 1)))  # noqa: E731
    return Networks(nets.config, r(nets.A), r(nets.G), r(nets.W), r(nets.U))


def population_loss(cfg: MetaConfig, data, netcfg: NetworkConfig, generation: int, l2: float):
    """Loss of a generation: each rule ``Y [4]`` trains a copy of the generation's network.

    The task (batch and network) is ``draw_batch(cfg, ..., step=generation)``,
    the one the gradient learners see at that step; all N rules train as one
    ensemble with per-network tables.  Returns ``loss(Y [N, 4]) -> [N]`` =
    meta-loss + ``l2 ||Y||^2``.
    """
    b = draw_batch(cfg, data, netcfg, generation, torch.float32, "additive")

    def loss(Y):
        C = Y.shape[0]
        nets = _repeat(b.nets, C)
        train_rules(nets, b.x, b.y, Tables(output=Y.reshape(C, 2, 2).float(), output_eta=cfg.eta),
                    b.orders.repeat(C, 1), Scheme())
        per, _ = meta_loss(nets, nets.W, nets.U, b.x_eval.repeat(C, 1, 1), b.y_eval.repeat(C, 1))
        return per.double() + l2 * (Y.double() ** 2).sum(-1)
    return loss


class RuleScorer:
    """Scores a table: mean meta-loss over fixed task draws, test accuracy after a full pass."""

    def __init__(self, cfg: MetaConfig, data, netcfg: NetworkConfig, eval_tasks: int):
        self.cfg, self.data, self.netcfg = cfg, data, netcfg
        c = MetaConfig(**{**cfg.__dict__, "tasks_per_step": eval_tasks})
        self.batch = draw_batch(c, data, netcfg, EVAL_STEP0, torch.float32, "additive")

    @torch.no_grad()
    def __call__(self, table, networks: int = 1) -> dict:
        t = torch.as_tensor(table, dtype=torch.float32).reshape(2, 2)
        b = self.batch
        nets = b.nets.clone()
        train_rules(nets, b.x, b.y, Tables(output=t, output_eta=self.cfg.eta), b.orders, Scheme())
        per, acc = meta_loss(nets, nets.W, nets.U, b.x_eval, b.y_eval)
        rules = RuleSet(TableRule("output", 1, "additive", self.cfg.eta, values=t))
        c = MetaConfig(**{**self.cfg.__dict__, "final_networks": networks})
        r = evaluate_rules(c, rules, self.data, self.netcfg, torch.float32)
        return {"meta_loss": float(per.mean()), "batch_accuracy": float(acc.mean()),
                "test_accuracy": r["test_accuracy"], "test_accuracy_per_network": r["test_accuracy_per_network"]}


def _patterns(table) -> dict:
    t = torch.as_tensor(table, dtype=torch.float64).reshape(2, 2)
    return {"full": sign_pattern(t) == PERCEPTRON_SIGNS,
            "identifiable": sign_pattern(identifiable_part(t)) == PERCEPTRON_SIGNS}


def _first(history, key):
    for h in history:
        if h[key]:
            return h["trainings"], h["step"]
    return None, None


def _finish(history, curve, final_table, scorer, final_networks, extra) -> dict:
    final = scorer(final_table, final_networks)
    pats = _patterns(final_table)
    out = {"table": torch.as_tensor(final_table, dtype=torch.float64).reshape(2, 2).tolist(),
           "identifiable_part": identifiable_part(torch.as_tensor(final_table).reshape(2, 2)),
           "full_pattern": pats["full"], "identifiable_pattern": pats["identifiable"],
           "final": final, "curve": curve, "trainings": history[-1]["trainings"] if history else 0}
    for key in ("full", "identifiable"):
        tr, st = _first(history, key)
        out[f"first_{key}_pattern_trainings"], out[f"first_{key}_pattern_step"] = tr, st
        # from where on the pattern held to the end
        held = None
        for h in reversed(history):
            if not h[key]:
                break
            held = (h["trainings"], h["step"])
        out[f"stable_{key}_pattern_trainings"] = held[0] if held else None
    acc90 = next((c["trainings"] for c in curve if c["test_accuracy"] >= 0.90), None)
    out["first_test_accuracy_0.90_trainings"] = acc90
    out.update(extra)
    return out


def evolve_rule(cfg: MetaConfig, data, netcfg, scorer: RuleScorer, *, N: int, theta: float, n: int,
                eps: float, generations: int, mutation: float, l2: float, checkpoints,
                final_networks: int) -> dict:
    """Wright-Fisher on the 4 entries of the output rule (part 4 of the module docstring)."""
    init = build_rules(cfg, torch.float32).output.values.detach().double().flatten()
    x = ev.frequencies_for(init, n, eps).clamp(0.05, 0.95)
    g = torch.Generator().manual_seed(cfg.seed * 7919 + 1)
    pending = sorted(checkpoints)
    history, curve = [], []
    t0 = time.perf_counter()

    def snap(trainings, gen):
        yb = ev.trait_mean(x, eps)
        s = scorer(yb)
        curve.append({"trainings": trainings, "step": gen, **s, "table": yb.tolist()})

    snap(0, 0)
    while pending and pending[0] <= 0:
        pending.pop(0)
    mean_losses = []
    for gen in range(generations):
        x, info = ev.wright_fisher_step(population_loss(cfg, data, netcfg, gen, l2), x, eps, theta, N, g,
                                        mutation=mutation)
        mean_losses.append(float(info["losses"].mean()))
        trainings = (gen + 1) * N
        yb = ev.trait_mean(x, eps)
        history.append({"step": gen + 1, "trainings": trainings, **_patterns(yb)})
        if pending and trainings >= pending[0]:
            snap(trainings, gen + 1)
            while pending and pending[0] <= trainings:
                pending.pop(0)
    return _finish(history, curve, ev.trait_mean(x, eps).tolist(), scorer, final_networks,
                   {"method": "evolution", "generations": generations, "population": N, "theta": theta,
                    "genes_per_entry": n, "eps": eps, "mutation": mutation, "l2": l2,
                    "population_mean_loss": mean_losses, "seconds": time.perf_counter() - t0})


def learn_with_estimator(cfg: MetaConfig, data, netcfg, scorer: RuleScorer, *, checkpoints,
                         final_networks: int) -> dict:
    """The loop of :func:`metaplastic.metatrain.learn_rule` (same draws, same rule), scored on the way."""
    rules = build_rules(cfg, torch.float32)
    params = rules.parameters()
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    est = ESTIMATOR_FNS[cfg.estimator]
    scheme = Scheme(cfg.update_on, cfg.output_rows, cfg.output_input)
    pending = sorted(c for c in checkpoints if c > 0)
    history, curve = [], []
    t0 = time.perf_counter()
    table = lambda: rules.output.values.detach().double().flatten().tolist()  # noqa: E731
    curve.append({"trainings": 0, "step": 0, **scorer(table()), "table": table()})
    trainings = 0
    for step in range(cfg.steps):
        batch = draw_batch(cfg, data, netcfg, step, torch.float32, rules.output.mode)
        opt.zero_grad(set_to_none=True)
        stats = est(rules, batch, scheme, cfg.loss, population=cfg.es_population, sigma=cfg.es_sigma,
                    generator=step_generator(cfg.seed, step, 1))
        opt.step()
        trainings += stats["trainings"]
        history.append({"step": step + 1, "trainings": trainings, **_patterns(table())})
        if pending and trainings >= pending[0]:
            curve.append({"trainings": trainings, "step": step + 1, **scorer(table()), "table": table()})
            while pending and pending[0] <= trainings:
                pending.pop(0)
    return _finish(history, curve, table(), scorer, final_networks,
                   {"method": cfg.estimator, "steps": cfg.steps, "lr": cfg.lr,
                    "es_population": cfg.es_population if cfg.estimator == "es" else None,
                    "seconds": time.perf_counter() - t0})


def rule_comparison(c: dict) -> dict:
    out = {"seeds": {}}
    for seed in c["seeds"]:
        cfg = MetaConfig(dataset="halfspace", vertices=100, cap=50, rounds=1, learn="output", seed=seed,
                         n_train=c["n_train"], n_test=c["n_test"], init_scale=1.0)  # N(0,1) starts
        data = load_dataset("halfspace", n_train=c["n_train"], n_test=c["n_test"], seed=seed)
        netcfg = NetworkConfig(d=data.dim, n_classes=data.n_classes, vertices=100, cap=50, rounds=1)
        scorer = RuleScorer(cfg, data, netcfg, c["eval_tasks"])
        row = {}
        e = c["evolution"]
        row["evolution"] = evolve_rule(cfg, data, netcfg, scorer, N=e["population"], theta=e["theta"],
                                       n=e["genes"], eps=e["eps"], generations=e["generations"],
                                       mutation=e["mutation"], l2=e["l2"], checkpoints=c["checkpoints"],
                                       final_networks=c["final_networks"])
        for est, steps, lr in (("replay", c["replay_steps"], 0.01), ("es", c["es_steps"], c["es_lr"])):
            ecfg = MetaConfig(**{**cfg.__dict__, "estimator": est, "steps": steps, "lr": lr,
                                 "es_population": c["es_population"], "es_sigma": c["es_sigma"]})
            row[est] = learn_with_estimator(ecfg, data, netcfg, scorer, checkpoints=c["checkpoints"],
                                            final_networks=c["final_networks"])
        out["seeds"][str(seed)] = row
    return out


def rules_summary(rr: dict) -> dict:
    out = {}
    for method in ("evolution", "replay", "es"):
        rows = [r[method] for r in rr["seeds"].values()]
        out[method] = {
            "full_pattern": sum(r["full_pattern"] for r in rows),
            "identifiable_pattern": sum(r["identifiable_pattern"] for r in rows),
            "runs": len(rows),
            "test_accuracy": summarize([r["final"]["test_accuracy"] for r in rows]),
            "meta_loss": summarize([r["final"]["meta_loss"] for r in rows]),
            "trainings": [r["trainings"] for r in rows],
            "first_identifiable_pattern_trainings": [r["first_identifiable_pattern_trainings"] for r in rows],
            "stable_identifiable_pattern_trainings": [r["stable_identifiable_pattern_trainings"] for r in rows],
            "first_full_pattern_trainings": [r["first_full_pattern_trainings"] for r in rows],
            "stable_full_pattern_trainings": [r["stable_full_pattern_trainings"] for r in rows],
            "first_test_accuracy_0.90_trainings": [r["first_test_accuracy_0.90_trainings"] for r in rows],
        }
    return out
