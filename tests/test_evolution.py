"""Appendix C: selection recursion, GD forms, Wright-Fisher, and the evolution reproduce section."""

import json
import math

import pytest
import torch

from metaplastic import evolution as ev
from metaplastic.reproduce import SECTIONS
from metaplastic.reproduce import evolution as rep


def _x(values, n):
    return torch.tensor(values, dtype=torch.float64)[:, None].expand(len(values), n).clone()


def test_selection_recursion_keeps_frequencies_in_unit_interval():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 15, generator=g, dtype=torch.float64)
    x[0, 0], x[1, 0] = 0.0, 1.0                       # fixed alleles must stay fixed
    loss = ev.quadratic_loss([-5.0, 5.0, 0.3])         # optima outside the genetic range
    traj = ev.iterate(lambda x: ev.selection_step(loss, x, 0.1, 0.05), x, 300)
    assert traj.min() >= 0 and traj.max() <= 1
    assert (traj[:, 0, 0] == 0).all() and (traj[:, 1, 0] == 1).all()
    # pushed towards the boundary it cannot reach: -5 and +5 lie beyond n eps = 1.5
    assert traj[-1, 0, 1:].max() < 0.05 and traj[-1, 1, 1:].min() > 0.95
    # the allele frequencies of the two alleles add to one
    dp, dm, _ = ev.allele_advantages(loss, x, 0.1)
    th = 0.05
    other = (1 - x) * (1 + th * dm) / (1 + th * (x * dp + (1 - x) * dm))
    assert torch.allclose(ev.selection_step(loss, x, 0.1, th) + other, torch.ones_like(x))


def test_printed_recursion_is_not_a_selection_recursion():
    loss = ev.quadratic_loss([1.0])
    x = _x([0.3], 40)
    eps, th = 0.05, 0.01
    up = ev.paper_printed_step(loss, x, eps, th)
    down = ev.paper_printed_step(loss, x, eps, th, other_allele=True)
    assert abs(float((up + down)[0, 0]) - 1) > 1e-4                      # Z does not normalize it
    assert float(up[0, 0]) < 0.3 < float(ev.selection_step(loss, x, eps, th)[0, 0])  # wrong direction
    zero = _x([0.0], 40)
    assert float(ev.paper_printed_step(loss, zero, eps, th)[0, 0]) < 0       # leaves [0, 1]
    assert float(ev.gd_form_step(loss, zero, eps, th, "paper")[0, 0]) > 0   # (C.3) revives an absent allele
    assert float(ev.selection_step(loss, zero, eps, th)[0, 0]) == 0


def test_effective_factors_of_each_form():
    d = rep.derivation_check(xs=(0.2, 0.6))
    for r in d["rows"]:
        x = r["x"]
        assert r["selection_S"] == pytest.approx(x * (1 - x), rel=2e-3)
        assert r["printed_C1"] == pytest.approx(-(1 - x), rel=2e-3)
        assert r["additive_sign_corrected"] == pytest.approx(1 - x, rel=2e-3)
        assert r["paper_C3"] == pytest.approx(2 - 2 * x, rel=1e-6)
        assert r["gd_on_z_2x-x2"] == pytest.approx((2 - 2 * x) ** -2, rel=1e-4)
        assert r["gd_on_z_2asin"] == pytest.approx(x * (1 - x), rel=1e-4)


def test_theta_to_zero_one_step_residual_shrinks_at_fitted_rate():
    loss = ev.quadratic_loss([1.0])
    eps = 0.05
    x = _x([0.3], 40)
    thetas = [0.08, 0.04, 0.02, 0.01]
    sel = [float(ev.one_step_residual(loss, x, eps, t, "selection")) for t in thetas]
    lin = [float(ev.one_step_residual(loss, x, eps, t, "linear")) for t in thetas]
    pap = [float(ev.one_step_residual(loss, x, eps, t, "paper")) for t in thetas]
    slope = lambda v: math.log(v[0] / v[-1]) / math.log(thetas[0] / thetas[-1])  # noqa: E731
    assert slope(sel) == pytest.approx(1.0, abs=0.05)    # O(theta eps^2)
    assert slope(lin) == pytest.approx(2.0, abs=0.05)    # O(theta^2 eps^3)
    assert slope(pap) == pytest.approx(1.0, abs=0.05)    # O(theta eps): the step itself
    assert all(s < p / 10 for s, p in zip(sel, pap))


def test_trajectory_scaling_exponents():
    s = rep.scaling_study(ev.quadratic_loss([1.0]), [-1.2], 2.0, 1.0, [0.16, 0.08], [0.2, 0.1],
                          residual_points=3)
    f = s["fits"]
    assert f["diff_selection"]["eps_exponent"] == pytest.approx(1.0, abs=0.15)
    assert abs(f["diff_selection"]["theta_exponent"]) < 0.15
    assert f["diff_linear"]["theta_exponent"] == pytest.approx(1.0, abs=0.15)
    assert f["diff_linear"]["eps_exponent"] == pytest.approx(2.0, abs=0.2)
    # the appendix's form does not approach the recursion at fixed time
    assert min(c["diff_paper"] for c in s["cells"]) > 0.1
    assert all(0 <= c["x_min"] and c["x_max"] <= 1 for c in s["cells"])
    traj = s["trajectory"]
    assert len(traj["tau"]) == len(traj["selection_recursion"]) == len(traj["paper"])


def test_fit_power_law_recovers_exponents():
    th = [0.1, 0.05, 0.1, 0.05, 0.02]
    ep = [0.2, 0.2, 0.1, 0.1, 0.3]
    err = [3 * t**1.5 * e**0.5 for t, e in zip(th, ep)]
    f = ev.fit_power_law(th, ep, err)
    assert f["theta_exponent"] == pytest.approx(1.5)
    assert f["eps_exponent"] == pytest.approx(0.5)
    assert f["log_constant"] == pytest.approx(math.log(3))


def test_wright_fisher_large_population_tracks_recursion():
    loss = ev.quadratic_loss([-1.0, 1.0, 1.0, -1.0])
    x0 = torch.full((4, 10), 0.5, dtype=torch.float64)
    eps, th, gens = 0.1, 0.3, 25
    rec = ev.iterate(lambda x: ev.selection_step(loss, x, eps, th, fitness="exp"), x0, gens)
    yrec = torch.stack([ev.trait_mean(x, eps) for x in rec])

    def dev(N, seed):
        wf = ev.wright_fisher(loss, x0, eps, th, N, gens, torch.Generator().manual_seed(seed))
        assert wf.min() >= 0 and wf.max() <= 1
        return float((torch.stack([ev.trait_mean(x, eps) for x in wf]) - yrec).abs().max()) / (2 * 10 * eps)

    big = dev(20000, 1)
    small = sum(dev(50, s) for s in range(3)) / 3
    assert big < 0.02
    assert big < small / 4
    # it moved: the recursion itself travels much further than the deviation
    assert float((yrec[-1] - yrec[0]).abs().max()) / 2 > 10 * big
    # seeded: the same generator seed gives the same run
    a = ev.wright_fisher(loss, x0, eps, th, 100, 5, torch.Generator().manual_seed(3))
    b = ev.wright_fisher(loss, x0, eps, th, 100, 5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_wright_fisher_linear_fitness_and_mutation():
    loss = ev.quadratic_loss([0.0])
    x0 = torch.full((1, 5), 0.0, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x1, info = ev.wright_fisher_step(loss, x0, 0.1, 0.1, 200, g, fitness="linear", mutation=0.1)
    assert torch.allclose(x1, torch.full_like(x1, 0.1))        # all 0, then 10% flip
    assert info["losses"].shape == (200,) and (info["fitness"] >= 0).all()


def test_frozen_record_loss_equals_meta_loss_on_perceptron_cone():
    from metaplastic.data import load_dataset
    from metaplastic.metatrain import MetaConfig
    from metaplastic.network import NetworkConfig
    cfg = MetaConfig(dataset="halfspace", vertices=40, cap=20, rounds=1, n_train=300, n_test=100)
    data = load_dataset("halfspace", n_train=300, n_test=100, seed=0)
    netcfg = NetworkConfig(d=data.dim, n_classes=2, vertices=40, cap=20, rounds=1)
    s = rep.FrozenRecordLoss(cfg, data, netcfg, tasks=2)
    p = torch.tensor([-1.0, 1.0, 1.0, -1.0], dtype=torch.float64)
    for r in (p, 3 * p, 0.2 * p):
        assert float(s(r)) == pytest.approx(s.true_loss(r), rel=1e-5)
    g = ev.loss_gradient(s, torch.zeros(4, dtype=torch.float64))
    assert g.shape == (4,) and torch.isfinite(g).all()


def test_quick_run_writes_files_and_is_reproducible(tmp_path):
    assert SECTIONS["evolution"] == "evolution"
    a = rep.run(tmp_path / "a", quick=True)
    for name in ("config.json", "results.json", "results.csv", "trajectories.png", "scaling.png",
                 "rule_learning.png", "wright_fisher.png"):
        assert (tmp_path / "a" / name).is_file(), name
    assert "Appendix C" in a["report"] and "theta \\" in a["report"]
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert set(saved["rules"]["seeds"]["0"]) == {"evolution", "replay", "es"}
    assert "report" not in saved
    # plot and report from the saved results alone
    rep.plot(saved, tmp_path / "a")
    assert rep.report(saved).startswith("## Appendix C")
    # seeded: the evolved rule and the grids are the same on a rerun of the slow parts
    again = rep.rule_comparison(rep.config(True)["rules"])
    for m in ("evolution", "replay", "es"):
        assert again["seeds"]["0"][m]["table"] == saved["rules"]["seeds"]["0"][m]["table"]
        assert again["seeds"]["0"][m]["curve"] == saved["rules"]["seeds"]["0"][m]["curve"]
    q = rep.scaling_study(ev.quadratic_loss([1.0]), [-1.2], 2.0, 1.0, [0.16, 0.08], [0.2, 0.1])
    assert saved["quadratic"]["cells"] == q["cells"] and saved["quadratic"]["fits"] == q["fits"]
