"""Firing per round, the spread of predictions and degeneracy warnings (issue #11 Part 3)."""

import json

import pytest
import torch

from metaplastic.cli import main
from metaplastic.data import load_dataset
from metaplastic.diagnostics import SILENT_SHARE, degeneracy_warnings, diagnose
from metaplastic.io import save_rule
from metaplastic.metatrain import MetaConfig, build_rules, evaluate_rules
from metaplastic.network import NetworkConfig, forward, init_networks
from metaplastic.network import fired_mask as fired
from metaplastic.rules import TableRule

SMALL = ["--n-train", "600", "--n-test", "400", "--vertices", "40", "--cap", "20", "--no-progress"]


def test_fired_nonzero_and_top_k():
    h = torch.tensor([[0.0, 2.0, 0.0, 1.0, 0.0]])
    assert fired(h, 3).tolist() == [[False, True, False, True, False]]
    # top-k membership: the two positive units, then the lowest-index zero
    assert fired(h, 3, "top-k").tolist() == [[True, True, False, True, False]]
    assert fired(h, 3, "top-k").sum() == 3
    with pytest.raises(ValueError):
        fired(h, 3, "sometimes")


def _nets(rounds=3, seeds=(0, 1)):
    data = load_dataset("relu1", n_train=10, n_test=300, seed=0)
    cfg = NetworkConfig(d=10, n_classes=2, vertices=30, cap=15, rounds=rounds)
    nets = init_networks(cfg, list(seeds))
    g = torch.Generator().manual_seed(1)
    nets.W.copy_(nets.G * torch.randn(nets.W.shape, generator=g) * 0.3)
    nets.U.copy_(torch.randn(nets.U.shape, generator=g))
    return nets, data


def test_firing_per_round_matches_the_firing_words():
    nets, data = _nets()
    d = diagnose(nets, data.x_test, data.y_test, batch_size=128)  # several blocks
    logits, words = forward(nets, data.x_test)
    T = nets.config.rounds
    for b in range(2):
        for t in range(T):
            bit = ((words[b].long() >> (T - 1 - t)) & 1).double()
            assert d["firing_per_round"][b][t] == pytest.approx(bit.mean().item(), abs=1e-12)
            assert d["silent_per_round"][b][t] == pytest.approx((bit.sum(-1) == 0).double().mean().item(),
                                                                abs=1e-12)
        pred = logits[b].argmax(-1)
        share = torch.bincount(pred, minlength=2).max().item() / pred.numel()
        assert d["majority_prediction_share"][b] == pytest.approx(share, abs=1e-12)
    rate = torch.bincount(data.y_test).max().item() / data.y_test.numel()
    assert d["majority_class_rate"] == pytest.approx(rate)
    assert d["finite_logits"] == [True, True]


def test_warnings_silent_round_single_class_below_majority():
    nets, data = _nets()
    nets.W.copy_(-100.0 * nets.G)  # strong inhibition: rounds 2 (and so 3's input) silenced
    nets.U.zero_()                 # all logits 0: every input predicted class 0
    d = diagnose(nets, data.x_test, data.y_test)
    assert d["silent_per_round"][0][1] > SILENT_SHARE
    acc = [float((data.y_test == 0).double().mean())] * 2
    w = degeneracy_warnings(d, acc)
    assert any("network 0 has round 2" in s and "silent" in s for s in w)
    assert any("network 1 predicts class 0 for 100.0%" in s for s in w)
    if acc[0] <= d["majority_class_rate"]:
        assert any("not above the majority-class rate" in s for s in w)
    healthy, _ = _nets()
    d = diagnose(healthy, data.x_test, data.y_test)
    assert max(max(s) for s in d["silent_per_round"]) <= SILENT_SHARE
    assert max(d["majority_prediction_share"]) < 0.95
    assert degeneracy_warnings(d, [0.99, 0.99]) == []


def test_silent_round_warns_under_top_k_firing():
    """Under the code's firing every round *fires* k units, a silent one too: the warning
    goes by activity (non-zero values), which firing_per_round alone would hide."""
    nets, data = _nets()
    from dataclasses import replace
    nets.config = replace(nets.config, firing="top-k")
    nets.W.copy_(-100.0 * nets.G)
    d = diagnose(nets, data.x_test, data.y_test)
    k_share = nets.config.cap / nets.config.vertices
    assert d["firing_per_round"][0] == pytest.approx([k_share] * 3, abs=1e-12)
    assert d["active_per_round"][0][1] == 0.0 < d["active_per_round"][0][0]
    assert d["silent_per_round"][0][1] == 1.0
    assert any("network 0 has round 2" in s and "silent" in s for s in degeneracy_warnings(d, [0.9, 0.9]))


def test_train_json_has_diagnostics(capsys):
    assert main(["train", "--json", "--dataset", "relu1", "--rounds", "3", "--graph-rule", "hebb",
                 "--ensemble", "2", *SMALL]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["firing_per_round"]) == 3
    assert len(res["firing_per_round_per_network"]) == 2
    assert all(len(f) == 3 and all(0 <= v <= 1 for v in f) for f in res["firing_per_round_per_network"])
    assert res["firing_per_round"][0] == pytest.approx(
        sum(f[0] for f in res["firing_per_round_per_network"]) / 2)
    assert 0.5 <= res["majority_prediction_share"] <= 1
    assert len(res["majority_prediction_share_per_network"]) == 2
    assert isinstance(res["warnings"], list)


def test_train_warns_on_a_degenerate_model(capsys, tmp_path):
    # an all-zero output table never changes U: every input is predicted class 0
    path = tmp_path / "zero.json"
    save_rule(TableRule("output", 1, "additive", 0.01), path)
    assert main(["train", "--json", "--output-rule", str(path), *SMALL]) == 0
    out, err = capsys.readouterr()
    res = json.loads(out)
    assert res["majority_prediction_share"] == 1.0
    assert len(res["warnings"]) == 2
    assert err.count("warning: ") == 2 and "predicts class 0 for 100.0%" in err
    assert "not above the majority-class rate" in err
    # text output: the diagnostics line
    assert main(["train", "--output-rule", str(path), *SMALL]) == 0
    assert "firing per round [" in capsys.readouterr().out


def test_learn_rule_warns_when_the_rule_trains_below_the_majority_rate():
    # the perceptron table with its columns swapped trains networks against the labels
    cfg = MetaConfig(dataset="halfspace", vertices=40, cap=20, rounds=1, n_train=600, n_test=400)
    data = load_dataset("halfspace", n_train=600, n_test=400, seed=0)
    netcfg = NetworkConfig(d=10, n_classes=2, vertices=40, cap=20, rounds=1)
    rules = build_rules(cfg, torch.float32)
    with torch.no_grad():
        rules.output.values.copy_(torch.tensor([[0.0, 0.0], [-1.0, 1.0]]))
    res = evaluate_rules(cfg, rules, data, netcfg, torch.float32)
    assert res["test_accuracy"] <= res["majority_class_rate"]
    assert any("trained with the learned rule has test accuracy" in w and "not above" in w
               for w in res["warnings"])
    assert len(res["firing_per_round"]) == 1
