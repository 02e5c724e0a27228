"""The theory sections of ``metaplastic reproduce``: table1, closed-form, theorems (quick mode)."""

import json

import numpy as np
import pytest
import torch

from metaplastic.learner import Scheme, Tables, data_orders, train_rules
from metaplastic.network import NetworkConfig, init_networks
from metaplastic.reproduce import section_module
from metaplastic.reproduce.closed_form import hidden_states
from metaplastic.reproduce.theorems import CE_A, CE_B, CE_WSTAR, CE_X, theorem3_bound
from metaplastic.theory import (ab_rule, class_sums, closed_form_weights, mse_loss, mse_optimal_output_rule,
                                periodic_certificate, trace_ab_unit, train_single_unit)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(name, tmp_path_factory):
    out = tmp_path_factory.mktemp(name)
    res = section_module(name).run(out, quick=True)
    return out, res


@pytest.fixture(scope="module")
def table1(tmp_path_factory):
    torch.set_num_threads(1)
    return _run("table1", tmp_path_factory)


@pytest.fixture(scope="module")
def closed_form(tmp_path_factory):
    torch.set_num_threads(1)
    return _run("closed-form", tmp_path_factory)


@pytest.fixture(scope="module")
def theorems(tmp_path_factory):
    torch.set_num_threads(1)
    return _run("theorems", tmp_path_factory)


def _check_files(out, res, pngs):
    for f in ("config.json", "results.json", "results.csv"):
        assert (out / f).is_file(), f
    saved = json.loads((out / "results.json").read_text())
    assert isinstance(saved, dict) and saved
    assert isinstance(res["report"], str) and res["report"].strip().startswith("## ")
    for p in pngs:
        data = (out / p).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000, p
        assert f"({p})" in res["report"]
    return saved


# --- table1 ------------------------------------------------------------------

def test_table1_trajectories_identical(table1):
    out, res = table1
    saved = _check_files(out, res, ["table1.png"])
    runs = saved["runs"]
    assert {r["algorithm"] for r in runs} == {"perceptron", "winnow"}
    assert sum(r["algorithm"] == "perceptron" for r in runs) >= 5
    assert sum(r["algorithm"] == "winnow" for r in runs) >= 5
    for r in runs:
        assert r["identical"] and r["max_abs_diff"] == 0.0
        assert r["mistakes_rule"] == r["mistakes_classical"] == r["trajectory_length_rule"] > 0
    assert "identical (max |diff| = 0)" in res["report"]


def test_table1_plot_from_results_only(table1, tmp_path):
    out, res = table1
    saved = json.loads((out / "results.json").read_text())
    section_module("table1").plot(saved, tmp_path)
    assert (tmp_path / "table1.png").read_bytes()[:8] == PNG_MAGIC


# --- closed form -------------------------------------------------------------

def test_closed_form_section(closed_form):
    out, res = closed_form
    saved = _check_files(out, res, ["closed_form.png"])
    assert saved["all_weights_allclose"]
    nets = [n for d in saved["datasets"].values() for n in d["per_network"]]
    assert nets
    for n in nets:
        assert n["weights_allclose_1e-9"] and n["weights_max_rel_diff"] <= 1e-9
        assert abs(n["test_accuracy_closed_form"] - n["test_accuracy_trained"]) < 1e-12
    gd = [n for n in nets if "gd" in n]
    assert gd and all(len(n["gd"]) >= 2 for n in gd)
    assert all(n["gd_max_rel_err"] <= 1e-6 for n in gd)
    for d in saved["datasets"].values():
        assert set(d["accuracy"]) == {"perceptron", "perceptron_all", "mse_optimal"}
        # the ceiling of the all/all family is at least what its members (MSE-optimal, perceptron) reach
        for b, n in enumerate(d["per_network"]):
            assert n["family_ceiling_test_accuracy"] >= d["accuracy"]["mse_optimal"][b] - 1e-12
            assert n["family_ceiling_test_accuracy"] >= d["accuracy"]["perceptron_all"][b] - 1e-12
    assert "chi" in res["report"] and "MNIST" in res["report"]


def test_closed_form_equals_training_three_classes():
    """Several classes (all-rows updates reach more than one other row), any table, not just the optimum."""
    g = torch.Generator().manual_seed(5)
    n, d, l = 150, 6, 3
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, l, (n,), generator=g)
    cfg = NetworkConfig(d=d, n_classes=l, vertices=24, cap=12, rounds=1)
    seeds = [3, 4]
    r = torch.tensor([[[0.3, -1.1], [0.7, 0.2]], [[-0.5, 0.4], [1.3, -0.9]]], dtype=torch.float64)
    nets = init_networks(cfg, seeds, dtype=torch.float64)
    train_rules(nets, x, y, Tables(output=r, output_eta=0.05), data_orders(n, 1, seeds), Scheme("all", "all"))
    for b in range(2):
        H = hidden_states(nets, x, b)
        U = closed_form_weights(class_sums(H, y, l), r[b], 0.05)
        assert torch.allclose(nets.U[b], U, rtol=1e-9, atol=1e-12)
    # the optimum: zero gradient of the loss there, and every perturbation costs
    H = hidden_states(nets, x, 0)
    sol = mse_optimal_output_rule(H, y, l, eta=0.05)
    assert sol["ridge"] == 0.0
    rr = sol["r"].clone().requires_grad_(True)
    loss = mse_loss(H @ closed_form_weights(sol["S"], rr, 0.05), y, l)
    (grad,) = torch.autograd.grad(loss, rr)
    probe = torch.randn(2, 2, generator=g, dtype=torch.float64) * 1e-3 * sol["r"].abs().max()
    assert float(grad.abs().max()) * float(sol["r"].abs().max()) < 1e-10
    worse = mse_loss(H @ closed_form_weights(sol["S"], sol["r"] + probe, 0.05), y, l)
    assert float(worse) > sol["loss"]


# --- theorems ----------------------------------------------------------------

def test_theorems_section(theorems):
    out, res = theorems
    saved = _check_files(out, res, ["theorem3.png", "theorem4.png"])
    s = saved["summary"]
    # the steps of the proof that are right hold on every update
    assert s["half_margin_violations"] == 0
    assert s["numerator_violations"] == 0
    assert s["norm_step_violations"] == 0
    assert s["train_single_unit_agrees"]
    # the bound fails, and the report says so with the counterexample
    assert s["counterexample_certified"] and s["theorem3_bound_fails"]
    assert s["counterexample_C_violations"] > 0
    assert "Theorem 3 is false" in res["report"]
    assert "(3, -4, 2, 0, -1)" in res["report"]
    assert "D^2" in res["report"] and "Freund" in res["report"]
    # converged runs: what was measured is below the bound
    for r in saved["grid"]:
        if r["status"] == "converged":
            assert r["mistakes"] < r["bound"]
    assert saved["theorem4"] and all(r["mistakes"] > 0 for r in saved["theorem4"])
    # Theorem 2: convex where U is linear in the rule (PSD Hessian, no midpoint violation)
    t2 = saved["theorem2"]
    assert t2["holds_where_linear"]
    assert t2["schemes"]["all examples, all rows (appendix B)"]["violations"] == 0
    assert min(t2["hessian_min_over_max_eigenvalue"]) > -1e-9
    assert "### Theorem 2" in res["report"]


def test_theorem2_midpoint_test_catches_a_nonconvex_scheme():
    """The default scheme (updates on mistakes, true and predicted rows) is not convex in the rule:
    the midpoint test finds violations, so it is not a test that cannot fail."""
    from metaplastic.reproduce.theorems import theorem2
    r = theorem2(dict(seed=0, t2=dict(n=300, V=30, pairs=20, hessians=2)))
    assert r["schemes"]["mistakes only, true and predicted rows (default)"]["violations"] > 0
    assert r["schemes"]["all examples, all rows (appendix B)"]["violations"] == 0


def test_theorem3_counterexample_never_converges():
    X = np.array(CE_X, dtype=np.float64)
    wstar = np.array(CE_WSTAR) / np.linalg.norm(CE_WSTAR)
    y = np.sign(X @ wstar)
    assert abs(wstar.sum()) < 1e-12 and np.all(y * (X @ wstar) > 0.36)
    gamma = float(np.min(np.abs(X @ wstar)))
    # the rule code itself: mistakes in every epoch, past the claimed bound
    rule = ab_rule(CE_A, CE_B)
    Xt, yt = torch.tensor(X), torch.tensor((y > 0).astype(np.int64))
    w = torch.zeros(5, dtype=torch.float64)
    total = 0
    for _ in range(360):
        w, _, mis = train_single_unit(rule, Xt, yt, w0=w, epochs=1)
        assert mis > 0
        total += mis
    assert total > theorem3_bound(CE_A, CE_B, 5, gamma)
    # the certificate (either tie convention) and its meaning: periodic mistakes
    for tie in (False, True):
        tr = trace_ab_unit(CE_A, CE_B, X, y, epochs=60, tie_positive=tie, certify=False)
        cert = periodic_certificate(X, y, tr["epoch_w"], tr["patterns"])
        assert cert is not None and cert["mistakes_per_period"] > 0
        p = cert["period_epochs"]
        em = tr["epoch_mistakes"]
        assert em[-p:] == em[-2 * p:-p] == em[-3 * p:-2 * p]


def test_perceptron_converges_and_has_no_certificate():
    rng = np.random.default_rng(1)
    wstar = rng.standard_normal(8)
    wstar -= wstar.mean()
    X = rng.choice([-1.0, 1.0], size=(60, 8))
    X = X[np.abs(X @ wstar) > 0.05]
    y = np.sign(X @ wstar)
    tr = trace_ab_unit(1.0, 1.0, X, y, epochs=200, certify=True)
    assert tr["converged"] and tr["certificate"] is None
    assert periodic_certificate(X, y, tr["epoch_w"], tr["patterns"]) is None
