"""The fixed random recurrent W (issue 11) and the robustness section's ``plastic-T3-randomW`` model."""

import json

import pytest
import torch

from conftest import assert_close, shared_data_dir
from metaplastic import fixed_recurrence as fr
from metaplastic import robustness as rb
from metaplastic.data import Dataset
from metaplastic.errors import MetaplasticError
from metaplastic.network import NetworkConfig, SimpleRNN, init_networks


def _inputs(n=1200, d=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, d, generator=g, dtype=torch.float64)


def _nets(V=200, seeds=(0, 1, 2), d=30):
    return init_networks(NetworkConfig(d=d, n_classes=3, vertices=V, cap=V // 2, rounds=3), list(seeds),
                         dtype=torch.float64)


def test_fixed_w_has_the_requested_drive_ratio_and_column_norms():
    x = _inputs()
    ratios = {}
    for r in (1.0, 2.0):
        nets = _nets()
        info = fr.set_fixed_random_w(nets, x, [0, 1, 2], ratio=r)
        ratios[r] = torch.tensor(info["drive_ratio"], dtype=torch.float64)
        # the scale's estimate: within 15% of the request at |V|=200 (measured 0.96-1.03 at r=1)
        assert ((ratios[r] / r - 1).abs() < 0.15).all(), ratios[r]
        assert_close(fr.drive_ratio(nets, x), ratios[r])
        # every column of W has the computed norm; nothing off the graph
        norms = nets.W.norm(dim=-2)
        want = torch.tensor(info["column_norm"], dtype=torch.float64)[:, None].expand_as(norms)
        assert_close(norms, want)
        assert not bool((nets.W[nets.G == 0] != 0).any())
        # random signs
        on = nets.W[nets.G != 0]
        assert 0.4 < float((on > 0).double().mean()) < 0.6
    # W is proportional to the ratio: the measured ratio doubles exactly (to rounding)
    assert_close(ratios[2.0], 2 * ratios[1.0])
    # under the paper's code's recurrence W multiplies h1 + x A: the scale follows it
    code = init_networks(NetworkConfig(d=30, n_classes=3, vertices=200, cap=100, rounds=3, recurrence="w(h+ax)"),
                         [0, 1], dtype=torch.float64)
    r = torch.tensor(fr.set_fixed_random_w(code, x, [0, 1])["drive_ratio"])
    assert ((r - 1).abs() < 0.15).all(), r


def test_fixed_w_depends_on_the_seed_only_and_bad_input_is_refused():
    x = _inputs()
    ens = _nets(seeds=(0, 1))
    fr.set_fixed_random_w(ens, x, [0, 1])
    one = _nets(seeds=(1,))
    fr.set_fixed_random_w(one, x, [1])
    assert_close(ens.W[1:], one.W)
    assert not torch.equal(ens.W[0] != 0, ens.W[1] != 0)
    with pytest.raises(MetaplasticError, match="drive ratio"):
        fr.set_fixed_random_w(_nets(seeds=(0,)), x, [0], ratio=0.0)
    with pytest.raises(MetaplasticError, match="one seed per network"):
        fr.set_fixed_random_w(_nets(seeds=(0,)), x, [0, 1])
    with pytest.raises(MetaplasticError, match="recurrent"):
        t1 = init_networks(NetworkConfig(d=30, n_classes=3, vertices=20, cap=10, rounds=1), [0])
        fr.set_fixed_random_w(t1, x, [0])
    with pytest.raises(MetaplasticError, match="kind"):
        fr.random_w(_nets(seeds=(0,)).G, "uniform", [0], 1.0)


def test_rounds_of_the_fixed_w_network_are_active():
    x = _inputs()
    nets = _nets()
    fr.set_fixed_random_w(nets, x, [0, 1, 2])
    for b in range(3):
        ra = rb.round_activity(SimpleRNN(nets, b), x)
        assert min(ra["firing"]) > 0.4  # k = |V|/2: about half fire in every round
        assert ra["last_equals_first"] < 0.1  # the final state differs from round 1's on most inputs
        assert ra["last_new_vs_first"] > 0.2  # measured 0.29-0.34
    # the control: W = 0 repeats round 1
    ra0 = rb.round_activity(SimpleRNN(_nets(), 0), x)
    assert ra0["last_equals_first"] == 1.0 and ra0["last_new_vs_first"] == 0.0


def _clusters(n_train=600, n_test=300, d=16, L=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(L, d, generator=g)

    def draw(n):
        y = torch.randint(0, L, (n,), generator=g)
        return (centers[y] + 0.15 * torch.randn(n, d, generator=g)).clamp(0, 1), y
    xt, yt = draw(n_train)
    xs, ys = draw(n_test)
    return Dataset("synthetic", xt, yt, xs, ys, L)


def test_plastic_t3_randomw_trains_above_majority_and_is_saved_with_its_spec(tmp_path):
    data = _clusters()
    setup = rb.ModelSetup(dataset=data.name, n_train=600, vertices=60, cap=30, epochs=2,
                          models=("plastic-T3-randomW",))
    out = rb.train_models(setup, [0, 1], tmp_path, data, log=lambda s: None)
    majority = float(torch.bincount(data.y_test).max()) / data.y_test.shape[0]
    for s in (0, 1):
        model, info = out["plastic-T3-randomW"][s]
        assert info["test_accuracy"] > majority + 0.1, (info["test_accuracy"], majority)
        spec = info["spec"]
        assert spec["rounds"] == 3 and spec["train"] == "rules" and spec["recurrent_w"]["drive_ratio"] == 1.0
        assert "not learned" in spec["graph_rule"]
        assert abs(info["recurrent_w"]["drive_ratio"] - 1.0) < 0.3
        # W is the fixed draw, untouched by training (no graph rule)
        fresh = init_networks(model.config, [s])
        fr.set_fixed_random_w(fresh, data.x_train, [s])
        assert_close(model.W, fresh.W[0])
        ra = rb.round_activity(model, data.x_test)
        assert min(ra["firing"][1:]) > 0.1 and ra["last_equals_first"] < 0.5
    # a rerun reuses the saved models (same spec)
    saved = json.loads((tmp_path / "plastic-T3-randomW-seed0" / "model.json").read_text())
    again = rb.train_models(setup, [0], tmp_path, data, log=lambda s: pytest.fail("retrained: " + s))
    assert again["plastic-T3-randomW"][0][1] == saved
    assert torch.equal(again["plastic-T3-randomW"][0][0].W, out["plastic-T3-randomW"][0][0].W)
    assert rb.label("plastic-T3-randomW").endswith("fixed random W (not learned)")
    assert rb.transfer_source("plastic-T3-randomW") == "gd-T3"
    assert "plastic-T3-randomW" not in rb.MODELS and "plastic-T3-randomW" in rb.SELECTABLE
    assert rb.ModelSetup().models == rb.MODELS  # opt-in: the default set is unchanged


def test_quick_protocol_runs_with_the_fixed_w_model(tmp_path, monkeypatch, capsys):
    d = shared_data_dir()
    if d is not None:
        monkeypatch.setenv("METAPLASTIC_DATA", str(d))
    from metaplastic.reproduce.robustness.cli import main
    out = tmp_path / "rob"
    assert main(["--quick", "--out", str(out), "--models", "plastic-T3", "plastic-T3-randomW"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert list(res["order"]) == ["plastic-T3", "plastic-T3-randomW"]
    m = res["models"]["plastic-T3-randomW"]
    assert m["label"] == "T=3 plasticity, fixed random W (not learned)"
    assert min(m["rounds"]["firing"][1:]) > 0.1 and m["rounds"]["last_equals_first"] < 0.5
    for g in m["gates"].values():
        assert g["eps0"]["ok"] and g["in_ball"]["ok"] and g["monotone"]["ok"]
    text = (out / "REPORT.md").read_text()
    assert "**Recurrence that runs** -- T=3 plasticity, fixed random W (not learned)" in text
    assert "its rounds 2 and 3 are active" in text
    assert "### Rounds of the recurrent models" in text
    sat = next(line for line in text.splitlines() if line.startswith("* Softmax saturation"))
    assert "T=3 plasticity, fixed random W (not learned)" in sat  # every model attacked, not a fixed list
    with pytest.raises(SystemExit):
        main(["--quick", "--out", str(out), "--models", "plastic-T3-randomW-nocap"])
    capsys.readouterr()



def test_gd_lr_flag_reaches_the_gd_models_and_is_checked_first(tmp_path, monkeypatch, capsys):
    d = shared_data_dir()
    if d is not None:
        monkeypatch.setenv("METAPLASTIC_DATA", str(d))
    from metaplastic.errors import MetaplasticError
    from metaplastic.reproduce.robustness import run
    from metaplastic.reproduce.robustness.cli import main
    with pytest.raises(MetaplasticError, match="--gd-lr must be a positive finite number"):
        run(tmp_path / "bad", quick=True, gd_lr=-1.0)
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "rob"
    assert main(["--quick", "--out", str(out), "--models", "gd-T1", "--gd-lr", "0.003"]) == 0
    saved = json.loads((out / "models" / "gd-T1-seed0" / "model.json").read_text())
    assert saved["spec"]["gd_lr"] == 0.003  # in the spec: a model trained at another lr is not reused
    assert "GD models: Adam, learning rate 0.003" in (out / "REPORT.md").read_text()
