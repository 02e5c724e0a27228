"""Adversarial robustness of plasticity- and GD-trained networks (paper section 4, A.3, Table 2).

Models (|V|=1000, k=500, p=0.5, MNIST, 10,000 training images, 2 epochs; one
set per seed, the seed drawing the masks, weights and data order):

===================  ==============================================================
``plastic-T1``       T=1, perceptron output rule, normal input weights
``plastic-T1star``   T=1*, the same with all input weights one (Table 2)
``plastic-T3``       T=3, perceptron output rule + the shipped A.3 graph rule
                     ``rules/mnist-mlp-graph-T3-V200.json`` (when absent: the
                     shipped ``relu1-mlp-T3`` graph rule, as the Table 2 section
                     does, else no graph rule; the run records which)
``plastic-T3-randomW``  opt-in (not in the default set; ``--models``): T=3 with a FIXED random
                     recurrent W (not learned, no graph plasticity) at drive ratio
                     1 (:mod:`metaplastic.fixed_recurrence`; issue 11, not the
                     paper), same perceptron output rule: a plastic network whose
                     rounds 2 and 3 actually run, unlike ``plastic-T3``'s
``gd-T1``, ``gd-T3``  Adam (lr 1e-2, batch 10) on cross-entropy, all weights (A, W,
                     U) through the cap (``train_gd(which="all")``)
``*-nocap``          the cap-free twin of each (``NetworkConfig(capped=False)``),
                     trained the same way
===================  ==============================================================

Protocol (:func:`evaluate`): the same ``n_images`` test images for every model;
an image is *robust at eps* when it is classified correctly and no attack
breaks it within the L2 ball of radius eps (intersected with [0,1]^d).

Economy, all of it sound: an image broken at eps is broken at every larger eps
(the same perturbation lies in the larger ball), so at each eps of the
increasing grid only the survivors are attacked ("worst-case survivors" S);
an attack stops on an image at its first misclassified point; the expensive
attacks only see what the cheaper ones left; the sweep stops when nothing
survives.  Order at each eps: the model's own-gradient attacks (the paper's,
APGD-DLR, APGD-CE) on S; the gradient-free noise, blend and square on what the
own-gradient attacks left (so any success there is, per image, a
gradient-free attack beating every own-gradient attack: the masking gate);
then the adaptive BPDA-ST, BPDA-soft and transfer, and NES on its subset, on
what is left.  The paper's attack runs stand-alone on all images (its own
survivors), which is the paper's measurement.  Every other attack also runs
stand-alone on the first ``per_attack_images`` images (per-attack curves of
Fig. 5; there the per-image masking comparison is made again); everything
found anywhere enters the worst case.

Sanity gates (:func:`gates`), each checked in code and reported:
``eps0`` (every attack run at eps = 0 breaks nothing; robust == clean),
``monotone`` (every curve non-increasing in eps), ``large_eps`` (worst case
about 0 at the largest eps), ``in_ball`` (every stored adversarial input is
within its eps (1e-6), in [0,1], and misclassified when re-evaluated),
``masking`` (no image is broken by a gradient-free attack at a smaller eps than
by every own-gradient attack; failing flags the model "masked"),
``scale`` (multiplying U by constants leaves the worst-case robust accuracy
unchanged), plus the fraction of exactly-zero input gradients (softmax output,
cross-entropy and logit margin).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import attacks as at
from .errors import MetaplasticError
from .io import atomic_torch_save, read_json, write_json
from .network import NetworkConfig, SimpleRNN, init_networks
from .runner import load_networks, networks_state

ORDER = ("paper", "apgd-dlr", "apgd-ce", "noise", "blend", "square", "bpda-st", "bpda-soft",
         "transfer", "nes")
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


# --------------------------------------------------------------------------- #
# Configuration
# --------------------------------------------------------------------------- #

@dataclass
class Protocol:
    """Attack budgets and the evaluation protocol (see the module docstring)."""

    eps: tuple = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 10.0)
    attacks: tuple = ORDER
    paper_steps: int = 20
    paper_alpha_rel: float = 0.25
    apgd_iters: int = 50
    dlr_targets: int = 3
    square_queries: int = 500
    noise_draws: int = 10
    blend_k: int = 10
    bpda_iters: int = 50
    bpda_tau_rel: float = 0.1
    transfer_iters: int = 50
    nes_images: int = 100
    nes_steps: int = 20
    nes_pairs: int = 25
    nes_sigma: float = 0.01
    per_attack_images: int = 100
    scale_factors: tuple = (0.01, 100.0)
    scale_images: int = 100
    scale_tolerance: float = 0.05
    large_eps_max: float = 0.02

    def budget(self) -> dict:
        return {k: v for k, v in asdict(self).items()
                if k.split("_")[0] in ("paper", "apgd", "dlr", "square", "noise", "blend", "bpda",
                                       "transfer", "nes")}


EPS0_BUDGET = dict(paper_steps=2, apgd_iters=3, dlr_targets=1, square_queries=3, noise_draws=2, blend_k=2,
                   bpda_iters=3, transfer_iters=2, nes_steps=1, nes_pairs=2)


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


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for k successes out of n."""
    if n <= 0:
        return (float("nan"), float("nan"))
    ph = k / n
    den = 1 + z * z / n
    mid = (ph + z * z / (2 * n)) / den
    half = z * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


# --------------------------------------------------------------------------- #
# Models
# --------------------------------------------------------------------------- #

def graph_rule_table(choice: str = "auto"):
    """(table or None, description) of the T=3 graph rule."""
    from .reproduce.rules import load_shipped
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
        from .fixed_recurrence import DRIVE_IMAGES, W_SEED_OFFSET
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
    from .learner import Tables, data_orders, train_gd, train_rules
    from .network import accuracy
    from .rules import perceptron_table
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
            from .fixed_recurrence import set_fixed_random_w
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
    from .network import fired, run_rounds
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


# --------------------------------------------------------------------------- #
# The protocol
# --------------------------------------------------------------------------- #

def _select_attacks(proto: Protocol, capped: bool, source) -> tuple[list, dict]:
    """The attacks of ``proto`` that apply to this model, and why each other one is skipped."""
    attacks = [a for a in ORDER if a in proto.attacks
               and not (a in ("bpda-st", "bpda-soft") and not capped)
               and not (a == "transfer" and source is None)]
    skipped = {a: ("cap-free model: BPDA equals plain APGD" if a.startswith("bpda") else "no source model")
               for a in proto.attacks if a not in attacks}
    return attacks, skipped


class _Attacker:
    """Runs one attack on a subset of the images, keeping each attack's cost (one generator for all)."""

    def __init__(self, model, x, y, attacks, budget: dict, seed: int, source, pred):
        self.model, self.x, self.y, self.source, self.pred = model, x, y, source, pred
        self.budget = budget
        self.gen = torch.Generator().manual_seed(int(seed))
        self.cost = {a: {"seconds": 0.0, "grads": 0, "queries": 0, "zero_grads": 0, "calls": 0} for a in attacks}
        self.paper_ratios = []

    def __call__(self, a, idx, e, bud=None):
        x = self.x
        if idx.numel() == 0:
            return torch.zeros(0, dtype=torch.bool), x[:0]
        t0 = time.perf_counter()
        r = at.run_attack(a, self.model, x[idx], self.y[idx], e, generator=self.gen, source=self.source,
                          budget=self.budget if bud is None else bud, reference=x, reference_pred=self.pred)
        c = self.cost[a]
        c["seconds"] += time.perf_counter() - t0
        c["grads"] += r.grads + r.stats.get("source_grads", 0)
        c["queries"] += r.queries
        c["zero_grads"] += r.zero_grads
        c["calls"] += 1
        if a == "paper" and r.stats.get("median_step_over_eps") is not None:
            self.paper_ratios.append(r.stats["median_step_over_eps"])
        return r.success, r.x_adv


def _eps0_check(attack: _Attacker, attacks, correct) -> dict:
    """Gate ``eps0``: every attack, on short budgets, at eps = 0 on every correct image."""
    idx = correct.nonzero()[:, 0]
    broken = {}
    for a in attacks:
        s, xa = attack(a, idx, 0.0, {**attack.budget, **EPS0_BUDGET})
        at.check_ball(xa, attack.x[idx], 0.0)
        broken[a] = int(s.sum())
    return broken


@dataclass
class _Sweep:
    """Per-image results: the eps index at which each attack (``first``) and any attack
    (``worst``) first broke an image (``len(eps)`` = never), and the input that did."""

    first: dict
    worst: torch.Tensor
    adv: torch.Tensor
    adv_by: list
    nes_mask: torch.Tensor
    survivors: list


def _candidates(a, S, paper_todo, nes_mask, bG, bF, bnow):
    """The images attack ``a`` sees at this eps (module docstring: the order of the attacks)."""
    if a == "paper":
        return paper_todo
    if a in at.GRADIENT:
        return S & ~bG
    if a == "nes":
        return S & nes_mask & ~bnow
    if a in at.GRADIENT_FREE:
        return S & ~bG & ~bF  # what the own gradients left: any success here is a masking sign
    return S & ~bnow


def _main_sweep(attack: _Attacker, attacks, eps, correct, nes_images: int, log, t_start) -> _Sweep:
    """Over the increasing eps grid, attack only the survivors; stop when nothing survives."""
    N, NEVER = correct.shape[0], len(eps)
    sw = _Sweep(first={a: torch.full((N,), NEVER, dtype=torch.long) for a in attacks},
                worst=torch.full((N,), NEVER, dtype=torch.long), adv=attack.x.clone(), adv_by=[""] * N,
                nes_mask=torch.zeros(N, dtype=torch.bool), survivors=[])
    sw.nes_mask[correct.nonzero()[:, 0][:nes_images]] = True
    for j, e in enumerate(eps):
        S = correct & (sw.worst == NEVER)
        paper_todo = (correct & (sw.first["paper"] == NEVER) if "paper" in sw.first
                      else torch.zeros(N, dtype=torch.bool))
        sw.survivors.append(int(S.sum()))
        if not bool(S.any()) and not bool(paper_todo.any()):
            break
        bF = torch.zeros(N, dtype=torch.bool)
        bG = torch.zeros(N, dtype=torch.bool)
        bnow = torch.zeros(N, dtype=torch.bool)
        for a in attacks:
            idx = _candidates(a, S, paper_todo, sw.nes_mask, bG, bF, bnow).nonzero()[:, 0]
            succ, xa = attack(a, idx, e)
            hit = idx[succ]
            xh = xa[succ]
            sw.first[a][hit] = j
            inS = S[hit]
            hit, xh = hit[inS], xh[inS]
            new = ~bnow[hit]
            for i, row in zip(hit[new].tolist(), xh[new]):
                sw.adv[i] = row
                sw.adv_by[i] = a
            bnow[hit] = True
            if a in at.GRADIENT:
                bG[hit] = True
            if a in at.GRADIENT_FREE:
                bF[hit] = True
        sw.worst[bnow] = j
        if log:
            log(f"    eps {e:g}: {int(S.sum())} survivors, {int(bnow.sum())} broken "
                f"({time.perf_counter() - t_start:.0f} s)")
    return sw


def _standalone_sweeps(attack: _Attacker, attacks, eps, correct, P, sw: _Sweep) -> dict:
    """Each attack alone on the images in ``P``; whatever it finds also enters the worst case."""
    N, NEVER = correct.shape[0], len(eps)
    alone = {}
    for a in attacks:
        if a == "paper":
            alone[a] = sw.first[a].clone()
            continue
        f = torch.full((N,), NEVER, dtype=torch.long)
        for j, e in enumerate(eps):
            cand = P & correct & (f == NEVER)
            if a == "nes":
                cand &= sw.nes_mask
            idx = cand.nonzero()[:, 0]
            if idx.numel() == 0:
                break
            succ, xa = attack(a, idx, e)
            hit = idx[succ]
            f[hit] = j
            for i, row in zip(hit.tolist(), xa[succ]):
                if j < int(sw.worst[i]):
                    sw.worst[i] = j
                    sw.adv[i] = row
                    sw.adv_by[i] = a + " (stand-alone)"
        alone[a] = f
    return alone


def _in_ball_failures(model, x, y, eps, sw: _Sweep) -> int:
    """Gate ``in_ball``: stored adversarial inputs outside their ball or box, or classified correctly."""
    broken = (sw.worst < len(eps)).nonzero()[:, 0]
    if not broken.numel():
        return 0
    adv = sw.adv
    e_b = torch.tensor([eps[int(j)] for j in sw.worst[broken]], dtype=torch.float64)
    dist = (adv[broken].double() - x[broken].double()).norm(dim=1)
    outside = (dist > e_b + at.TOL) | (adv[broken].amin(1) < 0) | (adv[broken].amax(1) > 1)
    still = at.predict(model, adv[broken]) != y[broken]
    return int((outside | ~still).sum())


def _earliest(first: dict, attacks, group, N: int, NEVER: int) -> torch.Tensor:
    """Per image, the first eps index at which any attack of ``group`` broke it."""
    rows = [first[a] for a in attacks if a in group]
    return torch.stack(rows).amin(0) if rows else torch.full((N,), NEVER)


def _masking(sw: _Sweep, alone: dict, attacks, correct, P, NEVER: int) -> dict:
    """Gate ``masking``: images a gradient-free (or adaptive) attack broke before every own-gradient one."""
    N = correct.shape[0]
    G_first = _earliest(sw.first, attacks, at.GRADIENT, N, NEVER)
    F_first = _earliest(sw.first, attacks, at.GRADIENT_FREE, N, NEVER)
    A_first = _earliest(sw.first, attacks, at.ADAPTIVE, N, NEVER)
    conflicts = correct & (F_first < G_first)
    adaptive_beats = correct & (A_first < G_first)
    conflicts_alone = torch.zeros(N, dtype=torch.bool)
    if alone:
        Ga = [alone[a] for a in attacks if a in at.GRADIENT]
        Fa = [alone[a] for a in attacks if a in at.GRADIENT_FREE]
        if Ga and Fa:
            conflicts_alone = P & correct & (torch.stack(Fa).amin(0) < torch.stack(Ga).amin(0))
    return {"gradient_free_before_gradient": int(conflicts.sum()),
            "gradient_free_before_gradient_standalone": int(conflicts_alone.sum()),
            "adaptive_before_gradient": int(adaptive_beats.sum()),
            "examples": conflicts.nonzero()[:, 0][:20].tolist()}


def _fig_rows(model, x, y, pred, eps, sw: _Sweep, fig_images: int) -> list:
    """The first ``fig_images`` images with their worst-case adversarial inputs (Fig. 5)."""
    NEVER = len(eps)
    fig = []
    for i in range(min(fig_images, x.shape[0])):
        j = int(sw.worst[i])
        fig.append({"index": i, "label": int(y[i]), "pred": int(pred[i]),
                    "eps": eps[j] if j < NEVER else None, "attack": sw.adv_by[i] if j < NEVER else None,
                    "adv_pred": int(at.predict(model, sw.adv[i:i + 1])[0]),
                    "x": [round(float(v), 4) for v in x[i]],
                    "adv": [round(float(v), 4) for v in sw.adv[i]]})
    return fig


def evaluate(model, x, y, proto: Protocol, *, source=None, seed: int = 0, standalone: bool = True,
             eps0: bool = True, fig_images: int = 8, log=None) -> dict:
    """Robust accuracy of ``model`` on ``x, y`` under every attack of ``proto`` (module docstring).

    Returns a JSON-able dict: clean correctness, per-image first-broken eps
    index (``len(eps)`` = never) for the worst case and per attack, curves,
    counts, per-attack costs, zero-gradient fractions and the adversarial
    inputs of the first ``fig_images`` images.  The stored adversarial inputs of
    all broken images are re-verified at the end (``in_ball``).
    """
    t_start = time.perf_counter()
    N = x.shape[0]
    eps = [float(e) for e in proto.eps]
    if eps != sorted(eps) or any(e <= 0 for e in eps):
        raise MetaplasticError("the eps grid must be increasing and positive (eps = 0 is checked separately)")
    J = len(eps)
    pred = at.predict(model, x)
    correct = pred == y
    attacks, skipped = _select_attacks(proto, is_capped(model), source)
    attack = _Attacker(model, x, y, attacks, proto.budget(), seed, source, pred)
    eps0_broken = _eps0_check(attack, attacks, correct) if eps0 else {}
    sw = _main_sweep(attack, attacks, eps, correct, proto.nes_images, log, t_start)
    worst_main = sw.worst.clone()
    P = torch.zeros(N, dtype=torch.bool)
    P[:min(proto.per_attack_images, N)] = True
    alone = (_standalone_sweeps(attack, attacks, eps, correct, P, sw)
             if standalone and proto.per_attack_images > 0 else {})
    in_ball_fail = _in_ball_failures(model, x, y, eps, sw)

    def curve(firsts, mask):
        return {"n": int(mask.sum()), "clean": int((mask & correct).sum()),
                "robust": [int((mask & correct & (firsts > j)).sum()) for j in range(J)]}

    allmask = torch.ones(N, dtype=torch.bool)
    masking = _masking(sw, alone, attacks, correct, P, J)
    correct_idx = correct.nonzero()[:, 0]
    zg = at.zero_gradient_fractions(model, x[correct_idx], y[correct_idx]) if correct_idx.numel() else {}
    fig = _fig_rows(model, x, y, pred, eps, sw, fig_images)
    paper_ratios = attack.paper_ratios
    return {
        "eps": eps, "n": N, "clean_correct": int(correct.sum()),
        "correct": correct.int().tolist(),
        "worst_first": sw.worst.tolist(), "worst_main_first": worst_main.tolist(),
        "first": {a: f.tolist() for a, f in sw.first.items()},
        "standalone_first": {a: f.tolist() for a, f in alone.items()},
        "standalone_n": int(P.sum()) if alone else 0,
        "curves": {"worst": curve(sw.worst, allmask), "worst_main": curve(worst_main, allmask),
                   "paper": curve(sw.first["paper"], allmask) if "paper" in sw.first else None,
                   "standalone": {a: curve(f, nes_subset(correct, proto.nes_images, proto.per_attack_images)
                                           if a == "nes" else P) for a, f in alone.items()}},
        "survivors_per_eps": sw.survivors,
        "eps0_broken": eps0_broken,
        "in_ball_failures": in_ball_fail,
        "broken_by": {a: sum(1 for b in sw.adv_by if b == a) for a in set(sw.adv_by) if a},
        "masking": masking,
        "zero_gradients": zg,
        "paper_median_step_over_eps": (sorted(paper_ratios)[len(paper_ratios) // 2] if paper_ratios else None),
        "cost": attack.cost, "skipped": skipped, "attacks": attacks,
        "fig": fig, "seconds": time.perf_counter() - t_start,
    }


def nes_subset(correct: torch.Tensor, nes_images: int, per_attack_images: int) -> torch.Tensor:
    """The first images of the evaluation set whose correctly classified members NES attacks.

    NES runs on the first ``nes_images`` correctly classified images; its
    stand-alone curve is over the leading images up to the last of those (and
    at most ``per_attack_images``), so that every correct image in it was attacked.
    """
    idx = correct.nonzero()[:, 0][:nes_images]
    cut = int(idx[-1]) + 1 if idx.numel() else 0
    return torch.arange(correct.shape[0]) < min(cut, per_attack_images)


def standalone_curve(res: dict, a: str, proto: Protocol) -> dict:
    """Stand-alone curve of attack ``a`` from the per-image results of :func:`evaluate`."""
    correct = torch.tensor(res["correct"]).bool()
    f = torch.tensor(res["standalone_first"][a])
    N, J = correct.shape[0], len(res["eps"])
    mask = (nes_subset(correct, proto.nes_images, proto.per_attack_images) if a == "nes"
            else torch.arange(N) < min(proto.per_attack_images, N))
    return {"n": int(mask.sum()), "clean": int((mask & correct).sum()),
            "robust": [int((mask & correct & (f > j)).sum()) for j in range(J)]}


def rate(curve: dict, j: int) -> float:
    return curve["robust"][j] / curve["n"] if curve and curve["n"] else float("nan")


def scale_check(model, x, y, proto: Protocol, main: dict, *, source=None, seed: int = 0) -> dict:
    """Worst-case robust accuracy with U scaled by each of ``proto.scale_factors`` (first
    ``scale_images`` images, main sweep only) against the unscaled main sweep on the same images."""
    K = min(proto.scale_images, x.shape[0])
    if K == 0 or not proto.scale_factors:
        return {"factors": {}, "max_abs_diff": 0.0, "n": 0}
    J = len(proto.eps)
    ref_first = torch.tensor(main["worst_main_first"][:K])
    ref_corr = torch.tensor(main["correct"][:K]).bool()
    ref = [int((ref_corr & (ref_first > j)).sum()) / K for j in range(J)]
    ref_paper = [int((ref_corr & (torch.tensor(main["first"]["paper"][:K]) > j)).sum()) / K
                 for j in range(J)] if "paper" in main["first"] else None
    out = {"n": K, "reference": ref, "reference_paper": ref_paper, "factors": {}}
    worst_diff = 0.0
    for c in proto.scale_factors:
        r = evaluate(scaled(model, c), x[:K], y[:K], proto, source=source, seed=seed + 7919,
                     standalone=False, eps0=False, fig_images=0)
        w = [rate(r["curves"]["worst_main"], j) for j in range(J)]
        pp = [rate(r["curves"]["paper"], j) for j in range(J)] if r["curves"]["paper"] else None
        diff = max(abs(a - b) for a, b in zip(w, ref))
        worst_diff = max(worst_diff, diff)
        out["factors"][str(c)] = {"worst": w, "paper": pp, "max_abs_diff": diff,
                                  "zero_gradients": r["zero_gradients"], "seconds": r["seconds"]}
    out["max_abs_diff"] = worst_diff
    return out


def gates(res: dict, proto: Protocol, scale: dict | None) -> dict:
    """The sanity gates of one evaluated model: ``{gate: {"ok": bool, "detail": str}}``."""
    g = {}
    J = len(res["eps"])
    clean = res["clean_correct"] / res["n"]
    b0 = sum(res["eps0_broken"].values()) if res["eps0_broken"] else 0
    un = res.get("unstable")
    g["eps0"] = {"ok": b0 == 0 and bool(res["eps0_broken"]),
                 "detail": (f"robust at eps=0 = {(res['clean_correct'] - b0) / res['n']:.4f}, "
                            f"clean = {clean:.4f}; attacks run at eps=0: "
                            f"{', '.join(res['eps0_broken']) or 'none'}"
                            + (f"; broken at eps=0 by: "
                               f"{', '.join(f'{a} {k}' for a, k in res['eps0_broken'].items() if k)}" if b0 else "")
                            + (f"; the predicted label of {un['count']} unperturbed image(s) (e.g. #{un['indices'][0]}) "
                               "changes with the batch it is evaluated in -- float32 rounding flips the network's "
                               "output there, so an attack that returns x itself can count it as broken"
                               if un and un["count"] else ""))}
    bad = []
    for name, c in [("worst", res["curves"]["worst"]), ("paper", res["curves"]["paper"])] + \
            [(a, c) for a, c in res["curves"]["standalone"].items()]:
        if not c:
            continue
        seq = [c["clean"]] + c["robust"]
        if any(b > a for a, b in zip(seq, seq[1:])):
            bad.append(name)
    g["monotone"] = {"ok": not bad, "detail": "non-increasing" if not bad else "increases: " + ", ".join(bad)}
    big = rate(res["curves"]["worst"], J - 1)
    g["large_eps"] = {"ok": big <= proto.large_eps_max,
                      "detail": f"worst-case robust accuracy {big:.3f} at eps={res['eps'][-1]:g} "
                                f"(gate: <= {proto.large_eps_max})"}
    g["in_ball"] = {"ok": res["in_ball_failures"] == 0,
                    "detail": f"{res['in_ball_failures']} stored adversarial inputs failed re-verification "
                              f"(within eps + 1e-6, in [0,1], misclassified)"}
    m = res["masking"]
    nconf = m["gradient_free_before_gradient"] + m["gradient_free_before_gradient_standalone"]
    g["masking"] = {"ok": nconf == 0,
                    "detail": (f"{m['gradient_free_before_gradient']} images (main sweep) and "
                               f"{m['gradient_free_before_gradient_standalone']} (stand-alone subset) broken by "
                               f"a gradient-free attack at a smaller eps than by every own-gradient attack; "
                               f"adaptive attacks (BPDA/transfer) beat own gradients on "
                               f"{m['adaptive_before_gradient']}")}
    if scale is not None and scale.get("factors"):
        g["scale"] = {"ok": scale["max_abs_diff"] <= proto.scale_tolerance,
                      "detail": (f"U x {', '.join(scale['factors'])}: largest change of worst-case robust "
                                 f"accuracy over the grid {scale['max_abs_diff']:.3f} on {scale['n']} images "
                                 f"(gate: <= {proto.scale_tolerance})")}
    return g
