"""Checks the CLI makes before any work: output paths, matplotlib; plain --help text."""

import os
import re
import sys
import tomllib

import pytest

from conftest import REPO
from metaplastic.cli import build_parser, main
from metaplastic.metatrain import default_run_dir


def _one_error_line(capsys, rc):
    out, err = capsys.readouterr()
    assert rc == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """An empty MNIST folder: a command that got as far as loading its data fails on that instead.
    So an error about the output path proves the check came before the work."""
    empty = tmp_path / "nodata"
    empty.mkdir()
    monkeypatch.setenv("METAPLASTIC_DATA", str(empty))
    return ["--dataset", "mnist", "--no-progress"]


def test_learn_rule_out_is_a_folder(capsys, tmp_path, no_data, monkeypatch):
    d = tmp_path / "d"
    d.mkdir()
    monkeypatch.chdir(tmp_path)
    line = _one_error_line(capsys, main(["learn-rule", *no_data, "--steps", "400", "--out", "d"]))
    assert line == ("error: --out d: is a folder; --out names the rule file to write "
                    "(e.g. d/learned-rule.json)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "nodata"]  # no d.run/
    assert list(d.iterdir()) == []


def test_learn_rule_out_under_a_file(capsys, tmp_path, no_data):
    (tmp_path / "f").write_text("")
    line = _one_error_line(capsys, main(["learn-rule", *no_data, "--out", str(tmp_path / "f" / "r.json")]))
    assert line == f"error: --out {tmp_path / 'f' / 'r.json'}: {tmp_path / 'f'} is not a folder"


def test_learn_rule_run_folder_cannot_be_made(capsys, tmp_path, no_data):
    (tmp_path / "r.run").write_text("")
    line = _one_error_line(capsys, main(["learn-rule", *no_data, "--out", str(tmp_path / "r.json")]))
    assert line == (f"error: run folder {tmp_path / 'r.run'} (from --out; --run-dir sets another): "
                    "exists and is not a folder")
    line = _one_error_line(capsys, main(["learn-rule", *no_data, "--out", str(tmp_path / "s.json"),
                                         "--run-dir", str(tmp_path / "r.run")]))
    assert line == f"error: --run-dir {tmp_path / 'r.run'}: exists and is not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodata", "r.run"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_learn_rule_unwritable_folder(capsys, tmp_path, no_data):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        line = _one_error_line(capsys, main(["learn-rule", *no_data, "--out", str(ro / "r.json")]))
    finally:
        ro.chmod(0o700)
    assert line == f"error: --out {ro / 'r.json'}: no permission to write in {ro}"


def test_learn_rule_good_paths_reach_the_data(capsys, tmp_path, no_data):
    # the same command with a good --out gets past the checks and fails on the (missing) data
    line = _one_error_line(capsys, main(["learn-rule", *no_data, "--out", str(tmp_path / "r.json")]))
    assert "mnist" in line and "--out" not in line


def test_learn_rule_refuses_a_run_folder_holding_an_earlier_run(capsys, tmp_path, no_data):
    run = tmp_path / "r.run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"earlier")
    (run / "curve.csv").write_text("step,loss\n")
    line = _one_error_line(capsys, main(["learn-rule", *no_data, "--out", str(tmp_path / "r.json")]))
    assert line == (f"error: run folder {run} (from --out; --run-dir sets another): holds an earlier run "
                    "(checkpoint.pt, curve.csv); pass --resume to continue it, or choose another --out or --run-dir")
    line = _one_error_line(capsys, main(["learn-rule", *no_data, "--out", str(tmp_path / "s.json"),
                                         "--run-dir", str(run)]))
    assert line.startswith(f"error: --run-dir {run}: holds an earlier run (checkpoint.pt, curve.csv); pass --resume")
    assert (run / "checkpoint.pt").read_bytes() == b"earlier"  # untouched
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "curve.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodata", "r.run"]
    # with --resume the same command gets past the checks and fails on the (missing) data
    line = _one_error_line(capsys, main(["learn-rule", *no_data, "--out", str(tmp_path / "r.json"), "--resume"]))
    assert "mnist" in line and "r.run" not in line


def test_learn_rule_accepts_an_empty_run_folder(capsys, tmp_path, no_data):
    (tmp_path / "r.run").mkdir()
    line = _one_error_line(capsys, main(["learn-rule", *no_data, "--out", str(tmp_path / "r.json")]))
    assert "mnist" in line and "r.run" not in line


def test_learn_rule_resume_without_checkpoint_before_the_data(capsys, tmp_path, no_data):
    line = _one_error_line(capsys, main(["learn-rule", *no_data, "--out", str(tmp_path / "r.json"), "--resume"]))
    assert line == f"error: --resume: no checkpoint at {tmp_path / 'r.run' / 'checkpoint.pt'}"


def test_readme_names_the_run_folder_learn_rule_writes():
    readme = (REPO / "README.md").read_text()
    assert "--out halfspace-output.json" in readme
    assert str(default_run_dir("halfspace-output.json")) == "halfspace-output.run"
    assert "`halfspace-output.run/`" in readme
    assert "OUT.run" not in readme


# -------------------------------------------------------------------- matplotlib


def test_matplotlib_is_a_core_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(re.match(r"matplotlib\b", d) for d in project["dependencies"])


def test_reproduce_without_matplotlib_says_so_before_any_work(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    out = tmp_path / "fig2"
    line = _one_error_line(capsys, main(["reproduce", "fig2", "--quick", "--out", str(out)]))
    assert line == ("error: reproduce draws its figures with matplotlib, which is not installed: "
                    "pip install 'matplotlib>=3.7' (or reinstall metaplastic, which depends on it)")
    assert not out.exists()
    line = _one_error_line(capsys, main(["reproduce", "all", "--quick", "--out", str(out)]))
    assert "matplotlib" in line and not out.exists()


# -------------------------------------------------------------------------- help


def _help_texts():
    ap = build_parser()
    yield "metaplastic", ap.format_help()
    sub = next(a for a in ap._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        yield name, p.format_help()


@pytest.mark.parametrize("name, text", list(_help_texts()), ids=lambda v: v if len(v) < 20 else "")
def test_help_is_plain_text(name, text):
    assert "``" not in text and ":func:" not in text and ":mod:" not in text, text


def test_top_help_starts_with_the_plain_description(capsys):
    assert main(["--help"]) == 0
    assert "The metaplastic command line." in capsys.readouterr().out
