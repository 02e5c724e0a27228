"""Rule files: bit-exact round trips, checksums, clear errors, shipped classic rules."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from conftest import REPO
from metaplastic import io
from metaplastic.errors import MetaplasticError
from metaplastic.io import classic_rule, load_rule, resolve_rule, save_rule
from metaplastic.rules import BIT_ORDER, MLPRule, TableRule, winnow_rule

FIELDS = {"kind", "rounds", "bit_order", "mode", "eta", "param_kind", "parameters", "table",
          "sha256"}


def _rules():
    g = torch.Generator().manual_seed(0)
    return {
        "table-additive": TableRule("output", 2, "additive", 0.03, generator=g, init_scale=0.7),
        "table-multiplicative": TableRule("graph", 3, "multiplicative", 0.5, generator=g,
                                          init_scale=0.2),
        "table-winnow": winnow_rule(2, eta=1.0),
        "table-float64": TableRule("output", 1, "additive", 1e-3, generator=g, init_scale=1.0,
                                   dtype=torch.float64),
        "mlp-graph": MLPRule("graph", 2, "additive", 0.01, hidden=7, generator=g),
        "mlp-output": MLPRule("output", 3, "multiplicative", 0.2, generator=g),
    }


@pytest.mark.parametrize("name", list(_rules()))
def test_round_trip_is_bit_exact(tmp_path, name):
    rule = _rules()[name]
    dtype = next(rule.parameters()).dtype
    path = tmp_path / f"{name}.json"
    save_rule(rule, path, meta={"note": "test"})
    back = load_rule(path, dtype=dtype)
    assert type(back) is type(rule)
    assert (back.kind, back.rounds, back.mode, back.eta) == (rule.kind, rule.rounds, rule.mode, rule.eta)
    with torch.no_grad():
        assert torch.equal(back.table(), rule.table())
        assert torch.equal(back.factors(), rule.factors())
    for (n1, p1), (n2, p2) in zip(rule.named_parameters(), back.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)
    doc = json.loads(path.read_text())
    assert FIELDS <= set(doc)
    assert doc["bit_order"] == BIT_ORDER == "first-round-msb"
    assert doc["param_kind"] == rule.param_kind
    assert doc["meta"] == {"note": "test"}
    # the stored table is what a person reads: factors for a multiplicative rule
    with torch.no_grad():
        assert torch.equal(torch.tensor(doc["table"], dtype=torch.float64),
                           rule.factors().double())
    # saving what was loaded gives the same file content
    save_rule(back, tmp_path / "again.json", meta={"note": "test"})
    if dtype == torch.float32 or name == "table-float64":
        assert json.loads((tmp_path / "again.json").read_text()) == doc


def test_winnow_file_shows_factors_and_stores_log_factors(tmp_path):
    save_rule(winnow_rule(1, eta=1.0), tmp_path / "w.json")
    doc = json.loads((tmp_path / "w.json").read_text())
    assert doc["mode"] == "multiplicative"
    assert doc["table"] == [[1.0, 1.0], [2.0, 0.5]]
    assert doc["parameters"]["values"][1][0] == pytest.approx(0.6931471805599453, rel=1e-7)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "rule.json"
    save_rule(TableRule("output", 2, values=torch.arange(8.0).reshape(4, 2) - 3), path)
    return path


def _rewrite(path, doc):
    path.write_text(json.dumps(doc, indent=1))


def test_edited_value_fails_checksum(saved):
    doc = json.loads(saved.read_text())
    doc["parameters"]["values"][0][0] = 42.0
    _rewrite(saved, doc)
    with pytest.raises(MetaplasticError, match="checksum"):
        load_rule(saved)
    text = saved.read_text().replace('"eta": 0.01', '"eta": 0.02')
    saved.write_text(text)
    with pytest.raises(MetaplasticError, match="checksum"):
        load_rule(saved)


def test_hand_edit_without_checksum_is_accepted(saved):
    doc = json.loads(saved.read_text())
    del doc["sha256"]
    doc["parameters"]["values"][0][0] = 42.0
    doc["table"][0][0] = 42.0
    _rewrite(saved, doc)
    assert load_rule(saved).table()[0, 0] == 42.0


def test_table_field_must_match_parameters(saved):
    doc = json.loads(saved.read_text())
    del doc["sha256"]
    doc["table"][0][0] = 42.0  # edited the readable table only
    _rewrite(saved, doc)
    with pytest.raises(MetaplasticError, match="table field does not match"):
        load_rule(saved)


def test_not_json(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(MetaplasticError, match="not valid JSON"):
        load_rule(p)
    p.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(MetaplasticError, match="not valid JSON"):
        load_rule(p)
    p.write_text("[1, 2]")
    with pytest.raises(MetaplasticError, match="not a metaplastic rule file"):
        load_rule(p)


@pytest.mark.parametrize("field", ["kind", "rounds", "mode", "eta", "param_kind", "parameters"])
def test_missing_field(saved, field):
    doc = json.loads(saved.read_text())
    del doc[field]
    del doc["sha256"]
    _rewrite(saved, doc)
    with pytest.raises(MetaplasticError, match=f"{saved}: missing field '{field}'"):
        load_rule(saved)


def test_missing_field_with_checksum_reports_checksum(saved):
    doc = json.loads(saved.read_text())
    del doc["kind"]
    _rewrite(saved, doc)
    with pytest.raises(MetaplasticError, match="checksum"):
        load_rule(saved)


def test_wrong_shape(tmp_path, saved):
    doc = json.loads(saved.read_text())
    del doc["sha256"]
    doc["parameters"]["values"] = doc["parameters"]["values"][:3]
    _rewrite(saved, doc)
    with pytest.raises(MetaplasticError, match=r"rule.json: .*shape \(4, 2\), got \(3, 2\)"):
        load_rule(saved)
    p = tmp_path / "mlp.json"
    save_rule(MLPRule("graph", 2, generator=torch.Generator().manual_seed(0)), p)
    doc = json.loads(p.read_text())
    del doc["sha256"]
    doc["parameters"]["w1"] = doc["parameters"]["w1"][:3]
    _rewrite(p, doc)
    with pytest.raises(MetaplasticError, match=r"MLP parameter w1 has shape \(3, 20\), expected \(4, 20\)"):
        load_rule(p)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(rounds="2"), "rounds T must be an integer"),
    (lambda d: d.update(rounds=9), "rounds T must be an integer"),
    (lambda d: d.update(eta=-1), "eta must be a positive finite number"),
    (lambda d: d.update(mode="mul"), "mode must be one of"),
    (lambda d: d.update(kind="hidden"), "kind must be one of"),
    (lambda d: d.update(param_kind="tree"), "unknown param_kind"),
    (lambda d: d.update(parameters=[1, 2]), "parameters must be an object"),
    (lambda d: d["parameters"].update(values=[["a", "b"]] * 4), "malformed"),
    (lambda d: d["parameters"].update(values=[[float("nan"), 0.0]] * 4), "non-finite"),
    (lambda d: d.update(bit_order="last-round-msb"), "bit order"),
    (lambda d: d.update(version=2), "unsupported rule file version"),
])
def test_malformed_fields(saved, edit, match):
    doc = json.loads(saved.read_text())
    del doc["sha256"]
    edit(doc)
    _rewrite(saved, doc)
    with pytest.raises(MetaplasticError, match=match) as e:
        load_rule(saved)
    assert str(saved) in str(e.value)


def test_mlp_non_finite_parameters_rejected(tmp_path):
    p = tmp_path / "mlp.json"
    save_rule(MLPRule("output", 1, generator=torch.Generator().manual_seed(0)), p)
    doc = json.loads(p.read_text())
    del doc["sha256"], doc["table"]
    doc["parameters"]["b2"] = float("inf")
    _rewrite(p, doc)
    with pytest.raises(MetaplasticError, match="b2 has non-finite"):
        load_rule(p)


def test_cannot_save_non_finite_rule(tmp_path):
    rule = TableRule("output", 1)
    with torch.no_grad():
        rule.values[0, 0] = float("nan")
    with pytest.raises(MetaplasticError, match="non-finite"):
        save_rule(rule, tmp_path / "nan.json")
    assert not (tmp_path / "nan.json").exists()


def test_nonexistent_path_and_directory(tmp_path):
    with pytest.raises(MetaplasticError, match="does not exist"):
        load_rule(tmp_path / "nope.json")
    with pytest.raises(MetaplasticError, match="not a file"):
        load_rule(tmp_path)
    with pytest.raises(MetaplasticError, match="does not exist"):
        resolve_rule(str(tmp_path / "nope.json"), "output", 1, None)


def test_resolve_rule_checks_kind_and_rounds(tmp_path):
    g = tmp_path / "graph.json"
    save_rule(TableRule("graph", 2), g)
    with pytest.raises(MetaplasticError, match="is a graph rule, but an output rule is needed"):
        resolve_rule(str(g), "output", 2, None)
    o = tmp_path / "out.json"
    save_rule(TableRule("output", 1, eta=0.5), o)
    with pytest.raises(MetaplasticError, match="is a rule for T=1, but the network has T=3"):
        resolve_rule(str(o), "output", 3, None)
    assert resolve_rule(str(o), "output", 1, None).eta == 0.5
    assert resolve_rule(str(o), "output", 1, 0.25).eta == 0.25
    assert resolve_rule(str(g), "graph", 2, None).kind == "graph"


# ------------------------------------------------------------------ classic rules


def _load_script():
    spec = importlib.util.spec_from_file_location("make_classic_rules",
                                                  REPO / "scripts" / "make_classic_rules.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shipped_classic_files_equal_the_script_output(tmp_path):
    _load_script().main(out=tmp_path)
    made = sorted(p.name for p in tmp_path.glob("*.json"))
    shipped_dir = Path(io.__file__).parent / "classic"
    shipped = sorted(p.name for p in shipped_dir.glob("*.json"))
    assert made == shipped
    assert len(made) == sum(len(v) for v in io.SHIPPED_ROUNDS.values())
    for name in made:
        assert json.loads((tmp_path / name).read_text()) == \
            json.loads((shipped_dir / name).read_text()), name


def test_classic_rules_load_with_eta():
    p = classic_rule("perceptron", 1, eta=0.5)
    assert p.eta == 0.5 and p.mode == "additive"
    assert p.table().tolist() == [[-1.0, 1.0], [1.0, -1.0]]
    w = classic_rule("winnow", 3)
    assert w.mode == "multiplicative" and w.eta == 0.01
    assert w.factors()[1].tolist() == pytest.approx([2.0, 0.5])
    h = classic_rule("hebb", 2)
    assert h.kind == "graph" and h.table().tolist() == [[0, 0, 0, 0], [0, 1, 0, 1],
                                                         [0, 0, 1, 1], [0, 1, 1, 1]]
    assert classic_rule("perceptron", 5).shape == (32, 2)  # not shipped: built


def test_classic_rule_errors():
    with pytest.raises(MetaplasticError, match="graph rule needs T >= 2"):
        classic_rule("hebb", 1)
    with pytest.raises(MetaplasticError, match="unknown classic rule"):
        classic_rule("oja", 2)
    with pytest.raises(MetaplasticError, match="rounds T"):
        classic_rule("perceptron", 9)
    with pytest.raises(MetaplasticError, match="perceptron is an output rule, but a graph rule is needed"):
        resolve_rule("perceptron", "graph", 2, None)


def test_shipped_paper_rules_match_their_checksums_and_load():
    import hashlib
    from pathlib import Path

    from metaplastic.io import load_rule
    root = Path(__file__).resolve().parents[1]
    sums = (root / "rules" / "SHA256SUMS").read_text().split("\n")
    listed = [line.split() for line in sums if line.strip()]
    assert len(listed) >= 3
    assert {rel for _, rel in listed} == {f"rules/{p.name}" for p in (root / "rules").glob("*.json")}
    for digest, rel in listed:
        path = root / rel
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        assert load_rule(path, kind="output").kind == "output"


def test_atomic_writes_replace_or_leave_the_old_file(tmp_path):
    import os

    from metaplastic.io import atomic_torch_save, atomic_write_text
    path = tmp_path / "sub" / "f.txt"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's 0600
    atomic_torch_save({"a": torch.ones(2)}, tmp_path / "t.pt")
    assert torch.equal(torch.load(tmp_path / "t.pt")["a"], torch.ones(2))

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")
    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_torch_save(Unpicklable(), tmp_path / "t.pt")
    assert torch.equal(torch.load(tmp_path / "t.pt")["a"], torch.ones(2))  # the old file stays
    assert sorted(os.listdir(tmp_path)) == ["sub", "t.pt"]  # no temporary file left behind


def _umask():
    import os
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_finite_json_gives_strict_json():
    import json
    from pathlib import Path

    from metaplastic.io import finite_json
    obj = {"a": float("nan"), 1: (1.5, float("-inf")), "p": Path("x/y"), "n": None, "b": True}
    assert finite_json(obj) == {"a": None, "1": [1.5, None], "p": "x/y", "n": None, "b": True}
    json.dumps(finite_json(obj), allow_nan=False)
