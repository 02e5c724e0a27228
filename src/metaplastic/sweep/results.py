"""A sweep's merged results: results.csv (+ Parquet), SUMMARY.md and summary.png.

The summary groups the cells by every varied option except ``seed`` and gives,
per group, the mean of each metric over the seeds and the half-width of its
95% Student t interval (``mean ± t_{0.975, n-1} s / sqrt(n)``; none for one
seed).  Failed cells are counted, never averaged.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ..io import atomic_write_text
from ..reproduce.common import md_table, pyplot, save_fig, summarize

#: The metric the plot shows, per command.
MAIN_METRIC = {"train": "test_accuracy", "learn-rule": "test_accuracy", "attack": "robust_accuracy"}
TIMING = ("seconds",)
#: Column order of the metrics (others follow, by name): the same whatever order cells finish in.
METRIC_ORDER = ["train_accuracy", "test_accuracy", "online_mistakes", "final_loss", "final_loss_mean_last10",
                "robust_accuracy", "clean_accuracy"]


def _cell(v):
    if isinstance(v, (list, dict)):
        return json.dumps(v, sort_keys=True)
    if isinstance(v, float) and not math.isfinite(v):
        return ""
    return v


def rows_of(grid, records: list[dict]) -> list[dict]:
    metrics = sorted({k for r in records for k in (r.get("metrics") or {})},
                     key=lambda m: (METRIC_ORDER.index(m) if m in METRIC_ORDER else len(METRIC_ORDER), m))
    rows = []
    for r in records:
        row = {"index": r["index"], "key": r["key"]}
        row.update({k: r["axes"].get(k) for k in grid.varied})
        row["status"] = r.get("status")
        row.update({m: (r.get("metrics") or {}).get(m) for m in metrics})
        row.update(error=r.get("error") or "", seconds=r.get("seconds"), batched=r.get("batched"),
                   attempts=r.get("attempts"))
        rows.append(row)
    return rows


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(v) for k, v in r.items()})
    return buf.getvalue()


def write_parquet(rows: list[dict], path: Path) -> bool:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return False
    def column(k):
        vs = [_cell(r[k]) for r in rows]
        vs = [None if v == "" and k != "error" else v for v in vs]
        try:
            return pa.array(vs)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # an axis mixing types: as text
            return pa.array([None if v is None else str(v) for v in vs])
    table = pa.table({k: column(k) for k in rows[0]} if rows else {})
    tmp = path.with_name("." + path.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return True


def summary(grid, rows: list[dict]) -> tuple[list[str], list[str], list[dict]]:
    """Groups over the varied options except the seed: ``(group axes, metrics, groups)``."""
    axes = [a for a in grid.varied if a != "seed"]
    skip = {"index", "key", "status", "error", "batched", "attempts", *TIMING, *grid.varied}
    metrics = [k for k in (rows[0] if rows else {}) if k not in skip]
    metrics = [m for m in metrics if any(isinstance(r[m], (int, float)) and not isinstance(r[m], bool) for r in rows)]
    groups: dict[str, dict] = {}
    for r in rows:
        gk = json.dumps([r[a] for a in axes], default=str)
        g = groups.setdefault(gk, {"axes": {a: r[a] for a in axes}, "n": 0, "failed": 0,
                                   "values": {m: [] for m in metrics}})
        if r["status"] != "ok":
            g["failed"] += 1
            continue
        g["n"] += 1
        for m in metrics:
            if isinstance(r[m], (int, float)) and r[m] is not None:
                g["values"][m].append(r[m])
    out = []
    for g in groups.values():
        g["stats"] = {m: summarize(v) for m, v in g["values"].items() if v}
        out.append(g)
    return axes, metrics, out


def _fmt(s: dict | None) -> str:
    if not s:
        return "-"
    if s["n"] > 1:
        return f"{s['mean']:.4f} ± {s['ci95']:.4f}"
    return f"{s['mean']:.4f}"


def summary_md(grid, axes, metrics, groups, n_cells: int, plot_name: str | None) -> str:
    seeds = "seed" in grid.varied
    header = axes + ["seeds", "failed"] + metrics
    rows = [[g["axes"][a] for a in axes] + [g["n"], g["failed"]] + [_fmt(g["stats"].get(m)) for m in metrics]
            for g in groups]
    failed = sum(g["failed"] for g in groups)
    text = [f"# Sweep summary: `{grid.command}`, {n_cells} cells", "",
            f"Grid: `{Path(grid.path).name}`; varied: {', '.join(grid.varied) or 'nothing'}. "
            + ("Each row: mean ± half-width of the 95% t-interval over the seeds "
               "(mean ± t(0.975, n-1) · s / √n; no interval for one seed)." if seeds else
               "No seed axis: one cell per row."),
            "", md_table(header, rows)]
    if failed:
        text += ["", f"{failed} cell(s) failed: see the `error` column of results.csv."]
    if plot_name:
        text += ["", f"![{MAIN_METRIC.get(grid.command, metrics[0] if metrics else '')}]({plot_name})"]
    return "\n".join(text) + "\n"


def plot_summary(grid, axes, groups, path: Path) -> bool:
    metric = MAIN_METRIC.get(grid.command)
    pts = [g for g in groups if metric in g["stats"]]
    if not pts:
        return False
    plt = pyplot()
    num = [a for a in axes if all(isinstance(g["axes"][a], (int, float)) and not isinstance(g["axes"][a], bool)
                                  for g in pts)]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    err = lambda s: 0.0 if s["n"] < 2 else s["ci95"]  # noqa: E731
    if num:
        xa = num[-1]
        rest = [a for a in axes if a != xa]
        lines: dict[str, list] = {}
        for g in pts:
            lines.setdefault(", ".join(f"{a}={g['axes'][a]}" for a in rest), []).append(g)
        for label, gs in lines.items():
            gs = sorted(gs, key=lambda g: g["axes"][xa])
            ax.errorbar([g["axes"][xa] for g in gs], [g["stats"][metric]["mean"] for g in gs],
                        yerr=[err(g["stats"][metric]) for g in gs], marker="o", ms=4, capsize=3,
                        label=label or None)
        ax.set_xlabel(xa)
        if any(lines):
            ax.legend(fontsize=7)
    else:
        labels = [", ".join(f"{a}={g['axes'][a]}" for a in axes) or "all" for g in pts]
        ax.bar(range(len(pts)), [g["stats"][metric]["mean"] for g in pts],
               yerr=[err(g["stats"][metric]) for g in pts], capsize=3)
        ax.set_xticks(range(len(pts)), labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(metric + (" (mean, 95% t-interval over seeds)" if "seed" in grid.varied else ""))
    ax.set_title(f"metaplastic sweep: {Path(grid.path).name}", fontsize=9)
    ax.grid(alpha=0.3)
    save_fig(fig, path)
    return True


def write_results(out: Path, grid, cells, records: list[dict]) -> dict:
    rows = rows_of(grid, records)
    atomic_write_text(out / "results.csv", csv_text(rows))
    parquet = write_parquet(rows, out / "results.parquet")
    axes, metrics, groups = summary(grid, rows)
    try:
        plotted = plot_summary(grid, axes, groups, out / "summary.png")
    except ImportError:  # matplotlib is an optional extra
        plotted = False
    atomic_write_text(out / "SUMMARY.md", summary_md(grid, axes, metrics, groups, len(cells),
                                                     "summary.png" if plotted else None))
    return {"rows": rows, "parquet": parquet, "groups": groups}
