"""``load_dataset``: one entry point for every dataset of the paper (section 2, appendix A.2)."""

from __future__ import annotations

import os
import pathlib

from metaplastic.errors import DataError

from . import synthetic
from .dataset import DATASET_NAMES, IMAGE_DATASETS, Dataset, _check_count, _check_seed, _normalize_name
from .idx import _load_images
from .npz import _load_npz
from .synthetic import _load_synthetic


_LAZY_PROVIDERS = {"rnn": "metaplastic.teachers"}
"""Modules imported on first use of a dataset that they are expected to register."""


def _import_provider(key: str) -> None:
    import importlib

    module = _LAZY_PROVIDERS[key]
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:  # a real import error inside the provider
            raise


def _known_names() -> list[str]:
    return list(DATASET_NAMES) + sorted(n for n in synthetic.SYNTHETIC if n not in DATASET_NAMES)


def load_dataset(
    name_or_path: str | os.PathLike,
    *,
    n_train: int = 10000,
    n_test: int = 10000,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    n_classes: int | None = None,
) -> Dataset:
    """Load one of the paper's datasets (section 2, A.2) or a user ``.npz`` file.

    * Synthetic (``halfspace``, ``relu1``, ``relu2``, ``rnn`` and anything registered with
      :func:`register_synthetic`): one teacher drawn from a generator seeded with
      ``(seed, name)``, then ``n_train + n_test`` points; the first ``n_train`` are the
      training set, the rest the test set (A.2: 10,000 each).
    * ``mnist`` / ``fashion-mnist``: read from ``data_dir()/<name>/`` (see :func:`data_dir`;
      ``data_dir`` overrides it); a seeded random ``n_train`` of the training images and
      ``n_test`` of the test images (A.2: "ten thousand random images").  Raises
      :class:`DataError` if a file has fewer items than requested.
    * a path ending in ``.npz`` or naming an existing file: see :func:`_load_npz`.

    ``n_classes`` states the number of classes l: for an ``.npz`` file, labels must then
    lie in ``0..l-1`` (without it, l is inferred and every class must appear in the
    training split, see :mod:`metaplastic.data.labels`); for a built-in dataset it must
    equal the dataset's own (2 for the synthetic sets, 10 for the image sets).

    Names are case-insensitive and ``_`` may stand for ``-``.
    """
    n_train = _check_count(n_train, "n_train")
    n_test = _check_count(n_test, "n_test")
    seed = _check_seed(seed)
    if n_classes is not None:
        n_classes = _check_count(n_classes, "n_classes")
        if n_classes < 2:
            raise DataError(f"n_classes must be at least 2 (a classifier needs two classes), got {n_classes}")
    data = _load_any(name_or_path, n_train, n_test, seed, data_dir, n_classes)
    if n_classes is not None and data.n_classes != n_classes:
        raise DataError(
            f"dataset {data.name!r} has {data.n_classes} classes, but n_classes={n_classes} was "
            "stated; drop --n-classes or give that number"
        )
    return data


def _load_any(name_or_path, n_train: int, n_test: int, seed: int, data_dir, n_classes) -> Dataset:
    """The dataset that ``name_or_path`` names (``load_dataset`` without its argument checks)."""
    if isinstance(name_or_path, os.PathLike):
        return _load_npz(pathlib.Path(os.fspath(name_or_path)), n_train, n_test, seed, n_classes)
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise DataError(
            f"dataset must be a name ({', '.join(_known_names())}) or a path to an .npz file, "
            f"got {name_or_path!r}"
        )
    key = _normalize_name(name_or_path)
    if key in IMAGE_DATASETS:
        return _load_images(key, n_train, n_test, seed, data_dir)
    if key in synthetic.SYNTHETIC:
        return _load_synthetic(key, n_train, n_test, seed)
    if key in _LAZY_PROVIDERS and key not in synthetic.SYNTHETIC:
        _import_provider(key)
        if key in synthetic.SYNTHETIC:
            return _load_synthetic(key, n_train, n_test, seed)
    if key in DATASET_NAMES:  # "rnn" before the model code registered it
        raise DataError(
            f"dataset {key!r} (a random simple RNN teacher, A.2) is not available: its "
            "generator has not been registered in this process; import the model module that "
            f"calls metaplastic.data.register_synthetic({key!r}, fn) first"
        )
    path = pathlib.Path(name_or_path).expanduser()
    if name_or_path.strip().lower().endswith(".npz") or path.is_file():
        return _load_npz(path, n_train, n_test, seed, n_classes)
    raise DataError(
        f"unknown dataset {name_or_path!r}; valid names: {', '.join(_known_names())}, or a "
        "path to an .npz file with x_train, y_train, x_test, y_test"
    )
