"""Checks on ``--out`` before any work: a folder or a file that can be written, no earlier run
overwritten silently."""

from __future__ import annotations


from ..errors import MetaplasticError


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


def _check_no_earlier_train(out, overwrite: bool) -> None:
    """``train --out DIR`` over an earlier run's files: an error before training, unless --overwrite."""
    from pathlib import Path

    from ..runner import earlier_train_files
    found = earlier_train_files(Path(out).expanduser())
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
