"""The learned rules of the paper shipped in the repo's ``rules/`` folder (see rules/README.md)."""

from __future__ import annotations

import os
from pathlib import Path

from ..io import load_rule


def rules_dir() -> Path | None:
    env = os.environ.get("METAPLASTIC_RULES")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "rules"
        if (cand / "README.md").is_file():
            return cand
    return None


def load_shipped(name: str, kind: str):
    """Rule ``kind`` of the shipped rule set ``rules/NAME.json``, or None when absent."""
    d = rules_dir()
    if d is None or not (d / f"{name}.json").is_file():
        return None
    return load_rule(d / f"{name}.json", kind=kind)
