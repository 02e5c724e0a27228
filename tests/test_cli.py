"""The ``metaplastic`` command line, run in-process through ``metaplastic.cli.main``."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, shared_data_dir
from metaplastic.cli import main
from metaplastic.data import load_dataset
from metaplastic.network import accuracy
from metaplastic.runner import load_networks

SMALL = ["--n-train", "600", "--n-test", "400", "--vertices", "40", "--cap", "20", "--no-progress"]


def run_json(capsys, *args):
    rc = main(["train", "--json", *args])
    out, err = capsys.readouterr()
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1, out  # exactly one JSON object, nothing else on stdout
    return json.loads(lines[0])


def test_train_json(capsys):
    res = run_json(capsys, "--n-train", "2000", "--n-test", "1000")
    for key in ("train_accuracy", "test_accuracy", "train_accuracy_per_network",
                "test_accuracy_per_network", "seconds", "examples_per_second", "config"):
        assert key in res, key
    assert res["test_accuracy"] > 0.9  # halfspace, |V|=100, perceptron rule, T=1
    assert res["train_accuracy_per_network"] == [res["train_accuracy"]]
    assert res["test_accuracy_per_network"] == [res["test_accuracy"]]
    assert res["seconds"] > 0 and res["examples_per_second"] > 0
    assert res["config"]["n_train"] == 2000 and res["config"]["n_test"] == 1000
    assert res["dataset"] == {"name": "halfspace", "n_train": 2000, "n_test": 1000, "dim": 10,
                              "n_classes": 2}


def test_ensemble_lists_and_means(capsys):
    res = run_json(capsys, "--ensemble", "3", *SMALL)
    tr, te = res["train_accuracy_per_network"], res["test_accuracy_per_network"]
    assert len(tr) == len(te) == 3 == len(res["online_mistakes_per_network"])
    assert res["seeds"] == [0, 1, 2]
    assert res["train_accuracy"] == pytest.approx(np.mean(tr), abs=1e-12)
    assert res["test_accuracy"] == pytest.approx(np.mean(te), abs=1e-12)
    assert res["test_accuracy_std"] == pytest.approx(np.std(te, ddof=1), abs=1e-12)
    assert res["examples"] == 3 * 600


def test_text_output(capsys, tmp_path):
    assert main(["train", *SMALL, "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("halfspace: train accuracy ")
    assert f"wrote {tmp_path / 'o'}/results.json" in out


def test_train_out_never_overwrites_an_earlier_run_silently(capsys, tmp_path):
    o = tmp_path / "o"
    assert main(["train", *SMALL, "--out", str(o)]) == 0
    before = (o / "results.json").read_text()
    capsys.readouterr()
    assert main(["train", *SMALL, "--seed", "3", "--out", str(o)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "holds an earlier run" in err and "--overwrite" in err
    assert (o / "results.json").read_text() == before  # checked before training
    assert main(["train", *SMALL, "--seed", "3", "--out", str(o), "--overwrite"]) == 0
    assert (o / "results.json").read_text() != before
    (tmp_path / "empty").mkdir()
    assert main(["train", *SMALL, "--out", str(tmp_path / "empty")]) == 0  # an empty folder is fine


# -------------------------------------------------------------------- bad input


def _npz(path, **over):
    g = np.random.default_rng(0)
    x = g.normal(size=(40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    arrays = dict(x_train=x, y_train=y, x_test=x, y_test=y)
    arrays.update(over)
    np.savez(path, **arrays)
    return str(path)


def _nan_x():
    x = np.ones((40, 3), np.float32)
    x[5, 2] = np.nan
    return x


BAD = {
    "cap=|V|": (["--cap", "100", "--vertices", "100"], "cap k must satisfy"),
    "cap 0": (["--cap", "0"], "cap k must satisfy"),
    "p 0": (["--p", "0"], "edge probability p"),
    "p 1.5": (["--p", "1.5"], "edge probability p"),
    "rounds 9": (["--rounds", "9"], "rounds T must be an integer in 1..8"),
    "rounds 0": (["--rounds", "0"], "rounds T"),
    "vertices 0": (["--vertices", "0"], "vertices"),
    "dataset nosuch": (["--dataset", "nosuch"], "unknown dataset 'nosuch'"),
    "npz nan": (lambda t: ["--dataset", _npz(t / "nan.npz", x_train=_nan_x())], "non-finite"),
    "npz negative label": (lambda t: ["--dataset", _npz(t / "neg.npz", y_test=-np.ones(40, np.int64))],
                           "negative label"),
    "npz single class": (lambda t: ["--dataset", _npz(t / "one.npz", y_train=np.zeros(40, np.int64))],
                         "single class"),
    "npz float labels": (lambda t: ["--dataset", _npz(t / "f.npz", y_train=np.zeros(40) + 0.5)],
                         "integer"),
    "npz missing file": (lambda t: ["--dataset", str(t / "absent.npz")], "does not exist"),
    "hebb at T=1": (["--graph-rule", "hebb", "--rounds", "1"], "graph rule needs --rounds >= 2"),
    "missing rule file": (["--output-rule", "some_missing_file.json"],
                          "some_missing_file.json does not exist"),
    "output rule as graph rule": (["--graph-rule", "perceptron", "--rounds", "2"],
                                  "perceptron is an output rule, but a graph rule is needed"),
    "eta -1": (["--eta", "-1"], "eta must be a positive finite number"),
    "eta 0": (["--eta", "0"], "eta"),
    "eta nan": (["--eta", "nan"], "argument --eta: expected a finite number"),
    "device cuda": (["--device", "cuda"], "no CUDA GPU"),
    "device nosuch": (["--device", "nosuch"], "unknown device"),
    "n-train 0": (["--n-train", "0"], "argument --n-train"),
    "epochs x": (["--epochs", "x"], "argument --epochs"),
    "unknown flag": (["--verticez", "10"], "unrecognized arguments"),
    "out is a file": (lambda t: ["--out", str(_touch(t / "f"))], "not a folder"),
}


def _touch(p):
    p.write_text("")
    return p


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_one_error_line_exit_2(capsys, tmp_path, case):
    args, match = BAD[case]
    if callable(args):
        args = args(tmp_path)
    if case == "device cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    rc = main(["train", "--n-train", "50", "--n-test", "50", "--vertices", "20", "--cap", "10",
               "--no-progress", *args])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    assert match in lines[0]


def test_mnist_missing_names_the_directory(capsys, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("METAPLASTIC_DATA", str(empty))
    rc = main(["train", "--dataset", "mnist", "--no-progress", "--n-train", "10", "--n-test", "10"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert str(empty / "mnist") in err and "METAPLASTIC_DATA" in err


def test_usage_errors_and_help(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert "metaplastic" in capsys.readouterr().out
    assert main(["train", "--help"]) == 0
    assert "--graph-rule" in capsys.readouterr().out
    assert main(["nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_subprocess_error_has_no_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    p = subprocess.run([sys.executable, "-m", "metaplastic", "train", "--p", "1.5",
                        "--n-train", "10", "--n-test", "10"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1
    assert "Traceback" not in p.stderr


def test_subprocess_json(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    p = subprocess.run([sys.executable, "-m", "metaplastic", "train", "--json", *SMALL],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["test_accuracy"] > 0.8


# ------------------------------------------------------------------------- --out


def test_out_dir_round_trip(capsys, tmp_path):
    out = tmp_path / "run"
    res = run_json(capsys, "--rounds", "2", "--graph-rule", "hebb", "--ensemble", "2",
                   "--out", str(out), *SMALL)
    for name in ("config.json", "results.json", "networks.pt"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "results.json").read_text())
    assert saved["test_accuracy"] == res["test_accuracy"]
    assert json.loads((out / "config.json").read_text()) == res["config"]
    nets = load_networks(out)
    assert nets.batch == 2 and nets.config.rounds == 2 and nets.G is not None
    data = load_dataset("halfspace", n_train=600, n_test=400, seed=0)
    acc = accuracy(nets, data.x_test, data.y_test)
    assert acc.tolist() == saved["test_accuracy_per_network"]
    assert float(acc.mean()) == saved["test_accuracy"]


# -------------------------------------------------------------------- data verify


def test_data_verify_shared(capsys):
    d = shared_data_dir()
    if d is None or not all((d / n).is_dir() for n in ("mnist", "fashion-mnist")):
        pytest.skip("no shared MNIST / Fashion-MNIST files")
    rc = main(["data", "verify", "--data-dir", str(d), "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 8
    if any(r["status"] == "missing" for r in rows):
        pytest.skip("shared data incomplete")
    assert rc == 0, rows


def test_data_verify_empty_dir(capsys, tmp_path):
    rc = main(["data", "verify", "--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 1
    lines = out.strip().splitlines()
    assert len(lines) == 8 and all(line.startswith("missing") for line in lines)
    assert "mnist/train-images-idx3-ubyte" in out and "fashion-mnist/t10k-labels-idx1-ubyte" in out


# ------------------------------------------------------------------ GD and rules


@pytest.mark.parametrize("gd", ["output", "all"])
def test_gd_baselines(capsys, gd):
    res = run_json(capsys, "--gd", gd, "--rounds", "2", *SMALL)
    assert res["test_accuracy"] > 0.8
    assert res["online_mistakes_per_network"] is None


def test_winnow_output_rule(capsys):
    res = run_json(capsys, "--output-rule", "winnow", *SMALL)
    assert res["test_accuracy"] > 0.7


def test_hebb_graph_rule_runs(capsys):
    res = run_json(capsys, "--graph-rule", "hebb", "--rounds", "3", *SMALL)
    assert 0 <= res["test_accuracy"] <= 1
    assert res["network"]["rounds"] == 3


def test_rule_file_from_cli(capsys, tmp_path):
    from metaplastic.io import save_rule
    from metaplastic.rules import perceptron_rule
    path = tmp_path / "p.json"
    save_rule(perceptron_rule(1), path)
    a = run_json(capsys, "--output-rule", str(path), *SMALL)
    b = run_json(capsys, "--output-rule", "perceptron", *SMALL)
    assert a["test_accuracy_per_network"] == b["test_accuracy_per_network"]


@pytest.mark.parametrize("name", ["rnn", "relu1", "relu2"])
def test_synthetic_datasets(capsys, name):
    res = run_json(capsys, "--dataset", name, *SMALL)
    assert res["dataset"]["name"] == name and res["dataset"]["dim"] == 10
    assert res["test_accuracy"] > 0.55
