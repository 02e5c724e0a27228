"""Throughput of rule-based training, compiled loop against torch loop, side by side.

    python benchmarks/throughput.py [--quick] [--device cpu|cuda] [--only ROW,...] [--out FILE.json]

Reports, as JSON, examples/s of one network on one thread for

  a) d=10,  |V|=100,  k=50,  T=1               (halfspace, perceptron)
  b) d=10,  |V|=100,  k=50,  T=3, graph rule   (halfspace, perceptron + a small random signed table)
  c) d=784, |V|=1000, k=500, T=1, 10 labels    (MNIST, perceptron)
  d) d=784, |V|=1000, k=500, T=3, graph rule   (MNIST, perceptron + random table)

each in both schemes (update on mistakes / on every example), with the two
backends of :func:`metaplastic.learner.train_rules` alternating within each
repeat (the machine's load drifts; each row keeps its fastest repeat), and
their ratio.  Also b) with Hebb's graph rule (almost every example a
mistake), an ensemble of 32 at |V|=100, and b) and d) in the every-example
scheme under the paper's code semantics (``--paper-code``: recurrence
``w(h+ax)``, top-k firing, the bit output form; rows ``*_every_paper_code``,
which the compiled loop runs since it learned them; before, ``auto`` fell
back to torch there).  Every timing includes the input
drive ``x @ A`` (computed by torch for both backends).  The compiled loop's
one-time compile (numba, cached on disk) is measured separately, in fresh
processes: with an empty cache and with the cache the first one wrote.
MNIST comes from $METAPLASTIC_DATA when present, else random 784-d data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import torch

from metaplastic.data import load_dataset
from metaplastic.learner import Scheme, Tables, data_orders, train_rules
from metaplastic.network import NetworkConfig, init_networks
from metaplastic.rules import hebb_table, perceptron_table

BACKENDS = ("compiled", "torch")
#: ``--paper-code``'s network settings (metaplastic.semantics.PAPER_CODE; its bit output form is a Scheme).
PAPER_CODE = {"recurrence": "w(h+ax)", "firing": "top-k"}
TARGETS = {"ratio_every": {"a": 6.0, "b": 6.0, "c": 2.0, "d": 2.5},
           "compiled_every_examples_per_second": {"a": 60000, "b": 30000, "c": 15000, "d": 2000}}


def graph_table(name: str, rounds: int) -> torch.Tensor | None:
    if name == "none":
        return None
    if name == "hebb":
        return hebb_table(rounds)
    g = torch.Generator().manual_seed(1)
    return 0.1 * torch.randn(2**rounds, 2**rounds, generator=g)


def time_once(data, vertices, cap, rounds, graph, B, n, device, scheme, backend, semantics=None):
    x, y = data.x_train[:n], data.y_train[:n]
    cfg = NetworkConfig(d=data.dim, n_classes=data.n_classes, vertices=vertices, cap=cap, rounds=rounds,
                        **(semantics or {}))
    tables = Tables(output=perceptron_table(rounds), graph=graph_table(graph, rounds))
    seeds = list(range(B))
    nets = init_networks(cfg, seeds, device=device)
    orders = data_orders(x.shape[0], 1, seeds)
    if device != "cpu":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    mistakes, _ = train_rules(nets, x, y, tables, orders, scheme, backend=backend)
    if device != "cpu":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, mistakes


def measure(data, vertices, cap, rounds, graph, B, n, device, scheme, repeats, backends, semantics=None):
    """Both backends, alternating within each repeat; the fastest repeat of each."""
    best = {}
    for _ in range(repeats):
        for be in backends:
            dt, mistakes = time_once(data, vertices, cap, rounds, graph, B, n, device, scheme, be, semantics)
            if be not in best or dt < best[be][0]:
                best[be] = (dt, mistakes)
    row = {"vertices": vertices, "cap": cap, "rounds": rounds, "graph_rule": graph, "ensemble": B,
           "examples": n, "update_on": scheme.update_on, "output_input": scheme.output_input,
           "semantics": semantics or {}}
    for be, (dt, mistakes) in best.items():
        row[be] = {"seconds": dt, "example_networks_per_second": B * n / dt,
                   "update_fraction": float(mistakes.double().mean()) / n}
    if len(best) == 2:
        row["compiled_over_torch"] = best["torch"][0] / best["compiled"][0]
        row["same_mistakes"] = bool(torch.equal(best["torch"][1], best["compiled"][1]))
    return row


COMPILE_PROBE = """
import time, torch
t0 = time.perf_counter()
from metaplastic.learner import Scheme, Tables, data_orders, train_rules
from metaplastic.network import NetworkConfig, init_networks
from metaplastic.rules import perceptron_table
import metaplastic._kernels
t_import = time.perf_counter() - t0
cfg = NetworkConfig(d=4, n_classes=2, vertices=8, cap=4, rounds=2)
x = torch.randn(20, 4, generator=torch.Generator().manual_seed(0)); y = (x[:, 0] > 0).long()
out = {"import_seconds": t_import}
for dtype in (torch.float32, torch.float64):
    nets = init_networks(cfg, [0], dtype=dtype)
    t0 = time.perf_counter()
    train_rules(nets, x, y, Tables(output=perceptron_table(2), graph=torch.ones(4, 4)), data_orders(20, 1, [0]),
                Scheme(), backend="compiled")
    out[str(dtype).split(".")[-1]] = time.perf_counter() - t0
print(out)
"""


def compile_times() -> dict:
    """Seconds of the first compiled call per dtype in fresh processes: empty cache, then warm."""
    res = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, OMP_NUM_THREADS="1")
        for name in ("cold_cache", "warm_cache"):
            out = subprocess.run([sys.executable, "-c", COMPILE_PROBE], env=env, capture_output=True,
                                 text=True, check=True)
            res[name] = eval(out.stdout.strip().splitlines()[-1])  # a dict of floats we printed
    return res


def report(key, row, backends):
    print(f"{key}: " + ", ".join(f"{be} {row[be]['example_networks_per_second']:,.0f}/s" for be in backends),
          file=sys.stderr, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer examples (a smoke run)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", default=None,
                    help="measure only these rows (comma-separated keys, e.g. b_every,b_every_paper_code)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = args.device
    backends = BACKENDS if dev == "cpu" else ("torch",)
    q = args.quick
    small = load_dataset("halfspace", n_train=10000, n_test=10, seed=0)
    try:
        mnist = load_dataset("mnist", n_train=10000, n_test=10, seed=0)
        mnist_source = "mnist"
    except Exception as e:  # no data here: same shapes, random content
        print(f"note: {e}; using random 784-d data", file=sys.stderr)
        from metaplastic.data import Dataset
        g = torch.Generator().manual_seed(0)
        mnist = Dataset("random784", torch.rand(10000, 784, generator=g), torch.randint(0, 10, (10000,), generator=g),
                        torch.rand(10, 784, generator=g), torch.randint(0, 10, (10,), generator=g), 10)
        mnist_source = "random"
    only = None if args.only is None else set(args.only.split(","))
    want = lambda key: only is None or key in only  # noqa: E731
    compile_info = compile_times() if "compiled" in backends and only is None else None
    # warm both paths (compile/load the kernels, torch's first calls) outside the timings
    for be in backends:
        time_once(small, 20, 10, 2, "random", 1, 50, dev, Scheme(), be)
        time_once(small, 20, 10, 2, "random", 1, 50, dev, Scheme(), be, PAPER_CODE)
    n_small, n_c, n_d = (2000, 2000, 300) if q else (10000, 10000, 1000)
    R = args.repeats
    configs = {"a": (small, 100, 50, 1, "none", 1, n_small), "b": (small, 100, 50, 3, "random", 1, n_small),
               "c": (mnist, 1000, 500, 1, "none", 1, n_c), "d": (mnist, 1000, 500, 3, "random", 1, n_d)}
    rows = {}
    for name, cfg in configs.items():
        for update_on in ("misclassified", "all"):
            key = f"{name}_{'mistakes' if update_on == 'misclassified' else 'every'}"
            if want(key):
                rows[key] = measure(*cfg, dev, Scheme(update_on=update_on), R, backends)
                report(key, rows[key], backends)
        # --paper-code: the code's recurrence and firing, the bit output form (b and d, every example)
        key = f"{name}_every_paper_code"
        if name in ("b", "d") and want(key):
            rows[key] = measure(*cfg, dev, Scheme(update_on="all", output_input="bit"), R, backends, PAPER_CODE)
            report(key, rows[key], backends)
    extra = {"b_hebb_mistakes": (small, 100, 50, 3, "hebb", 1, n_small, dev, Scheme(), R, backends),
             "ensemble32_a_mistakes": (small, 100, 50, 1, "none", 32, n_small // 5, dev, Scheme(), 1, backends),
             "ensemble32_b_mistakes": (small, 100, 50, 3, "random", 32, n_small // 5, dev, Scheme(), 1, backends)}
    for key, spec in extra.items():
        if want(key):
            rows[key] = measure(*spec)
    summary = {}
    if "compiled" in backends:
        for key, r in rows.items():
            if key.endswith("_paper_code"):
                summary[key] = {"ratio": r["compiled_over_torch"],
                                "compiled_examples_per_second": r["compiled"]["example_networks_per_second"]}
        for name in configs:
            if not (want(f"{name}_every") and want(f"{name}_mistakes")):
                continue
            r = rows[f"{name}_every"]
            summary[name] = {"ratio_every": r["compiled_over_torch"],
                             "ratio_mistakes": rows[f"{name}_mistakes"]["compiled_over_torch"],
                             "compiled_every_examples_per_second": r["compiled"]["example_networks_per_second"],
                             "compiled_mistakes_examples_per_second":
                                 rows[f"{name}_mistakes"]["compiled"]["example_networks_per_second"]}
    out = {"device": dev, "threads": torch.get_num_threads(), "torch": torch.__version__,
           "machine": platform.machine(), "processor": platform.processor(), "mnist_source": mnist_source,
           "load_average": os.getloadavg(), "compile_seconds": compile_info, "summary": summary,
           "rows": rows, "targets": TARGETS}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        from metaplastic.io import atomic_write_text
        atomic_write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
