"""What a worker runs for one task: a cell, or a group of cells that differ only in their seed.

Tasks are module-level functions of plain data (picklable for any executor)
that return plain data; the process that drives the sweep writes every file,
so a task that dask reruns after its worker died writes nothing twice.

Datasets are loaded once per worker process: :func:`cached_dataset` keeps the
last few, keyed by every argument of :func:`metaplastic.data.load_dataset`
(and the commands run inside :func:`cached_loads`, which routes their own
``load_dataset`` calls through that cache).

Seed batching (train only): in ``metaplastic train`` the dataset is drawn
from the job's seed and member b of an ensemble uses seed ``seed + b`` for
its network and data order *on the dataset of ``seed``*, so an ensemble is
not the same as cells with seeds s, s+1, ... .  A batched task therefore
draws each cell's own dataset (from its own seed), concatenates the training
sets and offsets each member's data order into its own block: member b sees
exactly the examples, in exactly the order, and starts from exactly the
network that its cell run alone would, and is evaluated on its own data.
Only the floating-point batching of the products differs (an ensemble of B
instead of B ensembles of one), as between any ensemble and its separate runs.
Cells whose ``ensemble`` is not 1 are never batched.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import tempfile
import time
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

_CACHE: OrderedDict = OrderedDict()
CACHE_SIZE = 8


def cached_dataset(name, **kwargs):
    """``load_dataset(name, **kwargs)`` with a per-process cache of the last :data:`CACHE_SIZE` datasets."""
    from .. import data
    key = (str(name), tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    ds = (_LOAD or data.load_dataset)(name, **kwargs)
    _CACHE[key] = ds
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return ds


_LOAD = None  # the original data.load_dataset while cached_loads() is active


@contextlib.contextmanager
def cached_loads():
    """Within: ``metaplastic.data.load_dataset`` (as the commands call it) goes through the cache."""
    global _LOAD
    from .. import data
    if _LOAD is not None:  # nested
        yield
        return
    _LOAD = data.load_dataset
    data.load_dataset = cached_dataset
    try:
        yield
    finally:
        data.load_dataset = _LOAD
        _LOAD = None


def _where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _threads(n):
    import torch
    torch.set_num_threads(n or 1)


def run_task(task: dict) -> list[dict]:
    """Run one task ``{"command", "configs": [config, ...]}``; one outcome per config.

    An outcome is ``{"status": "ok", "metrics": {...}, "result": {...}, ...}``
    or ``{"status": "failed", "error": "..."}`` when the cell raised (a
    batched group that raises is run again cell by cell, so one bad cell
    does not fail its neighbours).
    """
    command, configs = task["command"], task["configs"]
    t0 = time.perf_counter()
    with cached_loads():
        try:
            if command == "train":
                outs = train_cells(configs)
            elif command == "learn-rule":
                outs = [learn_rule_cell(c) for c in configs]
            else:
                outs = [attack_cell(c) for c in configs]
        except Exception as e:  # noqa: BLE001 - reported per cell
            if len(configs) > 1:
                return [run_task({"command": command, "configs": [c]})[0] for c in configs]
            from ..errors import MetaplasticError
            kind = "" if isinstance(e, MetaplasticError) else f"{type(e).__name__}: "
            return [{"status": "failed", "error": f"{kind}{e}", "worker": _where(),
                     "seconds": time.perf_counter() - t0}]
    share = (time.perf_counter() - t0) / len(configs)
    for o in outs:
        o.update(status="ok", worker=_where(), seconds=share, batched=len(configs))
    return outs


# --------------------------------------------------------------------------- train


def _train_metrics(res: dict) -> dict:
    """The numbers of one train cell that go into results.csv: accuracies, online mistakes,
    and the degeneracy diagnostics (activity and firing per round, the most frequent
    prediction's share, the number of warnings)."""
    mistakes = res.get("online_mistakes_per_network")
    out = {"train_accuracy": res["train_accuracy"], "test_accuracy": res["test_accuracy"],
           "online_mistakes": None if mistakes is None else sum(mistakes) / len(mistakes)}
    for name in ("active", "firing"):
        for t, v in enumerate(res.get(f"{name}_per_round") or []):
            out[f"{name}_round{t + 1}"] = v
    if "majority_prediction_share" in res:
        out["majority_prediction_share"] = res["majority_prediction_share"]
        out["warnings"] = len(res.get("warnings", []))
    return out


def train_cells(configs: list[dict]) -> list[dict]:
    """Cells of ``metaplastic train``: one alone through :func:`run_train`, several (same
    configuration but the seed, ensemble 1) as one batched ensemble."""
    from ..io import finite_json
    from ..runner import TrainJob, run_train
    jobs = [TrainJob(**c) for c in configs]
    _threads(jobs[0].threads)
    if len(jobs) == 1:
        res = run_train(jobs[0], progress=False)
        res.pop("seconds", None)
        res.pop("examples_per_second", None)
        return [{"metrics": _train_metrics(res), "result": finite_json(res)}]
    return [{"metrics": _train_metrics(r), "result": finite_json(r)} for r in train_batched(jobs)]


def train_batched(jobs) -> list[dict]:
    """Cells that differ only in their seed, as one ensemble (see the module docstring)."""
    import torch

    from ..compiled import resolve_backend
    from ..diagnostics import check_logits, degeneracy_warnings, diagnose, summary
    from ..errors import MetaplasticError
    from ..gd import train_gd
    from ..learner import Scheme, Tables, data_orders, train_rules
    from ..network import accuracy, init_networks
    from ..runner import DTYPES, network_config, resolve_device, train_rules_of
    from ..semantics import record
    j0 = jobs[0]
    for j in jobs:
        j.validate()
        if j.ensemble != 1 or {**asdict(j), "seed": 0} != {**asdict(j0), "seed": 0}:
            raise MetaplasticError("internal: a seed group must differ only in the seed, with ensemble 1")
    dev = resolve_device(j0.device)
    dtype = DTYPES[j0.dtype]
    extra = {"n_classes": j0.n_classes} if getattr(j0, "n_classes", None) is not None else {}
    datas = [cached_dataset(j.dataset, n_train=j.n_train, n_test=j.n_test, seed=j.seed, data_dir=j.data_dir,
                            **extra) for j in jobs]
    d0 = datas[0]
    cfg = network_config(j0, d0)
    seeds = [j.seed for j in jobs]
    mode, out_rule, graph_rule = train_rules_of(j0, dtype, record(j0))
    nets = init_networks(cfg, seeds, mode=mode, dtype=dtype, device=dev)
    # each member's own training set, one block each; its order indexes into its block
    x = torch.cat([d.x_train for d in datas])
    y = torch.cat([d.y_train for d in datas])
    orders, offset = [], 0
    for d, s in zip(datas, seeds):
        n = d.x_train.shape[0]
        orders.append(data_orders(n, j0.epochs, [s]) + offset)
        offset += n
    orders = torch.cat(orders)
    mistakes = None
    backend = resolve_backend(j0.backend, nets) if j0.gd == "none" else None
    if j0.gd == "none":
        with torch.no_grad():
            tables = Tables.from_rules(out_rule, graph_rule)
        mistakes, _ = train_rules(nets, x, y, tables, orders,
                                  Scheme(j0.update_on, j0.output_rows, j0.output_input), backend=backend)
    else:
        train_gd(nets, x, y, orders, which=j0.gd, lr=j0.gd_lr, batch_size=j0.gd_batch)
    outs = []
    for b, (j, d) in enumerate(zip(jobs, datas)):
        m = nets.member(b)
        tr = accuracy(m, d.x_train.to(dev, dtype), d.y_train)
        te = accuracy(m, d.x_test.to(dev, dtype), d.y_test)
        n = d.x_train.shape[0]
        diag = diagnose(m, d.x_test, d.y_test)  # as run_train reports it, member by member
        check_logits(diag)
        outs.append({
            "train_accuracy": float(tr.mean()), "test_accuracy": float(te.mean()),
            "train_accuracy_std": 0.0, "test_accuracy_std": 0.0,
            "train_accuracy_per_network": tr.tolist(), "test_accuracy_per_network": te.tolist(),
            "online_mistakes_per_network": None if mistakes is None else [int(mistakes[b])],
            "examples": int(orders.shape[1]),
            "dataset": {"name": d.name, "n_train": n, "n_test": int(d.x_test.shape[0]), "dim": d.dim,
                        "n_classes": d.n_classes},
            "config": asdict(j), "network": cfg.to_dict(), "seeds": [j.seed],
            "semantics": {k: v for k, v in record(j).items() if k != "meta_loss_on"}, "backend": backend,
            **summary(diag, degeneracy_warnings(diag, te.tolist()))})
    return outs


# --------------------------------------------------------------------------- learn-rule


def learn_rule_cell(config: dict) -> dict:
    """One ``metaplastic learn-rule`` run in a scratch folder; the rule file comes back as text."""
    from ..io import finite_json
    from ..metatrain import MetaConfig, learn_rule
    cfg = MetaConfig(**config)
    _threads(config.get("threads"))
    with tempfile.TemporaryDirectory(prefix="metaplastic-sweep-") as td:
        rule = Path(td) / "rule.json"
        res = learn_rule(cfg, rule, run_dir=Path(td) / "run", progress=False)
        files = {"rule.json": rule.read_text(), "curve.csv": (Path(td) / "run" / "curve.csv").read_text()}
    for k in ("rule_file", "run_dir", "seconds_this_run"):
        res.pop(k, None)
    metrics = {"final_loss": res["final_loss"], "final_loss_mean_last10": res["final_loss_mean_last10"],
               "train_accuracy": res["train_accuracy"], "test_accuracy": res["test_accuracy"]}
    return {"metrics": metrics, "result": finite_json(res), "files": files}


# --------------------------------------------------------------------------- attack


def attack_cell(config: dict) -> dict:
    """One ``metaplastic attack`` run (the command itself, its ``--json`` output captured)."""
    import argparse

    from ..cli import cmd_attack
    args = argparse.Namespace(**{k: v for k, v in config.items()}, json=True)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        cmd_attack(args)
    res = json.loads(buf.getvalue().strip().splitlines()[-1])
    res.pop("seconds", None)
    metrics = {"robust_accuracy": res["robust_accuracy"], "clean_accuracy": res["clean_accuracy"]}
    return {"metrics": metrics, "result": res}
