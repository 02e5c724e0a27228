"""The rule-learning outer loop: CLI, checkpoints, exact resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import torch

from metaplastic.cli import main
from metaplastic.io import load_rule
from metaplastic.metatrain import MetaConfig, learn_rule

SMALL = ["--dataset", "halfspace", "--n-train", "400", "--n-test", "200", "--vertices", "30",
         "--cap", "15", "--batch", "20", "--no-progress"]


def test_learn_rule_cli_json(tmp_path, capsys):
    out = tmp_path / "rule.json"
    code = main(["learn-rule", *SMALL, "--rounds", "2", "--learn", "both", "--steps", "6",
                 "--out", str(out), "--json"])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("final_loss", "train_accuracy", "test_accuracy", "output_table", "graph_table"):
        assert key in res
    assert len(res["output_table"]) == 4 and len(res["output_table"][0]) == 2
    assert len(res["graph_table"]) == 4 and len(res["graph_table"][0]) == 4
    out_rule = load_rule(out, kind="output")
    assert torch.allclose(out_rule.factors().detach().double(), torch.tensor(res["output_table"], dtype=torch.float64))
    assert load_rule(out, kind="graph").kind == "graph"
    curve = (tmp_path / "rule.run" / "curve.csv").read_text().splitlines()
    assert curve[0].startswith("step,loss") and len(curve) == 7
    # the learned rule set drives `metaplastic train`
    assert main(["train", "--n-train", "300", "--n-test", "100", "--vertices", "30", "--cap", "15",
                 "--rounds", "2", "--output-rule", str(out), "--graph-rule", str(out), "--no-progress"]) == 0


def test_bad_learn_rule_input(tmp_path, capsys):
    assert main(["learn-rule", *SMALL, "--learn", "graph", "--rounds", "1", "--out", str(tmp_path / "r.json")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["learn-rule", *SMALL, "--resume", "--out", str(tmp_path / "none.json")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_stop_and_resume_in_process_matches_uninterrupted(tmp_path):
    kw = dict(dataset="halfspace", n_train=300, n_test=100, vertices=20, cap=10, rounds=3,
              learn="both", batch=15, steps=8, checkpoint_every=2, seed=3)
    full = learn_rule(MetaConfig(**kw), tmp_path / "a.json", progress=False)
    assert learn_rule(MetaConfig(**kw), tmp_path / "b.json", progress=False, stop_after=5) == {"stopped_at": 5}
    again = learn_rule(MetaConfig(**kw), tmp_path / "b.json", progress=False, resume=True)
    assert full["output_table"] == again["output_table"] and full["graph_table"] == again["graph_table"]


def test_sigkill_then_resume_gives_the_same_rule_file(tmp_path):
    args = [sys.executable, "-m", "metaplastic", "learn-rule", *SMALL, "--steps", "300",
            "--checkpoint-every", "10", "--seed", "1"]
    env = dict(os.environ)
    ref = tmp_path / "ref.json"
    subprocess.run(args + ["--out", str(ref)], check=True, env=env, capture_output=True, timeout=300)
    out = tmp_path / "killed.json"
    proc = subprocess.Popen(args + ["--out", str(out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed.run" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    curve = (tmp_path / "killed.run" / "curve.csv").read_text().splitlines()
    assert 1 < len(curve) < 301  # it stopped part way
    subprocess.run(args + ["--out", str(out), "--resume"], check=True, env=env, capture_output=True,
                   timeout=300)
    assert json.loads(out.read_text())["sha256"] == json.loads(ref.read_text())["sha256"]
    assert out.read_text() == ref.read_text()


def test_mlp_graph_rule_with_a_zero_start_output_table_keeps_opposite_columns(tmp_path, capsys):
    """--output-rule-kind table --init-scale 0 beside an MLP graph rule: on a binary
    task the output table's two columns get opposite gradients, so from zero they
    stay exact opposites (the common part, which decides multi-class behaviour,
    stays 0); the graph rule is an MLP."""
    out = tmp_path / "rule.json"
    assert main(["learn-rule", *SMALL, "--rounds", "2", "--learn", "both", "--rule-kind", "mlp",
                 "--output-rule-kind", "table", "--init-scale", "0", "--hidden", "4", "--steps", "5",
                 "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    table = torch.tensor(res["output_table"], dtype=torch.float64)
    assert table.abs().max() > 0
    assert torch.allclose(table[:, 0], -table[:, 1], atol=1e-7)
    assert type(load_rule(out, kind="output")).__name__ == "TableRule"
    assert type(load_rule(out, kind="graph")).__name__ == "MLPRule"
