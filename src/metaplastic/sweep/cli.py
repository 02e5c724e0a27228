"""The ``metaplastic sweep`` subcommand (registered by :func:`metaplastic.cli.build_parser`)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> argparse.ArgumentParser:
    from ..cli import _int, _positive_int
    s = sub.add_parser("sweep", help="run a grid of train / learn-rule / attack cells (locally or on Dask)",
                       description="Run every cell of a TOML grid (a command, a base configuration, axes) "
                                   "into one result file per cell, then merge them into results.csv and "
                                   "SUMMARY.md (mean and 95%% interval over seeds) with a plot. Rerunning "
                                   "skips finished cells. See examples/ and docs/DESIGN.md.")
    s.add_argument("grid", help="the grid file (TOML)")
    s.add_argument("--out", required=True, help="folder for cells/, results.csv, SUMMARY.md")
    w = s.add_mutually_exclusive_group()
    w.add_argument("--workers", type=_positive_int, default=None,
                   help="a local Dask cluster of N worker processes, one thread each (local processes "
                        "without dask); default: the cells run one by one in this process")
    w.add_argument("--scheduler", default=None, help="an existing Dask cluster, e.g. tcp://HOST:8786")
    s.add_argument("--retries", type=_int, default=0, help="times a failed cell is tried again (default 0)")
    s.add_argument("--no-batch-seeds", action="store_true",
                   help="run every seed as its own task (default: train cells that differ only in the seed "
                        "run as one ensemble)")
    s.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return s


def cmd_sweep(args) -> int:
    import io

    from ..cli import _check_out_dir
    from ..errors import MetaplasticError
    from .executor import DASK_HINT, have_dask, make_executor
    from .grid import expand, load_grid
    from .run import run_sweep
    if args.retries < 0:
        raise MetaplasticError(f"--retries must be >= 0, got {args.retries}")
    _check_out_dir(args.out)
    expand(load_grid(args.grid))  # a bad grid file fails here, before any cluster starts
    made = []

    def executor():
        if args.workers and not have_dask():
            print(f"[sweep] dask is not installed ({DASK_HINT}): {args.workers} local processes instead",
                  file=sys.stderr)
        made.append(make_executor(args.workers, args.scheduler))
        return made[-1]
    try:
        res = run_sweep(args.grid, args.out, executor, retries=args.retries, batch_seeds=not args.no_batch_seeds,
                        stream=io.StringIO() if args.quiet else sys.stderr)
    finally:
        for ex in made:
            ex.close()
    print(f"{res['cells']} cells: {res['ran']} run now, {res['skipped']} finished earlier, "
          f"{res['failed']} failed; wrote {args.out}/results.csv and {args.out}/SUMMARY.md")
    return 1 if res["failed"] else 0
