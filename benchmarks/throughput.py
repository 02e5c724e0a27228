"""Throughput of rule-based training (issue: core performance targets).

    python benchmarks/throughput.py [--quick] [--device cpu|cuda] [--out FILE.json]

Reports, as JSON, examples/s of one network on one thread for

  a) d=10,  |V|=100,  k=50,  T=1               (halfspace, perceptron)
  b) d=10,  |V|=100,  k=50,  T=3, graph rule   (halfspace, perceptron + graph)
  c) d=784, |V|=1000, k=500, T=1, 10 labels    (MNIST, perceptron)
  d) d=784, |V|=1000, k=500, T=3, graph rule   (MNIST, perceptron + graph)

and example-networks/s of an ensemble of 32 at |V|=100 (config a and b)
against one network, measured side by side in this run.  The cost of a step
depends on how often the network errs (weights change only on mistakes in the
default scheme), so every row reports the fraction of examples that caused an
update.  Two graph rules are measured for b) and d): Hebb (+1 when both ends
fired in the same round), which drives every unit to fire alike so almost
every example is a mistake (the worst case), and a small random signed table,
which leaves the network learning normally.  MNIST comes from
$METAPLASTIC_DATA when present, else random 784-d data with random labels
(said in the output).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch

from metaplastic.data import load_dataset
from metaplastic.learner import Scheme, Tables, data_orders, train_rules
from metaplastic.network import NetworkConfig, init_networks
from metaplastic.rules import hebb_table, perceptron_table


def graph_table(name: str, rounds: int) -> torch.Tensor | None:
    if name == "none":
        return None
    if name == "hebb":
        return hebb_table(rounds)
    g = torch.Generator().manual_seed(1)
    return 0.1 * torch.randn(2**rounds, 2**rounds, generator=g)


def measure(data, vertices, cap, rounds, graph, B, n, device, scheme=Scheme(), repeats=1):
    x, y = data.x_train[:n], data.y_train[:n]
    cfg = NetworkConfig(d=data.dim, n_classes=data.n_classes, vertices=vertices, cap=cap, rounds=rounds)
    tables = Tables(output=perceptron_table(rounds), graph=graph_table(graph, rounds))
    best = None
    for r in range(repeats):
        seeds = list(range(B))
        nets = init_networks(cfg, seeds, device=device)
        orders = data_orders(x.shape[0], 1, seeds)
        if device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        mistakes, _ = train_rules(nets, x, y, tables, orders, scheme)
        if device != "cpu":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if best is None or dt < best[0]:
            best = (dt, mistakes)
    dt, mistakes = best
    return {"vertices": vertices, "cap": cap, "rounds": rounds, "graph_rule": graph, "ensemble": B,
            "examples": n, "seconds": dt, "example_networks_per_second": B * n / dt,
            "examples_per_second_per_network": n / dt,
            "update_fraction": float(mistakes.double().mean()) / n,
            "update_on": scheme.update_on}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer examples (a smoke run)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = args.device
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
    n_small = 2000 if q else 10000
    n_big = 500 if q else 5000
    rows = {}
    rows["a"] = measure(small, 100, 50, 1, "none", 1, n_small, dev, repeats=3)
    rows["b_random"] = measure(small, 100, 50, 3, "random", 1, n_small, dev, repeats=3)
    rows["b_hebb"] = measure(small, 100, 50, 3, "hebb", 1, n_small, dev, repeats=3)
    rows["c"] = measure(mnist, 1000, 500, 1, "none", 1, 10000 if not q else 2000, dev)
    rows["d_random"] = measure(mnist, 1000, 500, 3, "random", 1, n_big, dev)
    rows["d_hebb"] = measure(mnist, 1000, 500, 3, "hebb", 1, n_big, dev)
    rows["d_random_update_all"] = measure(mnist, 1000, 500, 3, "random", 1, n_big // 2, dev,
                                          scheme=Scheme(update_on="all"))
    rows["ensemble32_a"] = measure(small, 100, 50, 1, "none", 32, n_small, dev)
    rows["ensemble32_b_random"] = measure(small, 100, 50, 3, "random", 32, n_small, dev)
    ratios = {
        "ensemble32_over_single_a": rows["ensemble32_a"]["example_networks_per_second"]
        / rows["a"]["example_networks_per_second"],
        "ensemble32_over_single_b": rows["ensemble32_b_random"]["example_networks_per_second"]
        / rows["b_random"]["example_networks_per_second"],
    }
    out = {"device": dev, "threads": torch.get_num_threads(), "torch": torch.__version__,
           "machine": platform.machine(), "processor": platform.processor(), "mnist_source": mnist_source,
           "rows": rows, "ratios": ratios,
           "targets": {"c_examples_per_second": 10000, "d_examples_per_second": 1000,
                       "ensemble32_ratio": 3.0}}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        from metaplastic.io import atomic_write_text
        atomic_write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
