"""Datasets of the paper (section 2 "Data sets", appendix A.2).

Six datasets are used:

* ``halfspace``, ``relu1``, ``relu2``, ``rnn``: points drawn from a 10-dimensional
  standard normal distribution, labelled 0/1 by a random teacher (a linear threshold
  function, two different one-hidden-layer ReLU networks of width 1000, and a random
  simple RNN with T = 3, |V| = 100, k = 50, p = 0.5).  Train and test sets hold
  10,000 points each and share the teacher (A.2).  The ``rnn`` teacher is part of the
  model code and is registered here with :func:`register_synthetic`.
* ``mnist`` and ``fashion-mnist``: 28x28 images vectorised to 784 dimensions, pixel
  values divided by 255; a random 10,000 of the training images are used (A.2).

In addition a user dataset can be loaded from an ``.npz`` file holding the arrays
``x_train``, ``y_train``, ``x_test`` and ``y_test``.

All randomness goes through an explicit :class:`torch.Generator` seeded from
``(seed, dataset name)``: the same seed gives bit-identical data, and different
datasets get independent streams (so ``relu1`` and ``relu2`` are different teachers).

Every problem with user input raises :class:`~metaplastic.errors.DataError` with a
one-line message that says what is wrong and how to fix it.

One module per job:

* :mod:`.dataset`: the :class:`Dataset` container, dataset names, seeding;
* :mod:`.validation`: :func:`validate_xy`, the checks on user arrays;
* :mod:`.labels`: the number of classes of a user dataset (no stray classes);
* :mod:`.synthetic`: the synthetic teachers and their registry;
* :mod:`.idx`: the data directory, the IDX reader and the MNIST / Fashion-MNIST loader;
* :mod:`.npz`: user ``.npz`` files;
* :mod:`.checksums`: known digests and :func:`verify`;
* :mod:`.download`: :func:`fetch`;
* :mod:`.loading`: :func:`load_dataset`, the entry point.
"""

from __future__ import annotations

from .checksums import KNOWN_DIGESTS, KnownDigest, verify
from .dataset import (
    DATASET_NAMES,
    IMAGE_DATASETS,
    IMAGE_FILES,
    Dataset,
    _dataset_generator,
    _subset_indices,
)
from .download import DEFAULT_BASE_URLS, DOWNLOAD_TIMEOUT_S, fetch
from .idx import ENV_DATA, data_dir, read_idx
from .labels import DataWarning
from .loading import load_dataset
from .synthetic import (
    BALANCE_MIN_FRACTION,
    RELU_BIAS_STD,
    RELU_WIDTH,
    SYNTHETIC,
    SYNTHETIC_DIM,
    _ReluTeacher,
    register_synthetic,
)
from .validation import validate_xy

__all__ = [
    "Dataset",
    "SYNTHETIC",
    "register_synthetic",
    "DATASET_NAMES",
    "IMAGE_DATASETS",
    "IMAGE_FILES",
    "DEFAULT_BASE_URLS",
    "KNOWN_DIGESTS",
    "KnownDigest",
    "load_dataset",
    "validate_xy",
    "DataWarning",
    "data_dir",
    "read_idx",
    "fetch",
    "verify",
]
