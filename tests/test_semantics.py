"""The paper's text against its code as switches: the preset, the CLI, rule files and run folders
(issue 11, part 1; the math is tested in test_network, test_learner and test_meta)."""

import json

import pytest
import torch

from conftest import REPO, halfspace, shared_data_dir
from metaplastic.cli import main
from metaplastic.errors import MetaplasticError
from metaplastic.io import load_rule, resolve_rule
from metaplastic.runner import load_networks
from metaplastic.semantics import PAPER_CODE, TEXT, SemanticsWarning, name_of, resolve

SMALL = ["--n-train", "300", "--n-test", "200", "--vertices", "30", "--cap", "15", "--no-progress"]


def test_preset_and_conflicts():
    keys = dict.fromkeys(TEXT)
    assert resolve(False, keys) == TEXT
    assert resolve(True, keys) == PAPER_CODE
    assert resolve(False, {"firing": "top-k", "recurrence": None}) == {"firing": "top-k", "recurrence": "wh+ax"}
    assert resolve(True, {"firing": "top-k"}) == {"firing": "top-k"}  # agreeing with the preset is fine
    with pytest.raises(MetaplasticError, match=r"--paper-code sets --firing top-k; --firing nonzero contradicts"):
        resolve(True, {"firing": "nonzero"})
    assert name_of(TEXT) == "text" and name_of(PAPER_CODE) == "paper-code"
    assert name_of({**TEXT, "firing": "top-k"}) == "recurrence=wh+ax, firing=top-k, output_input=value"


@pytest.mark.parametrize("argv", [
    ["train", "--paper-code", "--recurrence", "wh+ax"],
    ["train", "--paper-code", "--output-input", "value"],
    ["learn-rule", "--paper-code", "--meta-loss-on", "logits"],
])
def test_conflicting_flag_is_one_error_line(capsys, argv):
    assert main(argv + SMALL) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --paper-code sets")


def test_train_paper_code_records_its_semantics(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--json", "--paper-code", "--rounds", "3", "--graph-rule", "hebb",
                 "--out", str(out), *SMALL]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["semantics"] == {"recurrence": "w(h+ax)", "firing": "top-k", "output_input": "bit"}
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["recurrence"], cfg["firing"], cfg["output_input"]) == ("w(h+ax)", "top-k", "bit")
    nets = load_networks(out)  # the saved networks carry their semantics
    assert (nets.config.recurrence, nets.config.firing) == ("w(h+ax)", "top-k")


def test_attack_uses_the_saved_semantics(capsys, tmp_path):
    data = shared_data_dir()
    if data is None:
        pytest.skip("MNIST not available (METAPLASTIC_DATA)")
    out = tmp_path / "run"
    assert main(["train", "--dataset", "mnist", "--data-dir", str(data), "--rounds", "2", "--graph-rule", "hebb",
                 "--recurrence", "w(h+ax)", "--firing", "top-k", "--out", str(out), *SMALL]) == 0
    capsys.readouterr()
    args = ["attack", "--model", str(out), "--attack", "noise", "--eps", "0.5", "--n-images", "20",
            "--data-dir", str(data)]
    assert main(args + ["--json", "--paper-code"]) == 0  # the flags only check: they agree here
    assert json.loads(capsys.readouterr().out)["semantics"] == {"recurrence": "w(h+ax)", "firing": "top-k"}
    assert main(args + ["--firing", "nonzero"]) == 2
    assert "was trained under recurrence=w(h+ax), firing=top-k" in capsys.readouterr().err


def test_text_and_code_train_differently(capsys):
    a = json.loads((main(["train", "--json", "--rounds", "3", "--graph-rule", "hebb", *SMALL]),
                    capsys.readouterr().out)[1])
    b = json.loads((main(["train", "--json", "--rounds", "3", "--graph-rule", "hebb", "--recurrence",
                          "w(h+ax)", *SMALL]), capsys.readouterr().out)[1])
    assert a["semantics"]["recurrence"] == "wh+ax" and b["semantics"]["recurrence"] == "w(h+ax)"
    assert a["online_mistakes_per_network"] != b["online_mistakes_per_network"]


def test_rule_files_record_semantics_and_warn_when_used_under_others(capsys, tmp_path):
    rule = tmp_path / "r.json"
    assert main(["learn-rule", "--paper-code", "--rounds", "2", "--learn", "both", "--steps", "2",
                 "--batch", "30", "--out", str(rule), "--json", *SMALL]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["semantics"] == PAPER_CODE
    doc = json.loads(rule.read_text())
    assert doc["meta"]["semantics"] == PAPER_CODE
    assert json.loads((tmp_path / "r.run" / "config.json").read_text())["meta_loss_on"] == "softmax"
    assert load_rule(rule, kind="graph").made_under == PAPER_CODE
    # used under the text: one warning line per rule on stderr; under the code: none
    args = ["train", "--rounds", "2", "--graph-rule", str(rule), "--output-rule", str(rule), *SMALL]
    assert main(args) == 0
    err = capsys.readouterr().err
    # (this 2-step rule may also give degeneracy warnings; only the semantics ones count here)
    warns = [line for line in err.splitlines() if line.startswith("warning:") and "learned under" in line]
    assert len(warns) == 2, err
    assert "learned under recurrence=w(h+ax), firing=top-k, output_input=bit" in warns[0]
    assert main(args + ["--paper-code"]) == 0
    assert "learned under" not in capsys.readouterr().err
    # the same through the Python API, as a SemanticsWarning
    with pytest.warns(SemanticsWarning, match="but is used under recurrence=wh\\+ax"):
        resolve_rule(str(rule), "graph", 2, None, semantics=TEXT)


def test_old_rule_files_are_the_text_and_classic_rules_belong_to_none():
    shipped = REPO / "rules" / "relu1-mlp-T3.json"
    if not shipped.is_file():
        pytest.skip("rules/ not present")
    old = load_rule(shipped, kind="graph")
    assert "semantics" not in json.loads(shipped.read_text())["meta"]
    assert old.made_under == {"recurrence": "wh+ax", "firing": "nonzero", "output_input": "value"}
    with pytest.warns(SemanticsWarning):
        resolve_rule(str(shipped), "graph", 3, None, semantics=PAPER_CODE)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_rule("perceptron", "output", 3, None, semantics=PAPER_CODE)
        resolve_rule("hebb", "graph", 3, None, semantics=PAPER_CODE)
        resolve_rule(str(shipped), "graph", 3, None, semantics=TEXT)


def test_reproduce_refuses_semantics_where_a_section_has_none(capsys, tmp_path):
    assert main(["reproduce", "table1", "--paper-code", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: reproduce table1 runs under the paper's text only")


def test_es_and_meta_loss_on_softmax():
    from metaplastic.learner import Scheme
    from metaplastic.meta import MetaBatch, RuleSet, estimate_es, meta_loss
    from metaplastic.network import NetworkConfig, init_networks
    from metaplastic.rules import TableRule
    x, y = halfspace(120, seed=3)
    cfg = NetworkConfig(d=10, n_classes=2, vertices=20, cap=15, rounds=2, recurrence="w(h+ax)",
                        firing="top-k")
    nets = init_networks(cfg, [0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    out = TableRule("output", 2, "additive", 0.05, values=torch.randn(4, 2, generator=g, dtype=torch.float64),
                    dtype=torch.float64)
    graph = TableRule("graph", 2, "additive", 0.05, values=torch.randn(4, 4, generator=g, dtype=torch.float64),
                      dtype=torch.float64)
    rules = RuleSet(out, graph, learn_output=True, learn_graph=True)
    batch = MetaBatch(nets, x, y, torch.arange(80)[None], x[None, 80:], y[None, 80:])
    stats = {on: estimate_es(rules, batch, Scheme(), "ce", on, population=2,
                             generator=torch.Generator().manual_seed(1)) for on in ("logits", "softmax")}
    # CE of a softmax lies in [log(1 + e^-1), log(1 + e)] for two classes: between 0.31 and 1.32
    assert 0.31 < stats["softmax"]["loss"] < 1.32
    assert stats["softmax"]["loss"] != stats["logits"]["loss"]
    per, _ = meta_loss(nets, nets.W, nets.U, batch.x_eval, batch.y_eval, "ce", "softmax")
    assert per.item() == pytest.approx(0.6931471805599453)  # untrained: all logits 0
    with pytest.raises(MetaplasticError, match="meta-loss-on must be one of"):
        meta_loss(nets, nets.W, nets.U, batch.x_eval, batch.y_eval, "ce", "probs")


@pytest.mark.parametrize("name", ["fig3", "table2-accuracy"])
def test_reproduce_writes_one_column_per_semantics(tmp_path, capsys, name):
    out = tmp_path / name
    assert main(["reproduce", name, "--quick", "--out", str(out)]) == 0
    text_report = (out / "REPORT.md").read_text()
    assert "paper-code" not in text_report
    assert main(["reproduce", name, "--quick", "--paper-code", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    tags = ["paper-code" if "paper-code" in k else "text" for k in res["cells"]]
    assert tags.count("text") == tags.count("paper-code") if name == "fig3" else tags.count("paper-code") == 3
    assert tags == sorted(tags, key=lambda t: t != "text")  # the text's rows first
    report = (out / "REPORT.md").read_text()
    if name == "fig3":
        assert "test acc, text (mean ± 95% CI)" in report and "test acc, paper-code" in report
        assert (out / "fig3-paper-code.png").is_file() and (out / "fig3.png").is_file()
        code_cells = [c for k, c in res["cells"].items() if k.endswith(":: paper-code") and k.startswith("T=3")]
        # under top-k firing every round fires k of |V| units, active (non-zero) or not
        assert all(f == pytest.approx(0.5) for c in code_cells for f in c["firing_per_round"])
    else:
        assert "T=3 [paper-code]" in report and "| T=3 | halfspace |" in report
    capsys.readouterr()
    assert main(["reproduce", name, "--plot-only", "--out", str(out)]) == 0
    assert (out / "REPORT.md").read_text() == report


def test_table2_code_alone_names_no_missing_graph_rule(tmp_path, capsys):
    """A table2 run under --paper-code alone has no text T=3 row, so its report must not
    name a text graph rule (it said "the graph rule from None")."""
    out = tmp_path / "t2"
    assert main(["reproduce", "table2-accuracy", "--quick", "--paper-code", "--out", str(out)]) == 0
    report = (out / "REPORT.md").read_text()
    assert "None" not in report
    assert "T=3 [paper-code]" in report and "graph rule from" in report  # the code rows still name theirs
    capsys.readouterr()
