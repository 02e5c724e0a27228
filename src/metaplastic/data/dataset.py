"""The dataset container and the seeding shared by every loader (paper section 2, appendix A.2).

:class:`Dataset` holds a train/test split; :func:`_dataset_generator` seeds a CPU
generator from ``(seed, dataset name)`` so the same seed gives bit-identical data
and different datasets get independent streams.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from metaplastic.errors import DataError

DATASET_NAMES = ("halfspace", "relu1", "relu2", "rnn", "mnist", "fashion-mnist")
"""The six datasets of the paper (section 2); ``rnn`` is registered by the model code."""

IMAGE_DATASETS = ("mnist", "fashion-mnist")
IMAGE_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""File names (without ``.gz``) expected in ``<data_dir>/<dataset>/``."""


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test split (paper A.2: "each dataset has both training and testing data").

    ``x_*`` are float32 ``[n, dim]`` tensors, ``y_*`` int64 ``[n]`` tensors with labels
    in ``0 .. n_classes-1``.  Structural consistency is checked on construction.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
                raise DataError(
                    f"dataset {self.name!r}: x_{split} and y_{split} must be torch tensors; "
                    "build them with validate_xy(x, y)"
                )
            if x.dtype != torch.float32 or x.dim() != 2:
                raise DataError(
                    f"dataset {self.name!r}: x_{split} must be a 2-D float32 tensor, got "
                    f"{x.dim()}-D {x.dtype}; build it with validate_xy(x, y)"
                )
            if y.dtype != torch.int64 or y.dim() != 1 or y.shape[0] != x.shape[0]:
                raise DataError(
                    f"dataset {self.name!r}: y_{split} must be a 1-D int64 tensor with one "
                    f"label per row of x_{split} ({x.shape[0]}), got {y.dim()}-D {y.dtype} "
                    f"of shape {tuple(y.shape)}; build it with validate_xy(x, y)"
                )
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise DataError(
                f"dataset {self.name!r}: train has {self.x_train.shape[1]} features but test "
                f"has {self.x_test.shape[1]}; both splits must have the same feature dimension"
            )
        if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, int) or self.n_classes < 1:
            raise DataError(
                f"dataset {self.name!r}: n_classes must be a positive int, got {self.n_classes!r}"
            )

    @property
    def dim(self) -> int:
        """Input dimension (10 for the synthetic sets, 784 for the image sets)."""
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n_train={self.n_train}, n_test={self.n_test}, "
            f"dim={self.dim}, n_classes={self.n_classes})"
        )


def _normalize_name(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise DataError(f"{name} must be a positive integer, got {int(value)}")
    return int(value)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DataError(f"seed must be an integer, got {seed!r}")
    return int(seed)


def _dataset_generator(seed: int, name: str) -> torch.Generator:
    """A CPU generator seeded from ``(seed, name)`` (so datasets get independent streams)."""
    digest = hashlib.sha256(f"metaplastic.data:{name}:{int(seed)}".encode()).digest()
    g = torch.Generator(device="cpu")
    g.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return g


def _subset_indices(n_avail: int, n_take: int, g: torch.Generator) -> torch.Tensor:
    """``n_take`` distinct indices out of ``n_avail``, drawn with ``g``, in ascending order."""
    idx = torch.randperm(n_avail, generator=g)[:n_take]
    return torch.sort(idx).values
