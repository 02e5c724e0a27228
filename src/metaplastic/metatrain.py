"""The outer loop of rule learning (A.1 "GD to Learn a Rule"): ``metaplastic learn-rule``.

Each step draws, for each of ``tasks_per_step`` tasks, a batch of examples
from the training pool and a fresh network (new masks when
``resample_graphs``, weights reset), trains it with the current rules, takes
the loss of the trained network on the same batch (or on a held-out batch of
the same size), estimates the gradient (replay, tape or ES; see
:mod:`metaplastic.meta`) averaged over the tasks, and steps Adam (lr 1e-2) with
L2 weight 0.01 (A.1: "Adam optimizer, with l2 regularization (with a constant
of 0.01)"; implemented as Adam's ``weight_decay=0.01``, i.e. the gradient of
``0.005 * ||theta||^2``).

Long runs survive: every ``checkpoint_every`` steps the rule parameters, the
optimizer state and the curve so far are written atomically; ``resume``
continues from the last checkpoint.  Every step's randomness is drawn from a
generator seeded by ``(seed, step)``, so a resumed run ends with exactly the
rule an uninterrupted one does (CPU).
"""

from __future__ import annotations

import copy
import csv
import io as _io
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from .checks import ADAM_STEP_PER_LR, check_number
from .compiled import resolve_for
from .diagnostics import check_logits, degeneracy_warnings, diagnose, summary
from .errors import MetaplasticError, TrainingDiverged
from .io import atomic_torch_save, atomic_write_text, resolve_rule, save_ruleset, write_json
from .learner import Scheme, Tables, data_orders, train_rules
from .meta import ESTIMATOR_FNS, ESTIMATORS, LOSS_ON, LOSSES, MetaBatch, RuleSet
from .network import NetworkConfig, accuracy, init_networks
from .rules import MLPRule, TableRule
from .runner import TaskSpec
from .semantics import record

CURVE_FIELDS = ("step", "loss", "accuracy", "trainings", "seconds")


@dataclass
class MetaConfig(TaskSpec):
    learn: str = "output"            # output | graph | both
    rule_kind: str = "table"         # table | mlp
    output_rule_kind: str | None = None  # table | mlp for the output rule (None: as rule_kind)
    mode: str = "additive"           # additive | multiplicative
    hidden: int = 20
    eta: float = 1e-2
    init_scale: float = 0.0          # table rules start N(0, init_scale^2); 0 (the CLI's default): at zero
    output_rule: str = "perceptron"  # the fixed output rule when only the graph rule is learned
    graph_rule: str = "none"         # the fixed graph rule when only the output rule is learned
    batch: int = 100
    eval_on: str = "batch"           # batch | heldout
    loss: str = "ce"
    steps: int = 200
    tasks_per_step: int = 1
    lr: float = 1e-2
    weight_decay: float = 0.01
    estimator: str = "replay"
    es_population: int = 8
    es_sigma: float = 0.05
    update_on: str = "misclassified"
    output_rows: str = "true-and-predicted"
    output_input: str = "value"
    meta_loss_on: str = "logits"     # logits | softmax (the paper's code: CE of the softmax outputs)
    resample_graphs: bool = True
    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"
    checkpoint_every: int = 25
    final_networks: int = 1          # networks trained with the learned rule at the end
    data_dir: str | None = None

    def validate(self) -> None:
        choices = {"learn": ("output", "graph", "both"), "rule_kind": ("table", "mlp"),
                   "output_rule_kind": (None, "table", "mlp"),
                   "mode": ("additive", "multiplicative"), "eval_on": ("batch", "heldout"),
                   "loss": LOSSES, "estimator": ESTIMATORS, "dtype": ("float32", "float64"),
                   "meta_loss_on": LOSS_ON}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise MetaplasticError(f"--{name.replace('_', '-')} must be one of {allowed}, "
                                       f"got {getattr(self, name)!r}")
        for name in ("batch", "steps", "tasks_per_step", "es_population", "checkpoint_every",
                     "final_networks", "hidden"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise MetaplasticError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
        check_number("--lr", self.lr, self.dtype, factor=ADAM_STEP_PER_LR, why="Adam's first step, 10 x lr")
        for name in ("eta", "es_sigma", "weight_decay", "init_scale"):
            check_number(f"--{name.replace('_', '-')}", getattr(self, name), self.dtype,
                         zero_ok=name in ("weight_decay", "init_scale"))
        if self.learn in ("graph", "both") and self.rounds < 2:
            raise MetaplasticError("learning a graph rule needs --rounds >= 2 (at T = 1 the graph "
                                   "never influences the output)")
        Scheme(self.update_on, self.output_rows, self.output_input)
        self.check_semantics()


def build_rules(cfg: MetaConfig, dtype) -> RuleSet:
    g = torch.Generator().manual_seed(cfg.seed)
    T = cfg.rounds

    def learned(kind):
        rk = cfg.output_rule_kind if kind == "output" and cfg.output_rule_kind else cfg.rule_kind
        if rk == "mlp":
            return MLPRule(kind, T, cfg.mode, cfg.eta, hidden=cfg.hidden, generator=g, dtype=dtype)
        return TableRule(kind, T, cfg.mode, cfg.eta, generator=g, init_scale=cfg.init_scale, dtype=dtype)

    learn_out = cfg.learn in ("output", "both")
    learn_graph = cfg.learn in ("graph", "both")
    out = (learned("output") if learn_out
           else resolve_rule(cfg.output_rule, "output", T, cfg.eta, dtype, record(cfg)))
    if learn_graph:
        graph = learned("graph")
    elif cfg.graph_rule != "none" and T > 1:
        graph = resolve_rule(cfg.graph_rule, "graph", T, cfg.eta, dtype, record(cfg))
    else:
        graph = None
    if graph is not None and graph.mode != out.mode:
        raise MetaplasticError("the graph and output rules must both be additive or both multiplicative")
    for p in list(out.parameters()) + ([] if graph is None else list(graph.parameters())):
        p.requires_grad_(False)
    rs = RuleSet(out, graph, learn_output=learn_out, learn_graph=learn_graph)
    for p in rs.parameters():
        p.requires_grad_(True)
    return rs


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7 + stream)


def draw_batch(cfg: MetaConfig, data, netcfg: NetworkConfig, step: int, dtype, mode: str) -> MetaBatch:
    """The tasks of one meta-step, from a generator seeded by (seed, step)."""
    g = step_generator(cfg.seed, step)
    n_pool = data.x_train.shape[0]
    need = cfg.batch * (2 if cfg.eval_on == "heldout" else 1)
    if need > n_pool:
        raise MetaplasticError(f"a batch of {cfg.batch} ({'twice that with a held-out batch' if need > cfg.batch else ''}) "
                               f"needs {need} training examples, the pool has {n_pool}")
    B = cfg.tasks_per_step
    idx = torch.stack([torch.randperm(n_pool, generator=g)[:need] for _ in range(B)])
    train_idx = idx[:, :cfg.batch]
    eval_idx = idx[:, cfg.batch:] if cfg.eval_on == "heldout" else train_idx
    if cfg.resample_graphs:
        seeds = torch.randint(0, 2**62, (B,), generator=g).tolist()
    else:
        seeds = [cfg.seed + b for b in range(B)]
    nets = init_networks(netcfg, seeds, mode=mode, dtype=dtype)
    x = data.x_train[train_idx.reshape(-1)].to(dtype)
    y = data.y_train[train_idx.reshape(-1)]
    orders = torch.arange(B * cfg.batch).reshape(B, cfg.batch)
    return MetaBatch(nets, x, y, orders, data.x_train[eval_idx].to(dtype), data.y_train[eval_idx])


def _curve_csv(rows) -> str:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CURVE_FIELDS)
    w.writeheader()
    for r in rows:
        w.writerow({k: r[k] for k in CURVE_FIELDS})
    return buf.getvalue()


def default_run_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".run")


#: What a learn-rule run writes into its run folder.
RUN_FILES = ("checkpoint.pt", "config.json", "curve.csv", "results.json")


def earlier_run_files(run_dir: str | Path) -> list[str]:
    """The files of an earlier learn-rule run in ``run_dir`` (none where it is new or empty)."""
    return [name for name in RUN_FILES if (Path(run_dir) / name).exists()]


def learn_rule(cfg: MetaConfig, out: str | Path, *, run_dir: str | Path | None = None,
               resume: bool = False, progress: bool = True, stop_after: int | None = None) -> dict:
    """Learn the rules of ``cfg``; write the rule set to ``out`` and the run to ``run_dir``.

    Returns a dict with ``final_loss``, ``train_accuracy`` and ``test_accuracy`` of
    networks trained with the learned rules, the learned tables, and the curve.
    ``stop_after`` ends the run early after that many steps (for tests).
    """
    from .runner import DTYPES

    cfg.validate()
    dtype = DTYPES[cfg.dtype]
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(out)
    ckpt_path = run_dir / "checkpoint.pt"
    if resume and not ckpt_path.is_file():
        raise MetaplasticError(f"--resume: no checkpoint at {ckpt_path}")
    data, netcfg = load_task(cfg, dtype)
    rules = build_rules(cfg, dtype)
    run = _Run(cfg, rules, run_dir)
    if resume:
        run.restore(ckpt_path)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", asdict(cfg))
    end = cfg.steps if stop_after is None else min(cfg.steps, run.start + stop_after)
    t_run = time.perf_counter()
    run.steps(data, netcfg, dtype, end, progress)
    if end < cfg.steps:
        return {"stopped_at": end}
    return _finish(cfg, out, run, data, netcfg, dtype, time.perf_counter() - t_run)


def load_task(cfg: MetaConfig, dtype):
    """The data pool and the network config of ``cfg``, after the memory check."""
    from .data import load_dataset
    from .memory import check, learn_rule_estimate
    data = load_dataset(cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed,
                        data_dir=cfg.data_dir, n_classes=cfg.n_classes)
    netcfg = NetworkConfig(d=data.dim, n_classes=data.n_classes, vertices=cfg.vertices, cap=cfg.cap,
                           rounds=cfg.rounds, p=cfg.p, input_weights=cfg.input_weights,
                           recurrence=cfg.recurrence, firing=cfg.firing)
    check(learn_rule_estimate(tasks=cfg.tasks_per_step, V=cfg.vertices, d=data.dim, l=data.n_classes,
                              T=cfg.rounds, batch=cfg.batch, n_train=data.x_train.shape[0],
                              n_test=data.x_test.shape[0], E=dtype.itemsize, estimator=cfg.estimator,
                              graph=cfg.learn != "output" or cfg.graph_rule != "none",
                              es_population=cfg.es_population, final_networks=cfg.final_networks),
          "use fewer --vertices, --tasks-per-step or --batch")
    return data, netcfg


class _Run:
    """The state of one learn-rule run: the rules, Adam, the curve so far, and its checkpoints."""

    def __init__(self, cfg: MetaConfig, rules: RuleSet, run_dir: Path):
        self.cfg, self.rules, self.run_dir = cfg, rules, run_dir
        self.ckpt_path = run_dir / "checkpoint.pt"
        self.params = rules.parameters()
        self.opt = torch.optim.Adam(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.history: list[dict] = []
        self.start = 0

    @property
    def trainings(self) -> int:
        return self.history[-1]["trainings"] if self.history else 0

    def restore(self, ckpt_path: Path) -> None:
        """Continue from a checkpoint made with the same settings."""
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        ck["config"] = {**record({}), **ck["config"]}  # made before the semantics switches: the text's
        if ck["config"] != asdict(self.cfg):
            diff = [k for k in ck["config"] if ck["config"][k] != asdict(self.cfg).get(k)]
            raise MetaplasticError(f"--resume: the checkpoint at {ckpt_path} was made with other "
                                   f"settings ({', '.join(diff)}); use the same flags or a new run dir")
        with torch.no_grad():
            for p, v in zip(self.params, ck["params"]):
                p.copy_(v)
        self.opt.load_state_dict(ck["optimizer"])
        self.history = ck["history"]
        self.start = ck["step"]

    def checkpoint(self, step: int) -> None:
        atomic_torch_save({"step": step, "params": [p.detach().clone() for p in self.params],
                           "optimizer": self.opt.state_dict(), "history": self.history,
                           "config": asdict(self.cfg)}, self.ckpt_path)
        atomic_write_text(self.run_dir / "curve.csv", _curve_csv(self.history))

    def steps(self, data, netcfg: NetworkConfig, dtype, end: int, progress: bool) -> None:
        """Meta-steps ``start..end-1``, with a progress bar and checkpoints."""
        from .runner import make_progress
        cfg = self.cfg
        bar_update, bar_close = make_progress(cfg.steps - self.start, "learn-rule", progress, unit="step")
        bar = getattr(bar_update, "__self__", None)
        scheme = Scheme(cfg.update_on, cfg.output_rows, cfg.output_input)
        trainings = self.trainings
        try:
            for step in range(self.start, end):
                t0 = time.perf_counter()
                batch = draw_batch(cfg, data, netcfg, step, dtype, self.rules.output.mode)
                stats = self.step(batch, scheme, step)
                trainings += stats["trainings"]
                self.history.append({"step": step + 1, "loss": stats["loss"], "accuracy": stats["accuracy"],
                                     "trainings": trainings, "seconds": time.perf_counter() - t0})
                if bar is not None:
                    bar.set_postfix(loss=f"{stats['loss']:.4f}", acc=f"{stats['accuracy']:.3f}")
                if bar_update is not None:
                    bar_update(1)
                if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == end:
                    self.checkpoint(step + 1)
        finally:
            bar_close()

    def step(self, batch: MetaBatch, scheme: Scheme, step: int) -> dict:
        """One meta-step: the estimator's gradient, then Adam's update; a step that makes anything
        non-finite writes the last good state and raises :class:`TrainingDiverged`."""
        cfg, params, opt = self.cfg, self.params, self.opt
        opt.zero_grad(set_to_none=True)
        try:
            stats = ESTIMATOR_FNS[cfg.estimator](self.rules, batch, scheme, cfg.loss,
                                                 population=cfg.es_population, sigma=cfg.es_sigma,
                                                 generator=step_generator(cfg.seed, step, 1),
                                                 loss_on=cfg.meta_loss_on)
            bad = nonfinite_step(stats["loss"], params)
        except TrainingDiverged as e:  # the inner training of this step overflowed
            bad = f"its inner training diverged ({str(e).split('; ')[0].removeprefix('training diverged: ')})"
        if not bad:
            good = ([p.detach().clone() for p in params], copy.deepcopy(opt.state_dict()))
            opt.step()
            if not all(bool(torch.isfinite(p).all()) for p in params):
                bad = "Adam's update made the rules non-finite"
                with torch.no_grad():  # back to the state before the update
                    for p, v in zip(params, good[0]):
                        p.copy_(v)
                opt.load_state_dict(good[1])
        if bad:  # keep the last good state (this step's rules, before the update), write no rule
            self.checkpoint(step)
            raise TrainingDiverged(f"learn-rule diverged at step {step + 1}: {bad}; the last good "
                                   f"state (step {step}) is in {self.ckpt_path}; try a smaller --lr or --eta, "
                                   "with another --out or --run-dir")
        return stats


def _finish(cfg: MetaConfig, out, run: _Run, data, netcfg: NetworkConfig, dtype, seconds: float) -> dict:
    """Train networks with the learned rules, then write the rule set and results.json."""
    rules, history = run.rules, run.history
    meta = {"made_by": "metaplastic learn-rule", "config": asdict(cfg), "semantics": record(cfg)}
    result = evaluate_rules(cfg, rules, data, netcfg, dtype)  # first: a rule that diverges is not saved
    save_ruleset(out, {"output": rules.output, "graph": rules.graph}, meta=meta)
    last = history[-10:]
    result.update({
        "final_loss": history[-1]["loss"] if history else float("nan"),
        "final_loss_mean_last10": sum(r["loss"] for r in last) / max(len(last), 1),
        "output_table": rules.output.factors().detach().double().tolist(),
        "graph_table": None if rules.graph is None else rules.graph.factors().detach().double().tolist(),
        "steps": cfg.steps, "trainings": run.trainings, "seconds_this_run": seconds,
        "rule_file": str(out), "run_dir": str(run.run_dir), "config": asdict(cfg),
        "backend": resolve_for(None, netcfg, cfg.device, dtype),
        "semantics": record(cfg),
    })
    write_json(run.run_dir / "results.json", result)
    return result


def nonfinite_step(loss: float, params) -> str | None:
    """What is non-finite in one meta-step (the loss, a meta-gradient), or None."""
    if not math.isfinite(loss):
        return f"the meta-loss is {loss}"
    for i, p in enumerate(params):
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            return f"the meta-gradient of rule parameter {i} {tuple(p.shape)} has non-finite entries"
    return None


@torch.no_grad()
def evaluate_rules(cfg: MetaConfig, rules: RuleSet, data, netcfg: NetworkConfig, dtype) -> dict:
    """Train ``final_networks`` fresh networks with the rules on the whole pool; accuracies."""
    seeds = [cfg.seed + 10_000 + b for b in range(cfg.final_networks)]
    nets = init_networks(netcfg, seeds, mode=rules.output.mode, dtype=dtype)
    out_t, gr_t = rules.tables(grad=False)
    tables: Tables = rules.make_tables(out_t, gr_t)
    scheme = Scheme(cfg.update_on, cfg.output_rows, cfg.output_input)
    n = data.x_train.shape[0]
    try:
        train_rules(nets, data.x_train.to(dtype), data.y_train, tables, data_orders(n, 1, seeds), scheme)
    except TrainingDiverged as e:
        raise TrainingDiverged(f"the learned rules diverge when they train a network on the whole "
                               f"training set: {e}", example=e.example, network=e.network) from None
    tr = accuracy(nets, data.x_train.to(dtype), data.y_train)
    te = accuracy(nets, data.x_test.to(dtype), data.y_test)
    diag = diagnose(nets, data.x_test, data.y_test)  # firing per round, spread of predictions
    check_logits(diag)
    res = {"train_accuracy": float(tr.mean()), "test_accuracy": float(te.mean()),
           "train_accuracy_per_network": tr.tolist(), "test_accuracy_per_network": te.tolist()}
    res.update(summary(diag, degeneracy_warnings(diag, te.tolist(),
                                                 what="network trained with the learned rule")))
    return res


def config_from_dict(d: dict) -> MetaConfig:
    names = {f.name for f in fields(MetaConfig)}
    return MetaConfig(**{k: v for k, v in d.items() if k in names})
