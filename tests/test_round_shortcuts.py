"""network.run_rounds skips a product h @ W that is exactly zero (a silent round, an all-zero W):
the shortcut must give the same states (up to the sign of zeros), firing words, predictions and
input gradients as computing the product, and must stay off where it would not be exact."""

import pytest
import torch

from metaplastic import network
from metaplastic.network import NetworkConfig, SimpleRNN, init_networks, run_rounds


def _no_shortcut(monkeypatch):
    monkeypatch.setattr(network, "_may_shortcut", lambda *a: False)


def _both(monkeypatch, fn):
    fast = fn()
    with monkeypatch.context() as m:
        m.setattr(network, "_may_shortcut", lambda *a: False)
        slow = fn()
    return fast, slow


def _nets(W_kind, recurrence="wh+ax", firing="nonzero", k=50, seed=0):
    cfg = NetworkConfig(d=12, n_classes=4, vertices=100, cap=k, rounds=3, recurrence=recurrence, firing=firing)
    nets = init_networks(cfg, [seed, seed + 1])
    g = torch.Generator().manual_seed(seed)
    if W_kind == "zero":
        nets.W.zero_()
    elif W_kind == "silencing":  # every recurrent drive strongly negative: round 2 is silent
        nets.W.copy_(-5.0 * torch.rand(nets.W.shape, generator=g) * nets.G)
    elif W_kind == "random":
        nets.W.copy_(torch.randn(nets.W.shape, generator=g) * nets.G)
    nets.U.copy_(torch.randn(nets.U.shape, generator=g))
    return nets


def _x(n=300, d=12, seed=1):  # 2 networks x 300 rows: past both of run_rounds' row thresholds
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed))


def _states(nets, x):
    c = nets.config
    P = network.project(x.to(nets.A.dtype), nets.A)
    states = []
    h, words = run_rounds(P, nets.W, c.k, c.rounds, states=states, **c.semantics)
    return h, words, states


@pytest.mark.parametrize("W_kind", ["zero", "silencing", "random"])
@pytest.mark.parametrize("semantics", [("wh+ax", "nonzero"), ("w(h+ax)", "top-k"), ("w(h+ax)", "nonzero")])
def test_shortcut_gives_the_products_states_and_words(monkeypatch, W_kind, semantics):
    nets = _nets(W_kind, *semantics)
    x = _x()
    (h, words, states), (h0, words0, states0) = _both(monkeypatch, lambda: _states(nets, x))
    assert torch.equal(h, h0) and torch.equal(words, words0)  # == treats -0 and +0 as one value
    assert all(torch.equal(a, b) for a, b in zip(states, states0))
    assert torch.equal(network.predict(nets, x), _both(monkeypatch, lambda: network.predict(nets, x))[1])
    if W_kind == "silencing" and semantics[0] == "wh+ax":  # the case the shortcut is for
        assert not states[1].any() and torch.equal(states[2], states[0])


@pytest.mark.parametrize("W_kind", ["zero", "silencing"])
def test_input_gradient_through_a_skipped_round_is_the_same(monkeypatch, W_kind):
    model = SimpleRNN(_nets(W_kind), 0)

    def grad():
        x = _x().requires_grad_(True)
        model(x).logsumexp(1).sum().backward()
        return x.grad

    fast, slow = _both(monkeypatch, grad)
    assert fast.abs().sum() > 0
    assert torch.equal(fast, slow)


@pytest.mark.parametrize("W_kind, products", [("zero", 0), ("silencing", 1), ("random", 2)])
def test_shortcut_skips_the_products(monkeypatch, W_kind, products):
    nets = _nets(W_kind)
    calls = []
    bmm = torch.bmm
    monkeypatch.setattr(torch, "bmm", lambda a, b: calls.append(1) or bmm(a, b))
    _states(nets, _x())
    assert len(calls) == products  # T=3: two products without the shortcut


def test_small_batches_and_zero_w_thresholds(monkeypatch):
    calls = []
    bmm = torch.bmm
    monkeypatch.setattr(torch, "bmm", lambda a, b: calls.append(1) or bmm(a, b))
    _states(_nets("silencing"), _x(n=20))   # 40 rows: no checks at all
    assert len(calls) == 2
    calls.clear()
    _states(_nets("zero"), _x(n=100))       # 200 rows: a silent round is looked for, an all-zero W is not
    assert len(calls) == 2
    calls.clear()
    _states(_nets("silencing"), _x(n=100))
    assert len(calls) == 1


def test_no_shortcut_while_W_needs_its_gradient():
    # d(h @ W)/dW = h is non-zero at W = 0: the meta-gradient and GD paths must get it
    nets = _nets("zero")
    c = nets.config
    W = nets.W.clone().requires_grad_(True)
    P = network.project(_x(), nets.A)
    h, _ = run_rounds(P, W, c.k, c.rounds, words=False)
    torch.bmm(h, nets.U).sum().backward()
    assert W.grad is not None and W.grad.abs().sum() > 0


def test_no_shortcut_over_non_finite_weights(monkeypatch):
    # 0 * inf is NaN: a silent round over a W holding inf must give what the product gives
    nets = _nets("silencing")
    nets.W[0, 0, 1] = float("inf")
    nets.W[1, 2, 3] = float("nan")
    x = _x()
    (h, _, _), (h0, _, _) = _both(monkeypatch, lambda: _states(nets, x))
    torch.testing.assert_close(h, h0, equal_nan=True, rtol=0, atol=0)


def test_overflowing_finite_w_declines_the_silent_round_shortcut(monkeypatch):
    nets = _nets("silencing")
    nets.W.mul_(1e37)  # finite, but its sum overflows: the shortcut is declined, the result is the same
    calls = []
    bmm = torch.bmm
    monkeypatch.setattr(torch, "bmm", lambda a, b: calls.append(1) or bmm(a, b))
    x = _x()
    (h, words, _), (h0, words0, _) = _both(monkeypatch, lambda: _states(nets, x))
    assert torch.equal(h, h0) and torch.equal(words, words0)
    assert len(calls) == 4  # two products in each of the two runs


def test_given_first_round_is_not_trusted(monkeypatch):
    # a caller's h1 that is not cap(relu(P)) (here all zero): rounds 2..T still come from P
    nets = _nets("zero")
    c = nets.config
    P = network.project(_x(), nets.A)
    h1 = torch.zeros_like(P)
    run = lambda: run_rounds(P, nets.W, c.k, c.rounds, h1=h1)  # noqa: E731
    (h, words), (h0, words0) = _both(monkeypatch, run)
    assert torch.equal(h, h0) and torch.equal(words, words0)
    assert h.any()
