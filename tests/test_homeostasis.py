"""Homeostatic synaptic scaling of W (issue 11): column norms, the mask, the slice wrapper."""

import pytest
import torch

from conftest import halfspace
from metaplastic.errors import MetaplasticError
from metaplastic.homeostasis import Homeostasis, rescale_columns, train_rules_homeostatic
from metaplastic.learner import Scheme, Tables, data_orders, train_rules
from metaplastic.network import NetworkConfig, init_networks
from metaplastic.rules import hebb_rule, perceptron_rule


def test_rescale_columns_sets_norms_and_keeps_mask():
    g = torch.Generator().manual_seed(0)
    G = (torch.rand(2, 30, 30, generator=g) < 0.5).float()
    W = torch.randn(2, 30, 30, generator=g) * G
    W[1, :, 7] = 0.0                                    # an all-zero column stays zero
    R = rescale_columns(W, 2.5)
    norms = R.norm(dim=-2)
    zero = torch.zeros(2, 30, dtype=torch.bool)
    zero[1, 7] = True
    assert torch.allclose(norms[~zero], torch.full_like(norms[~zero], 2.5), rtol=1e-5)
    assert float(norms[1, 7]) == 0.0
    assert torch.equal(R != 0, W != 0)                  # the mask (and zeros) are kept
    assert torch.equal(torch.sign(R), torch.sign(W))    # signs and ratios within a column kept
    ratio = R[0, :, 3][W[0, :, 3] != 0] / W[0, :, 3][W[0, :, 3] != 0]
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-5)


def test_homeostasis_validates():
    with pytest.raises(MetaplasticError):
        Homeostasis(0.0)
    with pytest.raises(MetaplasticError):
        Homeostasis(1.0, interval=0)


def test_homeostatic_training_keeps_norms_and_equals_plain_without_it():
    x, y = halfspace(300, seed=1)
    cfg = NetworkConfig(d=x.shape[1], n_classes=2, vertices=40, cap=20, rounds=3)
    seeds = [0, 1]
    tables = Tables.from_rules(perceptron_rule(3), hebb_rule(3, eta=1e-2))
    orders = data_orders(300, 1, seeds)
    plain = init_networks(cfg, seeds)
    m_plain, _ = train_rules(plain, x, y, tables, orders, Scheme("all"))
    same = init_networks(cfg, seeds)
    m_same = train_rules_homeostatic(same, x, y, tables, orders, Scheme("all"), homeostasis=None)
    assert torch.equal(m_plain, m_same) and torch.equal(plain.W, same.W)

    nets = init_networks(cfg, seeds)
    train_rules_homeostatic(nets, x, y, tables, orders, Scheme("all"),
                            homeostasis=Homeostasis(1.5, interval=50))
    norms = nets.W.norm(dim=-2)
    live = norms > 0
    assert bool(live.any())
    assert torch.allclose(norms[live], torch.full_like(norms[live], 1.5), rtol=1e-4)
    assert bool(((nets.W != 0) <= (nets.G != 0)).all())  # nothing off the graph


def test_centering_balances_columns_on_the_graph():
    g = torch.Generator().manual_seed(3)
    G = (torch.rand(1, 25, 25, generator=g) < 0.5).float()
    W = -torch.rand(1, 25, 25, generator=g) * G          # all negative (anti-Hebb-like)
    R = rescale_columns(W, 1.0, G=G)
    assert bool(((R != 0) <= (G != 0)).all())
    live = G.sum(dim=-2) > 1
    col_sum = R.sum(dim=-2)
    assert torch.allclose(col_sum[live], torch.zeros_like(col_sum[live]), atol=1e-5)
    assert torch.allclose(R.norm(dim=-2)[live], torch.ones_like(col_sum[live]), rtol=1e-5)
    assert bool((R > 0).any())                            # no longer all negative


def test_decay_towards_the_start():
    from metaplastic.homeostasis import decay_towards
    W0 = torch.tensor([[1.0, -2.0], [0.0, 4.0]])
    W = torch.tensor([[3.0, 2.0], [1.0, 4.0]])
    assert torch.allclose(decay_towards(W, W0, 0.25), torch.tensor([[2.5, 1.0], [0.75, 4.0]]))
    assert torch.equal(decay_towards(W, W0, 0.0), W) and torch.equal(decay_towards(W, W0, 1.0), W0)
    with pytest.raises(MetaplasticError):
        Homeostasis(None)                                 # neither a norm nor a decay
    with pytest.raises(MetaplasticError):
        Homeostasis(None, decay=1.5)


def test_decay_alone_shrinks_an_additive_hebb_w():
    x, y = halfspace(300, seed=2)
    cfg = NetworkConfig(d=x.shape[1], n_classes=2, vertices=40, cap=20, rounds=3)
    seeds = [0]
    tables = Tables.from_rules(perceptron_rule(3), hebb_rule(3, eta=1e-2))
    orders = data_orders(300, 1, seeds)
    free = init_networks(cfg, seeds)
    train_rules_homeostatic(free, x, y, tables, orders, Scheme("all"))
    decayed = init_networks(cfg, seeds)
    train_rules_homeostatic(decayed, x, y, tables, orders, Scheme("all"),
                            homeostasis=Homeostasis(None, interval=50, decay=0.5))
    assert float(free.W.abs().sum()) > 0
    assert float(decayed.W.abs().sum()) < 0.8 * float(free.W.abs().sum())
    assert bool(((decayed.W != 0) <= (decayed.G != 0)).all())
