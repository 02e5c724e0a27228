"""Rule-based training (A.1, A.4): the fast chunked loop equals the one-at-a-time loop."""

import pytest
import torch

from conftest import assert_close, halfspace
from metaplastic.learner import Scheme, Tables, data_orders, train_gd, train_rules
from metaplastic.network import NetworkConfig, accuracy, cap, init_networks
from metaplastic.rules import hebb_rule, perceptron_rule, winnow_rule


def reference_fired(z, h, k, firing):
    """Which units fired, straight from the definitions (not via network.fired_mask):
    the text's h != 0, or the code's membership of the top k of relu(z) ranked by
    value, ties to the lower index (a plain Python sort of (-value, index))."""
    if firing == "nonzero":
        return (h != 0).long()
    order = sorted(range(z.shape[0]), key=lambda i: (-float(z[i]), i))[:k]
    bit = torch.zeros(z.shape[0], dtype=torch.long)
    bit[order] = 1
    return bit


def reference_train(nets, x, y, tables, orders, scheme):
    """Plain per-example loop written from the paper's text (and, where the config
    says so, its code's recurrence and firing), one network at a time.

    Returns each network's updates: the list of (example index, prediction) pairs.
    """
    c = nets.config
    updates = [[] for _ in range(nets.batch)]
    for b in range(nets.batch):
        A, U = nets.A[b], nets.U[b]
        W = None if nets.W is None else nets.W[b]
        G = None if nets.G is None else nets.G[b]
        for t in orders[b].tolist():
            drive = x[t] @ A
            h = torch.zeros(c.vertices, dtype=x.dtype)
            bits = []
            for r in range(c.rounds):
                if r == 0:
                    z = torch.relu(drive)
                elif c.recurrence == "wh+ax":
                    z = torch.relu(h @ W + drive)
                else:  # the paper's code: the input re-enters through W
                    z = torch.relu((h + drive) @ W)
                h = cap(z, c.cap)
                bits.append(reference_fired(z, h, c.cap, c.firing))
            code = sum(bit << (c.rounds - 1 - r) for r, bit in enumerate(bits))
            pred = int((h @ U).argmax())
            if scheme.update_on == "misclassified" and pred == int(y[t]):
                continue
            updates[b].append((t, pred))
            if tables.graph is not None and W is not None:
                d = tables.graph_eta * tables.graph[code][:, code]
                if tables.graph_mode == "additive":
                    W += G * d
                else:
                    W *= torch.exp(d)
            # chi: the unit's value where it fired (0 for a zero-valued top-k member), else 1
            gain = torch.where(bits[-1] == 1, h, 1.0) if scheme.output_input == "value" else torch.ones_like(h)
            col = tables.output_eta * tables.output[code] * gain[:, None]  # [V, 2]
            delta = torch.zeros_like(U)
            delta[:, int(y[t])] += col[:, 0]
            if scheme.output_rows == "true-and-predicted":
                delta[:, pred] += col[:, 1]
            else:
                others = [k for k in range(U.shape[1]) if k != int(y[t])]
                delta[:, others] += col[:, 1:2]
            if tables.output_mode == "additive":
                U += delta
            else:
                U *= torch.exp(delta)
    return updates


def updates_of(rec, b):
    """Network b's updates in a train_rules record: (example index, prediction) pairs."""
    steps = rec.active[:, b].nonzero()[:, 0]
    return list(zip(rec.index[steps, b].tolist(), rec.pred[steps, b].tolist()))


def _setup(rounds, mode="additive", n=300, V=40, B=2, classes=2, seed=0, recurrence="wh+ax",
           firing="nonzero", cap=None):
    x, y = halfspace(n, seed=seed)
    if classes > 2:
        y = ((x[:, 0] > 0).long() + (x[:, 1] > 0).long() * 2) % classes
    cfg = NetworkConfig(d=x.shape[1], n_classes=classes, vertices=V, cap=cap or V // 2, rounds=rounds,
                        recurrence=recurrence, firing=firing)
    seeds = list(range(seed, seed + B))
    nets = init_networks(cfg, seeds, mode=mode, dtype=torch.float64)
    if mode == "additive":
        out = perceptron_rule(rounds, eta=0.05, dtype=torch.float64)
        graph = hebb_rule(rounds, eta=0.01, dtype=torch.float64) if rounds > 1 else None
        if graph is not None:  # a signed table exercises more than Hebb's 0/1
            g = torch.Generator().manual_seed(9)
            graph.values.data = torch.randn(graph.shape, generator=g, dtype=torch.float64)
    else:
        out = winnow_rule(rounds, eta=0.05, dtype=torch.float64)
        graph = None
        if rounds > 1:
            from metaplastic.rules import TableRule
            g = torch.Generator().manual_seed(9)
            graph = TableRule("graph", rounds, "multiplicative", 0.002,
                              values=0.5 * torch.randn(2**rounds, 2**rounds, generator=g,
                                                       dtype=torch.float64), dtype=torch.float64)
    tables = Tables.from_rules(out, graph)
    tables.output, tables.graph = tables.output.detach(), None if graph is None else tables.graph.detach()
    return x, y, nets, tables, data_orders(n, 2, seeds)


CASES = [
    dict(rounds=1),
    dict(rounds=3),
    dict(rounds=3, scheme=Scheme(update_on="all")),
    dict(rounds=2, scheme=Scheme(output_rows="all"), classes=3),
    dict(rounds=3, scheme=Scheme(output_input="bit"), classes=3),
    dict(rounds=1, mode="multiplicative"),
    dict(rounds=3, mode="multiplicative"),
    # the paper's code semantics (each option alone and together); a cap of 3/4
    # of |V| leaves top-k sets with zero-valued members, which then fire
    dict(rounds=3, recurrence="w(h+ax)"),
    dict(rounds=3, firing="top-k", cap=30),
    dict(rounds=1, firing="top-k", cap=30),
    dict(rounds=3, recurrence="w(h+ax)", firing="top-k", cap=30),
    dict(rounds=3, recurrence="w(h+ax)", firing="top-k", cap=30, scheme=Scheme(output_input="bit")),
    dict(rounds=2, recurrence="w(h+ax)", firing="top-k", cap=30, mode="multiplicative"),
]


@pytest.mark.parametrize("backend", ["torch", "compiled"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_fast_loop_equals_reference(case, backend):
    case = dict(case)
    scheme = case.pop("scheme", Scheme())
    x, y, nets, tables, orders = _setup(**case)
    ref = nets.clone()
    mistakes, rec = train_rules(nets, x, y, tables, orders, scheme, record=True, backend=backend)
    updates = reference_train(ref, x, y, tables, orders, scheme)
    # the same decisions (float64: no decision lies within rounding of a tie), values to rounding
    for b in range(nets.batch):
        assert updates_of(rec, b) == updates[b]
    if scheme.update_on == "misclassified":
        assert mistakes.tolist() == [len(u) for u in updates]
    c = nets.config
    if c.firing == "top-k":
        bits = torch.stack([(rec.words >> (c.rounds - 1 - r)) & 1 for r in range(c.rounds)])
        assert (bits.long().sum(-1) == c.cap).all()  # every round fires exactly k units
        if rec.gain is not None:  # the option is exercised: zero-valued units fired (gain h_i = 0)
            assert (rec.gain == 0).any()
    assert_close(nets.U, ref.U)
    if nets.W is not None:
        assert_close(nets.W, ref.W)
    assert torch.isfinite(nets.U).all()
    assert not torch.equal(nets.U, torch.full_like(nets.U, float(nets.U[0, 0, 0])))


@pytest.mark.parametrize("rounds", [1, 3])
def test_ensemble_members_make_the_decisions_of_separate_runs(rounds):
    """Member b of an ensemble updates on the same examples with the same predictions as a
    single run with its seed; its weights agree to rounding (the batched products of an
    ensemble need not round like one network's, tests/conftest.py).  float64: continuous
    random inputs, no decision within rounding of a tie."""
    dtype = torch.float64
    x, y = halfspace(600, seed=1, dtype=dtype)
    cfg = NetworkConfig(d=10, n_classes=2, vertices=60, cap=30, rounds=rounds)
    seeds = [5, 6, 7]
    tables = Tables(output=perceptron_rule(rounds, dtype=dtype).table().detach(),
                    graph=hebb_rule(rounds, dtype=dtype).table().detach() * 0.1 - 0.05 if rounds > 1 else None)
    ens = init_networks(cfg, seeds, dtype=dtype)
    ens_mistakes, ens_rec = train_rules(ens, x, y, tables, data_orders(600, 2, seeds), record=True)
    for b, s in enumerate(seeds):
        one = init_networks(cfg, [s], dtype=dtype)
        mistakes, rec = train_rules(one, x, y, tables, data_orders(600, 2, [s]), record=True)
        assert updates_of(rec, 0) == updates_of(ens_rec, b)
        assert int(mistakes[0]) == int(ens_mistakes[b]) > 20
        assert_close(ens.U[b], one.U[0])
        if rounds > 1:
            assert_close(ens.W[b], one.W[0])


@pytest.mark.parametrize("rounds", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ensemble_equals_separate_runs_bit_for_bit_when_arithmetic_is_exact(rounds, dtype):
    """With small-integer inputs, 0/1 input weights and step sizes that are powers of two,
    every sum the loop forms is exact in float32 (checked below against float64), so no
    kernel can round differently: here an ensemble equals separate runs bit for bit on any
    machine, in float32 too, whose long speculative chunks (MAX_CHUNK) this exercises."""
    g = torch.Generator().manual_seed(2)
    n = 300
    x = torch.randint(-1, 2, (n, 10), generator=g).to(dtype)
    y = (x @ torch.randn(10, generator=g, dtype=torch.float64).to(dtype) > 0).long()
    cfg = NetworkConfig(d=10, n_classes=2, vertices=40, cap=20, rounds=rounds, input_weights="ones")
    seeds = [5, 6, 7]
    graph = None
    if rounds > 1:  # entries in {-1, 0, 1}
        graph = torch.randint(-1, 2, (2**rounds, 2**rounds), generator=g).to(dtype)
    tables = Tables(output=perceptron_rule(rounds, dtype=dtype).table().detach(), output_eta=2.0**-4,
                    graph=graph, graph_eta=2.0**-6)

    def run(seeds, dt):
        nets = init_networks(cfg, seeds, dtype=dt)
        t = Tables(tables.output.to(dt), "additive", tables.output_eta,
                   None if graph is None else graph.to(dt), "additive", tables.graph_eta)
        mistakes, _ = train_rules(nets, x.to(dt), y, t, data_orders(n, 1, seeds))
        return nets, mistakes

    ens, ens_mistakes = run(seeds, dtype)
    exact, _ = run(seeds, torch.float64)
    assert torch.equal(ens.U.double(), exact.U)  # no rounding happened in this dtype
    if rounds > 1:
        assert torch.equal(ens.W.double(), exact.W) and ens.W.abs().max() > 0
    assert (ens_mistakes > 10).all()
    for b, s in enumerate(seeds):
        one, mistakes = run([s], dtype)
        assert int(mistakes[0]) == int(ens_mistakes[b])
        assert torch.equal(one.U[0], ens.U[b])
        if rounds > 1:
            assert torch.equal(one.W[0], ens.W[b])


def test_same_seed_same_result_and_seeds_differ():
    x, y = halfspace(500, seed=2, dtype=torch.float32)
    cfg = NetworkConfig(d=10, n_classes=2, vertices=50, cap=25, rounds=3)
    tables = Tables(output=perceptron_rule(3).table().detach(), graph=hebb_rule(3).table().detach())
    runs = []
    for s in (0, 0, 1):
        n = init_networks(cfg, [s])
        train_rules(n, x, y, tables, data_orders(500, 1, [s]))
        runs.append(n)
    assert torch.equal(runs[0].U, runs[1].U) and torch.equal(runs[0].W, runs[1].W)
    assert not torch.equal(runs[0].U, runs[2].U)


def test_record_lists_every_update():
    x, y, nets, tables, orders = _setup(rounds=3, B=3)
    mistakes, rec = train_rules(nets, x, y, tables, orders, record=True)
    assert rec.words.dtype == torch.uint8 and rec.words.shape[1:] == (3, 40)
    assert torch.equal(rec.active.sum(0), mistakes)
    assert (rec.words < 8).all()


def test_perceptron_learns_halfspace():
    x, y = halfspace(4000, seed=3, dtype=torch.float32)
    cfg = NetworkConfig(d=10, n_classes=2, vertices=100, cap=50, rounds=1)
    nets = init_networks(cfg, [0, 1])
    train_rules(nets, x[:3000], y[:3000], Tables(output=perceptron_rule(1).table().detach()),
                data_orders(3000, 1, [0, 1]))
    assert (accuracy(nets, x[3000:], y[3000:]) > 0.9).all()


@pytest.mark.parametrize("which", ["output", "all"])
def test_gd_baselines_learn(which):
    x, y = halfspace(3000, seed=4, dtype=torch.float32)
    cfg = NetworkConfig(d=10, n_classes=2, vertices=60, cap=30, rounds=3 if which == "all" else 1)
    nets = init_networks(cfg, [0, 1])
    before = nets.A.clone()
    train_gd(nets, x[:2000], y[:2000], data_orders(2000, 2, [0, 1]), which=which, batch_size=20)
    assert (accuracy(nets, x[2000:], y[2000:]) > 0.85).all()
    if which == "all":
        assert not torch.equal(before, nets.A)
        assert torch.equal(nets.A == 0, before == 0)  # stays on the input mask
        assert (nets.W[nets.G == 0] == 0).all()      # stays on the graph


def test_moved_names_still_import_from_learner():
    import metaplastic.learner as ln
    from metaplastic import gd, torch_loop
    assert ln.train_gd is gd.train_gd and train_gd is gd.train_gd
    assert ln.train_torch is torch_loop.train_torch and ln.FeatureCache is torch_loop.FeatureCache
    with pytest.raises(AttributeError):
        ln.no_such_name  # noqa: B018
