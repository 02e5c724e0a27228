"""Files: rule files (JSON with a checksum), atomic writes, saved networks.

Rule file format (``"format": "metaplastic-rule", "version": 1``)::

    kind        "graph" | "output"
    rounds      T
    bit_order   "first-round-msb" (see metaplastic.rules)
    mode        "additive" | "multiplicative"
    eta         step size
    param_kind  "table" | "mlp"
    parameters  table: {"values": [[...]]} in the linear domain (log factors
                for a multiplicative rule); mlp: {"hidden", "w1", "b1", "w2", "b2"}
    table       the materialized table a person reads (increments, or factors
                for a multiplicative rule), rows indexed by firing word
    meta        free-form provenance (command, dataset, ...); ``meta.semantics``
                records the semantics the rule was learned under
                (recurrence, firing, output_input, meta_loss_on; see
                metaplastic.semantics).  A file without it was made before the
                switches existed: the paper's text (output_input from
                ``meta.config`` where present).  Loaded rules carry it as
                ``rule.made_under`` (None for the classic rules).
    sha256      SHA-256 of the canonical JSON of every other field

Floats are written with Python's shortest round-trip repr, so a rule loads
back bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import torch

from .errors import MetaplasticError
from .rules import (BIT_ORDER, MLPRule, Rule, TableRule, check_rounds, hebb_rule,
                    perceptron_rule, winnow_rule)

FORMAT = "metaplastic-rule"
VERSION = 1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def _replacing(path):
    """A temporary file beside ``path`` (with the usual mode) to write into: it replaces ``path``
    when the block ends, and is removed when the block raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    """Write a file so that a crash leaves either the old or the new content."""
    with _replacing(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def atomic_torch_save(obj, path) -> None:
    """``torch.save`` so that a crash leaves either the old or the new file."""
    with _replacing(path) as tmp:
        torch.save(obj, tmp)


def write_json(path, obj, sort_keys: bool = True) -> None:
    """Atomically write ``obj`` as indented JSON (keys sorted unless ``sort_keys=False``, which keeps
    insertion order: results whose order means something, like a table's rows)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")


def finite_json(obj):
    """``obj`` as strict JSON data (``json.dumps(..., allow_nan=False)`` takes it): non-finite
    floats as null, keys and values of other types (paths, ...) as strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


def read_json(path) -> dict | None:
    """A JSON file written earlier (results, cell records, partial runs), or None when it
    is missing or unreadable (a file cut short by a crash is then simply redone)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def _canonical(doc: dict) -> bytes:
    body = {k: v for k, v in doc.items() if k != "sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _tolist(t: torch.Tensor):
    return t.detach().to(torch.float64).cpu().tolist()


def rule_to_dict(rule: Rule, meta: dict | None = None) -> dict:
    if isinstance(rule, TableRule):
        params = {"values": _tolist(rule.values)}
    elif isinstance(rule, MLPRule):
        params = {"hidden": rule.hidden, "w1": _tolist(rule.w1), "b1": _tolist(rule.b1),
                  "w2": _tolist(rule.w2), "b2": _tolist(rule.b2)}
    else:
        raise MetaplasticError(f"cannot save a rule of type {type(rule).__name__}")
    if not all(torch.isfinite(p).all() for p in rule.parameters()):
        raise MetaplasticError(f"cannot save the {rule.kind} rule: it has non-finite parameters "
                               "(NaN or infinity; training diverged?)")
    doc = {"format": FORMAT, "version": VERSION, "kind": rule.kind, "rounds": rule.rounds,
           "bit_order": BIT_ORDER, "mode": rule.mode, "eta": rule.eta,
           "param_kind": rule.param_kind, "parameters": params,
           "table": _tolist(rule.factors()), "meta": meta or {}}
    doc["sha256"] = hashlib.sha256(_canonical(doc)).hexdigest()
    return doc


def save_rule(rule: Rule, path, meta: dict | None = None) -> dict:
    doc = rule_to_dict(rule, meta)
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return doc


def rule_from_dict(doc: dict, where: str = "rule", dtype=torch.float32) -> Rule:
    """The rule a parsed rule file describes; every problem is a :class:`MetaplasticError`
    whose message starts with ``where`` (the file)."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise MetaplasticError(f"{where}: not a metaplastic rule file (no \"format\": \"{FORMAT}\")")
    if doc.get("version") != VERSION:
        raise MetaplasticError(f"{where}: unsupported rule file version {doc.get('version')!r}")
    if "sha256" in doc and hashlib.sha256(_canonical(doc)).hexdigest() != doc["sha256"]:
        raise MetaplasticError(f"{where}: checksum mismatch: the file was edited or damaged "
                               "(remove the sha256 field to accept a hand-edited rule)")
    if doc.get("bit_order", BIT_ORDER) != BIT_ORDER:
        raise MetaplasticError(f"{where}: bit order {doc.get('bit_order')!r} is not {BIT_ORDER!r}")
    try:
        rule = _build_rule(doc, where, dtype)
    except KeyError as e:
        raise MetaplasticError(f"{where}: missing field {e.args[0]!r}") from None
    except MetaplasticError as e:
        msg = str(e)
        raise MetaplasticError(msg if msg.startswith(f"{where}:") else f"{where}: {msg}") from None
    except (TypeError, ValueError, RuntimeError) as e:
        raise MetaplasticError(f"{where}: malformed rule file ({e})") from None
    if "table" in doc:
        # the table a person reads must agree with the parameters the rule is
        # built from: a hand edit of only the table would otherwise be ignored
        try:
            table = torch.tensor(doc["table"], dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as e:
            raise MetaplasticError(f"{where}: malformed table field ({e})") from None
        with torch.no_grad():
            own = rule.factors().to(torch.float64)
        if table.shape != own.shape or not torch.allclose(table, own, rtol=1e-4, atol=1e-6):
            raise MetaplasticError(
                f"{where}: the table field does not match the rule's parameters; edit "
                "parameters (the table is derived from them), or remove the table field")
    rule.made_under = made_under(doc.get("meta"))
    return rule


def made_under(meta) -> dict:
    """The semantics record of a rule file's ``meta`` (see the module docstring)."""
    from .semantics import TEXT
    meta = meta if isinstance(meta, dict) else {}
    rec = meta.get("semantics")
    if isinstance(rec, dict):
        return {k: v for k, v in rec.items() if k in TEXT}
    rec = {"recurrence": TEXT["recurrence"], "firing": TEXT["firing"]}
    cfg = meta.get("config")
    if isinstance(cfg, dict) and cfg.get("output_input") in ("value", "bit"):
        rec["output_input"] = cfg["output_input"]
    return rec


def _build_rule(doc: dict, where: str, dtype) -> Rule:
    kind, rounds, mode, eta = doc["kind"], doc["rounds"], doc["mode"], doc["eta"]
    check_rounds(rounds)
    params = doc["parameters"]
    if not isinstance(params, dict):
        raise MetaplasticError(f"parameters must be an object, got {type(params).__name__}")
    if doc["param_kind"] == "table":
        values = torch.tensor(params["values"], dtype=dtype)
        return TableRule(kind, rounds, mode, eta, values=values, dtype=dtype)
    if doc["param_kind"] == "mlp":
        rule = MLPRule(kind, rounds, mode, eta, hidden=params["hidden"], dtype=dtype)
        with torch.no_grad():
            for name in ("w1", "b1", "w2", "b2"):
                value = torch.tensor(params[name], dtype=dtype)
                target = getattr(rule, name)
                if value.shape != target.shape:
                    raise MetaplasticError(f"MLP parameter {name} has shape "
                                           f"{tuple(value.shape)}, expected {tuple(target.shape)}")
                if not torch.isfinite(value).all():
                    raise MetaplasticError(f"MLP parameter {name} has non-finite entries")
                target.copy_(value)
        return rule
    raise MetaplasticError(f"unknown param_kind {doc['param_kind']!r} (expected 'table' or 'mlp')")


def load_rule(path, dtype=torch.float32, kind: str | None = None) -> Rule:
    path = Path(path)
    if not path.exists():
        raise MetaplasticError(f"rule file {path} does not exist")
    if not path.is_file():
        raise MetaplasticError(f"rule file {path} is not a file")
    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        raise MetaplasticError(f"cannot read rule file {path} ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise MetaplasticError(f"rule file {path} is not valid JSON ({e})") from None
    if isinstance(doc, dict) and doc.get("format") == RULESET_FORMAT:
        return _rule_from_ruleset(doc, str(path), kind, dtype)
    return rule_from_dict(doc, str(path), dtype)


# ---------------------------------------------------------------------------
# Rule sets: the rules learned together (output and graph) in one file, as
# ``metaplastic learn-rule --out`` writes them.  ``--output-rule FILE`` and
# ``--graph-rule FILE`` take the rule of their kind from a rule set.
# ---------------------------------------------------------------------------

RULESET_FORMAT = "metaplastic-ruleset"


def save_ruleset(path, rules: dict, meta: dict | None = None) -> dict:
    """Write ``{"output": Rule, "graph": Rule | None}`` as one checksummed file."""
    doc = {"format": RULESET_FORMAT, "version": VERSION,
           "rules": {k: None if r is None else rule_to_dict(r) for k, r in rules.items()},
           "meta": meta or {}}
    doc["sha256"] = hashlib.sha256(_canonical(doc)).hexdigest()
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return doc


def _rule_from_ruleset(doc: dict, where: str, kind: str | None, dtype) -> Rule:
    if doc.get("version") != VERSION:
        raise MetaplasticError(f"{where}: unsupported rule set version {doc.get('version')!r}")
    if "sha256" in doc and hashlib.sha256(_canonical(doc)).hexdigest() != doc["sha256"]:
        raise MetaplasticError(f"{where}: checksum mismatch: the file was edited or damaged")
    rules = doc.get("rules")
    if not isinstance(rules, dict):
        raise MetaplasticError(f"{where}: rule set without a \"rules\" object")
    present = [k for k, v in rules.items() if v is not None]
    if kind is None:
        if len(present) != 1:
            raise MetaplasticError(f"{where}: a rule set with rules {present}; say which kind")
        kind = present[0]
    if rules.get(kind) is None:
        raise MetaplasticError(f"{where}: the rule set has no {kind} rule (it has {present})")
    rule = rule_from_dict(rules[kind], f"{where} [{kind}]", dtype)
    own = rules[kind].get("meta") if isinstance(rules[kind], dict) else None
    if not (isinstance(own, dict) and "semantics" in own):  # the set's record speaks for its rules
        rule.made_under = made_under(doc.get("meta"))
    return rule


# ---------------------------------------------------------------------------
# Classic rules shipped inside the package (metaplastic/classic/*.json).
# ---------------------------------------------------------------------------

CLASSIC_BUILDERS = {"perceptron": perceptron_rule, "winnow": winnow_rule, "hebb": hebb_rule}
SHIPPED_ROUNDS = {"perceptron": (1, 2, 3), "winnow": (1, 2, 3), "hebb": (2, 3)}


def classic_filename(name: str, rounds: int) -> str:
    return f"{name}-T{rounds}.json"


def classic_rule(name: str, rounds: int, eta: float = 1e-2, dtype=torch.float32) -> Rule:
    """A classic rule: from the shipped file when there is one, else built."""
    if name not in CLASSIC_BUILDERS:
        raise MetaplasticError(f"unknown classic rule {name!r}; choose from {sorted(CLASSIC_BUILDERS)}")
    if name == "hebb" and rounds < 2:
        raise MetaplasticError("a graph rule needs T >= 2 (at T = 1 the graph never influences the output)")
    fname = classic_filename(name, rounds)
    ref = resources.files("metaplastic").joinpath("classic", fname)
    if ref.is_file():
        rule = rule_from_dict(json.loads(ref.read_text()), f"shipped {fname}", dtype)
    else:
        rule = CLASSIC_BUILDERS[name](rounds, dtype=dtype)
    rule.eta = float(eta)
    rule.made_under = None  # written by hand, not learned: no semantics of its own
    return rule


def resolve_rule(spec: str, kind: str, rounds: int, eta: float | None, dtype=torch.float32,
                 semantics: dict | None = None):
    """A rule from a CLI spec: a classic name or a rule file path.

    ``semantics`` (the settings the rule will be used under, see
    :mod:`metaplastic.semantics`): warn when the rule was learned under others.
    """
    if spec in CLASSIC_BUILDERS:
        rule = classic_rule(spec, rounds, 1e-2 if eta is None else eta, dtype)
    else:
        rule = load_rule(spec, dtype, kind=kind)
        if eta is not None:
            rule.eta = float(eta)
    if rule.kind != kind:
        a = {"graph": "a graph", "output": "an output"}
        raise MetaplasticError(f"{spec} is {a[rule.kind]} rule, but {a.get(kind, kind)} rule is "
                               "needed here")
    if rule.rounds != rounds:
        raise MetaplasticError(f"{spec} is a rule for T={rule.rounds}, but the network has T={rounds}")
    if semantics is not None:
        from .semantics import check_rule
        check_rule(rule, semantics, f"the {kind} rule {spec}")
    return rule
