"""The argument parser: one function per subcommand."""

from __future__ import annotations

import argparse

from ..sweep.cli import add_parser as add_sweep_parser
from .args import (_Parser, _finite, _int, _positive_int, add_backend_arg, add_data_args, add_network_args,
                   add_scheme_args, add_semantics_args)


def build_parser() -> argparse.ArgumentParser:
    from . import __doc__ as top  # the package docstring's first paragraph
    ap = _Parser(prog="metaplastic", description=top.split("\n\n")[0].replace("``", ""))
    from .. import __version__
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
    from ..reproduce import SECTIONS
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
