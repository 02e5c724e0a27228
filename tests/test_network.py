"""The simple RNN of section 2: cap, firing words, initialization, config checks, module."""

import pytest
import torch

from conftest import assert_close
from metaplastic.errors import MetaplasticError
from metaplastic.network import (NetworkConfig, Networks, SimpleRNN, cap, forward,
                                 init_networks, run_rounds)

# --------------------------------------------------------------------------- cap


@pytest.fixture(params=["sort", "topk"])
def cap_path(request, monkeypatch):
    """Run a cap test through both selection paths (stable sort at small |V|, top-k above)."""
    import metaplastic.network as network
    monkeypatch.setattr(network, "SORT_CAP_MAX", 10**9 if request.param == "sort" else 0)
    monkeypatch.setattr(network, "SORT_CAP_MAX_ROWS", 10**9)
    return request.param


def test_cap_paths_agree_bit_for_bit_with_ties():
    import metaplastic.network as network
    g = torch.Generator().manual_seed(3)
    for V in (10, 100, 300):
        z = torch.relu(torch.randn(5, 9, V, generator=g).mul(2).round())  # many ties, many zeros
        for k in (1, V // 2, V - 1):
            old = network.SORT_CAP_MAX, network.SORT_CAP_MAX_ROWS
            try:
                network.SORT_CAP_MAX, network.SORT_CAP_MAX_ROWS = 10**9, 10**9
                a = cap(z, k)
                network.SORT_CAP_MAX = 0
                b = cap(z, k)
            finally:
                network.SORT_CAP_MAX, network.SORT_CAP_MAX_ROWS = old
            assert torch.equal(a, b) and torch.equal(a != 0, b != 0)


def test_cap_keeps_exactly_the_k_largest(cap_path):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 7, 30, generator=g, dtype=torch.float64)  # no ties (a.s.)
    for k in (1, 5, 29):
        out = cap(z, k)
        kept = out != 0
        assert (kept.sum(-1) == k).all()
        assert torch.equal(out[kept], z[kept])  # kept values are untouched
        # every kept value is >= every dropped value, row by row
        lo = torch.where(kept, z, torch.inf).amin(-1)
        hi = torch.where(kept, -torch.inf, z).amax(-1)
        assert (lo > hi).all()


def test_cap_ties_go_to_the_lowest_indices(cap_path):
    z = torch.tensor([3.0, 1.0, 1.0, 5.0, 1.0, 1.0, 0.5])
    # k = 4: 5 and 3 are above the k-th value 1; two of the four 1s are kept
    assert cap(z, 4).tolist() == [3.0, 1.0, 1.0, 5.0, 0.0, 0.0, 0.0]
    assert cap(z, 3).tolist() == [3.0, 1.0, 0.0, 5.0, 0.0, 0.0, 0.0]
    assert cap(z, 6).tolist() == [3.0, 1.0, 1.0, 5.0, 1.0, 1.0, 0.0]
    # all equal: the first k
    assert cap(torch.full((2, 6), 2.0), 2).tolist() == [[2.0, 2.0, 0, 0, 0, 0]] * 2
    # the tie rule holds row by row in a batch, with ties at different places
    zb = torch.tensor([[0.0, 2.0, 2.0, 2.0], [2.0, 2.0, 9.0, 2.0]])
    assert cap(zb, 2).tolist() == [[0.0, 2.0, 2.0, 0.0], [2.0, 0.0, 9.0, 0.0]]
    # negative ties too (cap is also used on inputs that skipped the ReLU)
    assert cap(torch.tensor([-1.0, -1.0, -1.0, -3.0]), 2).tolist() == [-1.0, -1.0, 0.0, 0.0]
    assert cap(torch.tensor([-2.0, -1.0, -1.0, -1.0]), 1).tolist() == [0.0, -1.0, 0.0, 0.0]
    # zeros at the k-th value: only the positive entries are non-zero afterwards
    assert cap(torch.tensor([0.0, 0.0, 4.0, 0.0, -1.0]), 3).tolist() == [0.0, 0.0, 4.0, 0.0, 0.0]


def test_zero_inside_the_top_k_does_not_fire():
    # one positive drive, V=6, k=3: relu gives 5 zeros, two of which are "kept"
    P = torch.tensor([[[-1.0, 2.0, -3.0, -0.5, -2.0, -1.0]]])
    h, words = run_rounds(P, None, k=3, rounds=1)
    assert h.tolist() == [[[0.0, 2.0, 0.0, 0.0, 0.0, 0.0]]]
    assert words.tolist() == [[[0, 1, 0, 0, 0, 0]]]
    # no positive drive at all: nothing fires in any round
    W = torch.ones(1, 6, 6)
    h, words = run_rounds(-P.abs(), W, k=3, rounds=3)
    assert (h == 0).all() and (words == 0).all()


def test_cap_gradient_flows_through_kept_values_only(cap_path):
    z = torch.tensor([[0.3, -1.0, 2.0, 0.7, 0.1], [1.0, 1.0, 1.0, -2.0, 4.0]], requires_grad=True)
    weights = torch.arange(1.0, 11.0).reshape(2, 5)
    (cap(z, 2) * weights).sum().backward()
    expect = torch.tensor([[0, 0, 3.0, 4.0, 0], [6.0, 0, 0, 0, 10.0]])
    assert torch.equal(z.grad, expect)


# ------------------------------------------------------------------ firing words


def test_firing_word_first_round_is_most_significant_bit():
    # d=1, V=3, k=1, T=3.  Round 1: only the input drive, unit 0 fires.
    # Round 2: unit 0 -> unit 1 with weight 5 beats the drive: unit 1 fires.
    # Round 3: unit 1 -> unit 2 with weight 5: unit 2 fires.
    cfg = NetworkConfig(d=1, n_classes=2, vertices=3, cap=1, rounds=3)
    A = torch.tensor([[[1.0, 0.0, 0.0]]])
    W = torch.zeros(1, 3, 3)
    W[0, 0, 1] = 5.0
    W[0, 1, 2] = 5.0
    G = (W != 0).float()
    U = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]]])
    nets = Networks(cfg, A, G, W, U)
    logits, words = forward(nets, torch.tensor([[1.0]]))
    assert words.dtype == torch.uint8
    assert words.tolist() == [[[0b100, 0b010, 0b001]]]  # 4, 2, 1
    # final state: only unit 2, with value 5 * 5 = 25 (it gets no input drive)
    assert logits.tolist() == [[[0.0, 50.0]]]


# -------------------------------------------------------------------------- init


def test_graph_has_no_self_loops_and_density_p():
    cfg = NetworkConfig(d=20, n_classes=3, vertices=150, cap=75, rounds=2, p=0.3)
    nets = init_networks(cfg, [0, 1])
    G = nets.G
    assert G.shape == (2, 150, 150)
    assert set(G.unique().tolist()) <= {0.0, 1.0}
    assert (torch.diagonal(G, dim1=1, dim2=2) == 0).all()
    off = G.sum((1, 2)) / (150 * 149)
    assert ((off - 0.3).abs() < 0.02).all()
    amask = (nets.A != 0).double().mean((1, 2))
    assert ((amask - 0.3).abs() < 0.05).all()
    assert nets.A.shape == (2, 20, 150) and nets.U.shape == (2, 150, 3)


def test_masks_differ_across_seeds_and_members_equal_single_runs():
    cfg = NetworkConfig(d=8, n_classes=2, vertices=40, cap=20, rounds=3)
    ens = init_networks(cfg, [11, 12])
    assert not torch.equal(ens.G[0], ens.G[1])
    assert not torch.equal(ens.A[0] != 0, ens.A[1] != 0)
    for b, s in enumerate([11, 12]):
        one = init_networks(cfg, [s])
        for name in ("A", "G", "W", "U"):
            assert torch.equal(getattr(ens, name)[b:b + 1], getattr(one, name)), name


def test_input_weights_ones_are_exactly_one_on_the_mask():
    base = dict(d=12, n_classes=2, vertices=50, cap=25, rounds=2)
    ones = init_networks(NetworkConfig(**base, input_weights="ones"), [3])
    normal = init_networks(NetworkConfig(**base), [3])
    on = ones.A != 0
    assert (ones.A[on] == 1).all()
    assert torch.equal(on, normal.A != 0)  # same mask, only the weights differ
    assert (normal.A[on] != 1).any()


def test_initial_plastic_weights_by_mode():
    cfg = NetworkConfig(d=5, n_classes=4, vertices=30, cap=10, rounds=2)
    add = init_networks(cfg, [0, 1], mode="additive")
    assert (add.U == 0).all() and (add.W == 0).all()
    mul = init_networks(cfg, [0, 1], mode="multiplicative")
    assert (mul.U == 1).all()
    assert torch.equal(mul.W, mul.G)
    t1 = init_networks(NetworkConfig(d=5, n_classes=4, vertices=30, cap=10, rounds=1), [0])
    assert t1.G is None and t1.W is None


def test_init_needs_a_seed():
    with pytest.raises(MetaplasticError, match="at least one network"):
        init_networks(NetworkConfig(d=2, n_classes=2, vertices=4, cap=2), [])


# ------------------------------------------------------------------ config errors


@pytest.mark.parametrize("kw, match", [
    (dict(cap=100), r"cap k must satisfy 0 < k < \|V\| = 100, got 100"),
    (dict(cap=150), r"cap k"),
    (dict(cap=0), r"cap k"),
    (dict(cap=-3), r"cap k"),
    (dict(p=0.0), r"edge probability p must be in \(0, 1\]"),
    (dict(p=-0.5), r"edge probability p"),
    (dict(p=1.5), r"edge probability p"),
    (dict(p=float("nan")), r"edge probability p"),
    (dict(p=True), r"edge probability p"),
    (dict(n_classes=True), r"at least 2 classes"),
    (dict(vertices=0, cap=0), r"vertices \|V\| must be a positive integer"),
    (dict(rounds=0), r"rounds T must be an integer in 1\.\.8, got 0"),
    (dict(rounds=9), r"rounds T must be an integer in 1\.\.8, got 9"),
    (dict(n_classes=1), r"at least 2 classes"),
    (dict(input_weights="uniform"), r"input weights must be one of"),
    (dict(d=0), r"input dimension"),
])
def test_network_config_errors(kw, match):
    args = dict(d=10, n_classes=2, vertices=100, cap=50)
    args.update(kw)
    with pytest.raises(MetaplasticError, match=match):
        NetworkConfig(**args)


def test_network_config_edges_accepted():
    NetworkConfig(d=1, n_classes=2, vertices=2, cap=1, rounds=8, p=1.0)
    NetworkConfig(d=1, n_classes=2, vertices=2, cap=1, rounds=1, p=1)


# ------------------------------------------------------------------------ module


@pytest.mark.parametrize("rounds", [1, 3])
def test_simple_rnn_module_equals_forward(rounds):
    cfg = NetworkConfig(d=6, n_classes=3, vertices=40, cap=15, rounds=rounds)
    nets = init_networks(cfg, [5, 6, 7], dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    nets.U = torch.randn(nets.U.shape, generator=g, dtype=torch.float64)
    if rounds > 1:
        nets.W = nets.G * torch.randn(nets.G.shape, generator=g, dtype=torch.float64) * 0.3
    x = torch.randn(25, 6, generator=g, dtype=torch.float64)
    logits, words = forward(nets, x)
    for b in range(3):
        m = SimpleRNN(nets, b)
        out = m(x)
        assert out.shape == (25, 3)
        # one network's products vs the ensemble's batched ones: the same decisions
        # (firing words, predictions), values to rounding (tests/conftest.py)
        assert torch.equal(m.firing_words(x), words[b])
        assert torch.equal(out.argmax(-1), logits[b].argmax(-1))
        assert_close(out, logits[b])
        assert torch.equal(m(x), out)  # the same call twice: bit for bit
    assert SimpleRNN(nets)(x[:1]).shape == (1, 3)


def test_simple_rnn_networks_keeps_zero_weight_edges():
    cfg = NetworkConfig(d=4, n_classes=2, vertices=20, cap=10, rounds=2)
    nets = init_networks(cfg, [0])  # additive: W = 0 on every edge
    back = SimpleRNN(nets).networks()
    assert torch.equal(back.G, nets.G) and back.G.sum() > 0
    for name in ("A", "W", "U"):
        assert torch.equal(getattr(back, name), getattr(nets, name))
    assert SimpleRNN(init_networks(NetworkConfig(d=4, n_classes=2, vertices=20, cap=10), [0])
                     ).networks().G is None


def test_simple_rnn_input_gradient():
    cfg = NetworkConfig(d=6, n_classes=2, vertices=30, cap=10, rounds=2)
    nets = init_networks(cfg, [0], dtype=torch.float64)
    nets.U = torch.randn(nets.U.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True,
                    generator=torch.Generator().manual_seed(1))
    SimpleRNN(nets)(x).sum().backward()
    assert x.grad.shape == (4, 6) and x.grad.abs().sum() > 0


def test_simple_rnn_bad_index():
    nets = init_networks(NetworkConfig(d=2, n_classes=2, vertices=4, cap=2), [0, 1])
    with pytest.raises(MetaplasticError, match="network index"):
        SimpleRNN(nets, 2)


def test_words_from_states_equal_the_words_of_the_rounds():
    from metaplastic.network import run_rounds, words_of
    g = torch.Generator().manual_seed(0)
    P = torch.randn(2, 7, 30, generator=g)
    W = 0.3 * torch.randn(2, 30, 30, generator=g)
    for T in (1, 3, 8):
        states = []
        h, words = run_rounds(P, W, 12, T, states=states)
        assert torch.equal(words_of(torch.stack(states, -2)), words)
        h2, none = run_rounds(P, W, 12, T, words=False)
        assert none is None and torch.equal(h2, h)


# ------------------------------------------------- the paper's code semantics (issue 11)


def test_top_k_firing_fills_the_set_with_the_lowest_indexed_zeros():
    from metaplastic.network import fired_mask
    # one positive drive, V=6, k=3: the text fires unit 1 only; the code fires
    # unit 1 and the two lowest-indexed zero-valued units, 0 and 2
    P = torch.tensor([[[-1.0, 2.0, -3.0, -0.5, -2.0, -1.0]]])
    h, words = run_rounds(P, None, k=3, rounds=1, firing="top-k")
    assert h.tolist() == [[[0.0, 2.0, 0.0, 0.0, 0.0, 0.0]]]       # values do not change
    assert words.tolist() == [[[1, 1, 1, 0, 0, 0]]]
    assert fired_mask(h, 3, "nonzero").long().tolist() == [[[0, 1, 0, 0, 0, 0]]]
    # at least k positive: the top-k set is exactly the non-zero units under both notions
    z = torch.tensor([[0.0, 5.0, 1.0, 0.0, 3.0, 2.0]])
    h = cap(z, 3)
    assert torch.equal(fired_mask(h, 3, "top-k"), h != 0)
    # silent round: k fired units, the first k
    assert fired_mask(torch.zeros(2, 5), 2, "top-k").long().tolist() == [[1, 1, 0, 0, 0]] * 2
    # a cap-free network has no top-k set: non-zero either way
    assert fired_mask(torch.tensor([0.0, 1.0, 0.0]), None, "top-k").tolist() == [False, True, False]
    with pytest.raises(MetaplasticError, match="firing must be one of"):
        fired_mask(h, 3, "topk")


def test_top_k_firing_counts_k_units_in_every_round_and_agrees_with_fired():
    from metaplastic.network import fired, words_of
    g = torch.Generator().manual_seed(4)
    cfg = NetworkConfig(d=5, n_classes=2, vertices=30, cap=20, rounds=3, firing="top-k")
    nets = init_networks(cfg, [0, 1], dtype=torch.float64)
    nets.W = nets.G * torch.randn(nets.G.shape, generator=g, dtype=torch.float64)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    _, words = forward(nets, x)
    for r in range(3):
        assert (((words >> r) & 1).sum(-1) == 20).all()
    states = []
    run_rounds(x @ nets.A, nets.W, 20, 3, states=states, **cfg.semantics)
    S = torch.stack(states, -2)
    assert torch.equal(words_of(S, 20, "top-k"), words)
    assert torch.equal(fired(S, cfg), fired_mask_ref(S, 20))
    assert ((S != 0).sum(-1) < 20).any()   # zero-valued units did fire somewhere


def fired_mask_ref(S, k):
    """Top-k membership by a full stable sort (value descending, index ascending)."""
    idx = torch.sort(S, dim=-1, descending=True, stable=True).indices[..., :k]
    return torch.zeros_like(S, dtype=torch.bool).scatter(-1, idx, True)


def test_code_recurrence_feeds_the_input_through_w():
    # d=1, V=3, k=1.  Round 1: unit 0 (drive 1).  Text: round 2 = relu(h @ W + P);
    # code: relu((h + P) @ W), the input reaches the units only through W.
    A = torch.tensor([[[1.0, 0.5, 0.0]]])
    W = torch.zeros(1, 3, 3)
    W[0, 0, 2] = 2.0
    W[0, 1, 2] = 4.0
    P = A  # x = 1
    h_text, _ = run_rounds(P, W, 1, 2)
    h_code, w_code = run_rounds(P, W, 1, 2, recurrence="w(h+ax)")
    # text: z = [0, 0, 2] + [1, .5, 0] = [1, .5, 2] -> unit 2 with 2
    assert h_text.tolist() == [[[0.0, 0.0, 2.0]]]
    # code: (h + P) = [1 + 1, .5, 0] -> z = [0, 0, 2*2 + .5*4] = [0, 0, 6]
    assert h_code.tolist() == [[[0.0, 0.0, 6.0]]]
    assert w_code.tolist() == [[[0b10, 0b00, 0b01]]]
    # with W = 0 the code's later rounds are silent (additive rules start there)
    h0, w0 = run_rounds(P, torch.zeros(1, 3, 3), 1, 3, recurrence="w(h+ax)")
    assert (h0 == 0).all() and w0.tolist() == [[[0b100, 0, 0]]]
    _, w0k = run_rounds(P, torch.zeros(1, 3, 3), 1, 3, recurrence="w(h+ax)", firing="top-k")
    assert w0k.tolist() == [[[0b111, 0, 0]]]   # silent rounds still fire k units (lowest index)
    with pytest.raises(MetaplasticError, match="recurrence must be one of"):
        run_rounds(P, W, 1, 2, recurrence="W(h+Ax)")


@pytest.mark.parametrize("recurrence", ["wh+ax", "w(h+ax)"])
@pytest.mark.parametrize("firing", ["nonzero", "top-k"])
def test_simple_rnn_and_gd_honour_the_semantics(recurrence, firing):
    cfg = NetworkConfig(d=6, n_classes=3, vertices=40, cap=30, rounds=3, recurrence=recurrence,
                        firing=firing)
    nets = init_networks(cfg, [5, 6], dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    nets.U = torch.randn(nets.U.shape, generator=g, dtype=torch.float64)
    nets.W = nets.G * torch.randn(nets.G.shape, generator=g, dtype=torch.float64) * 0.3
    x = torch.randn(25, 6, generator=g, dtype=torch.float64)
    logits, words = forward(nets, x)
    ref_h, ref_w = run_rounds(x @ nets.A, nets.W, 30, 3, recurrence=recurrence, firing=firing)
    assert torch.equal(logits, torch.bmm(ref_h, nets.U)) and torch.equal(words, ref_w)
    for b in range(2):
        m = SimpleRNN(nets, b)
        assert torch.equal(m(x), logits[b]) and torch.equal(m.firing_words(x), words[b])
    other = NetworkConfig(**{**cfg.to_dict(), "recurrence": "wh+ax" if recurrence != "wh+ax" else "w(h+ax)"})
    assert not torch.equal(forward(Networks(other, nets.A, nets.G, nets.W, nets.U), x)[0], logits)
