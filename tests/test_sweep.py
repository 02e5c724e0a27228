"""metaplastic sweep: grids, one file per cell, resume, bad cells, and a real Dask cluster on loopback.

The cluster tests start one LocalCluster of 2 worker processes (one thread
each) on 127.0.0.1 for the whole module; no mocks.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from metaplastic.cli import main
from metaplastic.errors import MetaplasticError
from metaplastic.sweep.executor import SerialExecutor, using
from metaplastic.sweep.grid import expand, load_grid
from metaplastic.sweep.run import run_sweep

GRID12 = """
command = "train"
[base]
dataset = "halfspace"
n_train = 300
n_test = 200
cap = 10
[axes]
output_rule = ["perceptron", "winnow"]
vertices = [20, 40]
seed = [0, 1, 2]
"""

SLOW12 = """
command = "train"
[base]
dataset = "halfspace"
n_train = 1500
n_test = 100
vertices = 60
cap = 30
rounds = 2
graph_rule = "hebb"
[axes]
eta = [0.01, 0.02, 0.03, 0.04]
seed = [0, 1, 2]
"""


def write(tmp_path, text, name="grid.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def rows(path: Path, drop=("seconds",)) -> list[dict]:
    with open(path) as f:
        return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(f)]


QUIET = io.StringIO


def test_grid_cells_keys_and_file_errors(tmp_path):
    cells = expand(load_grid(write(tmp_path, GRID12)))
    assert len(cells) == 12
    assert [c.axes for c in cells[:2]] == [{"output_rule": "perceptron", "vertices": 20, "seed": 0},
                                           {"output_rule": "perceptron", "vertices": 20, "seed": 1}]
    assert len({c.key for c in cells}) == 12 and all(c.error is None for c in cells)
    assert cells[0].config["n_train"] == 300 and cells[0].config["epochs"] == 1  # base, then defaults
    # the key changes with any option, and with the content of a rule file the cell names
    rule = tmp_path / "r.json"
    main(["learn-rule", "--steps", "1", "--batch", "20", "--n-train", "50", "--n-test", "20", "--vertices", "20",
          "--cap", "10", "--out", str(rule), "--no-progress"])
    g = write(tmp_path, GRID12.replace('"winnow"', f'"{rule}"'), "g2.toml")
    k1 = expand(load_grid(g))[6].key
    doc = json.loads(rule.read_text())
    doc["meta"]["note"] = "edited"
    doc.pop("sha256")
    rule.write_text(json.dumps(doc))
    assert expand(load_grid(g))[6].key != k1
    for text, msg in [('command = "fly"', "command must be one of"),
                      ('command = "train"\n[axes]\nvertexes = [1]', "unknown option 'vertexes'"),
                      ('command = "train"\n[axes]\nseed = 3', "non-empty list"),
                      ('command = "train"\n[axes]\nseed = [1, 1]', "appears twice"),
                      ('command = "train"\nbase = [', "not valid TOML")]:
        with pytest.raises(MetaplasticError, match=msg):
            expand(load_grid(write(tmp_path, text, "bad.toml")))


def test_bad_cell_is_reported_and_the_others_finish(tmp_path, capsys):
    grid = write(tmp_path, GRID12.replace('"winnow"', '"winnow"]\nupdate_on = ["misclassified", "sometimes"')
                 .replace("seed = [0, 1, 2]", "seed = [0]"))
    rc = main(["sweep", str(grid), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "update_on must be one of" in err or "update-on" in err
    r = rows(tmp_path / "o" / "results.csv")
    assert len(r) == 8
    bad = [x for x in r if x["update_on"] == "sometimes"]
    assert len(bad) == 4 and all(x["status"] == "failed" and "sometimes" in x["error"] for x in bad)
    good = [x for x in r if x["update_on"] == "misclassified"]
    assert all(x["status"] == "ok" and float(x["test_accuracy"]) > 0.5 for x in good)
    summary = (tmp_path / "o" / "SUMMARY.md").read_text()
    assert "4 cell(s) failed" in summary


def test_seed_batching_matches_cells_run_alone(tmp_path):
    grid = write(tmp_path, GRID12)
    a = run_sweep(grid, tmp_path / "batched", stream=QUIET())
    b = run_sweep(grid, tmp_path / "alone", batch_seeds=False, stream=QUIET())
    assert a["ran"] == b["ran"] == 12
    assert {r["batched"] for r in a["records"]} == {3} and {r["batched"] for r in b["records"]} == {1}
    for ra, rb in zip(a["records"], b["records"]):
        # the same examples in the same order on the same networks; only the products are batched
        # differently, so the accuracies agree to within a decision or two
        for m in ("train_accuracy", "test_accuracy"):
            assert abs(ra["metrics"][m] - rb["metrics"][m]) <= 2 / 200 + 1e-12
    # and the summary is the mean and t-interval over the seeds of each configuration
    summary = (tmp_path / "batched" / "SUMMARY.md").read_text()
    g = [r for r in a["records"] if r["axes"]["output_rule"] == "perceptron" and r["axes"]["vertices"] == 20]
    mean = sum(r["metrics"]["test_accuracy"] for r in g) / 3
    assert f"| perceptron | 20 | 3 | 0 | " in summary and f"{mean:.4f} ±" in summary
    assert (tmp_path / "batched" / "summary.png").stat().st_size > 1000


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as c:
        yield c


def test_dask_cluster_gives_the_serial_results_and_a_rerun_runs_nothing(tmp_path, cluster, capsys):
    grid = write(tmp_path, GRID12)
    serial = run_sweep(grid, tmp_path / "serial", SerialExecutor(), stream=QUIET())
    rc = main(["sweep", str(grid), "--out", str(tmp_path / "dask"), "--scheduler", cluster.scheduler_address])
    assert rc == 0 and serial["ran"] == 12
    assert rows(tmp_path / "dask" / "results.csv") == rows(tmp_path / "serial" / "results.csv")
    recs = [json.loads(p.read_text()) for p in (tmp_path / "dask" / "cells").glob("*.json")]
    assert len(recs) == 12 and len({r["worker"] for r in recs}) >= 1
    capsys.readouterr()
    assert main(["sweep", str(grid), "--out", str(tmp_path / "dask"), "--scheduler", cluster.scheduler_address]) == 0
    assert "12 cells: 0 run now, 12 finished earlier, 0 failed" in capsys.readouterr().out


def test_killed_worker_loses_no_cell_and_a_resume_runs_only_the_rest(tmp_path, cluster):
    from metaplastic.sweep.executor import DaskExecutor
    grid = write(tmp_path, SLOW12)
    out = tmp_path / "o"
    ex = DaskExecutor(scheduler=cluster.scheduler_address)
    result, killed = {}, {}

    def sweep():
        result.update(run_sweep(grid, out, ex, batch_seeds=False, stream=QUIET()))

    th = threading.Thread(target=sweep)
    th.start()
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # once some cells are done, kill -9 a worker that is busy
            n_done = len(list((out / "cells").glob("*.json"))) if (out / "cells").is_dir() else 0
            busy = [w for w, keys in ex.client.processing().items() if keys]
            if n_done >= 1 and busy:
                pid = ex.client.run(os.getpid, workers=[busy[0]])[busy[0]]
                killed.update(pid=pid, done_before=n_done)
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        th.join(120)
    finally:
        ex.close()
    assert killed and killed["done_before"] < 12, "the sweep finished before a worker could be killed"
    assert result["ran"] == 12 and result["failed"] == 0
    files = sorted((out / "cells").glob("*.json"))
    assert len(files) == 12 and not list((out / "cells").glob("*.error.json"))
    r = rows(out / "results.csv", drop=("seconds", "attempts"))
    assert len(r) == 12 and len({x["key"] for x in r}) == 12 and all(x["status"] == "ok" for x in r)
    # a resumed sweep runs only the unfinished cells
    for f in files[:3]:
        f.unlink()
    again = run_sweep(grid, out, SerialExecutor(), batch_seeds=False, stream=QUIET())
    assert again["ran"] == 3 and again["skipped"] == 9
    assert rows(out / "results.csv", drop=("seconds", "attempts")) == r


def test_reproduce_fig3_quick_through_the_cluster_matches_the_serial_run(tmp_path, cluster):
    from metaplastic.reproduce import fig3
    from metaplastic.sweep.executor import DaskExecutor

    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in ("seconds", "report")}
        return [strip(v) for v in o] if isinstance(o, list) else o
    fig3.run(tmp_path / "serial", quick=True)
    with using(DaskExecutor(scheduler=cluster.scheduler_address)) as ex:
        try:
            fig3.run(tmp_path / "dask", quick=True)
        finally:
            ex.close()
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("serial", "dask"))
    assert list(a["cells"]) == list(b["cells"]) and len(a["cells"]) >= 6
    assert strip(a) == strip(b)


def test_local_processes_without_dask_give_the_same_files(tmp_path):
    from metaplastic.sweep.executor import ProcessExecutor
    grid = write(tmp_path, GRID12.replace("seed = [0, 1, 2]", "seed = [0]"))
    run_sweep(grid, tmp_path / "serial", SerialExecutor(), stream=QUIET())
    ex = ProcessExecutor(1)
    try:
        got = run_sweep(grid, tmp_path / "proc", ex, stream=QUIET())
    finally:
        ex.close()
    assert got["ran"] == 4
    assert rows(tmp_path / "proc" / "results.csv") == rows(tmp_path / "serial" / "results.csv")
    assert sorted(p.name for p in (tmp_path / "proc" / "cells").iterdir()) == \
        sorted(p.name for p in (tmp_path / "serial" / "cells").iterdir())


GRID_CODE = """
command = "train"
[base]
dataset = "halfspace"
n_train = 300
n_test = 200
vertices = 20
cap = 10
rounds = 3
graph_rule = "hebb"
recurrence = "w(h+ax)"
firing = "top-k"
[axes]
seed = [0, 1]
"""


def test_seed_batching_keeps_the_semantics_switches(tmp_path):
    """A batched seed group trains under the cells' recurrence and firing, as the cells alone do."""
    grid = write(tmp_path, GRID_CODE)
    a = run_sweep(grid, tmp_path / "batched", stream=QUIET())
    b = run_sweep(grid, tmp_path / "alone", batch_seeds=False, stream=QUIET())
    assert {r["batched"] for r in a["records"]} == {2}
    for ra, rb in zip(a["records"], b["records"]):
        assert ra["result"]["network"]["recurrence"] == "w(h+ax)"
        assert ra["result"]["network"]["firing"] == "top-k"
        for m in ("train_accuracy", "test_accuracy"):
            assert abs(ra["metrics"][m] - rb["metrics"][m]) <= 2 / 200 + 1e-12
