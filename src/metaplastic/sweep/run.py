"""``metaplastic sweep``: run a grid's cells through an executor into one file per cell.

Layout of ``--out DIR``::

    DIR/grid.toml             a copy of the grid file
    DIR/cells/KEY.json        one finished cell (KEY: see grid.cell_key); its presence
                              means "done": a rerun skips it
    DIR/cells/KEY.error.json  the last error of a failed cell (a rerun tries it again)
    DIR/cells/KEY.rule.json   learn-rule cells: the learned rule set
    DIR/results.csv           every cell in grid order (+ results.parquet with pyarrow)
    DIR/SUMMARY.md, DIR/summary.png

Only this process writes files (atomically), once per cell: a task that a
dask worker was running when it died is rerun elsewhere, and its outcome
still arrives here once.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from ..errors import MetaplasticError
from ..io import atomic_write_text, read_json
from .executor import SerialExecutor, WorkerLost
from .grid import Cell, expand, load_grid
from .tasks import run_task

#: At most this many seeds run as one ensemble task.
MAX_GROUP = 16


class Progress:
    """Cells done / running / failed and the time left, on stderr (one rewritten line on a terminal)."""

    def __init__(self, total: int, slots: int, stream=None, every: float = 2.0):
        self.total, self.slots = total, slots
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.every = every
        self.t0 = time.perf_counter()
        self.last = -1e9
        self.done = self.failed = self.skipped = self.ran = 0

    def line(self, pending: int) -> str:
        elapsed = time.perf_counter() - self.t0
        running = min(pending, self.slots)
        left = self.total - self.skipped - self.done - self.failed
        eta = (f", about {elapsed / self.ran * left:.0f} s left" if self.ran and left else "")
        return (f"[sweep] {self.done + self.skipped}/{self.total} done"
                f"{f' ({self.skipped} earlier)' if self.skipped else ''}, {running} running, "
                f"{self.failed} failed, {elapsed:.0f} s{eta}")

    def show(self, pending: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < self.every:
            return
        self.last = now
        if self.tty:
            self.stream.write("\r\033[K" + self.line(pending))
            if force:
                self.stream.write("\n")
        else:
            self.stream.write(self.line(pending) + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.stream.flush()


def seed_groups(cells: list[Cell], batch: bool) -> list[list[Cell]]:
    """Tasks: train cells equal but for the seed (ensemble 1) together, at most MAX_GROUP each."""
    if not batch:
        return [[c] for c in cells]
    groups: dict[str, list[Cell]] = {}
    order = []
    for c in cells:
        if c.command == "train" and c.config.get("ensemble") == 1:
            sig = json.dumps({**c.config, "seed": None}, sort_keys=True, default=str)
        else:
            sig = c.key
        if sig not in groups:
            groups[sig] = []
            order.append(sig)
        groups[sig].append(c)
    out = []
    for sig in order:
        g = groups[sig]
        out += [g[i:i + MAX_GROUP] for i in range(0, len(g), MAX_GROUP)]
    return out


def cell_path(out: Path, cell: Cell, suffix: str = ".json") -> Path:
    return out / "cells" / f"{cell.key}{suffix}"


def load_record(out: Path, cell: Cell):
    rec = read_json(cell_path(out, cell))
    return rec if rec is not None and rec.get("key") == cell.key and rec.get("status") == "ok" else None


def write_record(out: Path, cell: Cell, outcome: dict) -> dict:
    from .. import __version__
    rec = {"key": cell.key, "index": cell.index, "command": cell.command, "axes": cell.axes,
           "config": cell.config, "version": __version__, **outcome}
    files = rec.pop("files", None) or {}
    if rec["status"] == "ok":
        for name, text in files.items():
            atomic_write_text(cell_path(out, cell, "." + name), text)
        atomic_write_text(cell_path(out, cell), json.dumps(rec, indent=1, sort_keys=True) + "\n")
        cell_path(out, cell, ".error.json").unlink(missing_ok=True)
    else:
        atomic_write_text(cell_path(out, cell, ".error.json"), json.dumps(rec, indent=1, sort_keys=True) + "\n")
    return rec


def run_sweep(grid_path, out, executor=None, *, retries: int = 0, batch_seeds: bool = True,
              stream=None, summarize: bool = True) -> dict:
    """Run every unfinished cell of the grid; write the cell files, results.csv and SUMMARY.md.

    ``executor``: an executor, or a function that makes one (called only when a cell is left to run).

    Returns ``{"cells": n, "ran": cells run now, "skipped": finished earlier,
    "failed": cells that failed, "records": [record per cell in grid order]}``.
    """
    from .results import write_results
    grid = load_grid(grid_path)
    cells = expand(grid)
    out = Path(out)
    _prepare_out(grid_path, out)
    prog = Progress(len(cells), 1, stream)
    records, todo = _earlier_records(out, cells, prog)
    ran = 0
    if todo:  # a cluster starts only when there is something to run
        executor = executor() if callable(executor) else (executor or SerialExecutor())
        prog.slots = executor.slots
        prog.t0 = time.perf_counter()  # the estimate counts from here, not from the cluster's start-up
        ran = _run_cells(executor, grid.command, todo, records, out, prog, retries=retries,
                         batch_seeds=batch_seeds)
    else:
        prog.show(0, force=True)  # the progress line a run starts with, for nothing left to run
    prog.show(0, force=True)
    ordered = [records[c.index] for c in cells]
    if summarize:
        write_results(out, grid, cells, ordered)
    failed = sum(1 for r in ordered if r.get("status") != "ok")
    return {"cells": len(cells), "ran": ran, "skipped": prog.skipped, "failed": failed, "records": ordered}


def _prepare_out(grid_path, out: Path) -> None:
    """The sweep folder with its cells/ folder and a copy of the grid file."""
    if out.exists() and not out.is_dir():
        raise MetaplasticError(f"--out {out}: exists and is not a folder")
    (out / "cells").mkdir(parents=True, exist_ok=True)
    copy = out / "grid.toml"
    if Path(grid_path).resolve() != copy.resolve():
        shutil.copyfile(grid_path, copy)


def _earlier_records(out: Path, cells, prog: Progress) -> tuple[dict, list]:
    """The records of cells finished earlier and of invalid cells (recorded as failed now), and the
    cells left to run."""
    records: dict[int, dict] = {}
    todo = []
    for c in cells:
        rec = load_record(out, c)
        if rec is not None:
            records[c.index] = rec
            prog.skipped += 1
        elif c.error:
            records[c.index] = write_record(out, c, {"status": "failed", "error": c.error, "attempts": 0})
            prog.failed += 1
            prog.note(f"[sweep] cell {c.index} ({_axes(c)}): invalid: {c.error}")
        else:
            todo.append(c)
    return records, todo


def _run_cells(executor, command: str, todo, records: dict, out: Path, prog: Progress, *,
               retries: int, batch_seeds: bool) -> int:
    """Run the cells ``todo`` (seed groups as one task), retrying failed ones alone up to ``retries``
    times; each outcome is written as it comes in.  Returns how many cells ran to an outcome."""
    attempts = {c.index: 0 for c in todo}
    ran = 0
    tasks = seed_groups(todo, batch_seeds)
    prog.show(sum(len(t) for t in tasks), force=True)
    while tasks:
        retry = []
        pending = sum(len(t) for t in tasks)
        items = [{"command": command, "configs": [c.config for c in t]} for t in tasks]
        for i, outcome in executor.run(run_task, items):
            group = tasks[i]
            pending -= len(group)
            if not isinstance(outcome, list):  # the task itself failed (a worker lost for good, ...)
                err = (str(outcome) if isinstance(outcome, (WorkerLost, MetaplasticError))
                       else f"{type(outcome).__name__}: {outcome}")
                outcome = [{"status": "failed", "error": err} for _ in group]
            for c, o in zip(group, outcome):
                if c.index in records and records[c.index].get("status") == "ok":
                    continue  # already counted (cannot happen with one outcome per task; kept as a guard)
                attempts[c.index] += 1
                o["attempts"] = attempts[c.index]
                if o["status"] != "ok" and attempts[c.index] <= retries:
                    retry.append(c)
                    prog.note(f"[sweep] cell {c.index} ({_axes(c)}) failed, retrying: {o['error']}")
                    continue
                records[c.index] = write_record(out, c, o)
                ran += 1
                prog.ran += 1
                if o["status"] == "ok":
                    prog.done += 1
                else:
                    prog.failed += 1
                    prog.note(f"[sweep] cell {c.index} ({_axes(c)}) FAILED: {o['error']}")
            prog.show(pending)
        tasks = [[c] for c in retry]  # retried cells run alone
    return ran


def _axes(c: Cell) -> str:
    return ", ".join(f"{k}={v}" for k, v in c.axes.items()) or "base"
