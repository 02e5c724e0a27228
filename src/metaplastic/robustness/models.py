"""The models the robustness section attacks: their names, how they are trained and saved
(:class:`ModelSetup`, :func:`train_models`), and what is measured on a model itself (U scaled,
round activity, near-tie predictions)."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import attacks as at
from ..errors import MetaplasticError
from ..io import atomic_torch_save, read_json, write_json
from ..network import NetworkConfig, SimpleRNN, init_networks
from ..runner import load_networks, networks_state

BASE_MODELS = ("plastic-T3", "plastic-T1star", "plastic-T1", "gd-T3", "gd-T1")
MODELS = BASE_MODELS + tuple(m + "-nocap" for m in BASE_MODELS)
#: Selectable with ``--models`` but not run by default (issue 11: a T=3 plastic network whose
#: rounds are active; its W is a fixed random matrix, see :mod:`metaplastic.fixed_recurrence`).
OPTIONAL_MODELS = ("plastic-T3-randomW",)
SELECTABLE = MODELS + OPTIONAL_MODELS
#: Drive ratio (recurrent over input drive) and kind of ``plastic-T3-randomW``'s fixed W.
RANDOM_W = {"kind": "normal", "drive_ratio": 1.0}
LABELS = {"plastic-T3": "T=3 plasticity", "plastic-T1star": "T=1* plasticity", "plastic-T1": "T=1 plasticity",
          "gd-T3": "T=3 GD", "gd-T1": "T=1 GD",
          "plastic-T3-randomW": "T=3 plasticity, fixed random W (not learned)"}


def label(name: str) -> str:
    base = name.removesuffix("-nocap")
    return LABELS.get(base, base) + (" (no cap)" if name.endswith("-nocap") else "")


def transfer_source(name: str) -> str:
    """The GD-trained twin a model's transfer attack is crafted on."""
    nocap = name.endswith("-nocap")
    base = name.removesuffix("-nocap")
    rounds = "T3" if "T3" in base else "T1"
    if base.startswith("gd-"):  # a GD model: its twin across the cap
        return f"gd-{rounds}" if nocap else f"gd-{rounds}-nocap"
    return f"gd-{rounds}" + ("-nocap" if nocap else "")


@dataclass
class ModelSetup:
    """How the models are trained."""

    dataset: str = "mnist"
    n_train: int = 10000
    vertices: int = 1000
    cap: int = 500
    p: float = 0.5
    epochs: int = 2
    gd_lr: float = 1e-2
    gd_batch: int = 10
    data_seed: int = 0
    models: tuple = MODELS
    graph_rule: str = "auto"  # auto: the A.3 rule, else relu1-mlp-T3, else none
    extra: dict = field(default_factory=dict)


def graph_rule_table(choice: str = "auto"):
    """(table or None, description) of the T=3 graph rule."""
    from ..reproduce.rules import load_shipped
    if choice in ("auto", "mnist-mlp-graph-T3-V200"):
        g = load_shipped("mnist-mlp-graph-T3-V200", kind="graph")
        if g is not None:
            return g.table().detach(), "rules/mnist-mlp-graph-T3-V200.json (the A.3 rule)", g.eta
        if choice != "auto":
            raise MetaplasticError("rules/mnist-mlp-graph-T3-V200.json is not there")
    if choice in ("auto", "relu1-mlp-T3"):
        g = load_shipped("relu1-mlp-T3", kind="graph")
        if g is not None:
            why = " (rules/mnist-mlp-graph-T3-V200.json is missing)" if choice == "auto" else ""
            return g.table().detach(), "rules/relu1-mlp-T3.json" + why, g.eta
    return None, "none (no shipped graph rule: W stays 0, so T=3 computes what T=1 does)", 1e-2


def model_spec(name: str, setup: ModelSetup, graph_desc: str) -> dict:
    if name not in SELECTABLE:
        raise MetaplasticError(f"unknown model {name!r}; choose from {', '.join(SELECTABLE)}")
    base = name.removesuffix("-nocap")
    random_w = base == "plastic-T3-randomW"
    spec = {"name": name, "train": "gd" if base.startswith("gd-") else "rules",
            "rounds": 3 if "T3" in base else 1,
            "input_weights": "ones" if base == "plastic-T1star" else "normal",
            "capped": not name.endswith("-nocap"),
            "graph_rule": (graph_desc if base == "plastic-T3" else
                           "none: fixed random W, not learned" if random_w else None),
            "vertices": setup.vertices, "cap": setup.cap, "p": setup.p, "epochs": setup.epochs,
            "n_train": setup.n_train, "dataset": setup.dataset, "data_seed": setup.data_seed,
            "gd_lr": setup.gd_lr if base.startswith("gd-") else None,
            "gd_batch": setup.gd_batch if base.startswith("gd-") else None}
    if random_w:  # recorded only here, so the other models' saved specs stay valid
        from ..fixed_recurrence import DRIVE_IMAGES, W_SEED_OFFSET
        spec["recurrent_w"] = {**RANDOM_W, "scaled_on": f"first {DRIVE_IMAGES} training images",
                               "generator_seed": f"seed + {W_SEED_OFFSET}"}
    return spec


def model_dir(models_dir: Path, name: str, seed: int) -> Path:
    return Path(models_dir) / f"{name}-seed{seed}"


def load_model(path) -> SimpleRNN:
    """A saved network (``DIR/networks.pt``, member 0) as a :class:`SimpleRNN`."""
    return SimpleRNN(load_networks(path), 0)


def train_models(setup: ModelSetup, seeds, models_dir: Path, data, *, log=print) -> dict:
    """Train (or load, when saved with the same spec) every model for every seed.

    Missing seeds of a model are trained together as one ensemble (members
    equal separate runs).  Returns ``{name: {seed: (SimpleRNN, info)}}``.
    """
    from ..gd import train_gd
    from ..learner import Tables, data_orders, train_rules
    from ..network import accuracy
    from ..rules import perceptron_table
    graph, graph_desc, graph_eta = graph_rule_table(setup.graph_rule)
    out = {}
    for name in setup.models:
        spec = model_spec(name, setup, graph_desc)
        out[name] = {}
        missing = []
        for s in seeds:
            d = model_dir(models_dir, name, s)
            info_p = d / "model.json"
            info = read_json(info_p)  # None when missing or cut short: the model is trained again
            if (d / "networks.pt").is_file() and info is not None:
                if info.get("spec") == spec:
                    out[name][s] = (load_model(d), info)
                    continue
            missing.append(s)
        if not missing:
            continue
        cfg = NetworkConfig(d=data.dim, n_classes=data.n_classes, vertices=setup.vertices, cap=setup.cap,
                            rounds=spec["rounds"], p=setup.p, input_weights=spec["input_weights"],
                            capped=spec["capped"])
        nets = init_networks(cfg, missing)
        w_info = None
        if "recurrent_w" in spec:  # fixed, never updated: trained below with no graph rule
            from ..fixed_recurrence import set_fixed_random_w
            w_info = set_fixed_random_w(nets, data.x_train, missing, ratio=spec["recurrent_w"]["drive_ratio"],
                                        kind=spec["recurrent_w"]["kind"])
        n = data.x_train.shape[0]
        orders = data_orders(n, setup.epochs, missing)
        t0 = time.perf_counter()
        if spec["train"] == "rules":
            tables = Tables(output=perceptron_table(spec["rounds"]),
                            graph=graph if spec["rounds"] > 1 and w_info is None else None, graph_eta=graph_eta)
            train_rules(nets, data.x_train, data.y_train, tables, orders)
        else:
            train_gd(nets, data.x_train, data.y_train, orders, which="all", lr=setup.gd_lr,
                     batch_size=setup.gd_batch)
        secs = time.perf_counter() - t0
        test_acc = accuracy(nets, data.x_test, data.y_test).tolist()
        train_acc = accuracy(nets, data.x_train, data.y_train).tolist()
        for b, s in enumerate(missing):
            one = nets.member(b).clone()
            d = model_dir(models_dir, name, s)
            atomic_torch_save(networks_state(one), d / "networks.pt")
            info = {"spec": spec, "seed": s, "train_seconds": secs / len(missing),
                    "test_accuracy": test_acc[b], "train_accuracy": train_acc[b],
                    "n_test": int(data.x_test.shape[0])}
            if w_info is not None:
                info["recurrent_w"] = {k: v[b] for k, v in w_info.items()}
            write_json(d / "model.json", info)
            # what `metaplastic attack --model DIR` reads to find the test images
            write_json(d / "config.json", {"dataset": setup.dataset, "n_train": setup.n_train,
                                           "n_test": int(data.x_test.shape[0]), "seed": setup.data_seed,
                                           "network_seed": s, "model": name})
            out[name][s] = (load_model(d), info)
        log(f"[robustness] trained {name} seeds {missing} in {secs:.0f} s, test accuracy "
            + ", ".join(f"{a:.3f}" for a in test_acc))
    return out


def scaled(model, c: float):
    """A copy of a SimpleRNN with U multiplied by c (any other module: logits times c)."""
    if isinstance(model, SimpleRNN):
        m = copy.deepcopy(model)
        m.U.mul_(c)
        return m

    class _Scaled(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x) * c
    return _Scaled(model)


def round_activity(model, x, n: int = 500) -> dict | None:
    """Fraction of units firing in each round, of images whose final hidden state equals
    round 1's (a T>1 network whose rounds collapse computes what T=1 does), and the share of
    the last round's fired units that did not fire in round 1 (mean over images).  None at T=1."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "rounds", 1) < 2 or not hasattr(model, "W"):
        return None
    from ..network import fired, run_rounds
    states = []
    with torch.no_grad():
        P = (x[:n].to(model.A.dtype) @ model.A)[None]
        run_rounds(P, model.W[None], cfg.k, cfg.rounds, states=states, **cfg.semantics)
    f1, fT = fired(states[0], cfg), fired(states[-1], cfg)
    new = (fT & ~f1).sum(-1).double() / fT.sum(-1).clamp_min(1).double()
    return {"firing": [float(fired(h, cfg).float().mean()) for h in states],
            "last_equals_first": float((states[-1] == states[0]).all(-1).float().mean()),
            "last_new_vs_first": float(new.mean()),
            "n": int(min(n, x.shape[0]))}


def cap_binding(model, x, n: int = 500) -> dict | None:
    """How often the cap removes anything: per round, the share of images with more than k units
    positive before the cap (where fewer are, ``cap_k(relu(z)) = relu(z)`` and the capped network
    computes its cap-free form), and the mean share of units positive before it.  None for a
    cap-free model."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "k", None) is None or not hasattr(model, "A"):
        return None
    from ..network import cap, recurrent_drive
    with torch.no_grad():
        P = (x[:n].to(model.A.dtype) @ model.A)[None]
        drives = [P]  # each round's drive before the ReLU and the cap
        for _ in range(cfg.rounds - 1):
            h = cap(torch.relu(drives[-1]), cfg.k)
            drives.append(recurrent_drive(h, P, model.W[None], cfg.recurrence))
    positive = [(z[0] > 0).sum(-1) for z in drives]
    return {"binds": [float((c > cfg.k).double().mean()) for c in positive],
            "positive": [float(c.double().mean()) / cfg.vertices for c in positive],
            "k": int(cfg.k), "n": int(min(n, x.shape[0]))}


def unstable_predictions(model, x, chunk: int = 50) -> dict:
    """Images whose predicted label depends on the batch they are evaluated in.

    The labels from one batch of all images, from one image at a time and from
    chunks of ``chunk`` are compared.  Float32 rounding differs between batch
    shapes; a network whose output jumps under such rounding (the cap's
    selection flipping at a near-tie) is discontinuous at that image.
    """
    with torch.no_grad():
        full = at.predict(model, x, batch_size=max(1, x.shape[0]))
        one = torch.cat([model(x[i:i + 1]).argmax(1) for i in range(x.shape[0])]) if x.shape[0] else full
        part = at.predict(model, x, batch_size=chunk)
    bad = ((one != full) | (part != full)).nonzero()[:, 0]
    return {"count": int(bad.numel()), "indices": bad[:20].tolist(), "n": int(x.shape[0])}


def is_capped(model) -> bool:
    cfg = getattr(model, "config", None)
    return cfg is not None and getattr(cfg, "k", None) is not None and hasattr(model, "U")
