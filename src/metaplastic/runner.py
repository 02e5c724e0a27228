"""One training job, from a config dataclass to a results dict (``metaplastic train``).

Seeds: the dataset is drawn from ``seed``; ensemble member b uses seed
``seed + b`` for its masks, weights and data order, so member b of an
ensemble is exactly the single run with ``--seed seed+b`` on the same data.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .checks import ADAM_STEP_PER_LR, check_number
from .compiled import resolve_backend
from .diagnostics import check_logits, degeneracy_warnings, diagnose, summary
from .errors import MetaplasticError, TrainingDiverged
from .io import atomic_torch_save, resolve_rule, write_json
from .gd import train_gd
from .learner import Scheme, Tables, data_orders, train_rules
from .network import NetworkConfig, Networks, accuracy, init_networks
from .semantics import record

DTYPES = {"float32": torch.float32, "float64": torch.float64}
GD_CHOICES = ("none", "output", "all")


@dataclass
class TaskSpec:
    """The data and the network: the fields every job shares (train, learn-rule)."""

    dataset: str = "halfspace"
    n_train: int = 10000
    n_test: int = 10000
    vertices: int = 100
    cap: int = 50
    rounds: int = 1
    p: float = 0.5
    input_weights: str = "normal"
    n_classes: int | None = None  # stated l (--n-classes): labels must be 0..l-1; None: inferred
    recurrence: str = "wh+ax"   # the paper's text; "w(h+ax)": its code (metaplastic.semantics)
    firing: str = "nonzero"     # the paper's text; "top-k": its code

    def check_semantics(self) -> None:
        """The network semantics are valid (before any data is loaded)."""
        from .network import FIRING, RECURRENCE
        if self.recurrence not in RECURRENCE:
            raise MetaplasticError(f"--recurrence must be one of {RECURRENCE}, got {self.recurrence!r}")
        if self.firing not in FIRING:
            raise MetaplasticError(f"--firing must be one of {FIRING}, got {self.firing!r}")


@dataclass
class TrainJob(TaskSpec):
    graph_rule: str = "none"
    output_rule: str = "perceptron"
    update_on: str = "misclassified"
    output_rows: str = "true-and-predicted"
    output_input: str = "value"
    eta: float | None = None
    epochs: int = 1
    ensemble: int = 1
    seed: int = 0
    gd: str = "none"
    gd_lr: float = 1e-2
    gd_batch: int = 10
    device: str = "cpu"
    dtype: str = "float32"
    data_dir: str | None = None
    threads: int | None = None
    backend: str | None = None  # rule-training loop: auto | torch | compiled; None: $METAPLASTIC_BACKEND or auto

    def validate(self) -> None:
        if not isinstance(self.ensemble, int) or self.ensemble < 1:
            raise MetaplasticError(f"ensemble size must be a positive integer, got {self.ensemble!r}")
        if self.gd not in GD_CHOICES:
            raise MetaplasticError(f"--gd must be one of {GD_CHOICES}, got {self.gd!r}")
        if self.dtype not in DTYPES:
            raise MetaplasticError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        if self.eta is not None:
            check_number("--eta", self.eta, self.dtype)
        check_number("--gd-lr", self.gd_lr, self.dtype, factor=ADAM_STEP_PER_LR, why="Adam's first step, 10 x lr")
        Scheme(self.update_on, self.output_rows, self.output_input)
        self.check_semantics()


def resolve_device(name: str) -> torch.device:
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise MetaplasticError(f"unknown device {name!r} (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MetaplasticError("--device cuda was asked for, but this PyTorch build sees no CUDA GPU")
    if dev.type not in ("cpu", "cuda"):
        raise MetaplasticError(f"device {name!r} is not supported (use cpu or cuda)")
    return dev


def make_progress(total: int, desc: str, enabled: bool, unit: str = "ex"):
    """Progress on stderr (:class:`metaplastic.progress.Progress`): ``(update, close)``."""
    if not enabled:
        return None, lambda: None
    from .progress import Progress
    bar = Progress(total, desc, unit=unit)
    return bar.update, bar.close


def network_config(job: TaskSpec, data) -> NetworkConfig:
    """The network of ``job`` on ``data``, its semantics (recurrence, firing) included."""
    return NetworkConfig(d=data.dim, n_classes=data.n_classes, vertices=job.vertices, cap=job.cap,
                         rounds=job.rounds, p=job.p, input_weights=job.input_weights,
                         recurrence=job.recurrence, firing=job.firing)


def train_rules_of(job: TrainJob, dtype, semantics: dict):
    """``(mode, output rule, graph rule)`` of a ``train`` job; ``("additive", None, None)`` for GD.

    ``semantics`` (``semantics.record(job)``) is what a learned rule is checked against.
    """
    if job.gd != "none":
        return "additive", None, None
    out_rule = resolve_rule(job.output_rule, "output", job.rounds, job.eta, dtype, semantics)
    graph_rule = None
    if job.graph_rule != "none":
        if job.rounds == 1:
            raise MetaplasticError("a graph rule needs --rounds >= 2: at T = 1 the graph "
                                   "never influences the output")
        graph_rule = resolve_rule(job.graph_rule, "graph", job.rounds, job.eta, dtype, semantics)
        if graph_rule.mode != out_rule.mode:
            raise MetaplasticError("the graph and output rules must both be additive or both "
                                   "multiplicative (weights start at 0 or at 1 for both)")
    return out_rule.mode, out_rule, graph_rule


def run_train(job: TrainJob, *, progress: bool = True, out: str | Path | None = None) -> dict:
    """Train ``job.ensemble`` networks and evaluate them; see ``metaplastic train --help``."""
    from .data import load_dataset

    job.validate()
    dev = resolve_device(job.device)
    dtype = DTYPES[job.dtype]
    if job.threads:
        torch.set_num_threads(job.threads)
    data = load_dataset(job.dataset, n_train=job.n_train, n_test=job.n_test, seed=job.seed,
                        data_dir=job.data_dir, n_classes=job.n_classes)
    cfg = network_config(job, data)
    semantics = record(job)
    seeds = [job.seed + b for b in range(job.ensemble)]
    mode, out_rule, graph_rule = train_rules_of(job, dtype, semantics)
    from .memory import check, train_estimate
    check(train_estimate(B=job.ensemble, V=job.vertices, d=data.dim, l=data.n_classes, T=job.rounds,
                         n_train=data.x_train.shape[0], n_test=data.x_test.shape[0],
                         E=dtype.itemsize, graph_rule=graph_rule is not None, gd=job.gd),
          "use fewer --vertices or a smaller --ensemble", device=str(dev))
    nets = init_networks(cfg, seeds, mode=mode, dtype=dtype, device=dev)
    backend = resolve_backend(job.backend, nets) if job.gd == "none" else None
    orders = data_orders(data.x_train.shape[0], job.epochs, seeds)
    t0 = time.perf_counter()
    mistakes = _train(job, nets, data, orders, out_rule, graph_rule, backend, progress)
    seconds = time.perf_counter() - t0
    result = _evaluate(job, nets, data, orders, mistakes, seconds)
    result.update({"network": cfg.to_dict(),
                   "semantics": {k: v for k, v in semantics.items() if k != "meta_loss_on"},
                   "seeds": seeds, "backend": backend})
    diag = diagnose(nets, data.x_test, data.y_test)  # firing per round, spread of predictions
    check_logits(diag)
    result.update(summary(diag, degeneracy_warnings(diag, result["test_accuracy_per_network"])))
    if out is not None:
        out = Path(out)
        write_json(out / "config.json", asdict(job))
        atomic_torch_save(networks_state(nets), out / "networks.pt")
        write_json(out / "results.json", result)
    return result


def _train(job: TrainJob, nets: Networks, data, orders, out_rule, graph_rule, backend, progress: bool):
    """The training of :func:`run_train`, in place: rules (online mistakes ``[B]``) or GD (None)."""
    step, close = make_progress(job.ensemble * orders.shape[1], "train", progress)
    mistakes = None
    try:
        if job.gd == "none":
            with torch.no_grad():
                tables = Tables.from_rules(out_rule, graph_rule)
            mistakes, _ = train_rules(nets, data.x_train, data.y_train, tables, orders,
                                      Scheme(job.update_on, job.output_rows, job.output_input),
                                      progress=step, backend=backend)
        else:
            train_gd(nets, data.x_train, data.y_train, orders, which=job.gd, lr=job.gd_lr,
                     batch_size=job.gd_batch, progress=step)
        if nets.A.device.type == "cuda":
            torch.cuda.synchronize()
    except TrainingDiverged as e:  # name the rule the user gave
        flag = {"output": f"--output-rule {job.output_rule}: ",
                "graph": f"--graph-rule {job.graph_rule}: "}.get(getattr(e, "rule", None), "")
        raise TrainingDiverged(f"{flag}{e}", example=e.example, network=e.network) from None
    finally:
        close()
    return mistakes


def _evaluate(job: TrainJob, nets: Networks, data, orders, mistakes, seconds: float) -> dict:
    """Accuracies and speed of the trained networks (the first keys of :func:`run_train`'s result)."""
    dev, dtype = nets.A.device, nets.A.dtype
    tr = accuracy(nets, data.x_train.to(dev, dtype), data.y_train)
    te = accuracy(nets, data.x_test.to(dev, dtype), data.y_test)
    examples = job.ensemble * orders.shape[1]
    return {
        "train_accuracy": float(tr.mean()),
        "test_accuracy": float(te.mean()),
        "train_accuracy_std": float(tr.std()) if job.ensemble > 1 else 0.0,
        "test_accuracy_std": float(te.std()) if job.ensemble > 1 else 0.0,
        "train_accuracy_per_network": tr.tolist(),
        "test_accuracy_per_network": te.tolist(),
        "online_mistakes_per_network": None if mistakes is None else mistakes.tolist(),
        "seconds": seconds,
        "examples_per_second": examples / seconds if seconds > 0 else float("inf"),
        "examples": examples,
        "dataset": {"name": data.name, "n_train": int(data.x_train.shape[0]), "n_test": int(data.x_test.shape[0]),
                    "dim": data.dim, "n_classes": data.n_classes},
        "config": asdict(job),
    }


#: What ``metaplastic train --out DIR`` writes into DIR (:func:`run_train`).
TRAIN_FILES = ("config.json", "results.json", "networks.pt")


def earlier_train_files(out: str | Path) -> list[str]:
    """The files of an earlier ``train --out`` run in ``out`` (none where it is new or empty)."""
    return [name for name in TRAIN_FILES if (Path(out) / name).exists()]


def networks_state(nets: Networks) -> dict:
    return {"config": nets.config.to_dict(), "A": nets.A.cpu(), "G": None if nets.G is None else nets.G.cpu(),
            "W": None if nets.W is None else nets.W.cpu(), "U": nets.U.cpu()}


def load_networks(path) -> Networks:
    """Networks saved by ``metaplastic train --out DIR`` (``DIR/networks.pt``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "networks.pt"
    if not path.is_file():
        raise MetaplasticError(f"no saved networks at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return Networks(NetworkConfig(**state["config"]), state["A"], state["G"], state["W"], state["U"])
