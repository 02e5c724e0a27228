"""Issue 13's GPU measurements as one prepared script (run it where a CUDA device is lent).

    python benchmarks/gpu.py [--device cuda] [--quick] [--out FILE.json]

Config d of benchmarks/throughput.py (MNIST-sized inputs, |V|=1000, k=500, T=3, perceptron output
rule and a small random graph table), the torch loop (the GPU path; ``auto`` picks it on a GPU),
the every-example scheme, float32:

1. ensembles of 256, 512 and 1,024 networks: example-networks per second (the issue's goal: at
   least 250,000 on an H200; an unfused prototype of the step reached 112,000 at 1,024);
2. one network: examples per second (the loop as it is: it makes host-side decisions, so it
   is not captured as a CUDA graph; the issue's CUDA-graph prototype reached 5,172);
3. one replay meta-step (the graph and output rules learned) at |V|=1000 on a 10,000-example
   sequence, the batch drawn on the CPU and moved to the device.

Each part reports its own failure (one line in the JSON) and the run goes on, so one run gives
every figure it can.  ``--device cpu --quick`` is a smoke run of the script itself.  MNIST comes
from $METAPLASTIC_DATA when present, else random 784-d data of the same shape.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import time_once  # noqa: E402  (same directory)

from metaplastic.learner import Scheme  # noqa: E402


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _mnist(n: int):
    from metaplastic.data import Dataset, load_dataset
    try:
        return load_dataset("mnist", n_train=n, n_test=10, seed=0), "mnist"
    except Exception as e:  # noqa: BLE001  (no data here: same shapes, random content)
        print(f"note: {e}; using random 784-d data", file=sys.stderr)
        g = torch.Generator().manual_seed(0)
        return Dataset("random784", torch.rand(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g),
                       torch.rand(10, 784, generator=g), torch.randint(0, 10, (10,), generator=g), 10), "random"


def throughput(data, B: int, n: int, device: str, repeats: int) -> dict:
    """Config d, every example, the torch loop: the fastest of ``repeats`` runs (after a warm-up)."""
    time_once(data, 1000, 500, 3, "random", B, min(n, 20), device, Scheme(update_on="all"), "torch")
    best = None
    for _ in range(repeats):
        dt, _ = time_once(data, 1000, 500, 3, "random", B, n, device, Scheme(update_on="all"), "torch")
        best = dt if best is None else min(best, dt)
    return {"ensemble": B, "examples_per_network": n, "seconds": best, "example_networks_per_second": B * n / best}


def _to(batch, device: str):
    from metaplastic.meta import MetaBatch
    from metaplastic.network import Networks
    n = batch.nets
    mv = lambda t: None if t is None else t.to(device)  # noqa: E731
    return MetaBatch(Networks(n.config, mv(n.A), mv(n.G), mv(n.W), mv(n.U)), mv(batch.x), mv(batch.y),
                     mv(batch.orders), mv(batch.x_eval), mv(batch.y_eval))


def meta_step(data, n: int, device: str, repeats: int) -> dict:
    """One replay meta-step at |V|=1000, T=3 on an ``n``-example sequence, on ``device``."""
    from metaplastic.meta import ESTIMATOR_FNS
    from metaplastic.metatrain import MetaConfig, build_rules, draw_batch
    from metaplastic.network import NetworkConfig
    cfg = MetaConfig(dataset=data.name, n_train=n, n_test=10, vertices=1000, cap=500, rounds=3, learn="both",
                     batch=n, estimator="replay", init_scale=1.0)
    netcfg = NetworkConfig(d=data.dim, n_classes=data.n_classes, vertices=1000, cap=500, rounds=3)
    rules = build_rules(cfg, torch.float32)
    for rule in (rules.output, rules.graph):
        if rule is not None:
            rule.to(device)
    times, stats = [], {}
    for step in range(repeats):
        batch = _to(draw_batch(cfg, data, netcfg, step, torch.float32, "additive"), device)
        _sync(device)
        t0 = time.perf_counter()
        stats = ESTIMATOR_FNS["replay"](rules, batch, Scheme(), "ce")
        _sync(device)
        times.append(time.perf_counter() - t0)
    out = {"vertices": 1000, "sequence": n, "seconds_per_step": min(times), "seconds_all": times,
           "loss": stats.get("loss")}
    if device.startswith("cuda"):
        out["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def _part(name: str, fn, results: dict) -> None:
    t0 = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as e:  # noqa: BLE001  (one part's failure must not cost the others' figures)
        results[name] = {"error": f"{type(e).__name__}: {e}"}
    results[name]["wall_seconds"] = time.perf_counter() - t0
    print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run of the script")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    dev = args.device
    if dev.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device here (use --device cpu --quick for a smoke run)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    q = args.quick
    ensembles = (2, 4) if q else (256, 512, 1024)
    n_ens, n_one, n_meta = (30, 50, 200) if q else (200, 2000, 10000)
    data, source = _mnist(max(n_one, n_meta, n_ens))
    results = {"device": dev, "name": torch.cuda.get_device_name() if dev.startswith("cuda") else "cpu",
               "torch": torch.__version__, "data": source, "quick": q}
    for B in ensembles:
        _part(f"ensemble_{B}", lambda B=B: throughput(data, B, n_ens, dev, args.repeats), results)
    _part("one_network", lambda: throughput(data, 1, n_one, dev, args.repeats), results)
    _part("replay_meta_step", lambda: meta_step(data, n_meta, dev, args.repeats), results)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        from metaplastic.io import atomic_write_text
        atomic_write_text(args.out, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
