"""The compiled loop (metaplastic.compiled) makes the torch loop's decisions and reaches its weights.

Decisions (mistake sequences, firing words, predictions, record rows) are
compared exactly, on float64 data whose margins keep them robust on any CPU;
weights to rounding: float64 1e-12 relative, float32 1e-5 (the compiled loop
sums rounds 2..T and the logits in another order than torch's BLAS).
"""

import pytest
import torch

from conftest import halfspace
from metaplastic.compiled import BACKEND_ENV, resolve_backend, resolve_for
from metaplastic.errors import MetaplasticError, TrainingDiverged
from metaplastic.learner import Scheme, Tables, data_orders, train_rules
from metaplastic.meta import estimate_replay, estimate_tape
from metaplastic.network import NetworkConfig, forward, init_networks
from metaplastic.rules import MLPRule, TableRule, perceptron_table
from test_learner import _setup, reference_train, updates_of
from test_meta import grads_of, make_problem

TOL = {torch.float64: 1e-12, torch.float32: 1e-5}

CASES = {
    "T1": dict(rounds=1),
    "T3": dict(rounds=3),
    "T3-update-all": dict(rounds=3, scheme=Scheme(update_on="all")),
    "T2-all-rows-3class": dict(rounds=2, scheme=Scheme(output_rows="all"), classes=3),
    "T3-all-all-3class": dict(rounds=3, scheme=Scheme("all", "all"), classes=3),
    "T3-bit-3class": dict(rounds=3, scheme=Scheme(output_input="bit"), classes=3),
    "T1-multiplicative": dict(rounds=1, mode="multiplicative"),
    "T3-multiplicative": dict(rounds=3, mode="multiplicative"),
    "T3-multiplicative-all-rows": dict(rounds=3, mode="multiplicative", classes=3,
                                       scheme=Scheme(output_rows="all")),
    # the paper's code semantics (network.py), each alone and together, in every scheme,
    # output-row choice, output form and mode; a cap of 3/4 of |V| leaves top-k sets with
    # zero-valued members, and W = 0 at the start makes w(h+ax)'s round 2 all zero
    "wax-T3": dict(rounds=3, recurrence="w(h+ax)"),
    "wax-T2-update-all-all-rows-3class": dict(rounds=2, recurrence="w(h+ax)", classes=3,
                                              scheme=Scheme("all", "all")),
    "wax-T3-multiplicative": dict(rounds=3, recurrence="w(h+ax)", mode="multiplicative"),
    "topk-T1": dict(rounds=1, firing="top-k", cap=30),
    "topk-T3": dict(rounds=3, firing="top-k", cap=30),
    "topk-T3-update-all-3class": dict(rounds=3, firing="top-k", cap=30, classes=3,
                                      scheme=Scheme(update_on="all")),
    "topk-T1-multiplicative-all-rows": dict(rounds=1, firing="top-k", cap=30, mode="multiplicative",
                                            classes=3, scheme=Scheme(output_rows="all")),
    "code-T3": dict(rounds=3, recurrence="w(h+ax)", firing="top-k", cap=30),
    "code-T3-bit": dict(rounds=3, recurrence="w(h+ax)", firing="top-k", cap=30,
                        scheme=Scheme(output_input="bit")),
    "code-T3-bit-all-all-3class": dict(rounds=3, recurrence="w(h+ax)", firing="top-k", cap=30,
                                       classes=3, scheme=Scheme("all", "all", "bit")),
    "code-T2-multiplicative": dict(rounds=2, recurrence="w(h+ax)", firing="top-k", cap=30,
                                   mode="multiplicative"),
    "code-T3-multiplicative-bit-all-rows": dict(rounds=3, recurrence="w(h+ax)", firing="top-k", cap=30,
                                                mode="multiplicative", classes=3,
                                                scheme=Scheme(output_rows="all", output_input="bit")),
}


def close(a, b, dtype=torch.float64):
    """Equal to rounding, relative to the tensor's scale."""
    tol = TOL[dtype]
    return torch.allclose(a, b, rtol=tol, atol=tol * float(b.abs().max().clamp_min(1.0)))


def train_both(nets, x, y, tables, orders, scheme, record=False, **kw):
    """(mistakes, record, trained networks) of the torch and the compiled backend."""
    out = {}
    for backend in ("torch", "compiled"):
        n = nets.clone()
        m, rec = train_rules(n, x, y, tables, orders, scheme, record=record, backend=backend, **kw)
        out[backend] = (m, rec, n)
    return out["torch"], out["compiled"]


def assert_same_record(rt, rc, dtype=torch.float64):
    assert rc.words.shape == rt.words.shape
    for f in ("words", "active", "y", "pred", "index"):
        assert torch.equal(getattr(rc, f), getattr(rt, f)), f
    for f in ("gain", "states", "drive"):
        a, b = getattr(rc, f), getattr(rt, f)
        assert (a is None) == (b is None), f
        if a is not None:
            assert close(a, b, dtype), f


def check_top_k_ties(rec, c, w_starts_at_zero):
    """Top-k firing was exercised where it differs from non-zero firing: every round fires
    exactly k units, some of them at value 0 (the tie order among zeros decides which)."""
    T = c.rounds
    bits = torch.stack([(rec.words >> (T - 1 - t)) & 1 for t in range(T)], 2)  # [S, B, T, V]
    assert (bits.long().sum(-1) == c.cap).all()
    if rec.states is not None:
        silent = bits.bool() & (rec.states == 0)
        assert silent.any()
        # they are the lowest-indexed zero-valued units of their round
        zero = rec.states == 0
        need = c.cap - (~zero).sum(-1, keepdim=True)
        assert torch.equal(silent, zero & (zero.long().cumsum(-1) <= need))
        if c.recurrence == "w(h+ax)" and w_starts_at_zero:  # additive: W = 0 at the start: round 2 all zero, fired by index alone
            first = rec.states[0, :, 1]
            assert (first == 0).all()
            assert (bits[0, :, 1, :c.cap] == 1).all() and (bits[0, :, 1, c.cap:] == 0).all()
    if rec.gain is not None:
        assert (rec.gain == 0).any()  # a zero-valued fired unit's gain is its value, 0


@pytest.mark.parametrize("name", list(CASES))
def test_compiled_equals_torch_and_reference(name):
    case = dict(CASES[name])
    scheme = case.pop("scheme", Scheme())
    x, y, nets, tables, orders = _setup(**case)
    (mt, rt, nt), (mc, rc, nc) = train_both(nets, x, y, tables, orders, scheme,
                                            record="states")
    assert torch.equal(mt, mc)
    assert_same_record(rt, rc)
    assert close(nc.U, nt.U)
    if nets.W is not None:
        assert close(nc.W, nt.W)
    ref = nets.clone()
    updates = reference_train(ref, x, y, tables, orders, scheme)
    for b in range(nets.batch):  # the plain per-example loop's mistake sequence
        assert updates_of(rc, b) == updates[b]
    assert close(nc.U, ref.U)
    if nets.W is not None:
        assert close(nc.W, ref.W)
    c = nets.config
    assert (rc.drive is not None) == (c.recurrence == "w(h+ax)" and c.rounds > 1)
    if c.firing == "top-k":
        check_top_k_ties(rc, c, case.get("mode", "additive") == "additive")
    # the trained networks decide alike: predictions and firing words on every input
    lt, wt = forward(nt, x)
    lc, wc = forward(nc, x)
    assert torch.equal(lt.argmax(-1), lc.argmax(-1)) and torch.equal(wt, wc)
    assert not torch.equal(nc.U, nets.U)  # it trained


#: The semantics settings (network.NetworkConfig) of the tests below: the text, each of the
#: code's options alone, and both (``--paper-code`` also sets the bit output form, a Scheme).
SEMANTICS = {"text": {}, "wax": dict(recurrence="w(h+ax)"), "topk": dict(firing="top-k"),
             "code": dict(recurrence="w(h+ax)", firing="top-k")}


@pytest.mark.parametrize("rounds,sem", [(1, "text"), (3, "text"), (1, "topk"), (3, "wax"), (3, "topk"),
                                        (3, "code")])
def test_float32_to_tolerance(rounds, sem):
    x, y = halfspace(300, seed=3, dtype=torch.float32)
    cap = 30 if "firing" in SEMANTICS[sem] else 20
    cfg = NetworkConfig(d=10, n_classes=2, vertices=40, cap=cap, rounds=rounds, **SEMANTICS[sem])
    nets = init_networks(cfg, [0, 1], dtype=torch.float32)
    g = torch.Generator().manual_seed(2)
    tables = Tables(output=perceptron_table(rounds), output_eta=0.05,
                    graph=0.3 * torch.randn(2**rounds, 2**rounds, generator=g) if rounds > 1 else None)
    scheme = Scheme(output_input="bit") if sem == "code" else Scheme()
    (mt, rt, nt), (mc, rc, nc) = train_both(nets, x, y, tables, data_orders(300, 1, [0, 1]),
                                            scheme, record="states")
    assert torch.equal(mt, mc)
    assert_same_record(rt, rc, torch.float32)
    assert close(nc.U, nt.U, torch.float32)
    if rounds > 1:
        assert close(nc.W, nt.W, torch.float32)


@pytest.mark.parametrize("update_on,sem", [("misclassified", "text"), ("all", "text"),
                                           ("misclassified", "code"), ("all", "code")])
def test_per_network_tables_and_mlp_rules(update_on, sem):
    """Ensembles with one table per network (as ES trains them), from MLP rules."""
    x, y, nets, _, orders = _setup(rounds=3, B=3, cap=30 if sem == "code" else None, **SEMANTICS[sem])
    g = torch.Generator().manual_seed(4)
    outs, graphs = [], []
    for b in range(3):
        outs.append(MLPRule("output", 3, "additive", 0.05, hidden=5, generator=g,
                            dtype=torch.float64).table().detach())
        graphs.append(MLPRule("graph", 3, "additive", 0.01, hidden=5, generator=g,
                              dtype=torch.float64).table().detach())
    tables = Tables(output=torch.stack(outs), output_eta=0.05, graph=torch.stack(graphs),
                    graph_eta=0.01)
    scheme = Scheme(update_on=update_on, output_input="bit" if sem == "code" else "value")
    (mt, rt, nt), (mc, rc, nc) = train_both(nets, x, y, tables, orders, scheme, record=True)
    assert torch.equal(mt, mc)
    assert_same_record(rt, rc)
    assert close(nc.U, nt.U) and close(nc.W, nt.W)
    # member b alone, with its own table, is the same network: the same updates, the same
    # weights to rounding (its input drive is a differently shaped product, tests/conftest.py)
    one = init_networks(nets.config, [1], dtype=torch.float64)
    m1, r1 = train_rules(one, x, y, Tables(output=outs[1], output_eta=0.05, graph=graphs[1],
                                           graph_eta=0.01),
                         orders[1:2], scheme, record=True, backend="compiled")
    assert m1.item() == mc[1].item()
    assert updates_of(r1, 0) == updates_of(rc, 1)
    assert close(one.U[0], nc.U[1]) and close(one.W[0], nc.W[1])


def test_windowed_drive_equals_cached():
    """When the input drive does not fit in cache_bytes it is computed per window of each sequence."""
    x, y, nets, tables, orders = _setup(rounds=3, B=2)
    a, b = nets.clone(), nets.clone()
    ma, ra = train_rules(a, x, y, tables, orders, record=True, backend="compiled")
    mb, rb = train_rules(b, x, y, tables, orders, record=True, backend="compiled",
                         cache_bytes=30 * 2 * 40 * 8)  # windows of 30 examples
    assert torch.equal(ma, mb)
    assert_same_record(ra, rb)
    assert close(a.U, b.U) and close(a.W, b.W)


def test_progress_counts_every_example():
    x, y, nets, tables, orders = _setup(rounds=2, B=2)
    seen = []
    train_rules(nets, x, y, tables, orders, backend="compiled", progress=seen.append)
    assert sum(seen) == orders.numel()


@pytest.mark.parametrize("name", ["tables-T3", "multiplicative-T3", "ensemble-3", "mlp-graph-T3",
                                  "update-all-T3", "output-T1",
                                  # the paper's code semantics (tests/test_meta.py)
                                  "w(h+ax)-T3", "w(h+ax)-graph-only-T2", "top-k-T3", "top-k-T1",
                                  "code-all-T3", "code-all-T3-bit", "code-multiplicative-ens",
                                  "code-mlp-3class-all"])
def test_replay_through_compiled_record_equals_tape(name, monkeypatch):
    from test_meta import CASES as META
    case = dict(META[name])
    scheme = case.pop("scheme", Scheme())
    loss = (case.pop("loss", "ce"), case.pop("loss_on", "logits"))
    rules, batch = make_problem(**case)
    monkeypatch.setenv(BACKEND_ENV, "compiled")
    g_rep, _ = grads_of(rules, estimate_replay, batch, scheme, *loss)
    monkeypatch.setenv(BACKEND_ENV, "torch")
    g_torch, _ = grads_of(rules, estimate_replay, batch, scheme, *loss)
    g_tape, _ = grads_of(rules, estimate_tape, batch, scheme, *loss)
    assert g_tape.norm() > 0
    assert (g_rep - g_tape).norm() / g_tape.norm() < 1e-9
    assert (g_rep - g_torch).norm() / g_torch.norm() < 1e-11


@pytest.mark.parametrize("sem", ["text", "code"])
def test_divergence_names_the_example_and_network(sem):
    """A far too large step size: TrainingDiverged at the update that made weights non-finite."""
    x, y, nets, _, orders = _setup(rounds=1, B=2, mode="multiplicative", cap=30 if sem == "code" else None,
                                   **SEMANTICS[sem])
    big = torch.stack([torch.zeros(2, 2, dtype=torch.float64),
                       torch.tensor([[0.0, 0.0], [40.0, -40.0]], dtype=torch.float64)])
    tables = Tables(output=big, output_mode="multiplicative", output_eta=1.0)
    with pytest.raises(TrainingDiverged) as err:
        train_rules(nets.clone(), x, y, tables, orders, backend="compiled")
    q, b = err.value.example, err.value.network
    assert b == 1 and q is not None and "output rule (multiplicative, eta 1)" in str(err.value)
    # q counts the examples consumed: the torch loop is finite after q - 1, diverged after q
    n = nets.clone()
    train_rules(n, x, y, tables, orders[:, :q - 1], backend="torch")
    assert bool(torch.isfinite(n.U[1]).all())
    with pytest.raises(TrainingDiverged) as err_torch:
        train_rules(nets.clone(), x, y, tables, orders[:, :q], backend="torch")
    assert err_torch.value.network == 1 and err_torch.value.example == q


def test_unsupported_options_refused_and_auto_uses_torch():
    cfg = NetworkConfig(d=10, n_classes=2, vertices=20, cap=10, rounds=2)
    with pytest.raises(MetaplasticError, match="not supported by the compiled backend; use --backend torch"):
        resolve_for("compiled", cfg, "cpu", torch.float16)
    assert resolve_for("auto", cfg, "cpu", torch.float16) == "torch"
    ok = init_networks(NetworkConfig(d=10, n_classes=2, vertices=20, cap=10, rounds=2), [0])
    assert resolve_backend("auto", ok) == "compiled"
    for sem in SEMANTICS.values():  # the paper's code semantics run compiled too
        code = init_networks(NetworkConfig(d=10, n_classes=2, vertices=20, cap=10, rounds=2, **sem), [0])
        assert resolve_backend("auto", code) == "compiled"
    assert resolve_backend("torch", ok) == "torch"
    with pytest.raises(MetaplasticError, match="backend must be one of"):
        resolve_backend("fast", ok)


def test_multiplicative_graph_rule_only_touches_edges():
    x, y, nets, tables, orders = _setup(rounds=3, mode="multiplicative")
    train_rules(nets, x, y, tables, orders, backend="compiled")
    assert (nets.W[nets.G == 0] == 0).all()
    assert not torch.equal(nets.W[nets.G == 1], torch.ones_like(nets.W[nets.G == 1]))


def test_table_rule_requiring_grad_is_accepted():
    x, y, nets, _, orders = _setup(rounds=1)
    rule = TableRule("output", 1, "additive", 0.05, values=perceptron_table(1).double(), dtype=torch.float64)
    (mt, _, nt), (mc, _, nc) = train_both(nets, x, y, Tables.from_rules(rule), orders, Scheme())
    assert torch.equal(mt, mc) and close(nc.U, nt.U)


@pytest.mark.parametrize("backend", ["torch", "compiled"])
def test_cli_train_records_the_backend(backend, capsys):
    import json

    from metaplastic.cli import main
    rc = main(["train", "--n-train", "300", "--n-test", "100", "--vertices", "30", "--cap", "15",
               "--rounds", "2", "--graph-rule", "hebb", "--backend", backend, "--json", "--no-progress"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["backend"] == backend and res["config"]["backend"] == backend


def test_cli_auto_backend_and_env(capsys, monkeypatch):
    import json

    from metaplastic.cli import main
    args = ["train", "--n-train", "200", "--n-test", "50", "--vertices", "20", "--cap", "10", "--json",
            "--no-progress"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["backend"] == "compiled"  # auto on the CPU
    assert main(args + ["--paper-code", "--rounds", "2", "--graph-rule", "hebb"]) == 0
    assert json.loads(capsys.readouterr().out)["backend"] == "compiled"  # the code's semantics too
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["backend"] == "torch"


@pytest.mark.parametrize("sem", list(SEMANTICS))
@pytest.mark.parametrize("update_on", ["misclassified", "all"])
def test_no_graph_rule_keeps_w_zero(sem, update_on):
    """T = 3 without a graph rule (Fig. 3's zero-graph baseline): W stays 0, so the compiled loop
    skips rounds 2..T's products; every state is the torch loop's, exactly (a sum of zeros is 0)."""
    x, y, nets, tables, orders = _setup(rounds=3, cap=30 if "firing" in SEMANTICS[sem] else None,
                                        **SEMANTICS[sem])
    tables.graph = None
    (mt, rt, nt), (mc, rc, nc) = train_both(nets, x, y, tables, orders, Scheme(update_on=update_on),
                                            record="states")
    assert torch.equal(mt, mc)
    assert_same_record(rt, rc)
    assert torch.equal(rc.states, rt.states)
    assert (nc.W == 0).all() and close(nc.U, nt.U)
    if sem in ("wax", "code"):  # the code's recurrence: rounds 2 and 3 are silent
        assert (rc.states[:, :, 1:] == 0).all()
