"""The GD-cap check of the robustness section (metaplastic.experiments.gd_cap) runs and reports."""

import json

from conftest import shared_data_dir
import pytest

from metaplastic.experiments import gd_cap


def test_gd_cap_quick_run_reports_each_learning_rate_capped_and_cap_free(tmp_path, capsys, monkeypatch):
    d = shared_data_dir()
    if d is None:
        pytest.skip("needs MNIST (../shared/data or $METAPLASTIC_DATA)")
    monkeypatch.setenv("METAPLASTIC_DATA", str(d))
    out = tmp_path / "gd.json"
    assert gd_cap.main(["--quick", "--lrs", "1e-2", "1e-4", "--n-images", "12", "--n-train", "300",
                        "--vertices", "64", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("| lr | cap | clean | cap binds |") and text.count("\n| 0.0") == 4
    rows = json.loads(out.read_text())["rows"]
    assert [(r["lr"], r["capped"]) for r in rows] == [(1e-2, True), (1e-2, False), (1e-4, True), (1e-4, False)]
    for r in rows:
        assert r["n"] == 12 and 0 <= r["worst"][-1] <= r["worst"][0] <= r["clean"] <= 12
        assert (r["cap_binds"] is None) == (not r["capped"])
        assert all(w <= p for w, p in zip(r["worst"], r["paper"]))  # the worst case includes the paper's attack


def test_gd_cap_bad_learning_rate_is_one_line(capsys):
    assert gd_cap.main(["--lrs", "1e-3", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --lrs must be a positive finite number") and err.count("\n") == 1
