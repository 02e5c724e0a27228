"""``metaplastic reproduce NAME``: every claim of the paper as a rerunnable command.

Each section is a module with ``run(out: Path, quick: bool) -> dict`` (it writes
its results and figures into ``out`` and returns a dict whose ``"report"`` entry
is its REPORT.md section) and ``plot(results: dict, out: Path)`` (figures from
the saved results only, so they can be redrawn without rerunning).
"""

from __future__ import annotations

import importlib

SECTIONS = {
    "table1": "table1",
    "closed-form": "closed_form",
    "theorems": "theorems",
    "fig2": "fig2",
    "fig3": "fig3",
    "fig6": "fig6",
    "table2-accuracy": "table2",
    "robustness": "robustness",
    "evolution": "evolution",
}


def section_module(name: str):
    return importlib.import_module(f"{__name__}.{SECTIONS[name]}")
