"""Every reproduce section runs in --quick mode and writes its files; figures redraw from results."""

import json

import pytest

from metaplastic.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name,figs", [("fig2", ["fig2.png"]), ("fig3", ["fig3.png", "fig3_rules.png"]),
                                       ("fig6", ["fig6.png"]), ("table2-accuracy", ["table2.png"])])
def test_section_quick(tmp_path, name, figs):
    out = tmp_path / name
    assert main(["reproduce", name, "--quick", "--out", str(out)]) == 0
    for f in ["config.json", "results.json", "results.csv", "REPORT.md"] + figs:
        assert (out / f).is_file(), f
    for f in figs:
        assert (out / f).read_bytes()[:8] == PNG
    report = (out / "REPORT.md").read_text()
    assert report.startswith("## ") and "|" in report
    res = json.loads((out / "results.json").read_text())
    assert res["seconds"] > 0
    for f in figs:
        (out / f).unlink()
    assert main(["reproduce", name, "--plot-only", "--out", str(out)]) == 0
    for f in figs:
        assert (out / f).read_bytes()[:8] == PNG
    # redrawn from results.json, the report is the same, rows in the same order
    assert (out / "REPORT.md").read_text() == report


def test_plot_only_without_results_is_a_clear_error(tmp_path, capsys):
    assert main(["reproduce", "fig2", "--plot-only", "--out", str(tmp_path / "none")]) == 2
    assert "no results" in capsys.readouterr().err


def test_rule_learning_experiments_quick(tmp_path):
    from metaplastic.experiments.rule_learning import es_vs_replay, relu1_graph, theorem1
    t1 = theorem1(tmp_path, quick=True)
    assert len(t1["runs"]) == 2 and all(len(r["learned_table"]) == 2 for r in t1["runs"])
    es = es_vs_replay(tmp_path, quick=True)
    assert es["rows"][0]["es"]["trainings"] <= es["budget_trainings"]
    assert es["rows"][0]["replay"]["trainings"] == es["budget_trainings"]
    rg = relu1_graph(tmp_path, quick=True)
    assert rg["graph_and_output"]["graph_table"] is not None
    assert (tmp_path / "relu1_graph.json").is_file()


def test_reproduce_all_runs_sections_in_workers_and_resumes(tmp_path, capsys):
    """The parallel runner: each section in its own process and folder, a combined
    report with the wall times, and --resume keeps what finished."""
    from metaplastic.reproduce.runall import finished, run_all
    out = tmp_path / "all"
    assert run_all(out, quick=True, jobs=2, threads=1, names=["table1", "closed-form"]) == 0
    for n in ("table1", "closed-form"):
        assert finished(out / n, quick=True) and not finished(out / n, quick=False)
        assert (out / n / "log.txt").is_file()
    report = (out / "REPORT.md").read_text()
    assert report.startswith("# metaplastic: reproduction report") and "| table1 | ok |" in report
    assert "## " in report.split("| closed-form |")[1]
    timing = json.loads((out / "timing.json").read_text())
    assert set(timing["sections"]) == {"table1", "closed-form"} and timing["jobs"] == 2
    (out / "table1" / "results.json").write_text("{}")  # a kept section is not rerun
    assert run_all(out, quick=True, jobs=1, names=["table1"], resume=True) == 0
    assert (out / "table1" / "results.json").read_text() == "{}"
    assert "finished earlier, kept" in capsys.readouterr().err


def test_reproduce_all_passes_workers_to_cell_sections(tmp_path):
    """--workers/--scheduler reach the sections that run cells through an executor, and only those."""
    from metaplastic.reproduce.runall import section_command
    from metaplastic.sweep.executor import CELL_SECTIONS
    for name in ("robustness", "fig3", "table1", "theorems"):
        cmd = section_command(name, tmp_path / name, 1, True, workers=3, scheduler="tcp://h:1")
        assert cmd[cmd.index("--out") + 1] == str(tmp_path / name) and "--quick" in cmd
        if name in CELL_SECTIONS:
            assert cmd[cmd.index("--workers") + 1] == "3" and cmd[cmd.index("--scheduler") + 1] == "tcp://h:1"
        else:
            assert "--workers" not in cmd and "--scheduler" not in cmd
    assert "--workers" not in section_command("fig3", tmp_path, 1)


def test_jobs_only_with_all(tmp_path, capsys):
    assert main(["reproduce", "table1", "--jobs", "2", "--out", str(tmp_path / "x")]) == 2
    assert "reproduce all" in capsys.readouterr().err


def test_fig3_keeps_finished_cells_of_an_interrupted_run(tmp_path, capsys):
    out = tmp_path / "fig3"
    assert main(["reproduce", "fig3", "--quick", "--out", str(out)]) == 0
    partial = json.loads((out / "cells.partial.json").read_text())
    assert len(partial["cells"]) == len(json.loads((out / "results.json").read_text())["cells"])
    capsys.readouterr()
    assert main(["reproduce", "fig3", "--quick", "--out", str(out)]) == 0
    assert "kept from the interrupted run" in capsys.readouterr().err
