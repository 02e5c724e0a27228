"""``python -m metaplastic.reproduce.robustness``: the complete protocol with every budget as a flag."""

from __future__ import annotations

import argparse
from pathlib import Path


from ... import robustness as rb
from .config import DEFAULTS


def main(argv=None) -> int:
    from . import run
    ap = argparse.ArgumentParser(prog="python -m metaplastic.reproduce.robustness",
                                 description="Adversarial robustness section with every budget as a flag.")
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="+")
    ap.add_argument("--models", nargs="+", choices=list(rb.SELECTABLE),
                    help="default: all but the opt-in " + ", ".join(rb.OPTIONAL_MODELS)
                         + " (a T=3 plastic network with a fixed random W, not learned)")
    ap.add_argument("--models-dir", default=None, help="reuse (and save) trained models here")
    ap.add_argument("--threads", type=int)
    for k, v in DEFAULTS.items():
        if k in ("seeds", "models", "threads", "graph_rule") or isinstance(v, list):
            continue
        ap.add_argument("--" + k.replace("_", "-"), type=type(v), default=None)
    ap.add_argument("--eps", type=float, nargs="+")
    ap.add_argument("--scale-factors", type=float, nargs="+")
    ap.add_argument("--graph-rule", default=None, choices=["auto", "mnist-mlp-graph-T3-V200", "relu1-mlp-T3", "none"])
    a = ap.parse_args(argv)
    over = {k: v for k, v in vars(a).items() if k not in ("out", "quick") and v is not None}
    res = run(Path(a.out), quick=a.quick, **over)
    print(f"wrote {a.out}/REPORT.md ({res['seconds']:.0f} s)")
    return 0

