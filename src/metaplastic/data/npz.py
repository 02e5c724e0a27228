"""A user dataset from an ``.npz`` file (the paper's experiments on a user's own data, section 2).

The archive holds ``x_train``, ``y_train``, ``x_test`` and ``y_test``; the arrays
are checked with :func:`~metaplastic.data.validation.validate_xy`.
"""

from __future__ import annotations

import pathlib
import zipfile
import zlib

import numpy as np
import torch

from metaplastic.errors import DataError

from .dataset import Dataset, _dataset_generator, _subset_indices
from .labels import count_classes, warn_absent
from .validation import validate_xy

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read_arrays(path: pathlib.Path) -> dict:
    """The four arrays of the archive, read without pickles; one clear line for any bad file."""
    if not path.exists():
        raise DataError(f"dataset file {path} does not exist; check the path")
    if not path.is_file():
        raise DataError(f"{path} is not a file; pass a .npz file with x_train, y_train, x_test, y_test")
    save_hint = "save it with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if head.startswith(b"\x93NUMPY"):
        raise DataError(f"{path}: is a single .npy array, not an .npz archive; {save_hint}")
    if not head.startswith(b"PK"):
        raise DataError(f"{path}: not an .npz archive (no zip signature); {save_hint}")
    try:
        # open the file ourselves so it is closed even when np.load fails half-way
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            keys = set(npz.files)
            missing = [k for k in _NPZ_KEYS if k not in keys]
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {', '.join(missing)} (found: "
                    f"{', '.join(sorted(keys)) or 'none'}); {save_hint}"
                )
            arrays = {k: npz[k] for k in _NPZ_KEYS}
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DataError(
                f"{path}: holds object (pickled) arrays, which are not loaded for safety; save "
                "plain numeric arrays (e.g. x.astype(np.float32), y.astype(np.int64))"
            ) from None
        raise DataError(f"{path}: cannot read as .npz ({exc}); {save_hint}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, TypeError) as exc:
        raise DataError(
            f"{path}: cannot read as .npz archive ({exc or type(exc).__name__}); {save_hint}"
        ) from None
    return arrays


def _load_npz(path: pathlib.Path, n_train: int, n_test: int, seed: int,
              n_classes: int | None = None) -> Dataset:
    """A user dataset from ``.npz`` with ``x_train, y_train, x_test, y_test``.

    Checked with :func:`validate_xy`; features are used as they are (no rescaling).
    The number of classes is ``n_classes`` when given (labels must be below it),
    else the largest training label plus one (see :mod:`.labels`: every class must
    appear in the training split).  If a split has more points than ``n_train`` /
    ``n_test``, a seeded random subset (ascending order) is taken; if it has fewer
    or equal, all of it is used (no error).  A subset that misses a class is warned about.
    """
    arrays = _read_arrays(path)

    xtr, ytr = validate_xy(arrays["x_train"], arrays["y_train"], what=f"{path.name} (train split)",
                           n_classes=n_classes)
    xte, yte = validate_xy(arrays["x_test"], arrays["y_test"], what=f"{path.name} (test split)",
                           n_classes=n_classes)
    if xtr.shape[1] != xte.shape[1]:
        raise DataError(
            f"{path.name}: x_train has {xtr.shape[1]} features but x_test has {xte.shape[1]}; "
            "both splits need the same features"
        )
    if int(torch.unique(ytr).numel()) < 2:
        raise DataError(
            f"{path.name}: the training split has a single class (label {int(ytr[0])}); a "
            "classifier needs at least two classes in y_train"
        )
    n_classes = count_classes(ytr, yte, n_classes, path.name)
    name = path.stem
    g = _dataset_generator(seed, "npz:" + name)
    if n_train < xtr.shape[0]:
        had = torch.bincount(ytr, minlength=n_classes) > 0
        idx = _subset_indices(xtr.shape[0], n_train, g)
        xtr, ytr = xtr[idx], ytr[idx]
        lost = (had & (torch.bincount(ytr, minlength=n_classes) == 0)).nonzero().flatten().tolist()
        warn_absent(lost, n_classes, f"{path.name}: the {n_train} training points drawn (n_train)")
    if n_test < xte.shape[0]:
        idx = _subset_indices(xte.shape[0], n_test, g)
        xte, yte = xte[idx], yte[idx]
    return Dataset(name, xtr, ytr, xte, yte, n_classes)
