"""Memory estimates (metaplastic.memory) and the refusal before a run that cannot fit."""

import pytest
import torch

from metaplastic import memory
from metaplastic.cli import main
from metaplastic.memory import (Estimate, attack_estimate, feature_cache_bytes, format_bytes,
                                learn_rule_estimate, network_bytes, refusal, train_estimate)

GB = 1 << 30


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KB"
    assert format_bytes(3 * GB) == "3.0 GB"
    assert format_bytes(2.5 * (1 << 40)) == "2.5 TB"


def test_network_bytes_counts_the_graph_only_above_one_round():
    # A [B, d, V] + U [B, V, l], and G, W [B, V, V] at T > 1
    assert network_bytes(B=2, V=100, d=10, l=3, T=1, E=4) == 2 * (10 * 100 + 100 * 3) * 4
    assert network_bytes(B=2, V=100, d=10, l=3, T=2, E=8) == 2 * 1300 * 8 + 2 * 2 * 100 * 100 * 8


def test_feature_cache_within_and_over_its_budget():
    one = 3 * 1000 * 50 * 4
    assert feature_cache_bytes(3, 1000, 50, 1, 4) == 2 * one       # blocks + concatenation
    assert feature_cache_bytes(3, 1000, 50, 2, 4) == 3 * one       # + the first round
    assert feature_cache_bytes(3, 1000, 50, 2, 4, budget=one) == 2 * one
    assert feature_cache_bytes(3, 1000, 50, 1, 4, budget=one - 1) == 0  # recomputed per chunk


def test_train_estimate_of_the_issue_case():
    # metaplastic train --vertices 300000 --rounds 2: G and W alone are 2 x 9e10 x 4 bytes
    est = train_estimate(B=1, V=300_000, d=10, l=2, T=2, n_train=10_000, n_test=10_000, E=4,
                         graph_rule=False)
    assert est.parts["networks"] >= 2 * 300_000**2 * 4
    assert 700 * GB > est.total > 2 * 300_000**2 * 4
    # a graph rule adds the update's [B, V, V] scratch; the ensemble scales the weights
    with_rule = train_estimate(B=3, V=1000, d=784, l=10, T=3, n_train=10_000, n_test=10_000, E=4,
                               graph_rule=True)
    assert with_rule.parts["training buffers"] == 3 * 1000 * 1000 * 4
    assert with_rule.parts["networks"] == network_bytes(3, 1000, 784, 10, 3, 4)


def test_the_paper_scale_fits_a_small_machine():
    # Table 2's MNIST setting, 5 networks: well under a gigabyte of weights
    est = train_estimate(B=5, V=1000, d=784, l=10, T=3, n_train=60_000, n_test=10_000, E=4,
                         graph_rule=True)
    assert est.total < 3 * GB


def test_gd_baselines_count_their_buffers():
    kw = dict(B=1, V=1000, d=10, l=2, T=2, n_train=5000, n_test=1000, E=4, graph_rule=False)
    assert train_estimate(gd="all", **kw).parts["training buffers"] >= 6 * 1000 * 1000 * 4
    assert train_estimate(gd="output", **kw).parts["hidden states"] == 2 * 5000 * 1000 * 4


def test_learn_rule_estimate_grows_with_tasks_and_the_estimator():
    kw = dict(V=2000, d=10, l=2, T=3, batch=100, n_train=1000, n_test=1000, E=4, graph=True)
    one = learn_rule_estimate(tasks=1, **kw).total
    four = learn_rule_estimate(tasks=4, **kw).total
    assert four > 3 * one
    vv = 2000 * 2000 * 4
    assert learn_rule_estimate(tasks=1, **kw).parts["meta-step buffers"] == 10 * vv
    assert learn_rule_estimate(tasks=1, estimator="tape", **kw).parts["meta-step buffers"] == 302 * vv
    es = learn_rule_estimate(tasks=1, estimator="es", es_population=8, **kw).parts
    assert es["meta-step buffers"] == (17 * 3 + 2) * vv  # 2P + 1 candidates, G, W and scratch each
    # the record of a replay step: words, gains and every round's states, kept twice
    rec = learn_rule_estimate(tasks=1, **dict(kw, V=100, T=2)).parts
    if "update record" in rec:
        assert rec["update record"] >= 2 * 100 * 100 * (1 + 4 + 2 * 4)


def test_attack_estimate():
    est = attack_estimate(model_bytes=8 * GB, members=2, V=50_000, T=3, E=4, n_images=10_000)
    assert est.parts["models"] == 8 * GB + 4 * GB
    assert est.parts["activations"] == 12 * 4096 * 50_000 * 4


def test_refusal_is_one_line_with_the_estimate_and_what_is_available():
    est = Estimate({"networks": 700 * GB, "feature cache": 0, "evaluation": 20 * GB, "data": 1 << 20})
    msg = refusal(est, 20 * GB, "RAM available (MemAvailable in /proc/meminfo)", "use fewer --vertices")
    assert msg == ("this run needs about 720.0 GB of memory (networks 700.0 GB, evaluation 20.0 GB), "
                   "but only 20.0 GB is RAM available (MemAvailable in /proc/meminfo): use fewer --vertices")
    assert refusal(est, 800 * GB, "RAM", "x") is None
    assert refusal(est, None, "unknown", "x") is None  # nothing known: no refusal


def test_available_bytes_on_this_machine():
    avail, where = memory.available_bytes("cpu")
    assert avail is None or avail > 0
    assert isinstance(where, str) and where


@pytest.fixture
def machine_64gb(monkeypatch):
    """The same answer on every machine: 64 GB free (the refusal, not this machine, is tested)."""
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": (64 * GB, "RAM available"))


def _one_error_line(capsys, rc):
    out, err = capsys.readouterr()
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: this run needs about "), err
    assert "Traceback" not in err
    return lines[0]


def test_train_refuses_before_allocating(capsys, tmp_path, machine_64gb):
    out = tmp_path / "run"
    line = _one_error_line(capsys, main(["train", "--vertices", "300000", "--rounds", "2",
                                         "--no-progress", "--out", str(out)]))
    assert "networks 670.6 GB" in line and "but only 64.0 GB is RAM available" in line
    assert line.endswith("use fewer --vertices or a smaller --ensemble "
                         "(METAPLASTIC_SKIP_MEMORY_CHECK=1 skips this check)")
    assert not out.exists()


def test_learn_rule_refuses_before_any_step(capsys, tmp_path, machine_64gb):
    out = tmp_path / "rule.json"
    line = _one_error_line(capsys, main(["learn-rule", "--vertices", "300000", "--cap", "10",
                                         "--rounds", "2", "--learn", "both", "--no-progress",
                                         "--out", str(out)]))
    assert "--tasks-per-step" in line
    assert list(tmp_path.iterdir()) == []  # neither the rule file nor its run folder


def test_attack_refuses_before_loading(capsys, tmp_path, monkeypatch):
    # a small saved network, attacked on a machine that has (we pretend) 10 KB free
    run = tmp_path / "run"
    assert main(["train", "--vertices", "60", "--cap", "30", "--rounds", "2", "--n-train", "100",
                 "--n-test", "50", "--no-progress", "--out", str(run)]) == 0
    capsys.readouterr()
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": (10 << 10, "RAM available"))
    line = _one_error_line(capsys, main(["attack", "--model", str(run), "--attack", "noise",
                                         "--eps", "1", "--n-images", "50"]))
    assert "but only 10.0 KB is RAM available" in line and "--n-images" in line


def test_skip_variable_lets_a_run_through(monkeypatch):
    est = Estimate({"networks": 1 << 60})
    with pytest.raises(Exception, match="needs about"):
        memory.check(est, "hint")
    monkeypatch.setenv("METAPLASTIC_SKIP_MEMORY_CHECK", "1")
    memory.check(est, "hint")


def test_saved_networks_reads_sizes_without_loading(tmp_path):
    from metaplastic.network import NetworkConfig, init_networks
    from metaplastic.runner import networks_state
    nets = init_networks(NetworkConfig(d=4, n_classes=3, vertices=30, cap=10, rounds=3), [0, 1],
                         dtype=torch.float64)
    torch.save(networks_state(nets), tmp_path / "networks.pt")
    info = memory.saved_networks(tmp_path)
    assert {k: info[k] for k in ("members", "V", "T", "E")} == {"members": 2, "V": 30, "T": 3, "E": 8}
    assert info["bytes"] > 2 * 2 * 30 * 30 * 8
    assert memory.saved_networks(tmp_path / "absent") is None
