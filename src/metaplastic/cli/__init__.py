"""The ``metaplastic`` command line.

    metaplastic train [flags]        train simple RNNs with plasticity rules (or GD)
    metaplastic learn-rule [flags]   learn a graph and/or output rule by gradient descent
    metaplastic reproduce NAME|all   rerun a figure, table or theory check of the paper
    metaplastic attack [flags]       robust accuracy of a saved network under one L2 attack
    metaplastic sweep GRID.toml      a grid of runs, serial or on Dask
    metaplastic data fetch|verify    get / check MNIST and Fashion-MNIST

Errors in the user's input print one line ``error: ...`` and exit with 2.  Modules: :mod:`.args`
(argument types, shared flag groups), :mod:`.parsers` (one parser per subcommand),
:mod:`.outputs` (``--out`` checks), and one module per command family (:mod:`.train`,
:mod:`.reproduce`, :mod:`.attack`; ``sweep`` lives in :mod:`metaplastic.sweep.cli`).
"""

from __future__ import annotations

import sys

from ..errors import EXIT_DIVERGED, MetaplasticError, TrainingDiverged
from ..sweep.cli import cmd_sweep
# the subcommands' modules; the names below stay importable from metaplastic.cli
from .args import _int, _positive_int, add_backend_arg, add_semantics_args
from .attack import cmd_attack, cmd_data
from .outputs import _check_out_dir
from .parsers import build_parser
from .reproduce import cmd_reproduce
from .train import cmd_learn_rule, cmd_train, learn_rule_config

__all__ = ["COMMANDS", "_check_out_dir", "_int", "_positive_int", "add_backend_arg", "add_semantics_args",
           "build_parser", "cmd_attack", "cmd_data", "cmd_learn_rule", "cmd_reproduce", "cmd_sweep", "cmd_train",
           "learn_rule_config", "main"]


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
