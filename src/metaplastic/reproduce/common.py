"""Shared plumbing of the reproduce sections: statistics, result files, figures, REPORT.md."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import time
from pathlib import Path

from ..io import atomic_write_text, read_json, write_json

# two-sided 95% Student t quantiles for small samples (df = n - 1)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 11: 2.201, 12: 2.179, 14: 2.145, 19: 2.093, 29: 2.045}


def t95(df: int) -> float:
    if df <= 0:
        return float("nan")
    if df in _T95:
        return _T95[df]
    keys = sorted(k for k in _T95 if k <= df)
    return _T95[keys[-1]] if df < 30 else 1.96


def summarize(values) -> dict:
    """Mean, sample standard deviation and 95% t-interval half-width over seeds."""
    v = [float(x) for x in values]
    n = len(v)
    mean = sum(v) / n if n else float("nan")
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1)) if n > 1 else 0.0
    half = t95(n - 1) * std / math.sqrt(n) if n > 1 else float("nan")
    return {"mean": mean, "std": std, "ci95": half, "n": n, "values": v}


def write_results(out: Path, name: str, config: dict, results: dict, rows: list[dict]) -> None:
    """``config.json``, ``results.json`` and ``results.csv`` (one row per measured cell)."""
    from ..compiled import default_backend
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", {"section": name, **config, "backend": default_backend(),
                                      "machine": platform.machine(), "cpus": os.cpu_count(),
                                      "written": time.strftime("%Y-%m-%dT%H:%M:%S")})
    write_json(out / "results.json", results, sort_keys=False)  # rows keep their order on redraw
    if rows:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})
        atomic_write_text(out / "results.csv", buf.getvalue())


def earlier_results(path: Path, cfg: dict) -> dict | None:
    """The ``results.json`` of an earlier run into the same folder with the same configuration
    (a run under other semantics keeps its cells beside this run's), or None."""
    old = read_json(path)
    return old if old is not None and old.get("config") == json.loads(json.dumps(cfg)) else None


def write_report(out: Path, text: str) -> None:
    atomic_write_text(out / "REPORT.md", text.rstrip() + "\n")


def fmt_pm(s: dict, digits: int = 3) -> str:
    if s["n"] > 1:
        return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"
    return f"{s['mean']:.{digits}f}"


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_fig(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)
    import matplotlib.pyplot as plt
    plt.close(fig)


def md_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; pipes inside cells (as in "|V|") are escaped."""
    cell = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def finish(out: Path, name: str, cfg: dict, results: dict, rows: list[dict], plot, report) -> dict:
    """Write a section's files, draw its figures from the results, and attach its report."""
    write_results(out, name, cfg, results, rows)
    plot(results, out)
    results["report"] = report(results)
    return results


def accuracy_curve(nets, data, tables, orders, points, scheme, x_eval, y_eval) -> list:
    """Train ``nets`` in place, evaluating after each number of examples in ``points``.

    Training is split at the points and continued: the same sequence of updates
    as one uninterrupted run.  Returns per-network accuracies at each point.
    """
    from ..learner import train_rules
    from ..network import accuracy
    accs, done = [], 0
    for p in points:
        train_rules(nets, data.x_train, data.y_train, tables, orders[:, done:p], scheme)
        done = p
        accs.append(accuracy(nets, x_eval, y_eval).tolist())
    return accs
