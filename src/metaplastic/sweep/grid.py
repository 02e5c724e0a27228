"""Grid files: a command, a base configuration and axes, as TOML (``metaplastic sweep``).

::

    command = "train"              # train | learn-rule | attack

    [base]                         # the command's options (its dataclass fields,
    dataset = "halfspace"          #  with - or _: n-train or n_train)
    n_train = 500

    [axes]                         # lists, crossed (the last axis varies fastest)
    vertices = [40, 80]
    seed = [0, 1, 2]

    [[cells]]                      # optional: explicit cells (each crossed with the axes)
    output_rule = "perceptron"
    [[cells]]
    output_rule = "winnow"

A cell's configuration is the command's defaults, then ``base``, then its
cell entry, then its axis values.  Every cell is checked before anything runs
(:func:`validate_cell`); a cell with a bad value is reported as failed with
its error and the others run.  Problems with the file itself (unknown
command, unknown option, an axis that is not a non-empty list) stop the sweep
with one ``error:`` line.

A cell's key is the SHA-256 of its full resolved configuration, the command,
the package version and the SHA-256 of every file it names (rule files, .npz
datasets, attacked models): the name of its result file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import MetaplasticError

COMMANDS = ("train", "learn-rule", "attack")
#: Options that change how a cell runs, not what it computes: left out of its key.
EXECUTION_ONLY = {"threads", "checkpoint_every"}


@dataclass
class AttackJob:
    """The options of ``metaplastic attack`` as a configuration."""

    model: str = ""
    attack: str = "paper"
    eps: float = 1.0
    n_images: int = 1000
    source: str | None = None
    seed: int = 0
    data_dir: str | None = None
    threads: int | None = None

    def validate(self) -> None:
        from ..attacks import ATTACKS
        if not self.model:
            raise MetaplasticError("attack: model (a RUN_DIR written by `metaplastic train --out`) is required")
        if not (Path(self.model) / "networks.pt").is_file():
            raise MetaplasticError(f"model {self.model}: no networks.pt there")
        if self.attack not in ATTACKS + ("all",):
            raise MetaplasticError(f"unknown attack {self.attack!r}; choose from {', '.join(ATTACKS)}, all")
        if not self.eps >= 0:
            raise MetaplasticError(f"eps must be >= 0, got {self.eps}")
        if self.attack == "transfer" and not self.source:
            raise MetaplasticError("attack transfer needs source (the model to craft the inputs on)")
        if self.source and not (Path(self.source) / "networks.pt").is_file():
            raise MetaplasticError(f"source {self.source}: no networks.pt there")


def job_class(command: str):
    if command == "train":
        from ..runner import TrainJob
        return TrainJob
    if command == "learn-rule":
        from ..metatrain import MetaConfig
        return MetaConfig
    if command == "attack":
        return AttackJob
    raise MetaplasticError(f"unknown command {command!r} in the grid; choose from {', '.join(COMMANDS)}")


@dataclass
class Cell:
    index: int
    command: str
    axes: dict                 # the varied values of this cell (axis name -> value)
    config: dict               # the full resolved configuration
    key: str = ""
    error: str | None = None   # set when the configuration is invalid

    def job(self):
        return job_class(self.command)(**self.config)


@dataclass
class Grid:
    command: str
    base: dict
    axes: dict
    cells: list = field(default_factory=list)
    path: str = ""

    @property
    def varied(self) -> list[str]:
        """The names of the varied options, in the file's order (cells' keys first)."""
        names = [k for c in self.cells for k in c]
        return list(dict.fromkeys(names + list(self.axes)))


def _load_toml(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise MetaplasticError("reading grid files on Python 3.10 needs tomli: "
                                   "pip install 'metaplastic[dask]' (or pip install tomli)") from None
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise MetaplasticError(f"grid file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise MetaplasticError(f"grid file {path}: not valid TOML ({e})") from None


def _norm(d, where: str, names: set, command: str) -> dict:
    if not isinstance(d, dict):
        raise MetaplasticError(f"{where} must be a table of options")
    out = {}
    for k, v in d.items():
        key = k.replace("-", "_")
        if command == "learn-rule" and key == "fixed_graphs":  # the CLI flag's name
            key, v = "resample_graphs", not v if isinstance(v, bool) else v
        if key not in names:
            raise MetaplasticError(f"{where}: unknown option {k!r} for {command} "
                                   f"(options: {', '.join(sorted(names))})")
        out[key] = v
    return out


def load_grid(path) -> Grid:
    path = Path(path)
    doc = _load_toml(path)
    unknown = set(doc) - {"command", "base", "axes", "cells"}
    if unknown:
        raise MetaplasticError(f"grid file {path}: unknown top-level entries {sorted(unknown)} "
                               "(expected command, base, axes, cells)")
    command = doc.get("command")
    if command not in COMMANDS:
        raise MetaplasticError(f"grid file {path}: command must be one of {', '.join(COMMANDS)}, got {command!r}")
    names = {f.name for f in fields(job_class(command))}
    base = _norm(doc.get("base", {}), f"{path} [base]", names, command)
    axes = _norm(doc.get("axes", {}), f"{path} [axes]", names, command)
    for k, v in axes.items():
        if not isinstance(v, list) or not v:
            raise MetaplasticError(f"{path} [axes] {k}: expected a non-empty list of values, got {v!r}")
        if len({json.dumps(x, sort_keys=True) for x in v}) != len(v):
            raise MetaplasticError(f"{path} [axes] {k}: a value appears twice")
    cells = doc.get("cells", [])
    if not isinstance(cells, list):
        raise MetaplasticError(f"{path}: cells must be an array of tables ([[cells]])")
    cells = [_norm(c, f"{path} [[cells]] #{i + 1}", names, command) for i, c in enumerate(cells)]
    for c in cells:
        clash = set(c) & set(axes)
        if clash:
            raise MetaplasticError(f"{path}: {sorted(clash)} both in [axes] and in a [[cells]] entry")
    return Grid(command, base, axes, cells, str(path))


def expand(grid: Grid) -> list[Cell]:
    """Every cell of the grid, in order, with its configuration resolved, checked and keyed."""
    cls = job_class(grid.command)
    defaults = asdict(cls())
    entries = grid.cells or [{}]
    names = list(grid.axes)
    out = []
    for entry in entries:
        for values in itertools.product(*(grid.axes[n] for n in names)):
            varied = {**entry, **dict(zip(names, values))}
            config = {**defaults, **grid.base, **varied}
            cell = Cell(len(out), grid.command, {k: varied.get(k) for k in grid.varied}, config)
            cell.error = validate_cell(cell)
            cell.key = cell_key(cell)
            out.append(cell)
    keys = [c.key for c in out]
    if len(set(keys)) != len(keys):
        raise MetaplasticError(f"{grid.path}: two cells have the same configuration (a repeated entry in [[cells]]?)")
    return out


def _type_error(cls, config: dict) -> str | None:
    """A value of the wrong type for its option (the dataclass's annotation), as a message."""
    kinds = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
    for f in fields(cls):
        v = config.get(f.name)
        ann = str(f.type).replace(" ", "")
        optional = "None" in ann
        if v is None:
            if optional:
                continue
            return f"{f.name} must not be empty"
        base = ann.split("|")[0]
        want = kinds.get(base)
        if want is None:
            continue
        if (isinstance(v, bool) and base != "bool") or not isinstance(v, want):
            return f"{f.name} must be {'an' if base == 'int' else 'a'} {base}, got {v!r}"
    return None


def validate_cell(cell: Cell) -> str | None:
    """The error message of a cell whose configuration cannot run, else None (cheap: no training)."""
    cls = job_class(cell.command)
    msg = _type_error(cls, cell.config)
    if msg:
        return msg
    try:
        job = cls(**cell.config)
        job.validate()
        if cell.command in ("train", "learn-rule"):
            _check_task(job, cell.command)
    except MetaplasticError as e:
        return str(e)
    return None


def _check_task(job, command: str) -> None:
    from .. import data
    from ..io import resolve_rule
    from ..network import NetworkConfig
    from ..runner import resolve_device, train_rules_of
    resolve_device(job.device)
    NetworkConfig(d=1, n_classes=2, vertices=job.vertices, cap=job.cap, rounds=job.rounds, p=job.p,
                  input_weights=job.input_weights)
    name = job.dataset.strip().lower().replace("_", "-")
    if name not in data.DATASET_NAMES and name not in data.SYNTHETIC and not (
            job.dataset.lower().endswith(".npz") or Path(job.dataset).is_file()):
        raise MetaplasticError(f"unknown dataset {job.dataset!r}; valid names: {', '.join(data.DATASET_NAMES)}, "
                               "or a path to an .npz file")
    if command == "train":  # the rules `metaplastic train` would resolve, with the same checks
        import torch
        train_rules_of(job, torch.float32, None)
    if command == "learn-rule":
        if job.learn == "graph":
            resolve_rule(job.output_rule, "output", job.rounds, job.eta)
        if job.learn == "output" and job.graph_rule != "none" and job.rounds > 1:
            resolve_rule(job.graph_rule, "graph", job.rounds, job.eta)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def named_files(config: dict) -> dict:
    """SHA-256 of every file a configuration names: rule files, .npz datasets, model folders."""
    out = {}
    for k, v in sorted(config.items()):
        if not isinstance(v, str) or k == "data_dir":
            continue
        p = Path(v).expanduser()
        try:
            if p.is_file():
                out[k] = file_digest(p)
            elif p.is_dir() and (p / "networks.pt").is_file():
                out[k] = {n: file_digest(p / n) for n in ("networks.pt", "config.json") if (p / n).is_file()}
        except OSError:
            pass
    return out


def cell_key(cell: Cell) -> str:
    from .. import __version__
    config = {k: v for k, v in cell.config.items() if k not in EXECUTION_ONLY}
    doc = {"command": cell.command, "config": config, "version": __version__,
           "files": named_files(cell.config)}
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]
