"""Diverged training stops with one line and exit code 3, and writes nothing (issue #12 item 2)."""

import math

import pytest
import torch

from metaplastic.cli import main
from metaplastic.data import load_dataset
from metaplastic.errors import EXIT_DIVERGED, TrainingDiverged
from metaplastic.learner import FINITE_CHECK_EVERY, Tables, check_finite, data_orders, train_gd, train_rules
from metaplastic.metatrain import nonfinite_step
from metaplastic.network import NetworkConfig, init_networks

WINNOW = [[0.0, 0.0], [math.log(2.0), -math.log(2.0)]]  # the winnow table (rules.py), linear domain


def _one_error_line(capsys):
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return out, lines[0]


def test_train_winnow_eta1_diverges_exit3_nothing_saved(capsys, tmp_path):
    # The case (winnow at eta 1 on halfspace): U overflows to inf after ~1,500 examples.
    out_dir = tmp_path / "run"
    rc = main(["train", "--output-rule", "winnow", "--eta", "1", "--n-train", "3000", "--n-test", "200",
               "--no-progress", "--out", str(out_dir)])
    out, line = _one_error_line(capsys)
    assert rc == EXIT_DIVERGED == 3
    assert out == ""
    assert "--output-rule winnow" in line and "diverged" in line and "non-finite" in line
    assert "after example" in line and "--eta 0.1" in line
    assert not out_dir.exists()


def test_train_rules_names_the_network_and_the_window():
    # Two networks, one table each: network 0 winnow at eta 0.01, network 1 at eta 1.
    data = load_dataset("halfspace", n_train=3000, n_test=10, seed=0)
    cfg = NetworkConfig(d=10, n_classes=2, vertices=100, cap=50, rounds=1)
    seeds = [0, 0]
    table = torch.tensor(WINNOW)
    tables = Tables(torch.stack([0.01 * table, table]), output_mode="multiplicative", output_eta=1.0)
    orders = data_orders(3000, 1, seeds)
    with pytest.raises(TrainingDiverged) as info:
        train_rules(init_networks(cfg, seeds, mode="multiplicative"), data.x_train, data.y_train,
                    tables, orders)
    e = info.value
    assert e.network == 1 and 0 < e.example <= 3000
    assert "network 1's output weights U" in str(e)
    # the reported position is where the weights were found non-finite: training network 1
    # alone on exactly that prefix of its sequence diverges too, and one check window
    # earlier (at most FINITE_CHECK_EVERY updates, so at most that many examples) it did not
    one = Tables(table, output_mode="multiplicative", output_eta=1.0)
    with pytest.raises(TrainingDiverged):
        train_rules(init_networks(cfg, [0], mode="multiplicative"), data.x_train, data.y_train, one,
                    orders[1:, :e.example])
    nets = init_networks(cfg, [0], mode="multiplicative")
    train_rules(nets, data.x_train, data.y_train, one, orders[1:, :max(e.example - FINITE_CHECK_EVERY, 0)])
    assert torch.isfinite(nets.U).all()


def test_check_finite_passes_and_fails():
    cfg = NetworkConfig(d=3, n_classes=2, vertices=10, cap=5, rounds=2)
    nets = init_networks(cfg, [0, 1])
    tables = Tables(torch.zeros(4, 2), graph=torch.zeros(4, 4), graph_mode="additive", graph_eta=0.5)
    assert check_finite(nets, tables, [7, 9], [0, 0]) == [7, 9]
    nets.W[1, 0, 1] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"graph rule \(additive, eta 0.5\) made network 1's graph "
                                               r"weights W non-finite after example 9 .*--eta 0.05") as info:
        check_finite(nets, tables, [7, 9], [0, 3])
    assert (info.value.network, info.value.example, info.value.rule) == (1, 9, "graph")


def test_gd_all_diverges(capsys):
    rc = main(["train", "--gd", "all", "--rounds", "2", "--gd-lr", "1e30", "--n-train", "600",
               "--n-test", "100", "--vertices", "40", "--cap", "20", "--no-progress"])
    _, line = _one_error_line(capsys)
    assert rc == 3 and "Adam" in line and "--gd-lr" in line


def test_train_gd_raises_on_nonfinite_weights():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()
    nets = init_networks(NetworkConfig(d=3, n_classes=2, vertices=10, cap=5), [0])
    with pytest.raises(TrainingDiverged, match="Adam"):
        train_gd(nets, x, y, data_orders(40, 1, [0]), which="output", lr=float("inf"))


def test_nonfinite_step_finds_loss_and_gradient():
    p = torch.nn.Parameter(torch.zeros(2, 2))
    assert nonfinite_step(0.5, [p]) is None
    assert "meta-loss is nan" in nonfinite_step(float("nan"), [p])
    p.grad = torch.tensor([[0.0, float("inf")], [0.0, 0.0]])
    assert "meta-gradient" in nonfinite_step(0.5, [p])


def test_learn_rule_divergence_keeps_last_good_checkpoint(capsys, tmp_path):
    # Adam at lr 1e37 makes the table huge after the first step; a later step's inner
    # training overflows.  The rule file is not written; the checkpoint holds the last
    # good step, with finite rules.
    out = tmp_path / "r.json"
    rc = main(["learn-rule", "--n-train", "600", "--n-test", "200", "--steps", "6", "--lr", "1e37",
               "--checkpoint-every", "100", "--out", str(out), "--no-progress"])
    _, line = _one_error_line(capsys)
    assert rc == 3 and "learn-rule diverged at step " in line and "checkpoint.pt" in line
    step = int(line.split("diverged at step ")[1].split(":")[0])
    assert step >= 2  # the first step is finite
    assert not out.exists()
    ck = torch.load(tmp_path / "r.run" / "checkpoint.pt", weights_only=False)
    assert ck["step"] == step - 1 == len(ck["history"])
    assert all(torch.isfinite(p).all() for p in ck["params"])
    assert line.endswith("try a smaller --lr or --eta, with another --out or --run-dir")
    # the diverged run's folder is kept: the same --out again, without --resume, is refused
    rc = main(["learn-rule", "--n-train", "600", "--n-test", "200", "--steps", "6", "--lr", "1e-3",
               "--out", str(out), "--no-progress"])
    _, line = _one_error_line(capsys)
    assert rc == 2 and "holds an earlier run (checkpoint.pt, config.json, curve.csv)" in line
