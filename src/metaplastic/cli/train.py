"""``metaplastic train`` and ``metaplastic learn-rule``."""

from __future__ import annotations

import json
import sys

from ..errors import MetaplasticError
from .args import _semantics
from .outputs import _check_no_earlier_train, _check_out_dir, _check_out_file


def _finite_json(obj):
    """Non-finite floats as null, so ``--json`` output is strict JSON (metaplastic.io.finite_json)."""
    from ..io import finite_json
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
    from ..runner import TrainJob, run_train
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

    from ..metatrain import learn_rule
    from ..runner import resolve_device
    resolve_device(args.device)
    if args.device != "cpu":
        raise MetaplasticError("learn-rule runs on the CPU for now (--device cpu)")
    from ..metatrain import default_run_dir, earlier_run_files
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
        from ..compiled import set_default_backend
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
    from ..metatrain import MetaConfig
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
