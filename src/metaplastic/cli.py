"""The ``metaplastic`` command line.

    metaplastic train [flags]        train simple RNNs with plasticity rules (or GD)
    metaplastic data fetch|verify    get / check MNIST and Fashion-MNIST

Errors in the user's input print one line ``error: ...`` and exit with 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from .errors import EXIT_DIVERGED, MetaplasticError, TrainingDiverged
from .sweep.cli import add_parser as add_sweep_parser, cmd_sweep
from .sweep.executor import CELL_SECTIONS


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line ``error: ...`` (exit 2) like every other."""

    def error(self, message):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _int(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None


def _finite(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
    return v


def add_network_args(p: argparse.ArgumentParser, vertices=100, cap=50, rounds=1) -> None:
    g = p.add_argument_group("network (paper section 2)")
    g.add_argument("--vertices", type=_int, default=vertices, help="|V|, units in the graph (default %(default)s)")
    g.add_argument("--cap", type=_int, default=cap, help="k, units kept by the cap (default %(default)s)")
    g.add_argument("--rounds", type=_int, default=rounds, help="T, rounds per example (default %(default)s)")
    g.add_argument("--p", type=_finite, default=0.5, help="edge and input-mask probability (default %(default)s)")
    g.add_argument("--input-weights", choices=["normal", "ones"], default="normal",
                   help="input weights on the mask: standard normal, or all ones (Table 2's T=1*)")


def add_semantics_args(p: argparse.ArgumentParser, meta: bool = False) -> None:
    """The paper's text (default) or its code, setting by setting (metaplastic.semantics)."""
    g = p.add_argument_group("semantics: the paper's text (default) or its released code")
    g.add_argument("--paper-code", action="store_true",
                   help="the paper's code: --recurrence w(h+ax) --firing top-k --output-input bit"
                        + (" --meta-loss-on softmax" if meta else "")
                        + " (a flag that contradicts it is an error)")
    g.add_argument("--recurrence", choices=["wh+ax", "w(h+ax)"], default=None,
                   help="rounds after the first: cap(relu(W h + A x)) (text, default) or "
                        "cap(relu(W (h + A x))) (code: the input re-enters only through W)")
    g.add_argument("--firing", choices=["nonzero", "top-k"], default=None,
                   help="a unit fires when its capped value is non-zero (text, default) or when it is "
                        "in the cap's top k, even at 0 (code; zero-valued members lowest index first)")
    if meta:
        g.add_argument("--meta-loss-on", choices=["logits", "softmax"], default=None,
                       help="the meta-loss takes the logits (default) or the softmax outputs (code: "
                            "cross-entropy of the softmax, softmax twice)")


def _semantics(args) -> dict:
    """The semantics settings the flags ask for (the preset first; see metaplastic.semantics)."""
    from .semantics import resolve
    explicit = {"recurrence": args.recurrence, "firing": args.firing}
    for name in ("output_input", "meta_loss_on"):
        if hasattr(args, name):
            explicit[name] = getattr(args, name)
    return resolve(args.paper_code, explicit)


def add_data_args(p: argparse.ArgumentParser, dataset="halfspace") -> None:
    g = p.add_argument_group("data (section 2, A.2)")
    g.add_argument("--dataset", default=dataset,
                   help="halfspace, relu1, relu2, rnn, mnist, fashion-mnist, or PATH.npz (default %(default)s)")
    g.add_argument("--n-train", type=_positive_int, default=10000, help="training examples (default %(default)s)")
    g.add_argument("--n-test", type=_positive_int, default=10000, help="test examples (default %(default)s)")
    g.add_argument("--data-dir", default=None, help="MNIST/Fashion-MNIST folder (default: $METAPLASTIC_DATA or the user cache)")
    g.add_argument("--n-classes", type=_positive_int, default=None, metavar="L",
                   help="number of classes; labels must be 0..L-1 (default: the largest training "
                        "label + 1, every class in the training split)")


def add_scheme_args(g) -> None:
    """The update scheme's flags (A.4, appendix B), the same for ``train`` and ``learn-rule``."""
    g.add_argument("--update-on", choices=["misclassified", "all"], default="misclassified")
    g.add_argument("--output-rows", choices=["true-and-predicted", "all"], default="true-and-predicted")
    g.add_argument("--output-input", choices=["value", "bit"], default=None,
                   help="scale output updates of fired units by their value (appendix B, default) or not")


def add_backend_arg(g, help=None) -> None:
    """``--backend`` (the rule-training loop; see ``learner.train_rules``)."""
    g.add_argument("--backend", choices=["auto", "torch", "compiled"], default=None,
                   help=help or "rule-training loop: compiled (numba, CPU, either semantics), torch (any "
                                "device), or auto = compiled on the CPU where it can run (default: "
                                "$METAPLASTIC_BACKEND or auto)")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="metaplastic", description=__doc__.split("\n\n")[0].replace("``", ""))
    from . import __version__
    ap.add_argument("--version", action="version", version=f"metaplastic {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    add_train_parser(sub)
    add_learn_rule_parser(sub)
    add_reproduce_parser(sub)
    add_attack_parser(sub)
    add_sweep_parser(sub)
    add_data_parser(sub)
    return ap


def add_train_parser(sub) -> None:
    """``metaplastic train``: its flags."""
    t = sub.add_parser("train", help="train simple RNNs with plasticity rules or GD",
                       description="Train B simple RNNs with plasticity rules, without backpropagation "
                                   "(paper A.1), or with Adam (--gd), and report accuracy.")
    add_data_args(t)
    add_network_args(t)
    r = t.add_argument_group("rules and schemes (section 2, A.1, A.4)")
    r.add_argument("--graph-rule", default="none", help="none, hebb, or a rule FILE (default %(default)s)")
    r.add_argument("--output-rule", default="perceptron", help="perceptron, winnow, or a rule FILE (default %(default)s)")
    add_scheme_args(r)
    r.add_argument("--eta", type=_finite, default=None, help="step size (default: the rule's own, 0.01)")
    r.add_argument("--epochs", type=_positive_int, default=1)
    r.add_argument("--gd", choices=["none", "output", "all"], default="none",
                   help="train with Adam instead: output weights only, or all weights through the cap")
    r.add_argument("--gd-lr", type=_finite, default=1e-2)
    r.add_argument("--gd-batch", type=_positive_int, default=10)
    e = t.add_argument_group("execution")
    e.add_argument("--ensemble", type=_positive_int, default=1, help="B networks trained at once (seeds seed..seed+B-1)")
    e.add_argument("--seed", type=_int, default=0)
    e.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    e.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    e.add_argument("--threads", type=_positive_int, default=None, help="CPU threads for torch")
    add_backend_arg(e)
    add_semantics_args(t)
    e.add_argument("--out", default=None, help="folder to write config.json, results.json and networks.pt")
    e.add_argument("--overwrite", action="store_true",
                   help="with --out: replace an earlier run's files there (without it that is an error)")
    e.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    e.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def add_learn_rule_parser(sub) -> None:
    """``metaplastic learn-rule``: its flags."""
    m = sub.add_parser("learn-rule", help="learn plasticity rules by gradient descent (A.1)",
                       description="Learn the output rule, the graph rule or both by gradient descent "
                                   "on the loss of networks the rules trained (paper A.1), with the "
                                   "exact tape-free count-replay gradient (default), autograd through "
                                   "the updates, or evolution strategies.")
    add_data_args(m)
    add_network_args(m)
    r = m.add_argument_group("the rules")
    r.add_argument("--learn", choices=["output", "graph", "both"], default="output")
    r.add_argument("--rule-kind", choices=["table", "mlp"], default="table")
    r.add_argument("--output-rule-kind", choices=["table", "mlp"], default=None,
                   help="kind of the learned output rule (default: --rule-kind). A table started at zero "
                        "(--init-scale 0) keeps its two columns exact opposites on a binary task, where "
                        "their common part gets no gradient yet decides multi-class behaviour")
    r.add_argument("--mode", choices=["additive", "multiplicative"], default="additive")
    r.add_argument("--hidden", type=_positive_int, default=20, help="MLP rule hidden width (default %(default)s)")
    r.add_argument("--eta", type=_finite, default=1e-2, help="step size of the rules (default %(default)s)")
    r.add_argument("--init-scale", type=_finite, default=0.0,
                   help="table rules start N(0, s^2), 0: at zero (default %(default)s; from N(0, 1) halfspace "
                        "seed 0 learned a rule that trains to 0.154, see docs/DESIGN.md)")
    r.add_argument("--output-rule", default="perceptron", help="fixed output rule when learning only the graph rule")
    r.add_argument("--graph-rule", default="none", help="fixed graph rule when learning only the output rule")
    add_scheme_args(r)
    add_semantics_args(m, meta=True)
    o = m.add_argument_group("the outer loop")
    o.add_argument("--batch", type=_positive_int, default=100, help="examples per inner training (default %(default)s)")
    o.add_argument("--steps", type=_positive_int, default=200)
    o.add_argument("--tasks-per-step", type=_positive_int, default=1, help="networks/batches averaged per step")
    o.add_argument("--eval-on", choices=["batch", "heldout"], default="batch")
    o.add_argument("--loss", choices=["ce", "mse"], default="ce")
    o.add_argument("--lr", type=_finite, default=1e-2, help="Adam learning rate (default %(default)s)")
    o.add_argument("--weight-decay", type=_finite, default=0.01, help="L2 weight (default %(default)s)")
    o.add_argument("--estimator", choices=["replay", "tape", "es"], default="replay")
    o.add_argument("--es-population", type=_positive_int, default=8, help="ES antithetic pairs")
    o.add_argument("--es-sigma", type=_finite, default=0.05)
    o.add_argument("--fixed-graphs", action="store_true", help="keep each task's graph instead of drawing new ones every step")
    o.add_argument("--final-networks", type=_positive_int, default=1, help="networks trained with the learned rule at the end")
    e = m.add_argument_group("execution")
    e.add_argument("--out", default="learned-rule.json", help="rule set file to write (default %(default)s)")
    e.add_argument("--run-dir", default=None, help="checkpoints, curve.csv, results.json (default: OUT minus .json plus .run)")
    e.add_argument("--checkpoint-every", type=_positive_int, default=25)
    e.add_argument("--resume", action="store_true",
                   help="continue from the run dir's last checkpoint (without it, a run dir that holds "
                        "an earlier run is an error)")
    e.add_argument("--seed", type=_int, default=0)
    e.add_argument("--device", default="cpu")
    e.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    e.add_argument("--threads", type=_positive_int, default=None)
    add_backend_arg(e)
    e.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    e.add_argument("--no-progress", action="store_true")


def add_reproduce_parser(sub) -> None:
    """``metaplastic reproduce``: its flags."""
    rp = sub.add_parser("reproduce", help="rerun an experiment of the paper and write a report",
                        description="Rerun a figure, table or theory check of the paper at its scale "
                                    "(or --quick) and write config.json, results.json/csv, figures and "
                                    "a REPORT.md section into the run folder.")
    from .reproduce import SECTIONS
    rp.add_argument("name", choices=list(SECTIONS) + ["all"])
    rp.add_argument("--out", default=None, help="run folder (default: a new folder under runs/)")
    rp.add_argument("--quick", action="store_true", help="a reduced version in well under a minute")
    rp.add_argument("--plot-only", action="store_true", help="redraw the figures from the saved results")
    rp.add_argument("--threads", type=_positive_int, default=None,
                    help="torch threads (with all: per worker; default cores / jobs)")
    rp.add_argument("--jobs", type=_positive_int, default=None,
                    help="with all: sections run in this many worker processes at once (default: the CPU count)")
    rp.add_argument("--resume", action="store_true",
                    help="with all: keep the sections of an earlier run in --out that finished")
    add_backend_arg(rp, help="rule-training loop of every section (default: $METAPLASTIC_BACKEND or auto)")
    add_semantics_args(rp)
    rp.add_argument("--workers", type=_positive_int, default=None,
                    help="run the section's cells on a local Dask cluster of N processes (fig3, fig6, table2-accuracy, "
                         "robustness; with all: passed on to those)")
    rp.add_argument("--scheduler", default=None, help="run the section's cells on this Dask cluster (tcp://HOST:PORT)")
    rp.add_argument("--models", nargs="+", default=None, metavar="MODEL",
                    help="robustness only: the models to attack (default: all but the opt-in plastic-T3-randomW; "
                         "python -m metaplastic.reproduce.robustness --help has every budget as a flag)")


def add_attack_parser(sub) -> None:
    """``metaplastic attack``: its flags."""
    at = sub.add_parser("attack", help="robust accuracy of one saved network under one L2 attack",
                        description="Attack a network saved by `metaplastic train --out DIR` (member 0) or by "
                                    "the robustness section on the first --n-images test images of its "
                                    "dataset, and print its robust accuracy (paper section 4; "
                                    "metaplastic.attacks).")
    at.add_argument("--model", required=True, help="RUN_DIR holding networks.pt and config.json")
    at.add_argument("--attack", required=True,
                    help="paper, apgd-ce, apgd-dlr, square, noise, blend, bpda-st, bpda-soft, nes, transfer, "
                         "or all (the worst case of the robustness protocol at this eps)")
    at.add_argument("--eps", type=_finite, required=True, help="L2 radius")
    at.add_argument("--n-images", type=_positive_int, default=1000)
    at.add_argument("--source", default=None, help="RUN_DIR of the model a transfer attack is crafted on")
    at.add_argument("--seed", type=_int, default=0, help="seed of the attack's random generator")
    at.add_argument("--data-dir", default=None)
    at.add_argument("--threads", type=_positive_int, default=None)
    at.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_semantics_args(at)  # the saved config carries the model's semantics; these flags check them


def add_data_parser(sub) -> None:
    """``metaplastic data fetch|verify``: their flags."""
    d = sub.add_parser("data", help="fetch or verify MNIST and Fashion-MNIST")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION")
    f = dsub.add_parser("fetch", help="download the IDX files (SHA-256 checked)")
    f.add_argument("names", nargs="*", default=["mnist", "fashion-mnist"])
    f.add_argument("--data-dir", default=None)
    f.add_argument("--base-url", default=None,
                   help="download from this mirror instead (URL + file name + .gz), for every dataset named")
    v = dsub.add_parser("verify", help="check the IDX files present")
    v.add_argument("--data-dir", default=None)
    v.add_argument("--json", action="store_true")


def _check_writable_above(out, parent) -> None:
    """The nearest existing folder at or above ``parent`` is a folder we may write in."""
    import os
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise MetaplasticError(f"--out {out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MetaplasticError(f"--out {out}: no permission to write in {parent}")


def _check_out_dir(out) -> None:
    """Fail before training, not after it, when ``--out`` cannot be a folder."""
    from pathlib import Path
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise MetaplasticError(f"--out {out}: exists and is not a folder")
    _check_writable_above(out, path)


#: The files ``train --out DIR`` writes (metaplastic.runner.run_train).
TRAIN_FILES = ("config.json", "results.json", "networks.pt")


def _check_no_earlier_train(out, overwrite: bool) -> None:
    """``train --out DIR`` over an earlier run's files: an error before training, unless --overwrite."""
    from pathlib import Path
    found = [f for f in TRAIN_FILES if (Path(out).expanduser() / f).exists()]
    if found and not overwrite:
        raise MetaplasticError(f"--out {out}: holds an earlier run ({', '.join(found)}); pass --overwrite "
                               "to replace it, or choose another --out")


def _check_out_file(out) -> None:
    """Fail before the work, not after it, when the file ``--out`` cannot be written."""
    from pathlib import Path
    path = Path(out).expanduser()
    if path.is_dir():
        raise MetaplasticError(f"--out {out}: is a folder; --out names the rule file to write "
                               f"(e.g. {path / 'learned-rule.json'})")
    _check_writable_above(out, path.parent)


def _finite_json(obj):
    """Non-finite floats as null, so ``--json`` output is strict JSON (metaplastic.io.finite_json)."""
    from .io import finite_json
    return finite_json(obj)


def _print_warnings(res: dict) -> None:
    """Degenerate models (silent rounds, one predicted class, below the majority rate) on stderr."""
    for w in res.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)


def _diagnostics_line(res: dict) -> str:
    fpr = ", ".join(f"{f:.3f}" for f in res["firing_per_round"])
    return (f"firing per round [{fpr}]; most frequent prediction on {res['majority_prediction_share']:.1%} "
            f"of test inputs (majority-class rate {res['majority_class_rate']:.4f})")


def cmd_train(args) -> int:
    from .runner import TrainJob, run_train
    if args.out is not None:
        _check_out_dir(args.out)
        _check_no_earlier_train(args.out, args.overwrite)
    sem = _semantics(args)
    job = TrainJob(dataset=args.dataset, n_train=args.n_train, n_test=args.n_test,
                   vertices=args.vertices, cap=args.cap, rounds=args.rounds, p=args.p,
                   input_weights=args.input_weights, graph_rule=args.graph_rule,
                   recurrence=sem["recurrence"], firing=sem["firing"],
                   output_rule=args.output_rule, update_on=args.update_on,
                   output_rows=args.output_rows, output_input=sem["output_input"], eta=args.eta,
                   epochs=args.epochs, ensemble=args.ensemble, seed=args.seed, gd=args.gd,
                   gd_lr=args.gd_lr, gd_batch=args.gd_batch, device=args.device, dtype=args.dtype,
                   data_dir=args.data_dir, threads=args.threads, n_classes=args.n_classes)
    if args.backend is not None:
        job.backend = args.backend
    res = run_train(job, progress=not args.no_progress, out=args.out)
    _print_warnings(res)
    if args.json:
        print(json.dumps(_finite_json(res), allow_nan=False))
    else:
        te = res["test_accuracy_per_network"]
        spread = f" (std {res['test_accuracy_std']:.4f}, min {min(te):.4f}, max {max(te):.4f})" if len(te) > 1 else ""
        print(f"{res['dataset']['name']}: train accuracy {res['train_accuracy']:.4f}, "
              f"test accuracy {res['test_accuracy']:.4f}{spread}")
        print(f"{res['examples']} example-networks in {res['seconds']:.2f} s "
              f"({res['examples_per_second']:.0f}/s)")
        print(_diagnostics_line(res))
        if args.out:
            print(f"wrote {args.out}/results.json")
    return 0


def cmd_learn_rule(args) -> int:
    import torch

    from .metatrain import learn_rule
    from .runner import resolve_device
    resolve_device(args.device)
    if args.device != "cpu":
        raise MetaplasticError("learn-rule runs on the CPU for now (--device cpu)")
    from .metatrain import default_run_dir, earlier_run_files
    _check_out_file(args.out)
    run_dir = args.run_dir or default_run_dir(args.out)
    flag = f"--run-dir {run_dir}" if args.run_dir else f"run folder {run_dir} (from --out; --run-dir sets another)"
    try:
        _check_out_dir(run_dir)
    except MetaplasticError as e:  # name the flag that chose the run folder
        raise MetaplasticError(str(e).replace(f"--out {run_dir}", flag)) from None
    if not args.resume and earlier_run_files(run_dir):  # never mix two runs' checkpoints and curves
        raise MetaplasticError(f"{flag}: holds an earlier run ({', '.join(earlier_run_files(run_dir))}); "
                               "pass --resume to continue it, or choose another --out or --run-dir")
    if args.backend is not None:
        from .compiled import set_default_backend
        set_default_backend(args.backend)
    if args.threads:
        torch.set_num_threads(args.threads)
    res = learn_rule(learn_rule_config(args), args.out, run_dir=args.run_dir, resume=args.resume,
                     progress=not args.no_progress)
    _print_warnings(res)
    if args.json:
        print(json.dumps(_finite_json(res), allow_nan=False))
    else:
        print(f"final meta-loss {res['final_loss']:.4f}; a network trained with the learned rule: "
              f"train accuracy {res['train_accuracy']:.4f}, test accuracy {res['test_accuracy']:.4f}")
        print(_diagnostics_line(res))
        print(f"wrote {res['rule_file']} and {res['run_dir']}/ (curve.csv, results.json)")
    return 0


def learn_rule_config(args):
    """The :class:`~metaplastic.metatrain.MetaConfig` that ``learn-rule``'s flags ask for."""
    from .metatrain import MetaConfig
    sem = _semantics(args)
    return MetaConfig(dataset=args.dataset, n_train=args.n_train, n_test=args.n_test,
                      vertices=args.vertices, cap=args.cap, rounds=args.rounds, p=args.p,
                      input_weights=args.input_weights, recurrence=sem["recurrence"], firing=sem["firing"],
                      meta_loss_on=sem["meta_loss_on"], learn=args.learn, rule_kind=args.rule_kind,
                      output_rule_kind=args.output_rule_kind,
                      mode=args.mode, hidden=args.hidden, eta=args.eta, init_scale=args.init_scale,
                      output_rule=args.output_rule, graph_rule=args.graph_rule, batch=args.batch,
                      eval_on=args.eval_on, loss=args.loss, steps=args.steps,
                      tasks_per_step=args.tasks_per_step, lr=args.lr, weight_decay=args.weight_decay,
                      estimator=args.estimator, es_population=args.es_population,
                      es_sigma=args.es_sigma, update_on=args.update_on, output_rows=args.output_rows,
                      output_input=sem["output_input"], resample_graphs=not args.fixed_graphs,
                      seed=args.seed, dtype=args.dtype, device=args.device,
                      checkpoint_every=args.checkpoint_every, final_networks=args.final_networks,
                      data_dir=args.data_dir, n_classes=args.n_classes)


def _check_matplotlib() -> None:
    """Every section draws figures: say how to get matplotlib before any work, not after."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MetaplasticError("reproduce draws its figures with matplotlib, which is not installed: "
                               "pip install 'matplotlib>=3.7' (or reinstall metaplastic, which "
                               "depends on it)") from None


def cmd_reproduce(args) -> int:
    import time
    from pathlib import Path

    import torch

    from .reproduce import SECTIONS, section_module
    from .reproduce.common import write_report
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else Path("runs") / f"reproduce-{args.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (args.jobs or args.resume) and args.name != "all":
        raise MetaplasticError("--jobs and --resume apply to 'reproduce all' only")
    if (args.workers or args.scheduler) and (args.name not in CELL_SECTIONS + ("all",) or args.plot_only):
        raise MetaplasticError(f"--workers and --scheduler apply to the sections {', '.join(CELL_SECTIONS)} "
                               "and to all (passed on to those), not to --plot-only")
    _check_models(args)
    _check_matplotlib()
    if args.backend is not None:  # the sections (and the worker processes of 'all') inherit it
        from .compiled import set_default_backend
        set_default_backend(args.backend)
    if args.name == "all" and not args.plot_only:
        from .reproduce.runall import run_all
        rc = run_all(out, quick=args.quick, jobs=args.jobs, threads=args.threads, resume=args.resume,
                     workers=args.workers, scheduler=args.scheduler)
        print(f"wrote {out}/REPORT.md")
        return rc
    sem = _reproduce_semantics(args)
    names = list(SECTIONS) if args.name == "all" else [args.name]
    for name in names:
        sec_out = out / name if args.name == "all" else out
        mod = section_module(name)
        res = _redraw_section(mod, sec_out) if args.plot_only else _run_section(args, name, mod, sec_out, sem)
        write_report(sec_out, res["report"])
    if args.name == "all":  # --plot-only: redraw every section, keep the combined report's timing table
        _redraw_combined(out, names, args.quick)
    print(f"wrote {out}/REPORT.md")
    return 0


def _check_models(args) -> None:
    """``reproduce --models``: the robustness section's models, checked before any work."""
    if args.models is None:
        return
    if args.name != "robustness" or args.plot_only:
        raise MetaplasticError("--models applies to 'reproduce robustness' only (not to --plot-only)")
    from .robustness import SELECTABLE
    bad = [m for m in args.models if m not in SELECTABLE]
    if bad:
        raise MetaplasticError(f"--models: unknown model {bad[0]!r}; choose from {', '.join(SELECTABLE)}")


def _reproduce_semantics(args):
    """The semantics ``reproduce`` flags ask for, or None (the paper's text); an error where the
    section does not take them."""
    from .reproduce import SECTIONS, section_module
    sem_asked = args.paper_code or args.recurrence is not None or args.firing is not None
    sem = None
    if sem_asked:  # sections train with rules and schemes of their own: the preset's four settings
        from .semantics import resolve
        sem = resolve(args.paper_code, {"recurrence": args.recurrence, "firing": args.firing,
                                        "output_input": None, "meta_loss_on": None})
    if sem_asked and not args.plot_only:  # sections that train networks take the semantics
        import inspect
        if args.name == "all" or "semantics" not in inspect.signature(section_module(args.name).run).parameters:
            takes = [n for n in SECTIONS if "semantics" in inspect.signature(section_module(n).run).parameters]
            raise MetaplasticError(f"reproduce {args.name} runs under the paper's text only; the semantics "
                                   f"flags apply to {', '.join(takes) or 'no section yet'}")
    return sem


def _redraw_section(mod, sec_out) -> dict:
    """``--plot-only``: the section's saved results, its figures drawn again and its report."""
    res_path = sec_out / "results.json"
    if not res_path.is_file():
        raise MetaplasticError(f"--plot-only: no results at {res_path}; run the section first")
    res = json.loads(res_path.read_text())
    mod.plot(res, sec_out)
    res["report"] = mod.report(res) if hasattr(mod, "report") else ""
    return res


def _run_section(args, name, mod, sec_out, sem) -> dict:
    """Run one section (on the executor ``--workers``/``--scheduler`` ask for)."""
    import time
    t0 = time.perf_counter()
    print(f"[reproduce] {name} -> {sec_out}", file=sys.stderr)
    from .sweep.executor import make_executor, using
    with using(make_executor(args.workers, args.scheduler)) as ex:
        try:
            kw = {} if sem is None else {"semantics": sem}
            if getattr(args, "models", None):
                kw["models"] = list(args.models)
            res = mod.run(sec_out, quick=args.quick, **kw)
        finally:
            ex.close()
    print(f"[reproduce] {name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return res


def _redraw_combined(out, names, quick) -> None:
    """``reproduce all --plot-only``: the combined report, keeping the earlier run's timing table."""
    from .reproduce.runall import write_combined
    timing = {}
    if (out / "timing.json").is_file():
        timing = json.loads((out / "timing.json").read_text())
    write_combined(out, names, timing.get("sections", {n: {"status": "ok"} for n in names}),
                   timing.get("wall_seconds", 0.0), timing.get("jobs", 1), timing.get("threads", 1),
                   timing.get("quick", quick))


def cmd_data(args) -> int:
    from . import data
    if args.data_command == "fetch":
        mirror = None if args.base_url is None else {n: args.base_url for n in args.names}
        rows = data.fetch(tuple(args.names), root=args.data_dir, base_urls=mirror)
        for r in rows:
            print(f"{r.get('status', '?'):8s} {r.get('path', '')}")
        return 0
    if args.data_command == "verify":
        rows = data.verify(args.data_dir)
        if args.json:
            print(json.dumps(rows))
        else:
            for r in rows:
                note = f"  ({r['note']})" if r.get("note") else ""
                print(f"{r['status']:8s} {r['dataset']}/{r['file']}{note}")
        return 0 if all(r["status"] == "ok" for r in rows) else 1
    print("usage: metaplastic data {fetch,verify}", file=sys.stderr)
    return 2


def cmd_attack(args) -> int:
    import time

    import torch

    from . import attacks, robustness
    from .data import load_dataset
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.eps >= 0:
        raise MetaplasticError(f"--eps must be >= 0, got {args.eps}")
    if args.attack not in attacks.ATTACKS + ("all",):
        raise MetaplasticError(f"unknown attack {args.attack!r}; choose from {', '.join(attacks.ATTACKS)}, all")
    _check_attack_memory(args)
    model, cfg = _load_attacked(args.model)
    have = _check_attack_semantics(args, model)
    source = _load_attacked(args.source)[0] if args.source else None
    if args.attack == "transfer" and source is None:
        raise MetaplasticError("--attack transfer needs --source RUN_DIR (the model to craft the inputs on)")
    n_test = int(cfg.get("n_test", args.n_images))
    if args.n_images > n_test:
        raise MetaplasticError(f"--n-images {args.n_images} exceeds the {n_test} test images of {args.model}")
    data = load_dataset(cfg.get("dataset", "mnist"), n_train=int(cfg.get("n_train", 10000)), n_test=n_test,
                        seed=int(cfg.get("seed", 0)), data_dir=args.data_dir or cfg.get("data_dir"),
                        n_classes=cfg.get("n_classes"))
    x, y = data.x_test[:args.n_images], data.y_test[:args.n_images]
    t0 = time.perf_counter()
    correct = attacks.predict(model, x) == y
    out = {"model": str(args.model), "attack": args.attack, "eps": args.eps, "n": int(x.shape[0]),
           "clean_accuracy": float(correct.double().mean()), "semantics": have}
    robust = _robust_count(args, model, x, y, correct, source, out)
    out["robust_accuracy"] = robust / max(out["n"], 1)
    out["wilson95"] = list(robustness.wilson(robust, out["n"]))
    out["seconds"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(_finite_json(out), allow_nan=False))
    else:
        lo, hi = out["wilson95"]
        print(f"{args.attack} at eps={args.eps:g}: robust accuracy {out['robust_accuracy']:.4f} "
              f"[{lo:.4f}, {hi:.4f}] (clean {out['clean_accuracy']:.4f}, {out['n']} images, "
              f"{out['seconds']:.1f} s)")
    return 0


def _load_attacked(d):
    """The network saved in RUN_DIR ``d`` and its config.json (empty where there is none)."""
    from pathlib import Path

    from . import robustness
    d = Path(d)
    model = robustness.load_model(d)
    cfg_p = d / "config.json"
    cfg = json.loads(cfg_p.read_text()) if cfg_p.is_file() else {}
    return model, cfg


def _check_attack_memory(args) -> None:
    """An error before loading anything where the attack would not fit in memory."""
    from .memory import attack_estimate, check, saved_networks
    info, src = saved_networks(args.model), saved_networks(args.source) if args.source else None
    if info is not None:
        check(attack_estimate(model_bytes=info["bytes"], members=info["members"], V=info["V"],
                              T=info["T"], E=info["E"], source_bytes=src["bytes"] if src else 0,
                              n_images=args.n_images), "use fewer --n-images or a machine with more memory")


def _check_attack_semantics(args, model) -> dict:
    """The semantics the model was trained under; an error where the flags ask for others."""
    mc = getattr(model, "config", None)
    have = {"recurrence": getattr(mc, "recurrence", "wh+ax"), "firing": getattr(mc, "firing", "nonzero")}
    if args.paper_code or args.recurrence is not None or args.firing is not None:
        want = _semantics(args)
        if want != have:
            raise MetaplasticError(f"{args.model} was trained under recurrence={have['recurrence']}, "
                                   f"firing={have['firing']} (its saved config), not "
                                   f"recurrence={want['recurrence']}, firing={want['firing']}")
    return have


def _robust_count(args, model, x, y, correct, source, out: dict) -> int:
    """How many of the images stay correctly classified under ``--attack`` at ``--eps``; the
    attack's own figures go into ``out``."""
    import torch

    from . import attacks, robustness
    if args.attack == "all":
        if args.eps == 0:
            return int(correct.sum())
        proto = robustness.Protocol(eps=(args.eps,), per_attack_images=0, scale_factors=())
        res = robustness.evaluate(model, x, y, proto, source=source, seed=args.seed, standalone=False,
                                  eps0=False, fig_images=0)
        out["broken_by"] = res["broken_by"]
        out["masking"] = res["masking"]
        return res["curves"]["worst"]["robust"][0]
    idx = correct.nonzero()[:, 0]
    r = attacks.run_attack(args.attack, model, x[idx], y[idx], args.eps,
                           generator=torch.Generator().manual_seed(args.seed), source=source,
                           reference=x, reference_pred=attacks.predict(model, x))
    out.update(grads=r.grads, queries=r.queries, zero_grads=r.zero_grads,
               stats={k: v for k, v in r.stats.items() if not isinstance(v, torch.Tensor)})
    return int(idx.numel() - int(r.success.sum()))


COMMANDS = {"attack": cmd_attack, "train": cmd_train, "learn-rule": cmd_learn_rule, "reproduce": cmd_reproduce,
            "data": cmd_data, "sweep": cmd_sweep}


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=None):
    """Our warnings (degenerate data or results, semantics mismatches) as one line
    ``warning: ...`` on stderr; others as Python prints them."""
    if category.__module__.startswith("metaplastic"):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv=None) -> int:
    import functools
    import warnings
    if not isinstance(warnings.showwarning, functools.partial):
        warnings.showwarning = functools.partial(_show_warning, _default=warnings.showwarning)
    ap = build_parser()
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:  # usage error (2), --help or --version (0)
        return e.code if isinstance(e.code, int) else 0
    if args.command is None:
        ap.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except TrainingDiverged as e:  # non-finite weights or meta-loss: nothing written (exit 3)
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except MetaplasticError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. --out on a full or read-only disk
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"error:{where} {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
