"""Argument types and the flag groups several commands share (network, semantics, data, scheme,
backend)."""

from __future__ import annotations

import argparse
import math


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
    from ..semantics import resolve
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
