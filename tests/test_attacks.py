"""Attacks (metaplastic.attacks), the robustness protocol and its gates, the reproduce section, the CLI."""

import json

import pytest
import torch
from conftest import shared_data_dir
from torch import nn

from metaplastic import attacks as at
from metaplastic import robustness as rb
from metaplastic.cli import main
from metaplastic.errors import MetaplasticError
from metaplastic.learner import Tables, data_orders, train_rules
from metaplastic.network import NetworkConfig, SimpleRNN, init_networks
from metaplastic.rules import perceptron_table

# --------------------------------------------------------------------------- #
# projection
# --------------------------------------------------------------------------- #

def _reference_projection(v, x, eps):
    """Bisection on the KKT multiplier (slow, float64)."""
    v, x = v.double(), x.double()
    eps = torch.as_tensor(eps, dtype=torch.float64).expand(x.shape[0])
    lo = torch.zeros(x.shape[0], dtype=torch.float64)
    hi = torch.full((x.shape[0],), 1e15, dtype=torch.float64)
    for _ in range(250):
        lam = (lo + hi) / 2
        z = ((v + lam[:, None] * x) / (1 + lam[:, None])).clamp(0, 1)
        ok = (z - x).norm(dim=1) <= eps
        hi = torch.where(ok, lam, hi)
        lo = torch.where(ok, lo, lam)
    inside = (v.clamp(0, 1) - x).norm(dim=1) <= eps
    lam = torch.where(inside, torch.zeros_like(hi), hi)
    return ((v + lam[:, None] * x) / (1 + lam[:, None])).clamp(0, 1)


@pytest.mark.parametrize("scale", [0.01, 0.3, 3.0, 1e4])
def test_projection_stays_in_ball_and_box_and_is_exact(scale):
    g = torch.Generator().manual_seed(int(scale * 100))
    for trial in range(20):
        n = 40
        d = int(torch.randint(1, 60, (1,), generator=g))
        x = torch.rand(n, d, generator=g)
        if trial % 3 == 0:  # centres on the faces of the box, as MNIST's zero pixels are
            x = (x > 0.5).float()
        v = x + scale * torch.randn(n, d, generator=g)
        eps = torch.rand(n, generator=g) * 3
        eps[:3] = 0.0
        z = at.project_l2_box(v, x, eps)
        at.check_ball(z, x, eps)
        assert z.dtype == x.dtype
        assert torch.equal(z[:3], x[:3])  # eps = 0 gives x itself
        ref = _reference_projection(v, x, eps)
        assert float((z.double() - ref).norm(dim=1).max()) < 1e-5
        # a point already inside ball and box is its own projection
        w = x + 1e-3 * torch.randn(n, d, generator=g)
        w = w.clamp(0, 1)
        z2 = at.project_l2_box(w, x, 10.0)
        assert torch.allclose(z2, w, atol=1e-7)


def test_projection_far_outside_and_bad_inputs():
    x = torch.rand(5, 784)
    v = torch.full((5, 784), 1e6)
    v[1] = -1e6
    v[2, :10] = float("nan")
    z = at.project_l2_box(v, x, 2.0)
    at.check_ball(z, x, 2.0)
    assert torch.isfinite(z).all()
    with pytest.raises(MetaplasticError):
        at.project_l2_box(v, x + 2, 1.0)  # centre outside the box
    with pytest.raises(MetaplasticError):
        at.check_ball(x + 0.1, x, 0.0)


# --------------------------------------------------------------------------- #
# attacks on a plain linear model
# --------------------------------------------------------------------------- #

class Linear(nn.Module):
    def __init__(self, d, k, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(d, k, generator=g)
        self.b = torch.zeros(k)

    def forward(self, x):
        return x @ self.W + self.b


def _linear_problem(n=40, d=16, k=10, seed=0):
    g = torch.Generator().manual_seed(seed + 1)
    model = Linear(d, k, seed)
    model.b = -0.5 * model.W.sum(0)  # every class meets near the centre of the box
    x = (0.5 + 0.1 * torch.randn(n, d, generator=g)).clamp(0.05, 0.95)
    y = model(x).argmax(1)
    # exact distance to the nearest decision boundary (the box does not bind here)
    z = model(x)
    dist, inside = [], True
    for i in range(n):
        ds = [(z[i, y[i]] - z[i, j]) / (model.W[:, y[i]] - model.W[:, j]).norm() for j in range(k) if j != y[i]]
        j = min((j for j in range(k) if j != y[i]),
                key=lambda j: (z[i, y[i]] - z[i, j]) / (model.W[:, y[i]] - model.W[:, j]).norm())
        w = model.W[:, y[i]] - model.W[:, j]
        step = x[i] - 1.3 * (z[i, y[i]] - z[i, j]) / w.dot(w) * w  # just past the nearest boundary
        inside &= bool((step >= 0).all() and (step <= 1).all())
        dist.append(float(min(ds)))
    assert inside  # the box does not bind: the nearest boundary is reachable
    return model, x, y, torch.tensor(dist)


@pytest.mark.parametrize("name", ["paper", "apgd-ce", "apgd-dlr", "square", "nes", "transfer", "blend"])
def test_attacks_break_a_linear_model(name):
    model, x, y, dist = _linear_problem()
    eps = float(dist.max()) * 1.3
    g = torch.Generator().manual_seed(0)
    budget = dict(square_queries=1000, nes_steps=30, nes_pairs=30, blend_k=40)
    ref = torch.rand(400, 16, generator=g)
    r = at.run_attack(name, model, x, y, eps, generator=g, source=model, budget=budget,
                      reference=ref, reference_pred=model(ref).argmax(1))
    at.check_ball(r.x_adv, x, eps)
    rate = float(r.success.float().mean())
    assert rate >= (0.6 if name == "blend" else 0.95), (name, rate)
    assert torch.all(model(r.x_adv[r.success]).argmax(1) != y[r.success])
    # nothing is broken below the distance to the boundary
    small = dict(budget, square_queries=100, nes_steps=5)
    r0 = at.run_attack(name, model, x, y, float(dist.min()) * 0.9, generator=g, source=model, budget=small,
                       reference=ref, reference_pred=model(ref).argmax(1))
    assert not bool(r0.success.any())


def test_noise_breaks_at_a_large_eps_and_attacks_are_reproducible():
    model, x, y, _dist = _linear_problem()
    r = at.noise_attack(model, x, y, 4.0, draws=20, generator=torch.Generator().manual_seed(1))
    assert float(r.success.float().mean()) > 0.5
    a = at.apgd(model, x, y, 0.2, generator=torch.Generator().manual_seed(3), iters=10)
    b = at.apgd(model, x, y, 0.2, generator=torch.Generator().manual_seed(3), iters=10)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)


def _small_rnn(rounds=3, capped=True, n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = 16
    xt = torch.rand(n, d, generator=g)
    yt = (xt[:, :8].sum(1) > xt[:, 8:].sum(1)).long() + 2 * (xt[:, 0] > 0.5).long()
    cfg = NetworkConfig(d=d, n_classes=4, vertices=40, cap=20, rounds=rounds, capped=capped)
    nets = init_networks(cfg, [seed])
    graph = -0.05 * torch.ones(2 ** rounds, 2 ** rounds) if rounds > 1 else None
    train_rules(nets, xt, yt, Tables(output=perceptron_table(rounds), graph=graph), data_orders(n, 2, [seed]))
    return SimpleRNN(nets), xt, yt


def test_bpda_surrogate_forward_is_exact_and_attack_works():
    model, x, y = _small_rnn()
    for mode in ("identity", "soft"):
        sur = at.BPDASurrogate(model, mode)
        assert torch.equal(sur(x), model(x))
        xr = x[:5].clone().requires_grad_(True)
        sur(xr).sum().backward()
        assert torch.isfinite(xr.grad).all()
    ok = at.predict(model, x) == y
    xs, ys = x[ok][:30], y[ok][:30]
    r = at.bpda_attack(model, xs, ys, 3.0, mode="soft", iters=20, generator=torch.Generator().manual_seed(0))
    at.check_ball(r.x_adv, xs, 3.0)
    assert float(r.success.float().mean()) > 0.5
    assert torch.all(at.predict(model, r.x_adv[r.success]) != ys[r.success])


# --------------------------------------------------------------------------- #
# the protocol and its gates
# --------------------------------------------------------------------------- #

SMALL = rb.Protocol(eps=(0.25, 0.5, 1.0, 4.0), paper_steps=8, apgd_iters=15, square_queries=150, noise_draws=5,
                    blend_k=10, bpda_iters=10, transfer_iters=10, nes_images=10, nes_steps=8, nes_pairs=8,
                    per_attack_images=10, scale_factors=(0.01, 100.0), scale_images=20)


def _four_class_data(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(4, 16, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    x = (centers[y] + 0.1 * torch.randn(n, 16, generator=g)).clamp(0, 1)
    return centers, x, y


class Prototype(nn.Module):
    """Nearest-centre linear classifier: logits = x . c - |c|^2 / 2."""

    def __init__(self, centers):
        super().__init__()
        self.c = centers

    def forward(self, x):
        return 20 * (x @ self.c.T - 0.5 * (self.c ** 2).sum(1))


class Saturated(nn.Module):
    """A masked model: its 'logits' are a saturated softmax (zero input gradient almost everywhere)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return (1000 * self.inner(x)).softmax(1)


class Quantized(nn.Module):
    """A masked model: inputs rounded to 1/4 before a linear layer (input gradient exactly zero)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.round(x * 4) / 4)


def test_gates_pass_on_a_sane_model():
    centers, x, y = _four_class_data()
    model = Prototype(centers)
    res = rb.evaluate(model, x, y, SMALL, source=model, seed=0)
    sc = rb.scale_check(model, x, y, SMALL, res, source=model, seed=0)
    g = rb.gates(res, SMALL, sc)
    assert all(v["ok"] for v in g.values()), g
    assert res["eps0_broken"] and sum(res["eps0_broken"].values()) == 0
    w = res["curves"]["worst"]
    assert w["clean"] == res["clean_correct"] > 50
    assert w["robust"][-1] == 0 and w["robust"][0] > 0
    assert res["zero_gradients"]["logits"]["zero_fraction"] == 0.0


@pytest.mark.parametrize("wrap", [Saturated, Quantized])
def test_gates_catch_a_masked_model(wrap):
    centers, x, y = _four_class_data()
    model = wrap(Prototype(centers))
    res = rb.evaluate(model, x, y, SMALL, source=Prototype(centers), seed=0)
    g = rb.gates(res, SMALL, None)
    assert not g["masking"]["ok"], g["masking"]
    assert res["zero_gradients"]["logits"]["zero_fraction"] > 0.5
    # the gradient-free and transfer attacks still find everything by the largest eps
    assert g["large_eps"]["ok"] and g["in_ball"]["ok"] and g["eps0"]["ok"] and g["monotone"]["ok"]


def test_gate_failures_are_detected():
    centers, x, y = _four_class_data(n=30)
    model = Prototype(centers)
    res = rb.evaluate(model, x, y, rb.Protocol(eps=(0.05, 0.1), attacks=("noise",), per_attack_images=0,
                                               scale_factors=()), seed=0)
    g = rb.gates(res, rb.Protocol(), None)
    assert not g["large_eps"]["ok"]  # tiny eps and only noise: most images survive the "large" eps
    bad = json.loads(json.dumps(res))
    bad["curves"]["worst"]["robust"] = [1, 5]
    bad["in_ball_failures"] = 2
    bad["eps0_broken"] = {"noise": 1}
    g = rb.gates(bad, rb.Protocol(), None)
    assert not g["monotone"]["ok"] and not g["in_ball"]["ok"] and not g["eps0"]["ok"]


def test_transfer_sources_and_labels():
    assert rb.transfer_source("plastic-T3") == "gd-T3"
    assert rb.transfer_source("plastic-T1star-nocap") == "gd-T1-nocap"
    assert rb.transfer_source("gd-T1") == "gd-T1-nocap"
    assert rb.transfer_source("gd-T3-nocap") == "gd-T3"
    assert rb.wilson(0, 10)[0] == 0.0 and 0 < rb.wilson(5, 10)[0] < 0.5 < rb.wilson(5, 10)[1] < 1


# --------------------------------------------------------------------------- #
# the reproduce section (quick) and the CLI
# --------------------------------------------------------------------------- #

def test_reproduce_robustness_quick_and_attack_cli(tmp_path, capsys, monkeypatch):
    d = shared_data_dir()
    if d is not None:
        monkeypatch.setenv("METAPLASTIC_DATA", str(d))
    out = tmp_path / "rob"
    assert main(["reproduce", "robustness", "--quick", "--out", str(out)]) == 0
    for f in ("REPORT.md", "results.json", "results.csv", "config.json", "fig4.png", "fig5.png",
              "fig5_summary.png"):
        assert (out / f).is_file(), f
    res = json.loads((out / "results.json").read_text())
    assert set(res["models"]) == set(rb.MODELS)
    text = (out / "REPORT.md").read_text()
    assert "### Conclusion" in text and "Sanity gates" in text
    assert "### How often the cap binds" in text
    assert all(m["cap"] is None for n, m in res["models"].items() if n.endswith("-nocap"))
    assert all(len(m["cap"]["binds"]) in (1, 3) for n, m in res["models"].items() if not n.endswith("-nocap"))
    for m in res["models"].values():
        for g in m["gates"].values():
            assert g["eps0"]["ok"] and g["in_ball"]["ok"] and g["monotone"]["ok"]
    assert main(["reproduce", "robustness", "--plot-only", "--out", str(out)]) == 0
    ev = out / "evals" / "plastic-T1-seed0.json"
    kept = (out / "evals" / "gd-T1-seed0.json").read_text()
    ev.write_text(ev.read_text()[:100])  # cut short by a crash: redone on the next run, not a crash
    assert main(["reproduce", "robustness", "--quick", "--out", str(out)]) == 0
    assert json.loads(ev.read_text())["model"] == "plastic-T1"
    assert (out / "evals" / "gd-T1-seed0.json").read_text() == kept  # finished ones are reused
    capsys.readouterr()
    mdir = out / "models" / "plastic-T3-seed0"
    if d is None:
        return  # the quick run fell back to synthetic data; the CLI reads MNIST
    assert main(["attack", "--model", str(mdir), "--attack", "paper", "--eps", "1", "--n-images", "20",
                 "--json"]) == 0
    o = json.loads(capsys.readouterr().out.strip())
    assert o["n"] == 20 and 0 <= o["robust_accuracy"] <= o["clean_accuracy"] <= 1
    assert main(["attack", "--model", str(mdir), "--attack", "transfer", "--eps", "1"]) == 2
    assert "--source" in capsys.readouterr().err
    assert main(["attack", "--model", str(mdir), "--attack", "nope", "--eps", "1"]) == 2
    assert main(["attack", "--model", str(tmp_path / "none"), "--attack", "paper", "--eps", "1"]) == 2


def test_reproduce_robustness_models_flag(tmp_path, capsys, monkeypatch):
    d = shared_data_dir()
    if d is not None:
        monkeypatch.setenv("METAPLASTIC_DATA", str(d))
    out = tmp_path / "rob"
    assert main(["reproduce", "robustness", "--quick", "--models", "plastic-T1", "gd-T1", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert list(res["order"]) == ["plastic-T1", "gd-T1"]
    capsys.readouterr()
    assert main(["reproduce", "robustness", "--quick", "--models", "nope", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --models: unknown model 'nope'") and "plastic-T3-randomW" in err
    assert main(["reproduce", "fig3", "--quick", "--models", "gd-T1", "--out", str(tmp_path / "y")]) == 2
    assert "applies to 'reproduce robustness' only" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()  # checked before any work


def test_cap_binding_counts_images_where_the_cap_removes_units():
    from metaplastic.network import NetworkConfig, SimpleRNN, init_networks, project
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 12, generator=g)
    for rounds in (1, 3):
        nets = init_networks(NetworkConfig(d=12, n_classes=3, vertices=80, cap=20, rounds=rounds), [0])
        nets.A.copy_(nets.A.abs())  # every drive positive: more than k units before the cap on every image
        got = rb.cap_binding(SimpleRNN(nets, 0), x)
        P = project(x, nets.A)[0]
        assert got["binds"][0] == 1.0 and got["positive"][0] == pytest.approx(float((P > 0).double().mean()))
        assert len(got["binds"]) == rounds and got["k"] == 20 and got["n"] == 40
        nets.A.copy_(-nets.A)  # every drive negative or zero: the cap never binds
        assert max(rb.cap_binding(SimpleRNN(nets, 0), x)["binds"]) == 0.0
    cfg = NetworkConfig(d=12, n_classes=3, vertices=80, cap=20, rounds=1, capped=False)
    assert rb.cap_binding(SimpleRNN(init_networks(cfg, [0]), 0), x) is None
