"""``metaplastic reproduce``: one section, or every section (``all``)."""

from __future__ import annotations

import json
import sys

from ..errors import MetaplasticError
from ..sweep.executor import CELL_SECTIONS


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

    from ..reproduce import SECTIONS, section_module
    from ..reproduce.common import write_report
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
        from ..compiled import set_default_backend
        set_default_backend(args.backend)
    if args.name == "all" and not args.plot_only:
        from ..reproduce.runall import run_all
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
    from ..robustness import SELECTABLE
    bad = [m for m in args.models if m not in SELECTABLE]
    if bad:
        raise MetaplasticError(f"--models: unknown model {bad[0]!r}; choose from {', '.join(SELECTABLE)}")


def _reproduce_semantics(args):
    """The semantics ``reproduce`` flags ask for, or None (the paper's text); an error where the
    section does not take them."""
    from ..reproduce import SECTIONS, section_module
    sem_asked = args.paper_code or args.recurrence is not None or args.firing is not None
    sem = None
    if sem_asked:  # sections train with rules and schemes of their own: the preset's four settings
        from ..semantics import resolve
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
    from ..sweep.executor import make_executor, using
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
    from ..reproduce.runall import write_combined
    timing = {}
    if (out / "timing.json").is_file():
        timing = json.loads((out / "timing.json").read_text())
    write_combined(out, names, timing.get("sections", {n: {"status": "ok"} for n in names}),
                   timing.get("wall_seconds", 0.0), timing.get("jobs", 1), timing.get("threads", 1),
                   timing.get("quick", quick))
