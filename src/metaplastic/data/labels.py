"""The classes of a user dataset (paper section 2: labels are 0..l-1, l the number of classes).

The number of classes sets the number of output rows, so a stray label must not
silently add classes.  Without a stated ``n_classes``, ``l`` is the largest
training label plus one and every class ``0..l-1`` must appear in the training
split; a class found only in the test split is an error.  A user who states
``n_classes = L`` (``--n-classes L``) gets labels checked against ``0..L-1`` in
both splits, and a class absent from the training split is then allowed, with
a warning (the networks cannot learn to predict it).
"""

from __future__ import annotations

import warnings

import torch

from metaplastic.errors import DataError

RARE_CLASS_FRACTION = 0.01
"""A training class with under this fraction of the median class's examples is warned about
(so is a class with a single example when the median class has at least 10)."""

STATE_HINT = "or state the number of classes (--n-classes L, load_dataset(..., n_classes=L))"


# warnings point at the caller of load_dataset: warn_absent <- _load_npz <- _load_any <- load_dataset
_USER_LEVEL = 5


class DataWarning(UserWarning):
    """Usable but degenerate data (a class without training examples, a suspiciously rare class)."""


def fmt_classes(classes: list[int], limit: int = 6) -> str:
    """``[3, 10, 11, ..., 4999]`` as ``"3, 10..4999"``: runs of consecutive classes collapsed."""
    runs: list[list[int]] = []
    for c in classes:
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    parts = [str(a) if a == b else (f"{a}, {b}" if b == a + 1 else f"{a}..{b}") for a, b in runs]
    if len(parts) > limit:
        parts = parts[: limit - 1] + [f"... ({len(classes)} in all)"]
    return ", ".join(parts)


def _plural(n: int) -> str:
    return "class" if n == 1 else "classes"


def _check_train_covers(counts: torch.Tensor, y_train: torch.Tensor, what: str) -> None:
    """Without a stated l: every class up to the largest training label has a training example."""
    absent = (counts == 0).nonzero().flatten().tolist()
    if not absent:
        return
    top = counts.numel() - 1
    where = int((y_train == top).nonzero()[0])
    raise DataError(
        f"{what}: y_train has labels up to {top} (first at index {where}) but {_plural(len(absent))} "
        f"{fmt_classes(absent)} never appear{'s' if len(absent) == 1 else ''} in it ({len(absent)} of "
        f"{top + 1}); labels must be "
        f"0..l-1 with every class in the training split: fix the stray label(s), remap them with "
        f"np.unique(y, return_inverse=True), {STATE_HINT}"
    )


def _check_test_within(y_test: torch.Tensor, n_classes: int, what: str) -> None:
    """Without a stated l: no test label beyond the training classes."""
    over = y_test >= n_classes
    if not bool(over.any()):
        return
    extra = torch.unique(y_test[over]).tolist()
    where = int(over.nonzero()[0])
    raise DataError(
        f"{what}: {_plural(len(extra))} {fmt_classes(extra)} appear{'s' if len(extra) == 1 else ''} "
        f"only in the test split (first at y_test index {where}; y_train has classes "
        f"0..{n_classes - 1}); every class must appear in the training split: fix the label(s) "
        f"{STATE_HINT}"
    )


def _warn_rare(counts: torch.Tensor, what: str) -> None:
    """A present class with a tiny share of the examples is likely a stray label."""
    present = counts[counts > 0]
    median = float(present.double().median())
    tiny = (counts.double() < RARE_CLASS_FRACTION * median) | ((counts == 1) & (median >= 10))
    rare = ((counts > 0) & tiny).nonzero().flatten().tolist()
    if rare:
        n = ", ".join(f"{c} ({int(counts[c])} example{'' if int(counts[c]) == 1 else 's'})" for c in rare[:6])
        warnings.warn(
            f"{what}: {_plural(len(rare))} {n} {'has' if len(rare) == 1 else 'have'} very few "
            f"training examples (the median class has {median:.0f}): stray label(s)? "
            f"--n-classes L refuses labels >= L", DataWarning, stacklevel=_USER_LEVEL + 1)


def count_classes(y_train: torch.Tensor, y_test: torch.Tensor, n_classes: int | None, what: str) -> int:
    """The number of classes ``l`` of labels that passed ``validate_xy`` (non-negative int64).

    Raises :class:`DataError` naming the class for a stray label (see the module
    docstring); with ``n_classes`` given the labels must already be below it.
    """
    if n_classes is None:
        counts = torch.bincount(y_train)
        _check_train_covers(counts, y_train, what)
        _check_test_within(y_test, counts.numel(), what)
        n_classes = counts.numel()
    else:
        counts = torch.bincount(y_train, minlength=n_classes)
        warn_absent((counts == 0).nonzero().flatten().tolist(), n_classes, f"{what}: the training split",
                    _depth=1)
    _warn_rare(counts, what)
    return int(n_classes)


def warn_absent(absent: list[int], n_classes: int, which: str, _depth: int = 0) -> None:
    """Warn that ``which`` has no example of the classes ``absent`` (of ``0..n_classes-1``)."""
    if absent:
        warnings.warn(
            f"{which} has no example of {_plural(len(absent))} {fmt_classes(absent)} (of "
            f"0..{n_classes - 1}); the networks cannot learn to predict "
            f"{'it' if len(absent) == 1 else 'them'}", DataWarning, stacklevel=_USER_LEVEL + _depth)
