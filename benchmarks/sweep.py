"""``reproduce fig3 --quick`` in this process, and through Dask LocalClusters of 1 and 2 workers.

    python benchmarks/sweep.py [--repeats N] [--out FILE.json]

Side by side in one run (the serial run and each cluster alternate, ``--repeats``
rounds; the median is reported): the wall time of ``fig3.run(quick=True)``
serially and through a LocalCluster of 1 and of 2 worker processes (one
thread each), the cluster's start-up time separately, and the ratios
serial / N workers.  Each cluster is started fresh per round, so the first
cells it runs pay for importing torch and metaplastic in its workers (the
ratio a one-off ``reproduce fig3 --workers N`` sees); a second run on the
same cluster ("warm") shows the ratio without that cost.  Every run's
results.json is checked to equal the serial one (timing aside).

On a shared machine the timings move with the other jobs; the ratios, taken
within one round, less so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def strip(o):
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items() if k not in ("seconds", "report")}
    return [strip(v) for v in o] if isinstance(o, list) else o


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    from metaplastic.reproduce import fig3
    from metaplastic.sweep.executor import DaskExecutor, using

    times = {"serial": [], "1 worker": [], "1 worker, warm": [], "2 workers": [], "2 workers, warm": []}
    startup = {"1 worker": [], "2 workers": []}
    with tempfile.TemporaryDirectory() as td:
        ref = None
        for r in range(args.repeats):
            t0 = time.perf_counter()
            res = fig3.run(Path(td) / f"serial{r}", quick=True)
            times["serial"].append(time.perf_counter() - t0)
            ref = ref or strip(json.loads((Path(td) / f"serial{r}" / "results.json").read_text()))
            for n, name in ((1, "1 worker"), (2, "2 workers")):
                t0 = time.perf_counter()
                ex = DaskExecutor(workers=n)
                startup[name].append(time.perf_counter() - t0)
                try:
                    with using(ex):
                        for kind, key in (("cold", name), ("warm", name + ", warm")):
                            t0 = time.perf_counter()
                            fig3.run(Path(td) / f"{n}w{r}{kind}", quick=True)
                            times[key].append(time.perf_counter() - t0)
                            got = strip(json.loads((Path(td) / f"{n}w{r}{kind}" / "results.json").read_text()))
                            if got != ref:
                                print(f"results differ: {key}, round {r}", file=sys.stderr)
                                return 1
                finally:
                    ex.close()
            print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    report = {"benchmark": "reproduce fig3 --quick", "cells": len(res["cells"]), "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "seconds": times, "median_seconds": med,
              "cluster_startup_seconds": startup,
              "ratio_serial_over_1_worker": med["serial"] / med["1 worker"],
              "ratio_serial_over_2_workers": med["serial"] / med["2 workers"],
              "ratio_1_over_2_workers": med["1 worker"] / med["2 workers"],
              "ratio_serial_over_2_workers_warm": med["serial"] / med["2 workers, warm"],
              "ratio_1_over_2_workers_warm": med["1 worker, warm"] / med["2 workers, warm"],
              "results_identical": True}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
