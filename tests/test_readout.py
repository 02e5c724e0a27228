"""The linear-readout estimate used to read Table 2's T=1* row."""

import pytest
import torch

from metaplastic.errors import MetaplasticError
from metaplastic.learner import Scheme, Tables, data_orders, train_rules
from metaplastic.network import NetworkConfig, accuracy, init_networks
from metaplastic.readout import fit_readout, hidden_states, readout_ceiling
from metaplastic.rules import perceptron_table


def test_separable_features_are_fitted_exactly():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(300, 20, generator=g, dtype=torch.float64)
    w = torch.randn(20, 3, generator=g, dtype=torch.float64)
    y = (X @ w).argmax(1)
    fit = fit_readout(X[:200], y[:200], X[200:], y[200:], l2=0.0)
    assert fit["train"] == 1.0
    assert fit["test"] > 0.85


def test_readout_is_a_readout_of_the_networks_own_hidden_state():
    """Seed 0's hidden states, read out by its own trained U, give the network's own accuracy;
    the tuned readout of the same states does at least as well on this easy task."""
    from conftest import halfspace
    x, y = halfspace(600, seed=1)
    cfg = NetworkConfig(d=10, n_classes=2, vertices=60, cap=30, rounds=1)
    nets = init_networks(cfg, [0])
    train_rules(nets, x[:400], y[:400], Tables(output=perceptron_table(1)), data_orders(400, 1, [0]), Scheme())
    H = hidden_states(nets, x[400:])
    own = float(((H.to(nets.U.dtype) @ nets.U[0]).argmax(1) == y[400:]).double().mean())
    assert own == pytest.approx(float(accuracy(nets, x[400:], y[400:])[0]))
    best = readout_ceiling(hidden_states(nets, x[:400]), y[:400], H, y[400:])
    assert best["test"] >= own - 0.02
    assert {f["l2"] for f in best["fits"]} >= {0.0, 1e-2}


def test_bad_inputs_are_clear_errors():
    with pytest.raises(MetaplasticError, match="same V"):
        fit_readout(torch.zeros(5, 3), torch.zeros(5, dtype=torch.long), torch.zeros(5, 4),
                    torch.zeros(5, dtype=torch.long), 0.0)
    with pytest.raises(MetaplasticError, match="l2"):
        fit_readout(torch.zeros(5, 3), torch.zeros(5, dtype=torch.long), torch.zeros(5, 3),
                    torch.zeros(5, dtype=torch.long), -1.0)


def test_identical_inputs_reuse_the_ceiling(monkeypatch):
    """A second call with the same bytes returns the first call's result without refitting
    (Table 2's T=3 row with a silent round 2 has its T=1 twin's representation); any change
    in the inputs fits again."""
    import metaplastic.readout as ro
    g = torch.Generator().manual_seed(5)
    X = torch.randn(120, 8, generator=g)
    y = (X[:, 0] > 0).long()
    calls = []
    fit = ro.fit_readout
    monkeypatch.setattr(ro, "fit_readout", lambda *a: calls.append(1) or fit(*a))
    grid = (0.0, 1e-2)
    first = ro.readout_ceiling(X[:80], y[:80], X[80:], y[80:], grid=grid, max_iter=20)
    assert len(calls) == 2
    first["fits"].clear()  # the caller's copy: the stored result is not touched
    again = ro.readout_ceiling(X[:80].clone(), y[:80], X[80:], y[80:], grid=grid, max_iter=20)
    assert len(calls) == 2 and len(again["fits"]) == 2
    X2 = X.clone()
    X2[3, 2] += 1e-6
    ro.readout_ceiling(X2[:80], y[:80], X2[80:], y[80:], grid=grid, max_iter=20)
    assert len(calls) == 4
    ro.readout_ceiling(X[:80], y[:80], X[80:], y[80:], grid=grid, max_iter=21)
    assert len(calls) == 6
