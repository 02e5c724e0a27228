"""The count-replay gradient equals autograd through the updates (float64)."""

import pytest
import torch

from conftest import halfspace
from metaplastic.learner import Scheme
from metaplastic.meta import MetaBatch, RuleSet, estimate_replay, estimate_tape
from metaplastic.network import NetworkConfig, init_networks
from metaplastic.rules import MLPRule, TableRule

D = torch.float64


def make_problem(rounds=3, learn="both", kind="table", mode="additive", B=1, n=60, V=24,
                 classes=2, seed=0, recurrence="wh+ax", firing="nonzero", cap=None):
    x, y = halfspace(200, seed=seed)
    if classes > 2:
        y = ((x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()) % classes
    cfg = NetworkConfig(d=10, n_classes=classes, vertices=V, cap=cap or V // 2, rounds=rounds,
                        recurrence=recurrence, firing=firing)
    nets = init_networks(cfg, list(range(seed, seed + B)), mode=mode, dtype=D)
    g = torch.Generator().manual_seed(seed + 100)
    eta_o, eta_g = (0.05, 0.02) if mode == "additive" else (0.02, 0.005)
    out = TableRule("output", rounds, mode, eta_o, values=torch.randn(2**rounds, 2, generator=g, dtype=D), dtype=D)
    graph = None
    if rounds > 1:
        if kind == "mlp":
            graph = MLPRule("graph", rounds, mode, eta_g, hidden=7, generator=g, dtype=D)
        else:
            graph = TableRule("graph", rounds, mode, eta_g,
                              values=torch.randn(2**rounds, 2**rounds, generator=g, dtype=D), dtype=D)
    rules = RuleSet(out, graph, learn_output=learn in ("output", "both"),
                    learn_graph=learn in ("graph", "both") and graph is not None)
    orders = torch.stack([torch.randperm(150, generator=g)[:n] for _ in range(B)])
    ev = torch.stack([torch.randperm(200, generator=g)[:40] for _ in range(B)])
    batch = MetaBatch(nets, x, y, orders, x[ev], y[ev])
    return rules, batch


def grads_of(rules, fn, batch, scheme, loss="ce", loss_on="logits"):
    stats = fn(rules, batch, scheme, loss, loss_on)
    return torch.cat([p.grad.reshape(-1) for p in rules.parameters()]), stats


CASES = {
    "output-T1": dict(rounds=1, learn="output"),
    "tables-T3": dict(rounds=3, learn="both"),
    "tables-T3-bit": dict(rounds=3, learn="both", scheme=Scheme(output_input="bit")),
    "graph-only-T3": dict(rounds=3, learn="graph"),
    "mlp-graph-T3": dict(rounds=3, learn="both", kind="mlp"),
    "multiplicative-T3": dict(rounds=3, learn="both", mode="multiplicative"),
    "multiplicative-T1": dict(rounds=1, learn="output", mode="multiplicative"),
    "update-all-T3": dict(rounds=3, learn="both", scheme=Scheme(update_on="all")),
    "all-rows-3class": dict(rounds=2, learn="both", classes=3, scheme=Scheme(output_rows="all")),
    "ensemble-3": dict(rounds=3, learn="both", B=3),
    "mse-loss": dict(rounds=2, learn="both", loss="mse"),
    # the paper's code semantics: every option replay supports (all of them)
    "w(h+ax)-T3": dict(rounds=3, learn="both", recurrence="w(h+ax)"),
    "w(h+ax)-graph-only-T2": dict(rounds=2, learn="graph", recurrence="w(h+ax)"),
    "top-k-T3": dict(rounds=3, learn="both", firing="top-k", cap=18),
    "top-k-T1": dict(rounds=1, learn="output", firing="top-k", cap=18),
    "softmax-loss": dict(rounds=3, learn="both", loss_on="softmax"),
    "softmax-mse": dict(rounds=2, learn="both", loss="mse", loss_on="softmax"),
    "code-all-T3": dict(rounds=3, learn="both", recurrence="w(h+ax)", firing="top-k", cap=18,
                        loss_on="softmax"),
    "code-all-T3-bit": dict(rounds=3, learn="both", recurrence="w(h+ax)", firing="top-k", cap=18,
                            loss_on="softmax", scheme=Scheme(output_input="bit")),
    "code-multiplicative-ens": dict(rounds=3, learn="both", mode="multiplicative", B=2,
                                    recurrence="w(h+ax)", firing="top-k", cap=18),
    "code-mlp-3class-all": dict(rounds=2, learn="both", kind="mlp", classes=3, recurrence="w(h+ax)",
                                firing="top-k", cap=18, scheme=Scheme(update_on="all")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_replay_equals_tape(name):
    case = dict(CASES[name])
    scheme = case.pop("scheme", Scheme())
    loss = case.pop("loss", "ce")
    loss_on = case.pop("loss_on", "logits")
    rules, batch = make_problem(**case)
    g_rep, s_rep = grads_of(rules, estimate_replay, batch, scheme, loss, loss_on)
    g_tape, s_tape = grads_of(rules, estimate_tape, batch, scheme, loss, loss_on)
    assert g_tape.norm() > 0
    rel = (g_rep - g_tape).norm() / g_tape.norm()
    assert rel < 1e-9, f"relative error {rel:.3e}"
    assert abs(s_rep["loss"] - s_tape["loss"]) < 1e-9 * max(1.0, abs(s_tape["loss"]))


@pytest.mark.parametrize("name", ["tables-T3", "multiplicative-T3", "ensemble-3", "mlp-graph-T3",
                                  "w(h+ax)-T3", "code-multiplicative-ens"])
@pytest.mark.parametrize("steps_per_block", [1, 2, 7])
def test_blocked_sweep_equals_tape(name, steps_per_block, monkeypatch):
    """The adjoint sweep in blocks of steps (2, 7) and step by step (1) equals the tape."""
    import metaplastic.meta_sweep as meta_sweep
    case = dict(CASES[name])
    rules, batch = make_problem(**case)
    c = batch.nets.config
    monkeypatch.setattr(meta_sweep, "SWEEP_BYTES", steps_per_block * 3 * batch.nets.batch * c.vertices**2 * 8)
    g_rep, _ = grads_of(rules, estimate_replay, batch, Scheme())
    g_tape, _ = grads_of(rules, estimate_tape, batch, Scheme())
    rel = (g_rep - g_tape).norm() / g_tape.norm()
    assert rel < 1e-9, f"relative error {rel:.3e}"
