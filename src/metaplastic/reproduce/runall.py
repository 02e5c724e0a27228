"""``metaplastic reproduce all``: every section, in parallel worker processes.

The sections are independent, and each is mostly a single-threaded loop of
small tensor operations, so on a small machine one process per core finishes
far sooner than one process using every core through intra-op threads (on
the 2-core reference machine intra-op threading speeds these loops up by
well under 2x).  Each section runs as its own ``metaplastic reproduce NAME
--out DIR/NAME --threads t`` child, longest first, ``--jobs`` at a time; its
log goes to ``DIR/NAME/log.txt``.  A section's folder is complete once its
``results.json`` and ``REPORT.md`` are written (both atomically), so after an
interruption ``--resume`` reruns only the sections that had not finished.
The combined ``DIR/REPORT.md`` starts with the wall time of every section.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from ..io import atomic_write_text
from ..progress import Progress
from . import SECTIONS

# Measured single-thread wall times on the 2-core reference machine (seconds; a quiet
# `reproduce all`, docs/DESIGN.md), used only to start the longest sections first.
EXPECTED_SECONDS = {"robustness": 1050, "fig3": 660, "table2-accuracy": 430, "theorems": 86, "evolution": 70,
                    "fig6": 66, "closed-form": 28, "fig2": 28, "table1": 4}


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, len(SECTIONS)))


DONE = "done.json"  # written by the runner once a section has finished


def finished(sec_out: Path, quick: bool) -> bool:
    """A section folder from an earlier run that completed, in the same mode."""
    try:
        done = json.loads((sec_out / DONE).read_text())
    except (OSError, ValueError):
        return False
    return (done.get("quick") == bool(quick) and (sec_out / "results.json").is_file()
            and (sec_out / "REPORT.md").is_file())


def section_command(name: str, sec_out: Path, threads: int, quick: bool = False, workers: int | None = None,
                    scheduler: str | None = None) -> list[str]:
    """The child process of one section; ``--workers``/``--scheduler`` only for the sections that take them."""
    from ..sweep.executor import CELL_SECTIONS
    cmd = [sys.executable, "-m", "metaplastic", "reproduce", name, "--out", str(sec_out), "--threads", str(threads)]
    cmd += ["--quick"] if quick else []
    if name in CELL_SECTIONS:
        cmd += (["--workers", str(workers)] if workers else []) + (["--scheduler", scheduler] if scheduler else [])
    return cmd


def run_all(out: Path, *, quick: bool = False, jobs: int | None = None, threads: int | None = None,
            resume: bool = False, names: list[str] | None = None, log=None, workers: int | None = None,
            scheduler: str | None = None) -> int:
    """Run every section (or ``names``) into ``out/NAME``; write ``out/REPORT.md``.

    ``workers`` / ``scheduler`` are passed on (``--workers N`` / ``--scheduler ADDR``) to the
    sections that run their cells through an executor (``sweep.executor.CELL_SECTIONS``); each
    of those sections then starts its own local cluster of ``workers`` processes.

    Returns 0 when every section succeeded, 1 otherwise.
    """
    bar = None  # progress of the sections (a line a minute in a log; see metaplastic.progress)
    log = log or (lambda s: bar.write(s) if bar is not None else print(s, file=sys.stderr, flush=True))
    names = list(names or SECTIONS)
    jobs = jobs or default_jobs()
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    out.mkdir(parents=True, exist_ok=True)
    status: dict[str, dict] = {}
    pending = []
    for name in names:
        if resume and finished(out / name, quick):
            status[name] = {"status": "ok", "seconds": None, "note": "kept from the earlier run"}
            log(f"[reproduce] {name}: finished earlier, kept")
        else:
            pending.append(name)
    pending.sort(key=lambda n: -EXPECTED_SECONDS.get(n, 0))
    running: dict[str, tuple[subprocess.Popen, float, object]] = {}
    t_all = time.perf_counter()
    log(f"[reproduce] all: {len(pending)} sections, {jobs} at a time, {threads} thread(s) each -> {out}")
    bar = Progress(len(pending), "[reproduce] all", unit="section", interval=60.0)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                name = pending.pop(0)
                sec_out = out / name
                sec_out.mkdir(parents=True, exist_ok=True)
                (sec_out / DONE).unlink(missing_ok=True)
                cmd = section_command(name, sec_out, threads, quick, workers, scheduler)
                fh = open(sec_out / "log.txt", "w")
                running[name] = (subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT), time.perf_counter(), fh)
                log(f"[reproduce] {name}: started")
            bar.set_postfix(running=" ".join(running))
            bar.update(0)
            time.sleep(0.2)
            for name in list(running):
                proc, t0, fh = running[name]
                rc = proc.poll()
                if rc is None:
                    continue
                fh.close()
                del running[name]
                secs = time.perf_counter() - t0
                ok = rc == 0 and (out / name / "REPORT.md").is_file()
                status[name] = {"status": "ok" if ok else "failed", "seconds": secs, "returncode": rc}
                bar.update(1)
                if ok:
                    atomic_write_text(out / name / DONE, json.dumps({"quick": bool(quick), "seconds": secs}) + "\n")
                    log(f"[reproduce] {name}: done in {secs:.0f} s")
                else:
                    tail = (out / name / "log.txt").read_text(errors="replace").strip().splitlines()[-5:]
                    log(f"[reproduce] {name}: FAILED (exit {rc}) after {secs:.0f} s; last lines of its log.txt:\n  "
                        + "\n  ".join(tail))
    except KeyboardInterrupt:
        for name, (proc, _, fh) in running.items():
            proc.terminate()
        for name, (proc, _, fh) in running.items():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            fh.close()
        log(f"[reproduce] interrupted; finished sections are kept: rerun with --resume --out {out}")
        raise
    finally:
        bar.set_postfix()
        bar.close()
    wall = time.perf_counter() - t_all
    write_combined(out, names, status, wall, jobs, threads, quick)
    return 0 if all(status.get(n, {}).get("status") == "ok" for n in names) else 1


def write_combined(out: Path, names: list[str], status: dict, wall: float, jobs: int, threads: int,
                   quick: bool) -> None:
    lines = ["# metaplastic: reproduction report", "",
             f"`metaplastic reproduce all{' --quick' if quick else ''}`: {len(names)} sections in "
             f"{jobs} worker process(es) of {threads} thread(s) each, wall time {wall / 60:.1f} min "
             f"({wall:.0f} s) on {os.cpu_count()} CPU(s).", "",
             "| section | status | wall time (s) |", "| --- | --- | --- |"]
    for n in names:
        st = status.get(n, {})
        secs = st.get("seconds")
        lines.append(f"| {n} | {st.get('status', 'not run')}"
                     f"{' (' + st['note'] + ')' if st.get('note') else ''} | "
                     f"{'' if secs is None else f'{secs:.0f}'} |")
    parts = []
    for n in names:
        rep = out / n / "REPORT.md"
        if rep.is_file():  # the section's relative links (figures) now point into its folder
            parts.append(re.sub(r"\]\((?![a-z]+:|#|/)", f"]({n}/", rep.read_text()))
        else:
            parts.append(f"## {n}\n\nNot available: the section did not finish (see {n}/log.txt).")
    atomic_write_text(out / "REPORT.md", "\n".join(lines) + "\n\n" + "\n\n".join(p.rstrip() for p in parts) + "\n")
    atomic_write_text(out / "timing.json", json.dumps({"wall_seconds": wall, "jobs": jobs, "threads": threads,
                                                      "quick": quick, "sections": status}, indent=2) + "\n")
