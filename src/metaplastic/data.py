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
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import pathlib
import socket
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple

import numpy as np
import torch

from metaplastic.errors import DataError

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
    "data_dir",
    "read_idx",
    "fetch",
    "verify",
]

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

# --------------------------------------------------------------------------- #
# Dataset container
# --------------------------------------------------------------------------- #


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


# --------------------------------------------------------------------------- #
# Input validation
# --------------------------------------------------------------------------- #


def _to_numpy(a, what: str, which: str) -> np.ndarray:
    """Turn a tensor / array / array-like into a numpy array without raw errors."""
    if isinstance(a, torch.Tensor):
        t = a.detach().cpu()
        if t.is_complex():
            raise DataError(
                f"{what}: {which} is a complex tensor ({t.dtype}); pass real-valued numbers"
            )
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.to(torch.float32)
        try:
            return t.numpy()
        except (TypeError, RuntimeError) as exc:  # exotic dtypes (quantized, float8, ...)
            raise DataError(
                f"{what}: {which} has dtype {t.dtype}, which cannot be used; convert it to "
                f"float32 (features) or int64 (labels) ({exc})"
            ) from None
    if isinstance(a, np.ndarray):
        return a
    if a is None:
        raise DataError(f"{what}: {which} is None; pass an array")
    try:
        return np.asarray(a)
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"{what}: {which} could not be converted to an array ({exc}); pass a numpy "
            "array or torch tensor with a regular shape"
        ) from None


def _fmt_shape(a: np.ndarray) -> str:
    return "(" + ", ".join(str(s) for s in a.shape) + ("," if a.ndim == 1 else "") + ")"


def validate_xy(
    x, y, *, what: str = "data", n_classes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a feature matrix and label vector and return ``(float32 x, int64 y)``.

    Accepts numpy arrays, torch tensors (or plain array-likes).  Checks that ``x`` is
    2-D ``[n_samples, n_features]`` with a real numeric dtype and only finite values,
    that ``y`` is 1-D with an *integer* dtype (integer-valued floats are rejected, so a
    regression target or probability vector is never silently taken for labels), that
    both have the same non-zero length, and that labels are ``>= 0`` and, when
    ``n_classes`` is given, ``< n_classes``.  ``what`` names the data in messages.

    The returned tensors are new contiguous tensors (float32 and int64); features are
    not rescaled.
    """
    if n_classes is not None and (
        isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1
    ):
        raise DataError(f"{what}: n_classes must be a positive int, got {n_classes!r}")

    xa = _to_numpy(x, what, "x")
    ya = _to_numpy(y, what, "y")

    # ---- features: dtype and shape
    kind = xa.dtype.kind
    if kind == "c":
        raise DataError(f"{what}: x has complex dtype {xa.dtype}; features must be real numbers")
    if kind in "USO":
        raise DataError(
            f"{what}: x has non-numeric dtype {xa.dtype} (strings or Python objects); "
            "convert the features to numbers, e.g. x.astype(np.float32)"
        )
    if kind not in "biuf":
        raise DataError(
            f"{what}: x has dtype {xa.dtype}, which is not a real numeric type; "
            "convert the features to float32"
        )
    if xa.ndim != 2:
        if xa.ndim == 1:
            hint = "reshape a single feature with x.reshape(-1, 1), or one sample with x.reshape(1, -1)"
        elif xa.ndim == 0:
            hint = "pass a matrix with one row per sample"
        else:
            hint = "flatten each sample, e.g. x.reshape(len(x), -1) for images"
        raise DataError(
            f"{what}: x must be 2-D [n_samples, n_features], got {xa.ndim}-D shape "
            f"{_fmt_shape(xa)}; {hint}"
        )

    # ---- labels: shape and dtype
    if ya.ndim != 1:
        if ya.ndim == 2 and ya.shape[1] == 1:
            hint = "flatten it with y.ravel()"
        elif ya.ndim == 2:
            hint = "if it is one-hot, use y.argmax(axis=1)"
        else:
            hint = "pass one integer class label per sample"
        raise DataError(
            f"{what}: y must be 1-D [n_samples] class labels, got {ya.ndim}-D shape "
            f"{_fmt_shape(ya)}; {hint}"
        )
    ykind = ya.dtype.kind
    if ykind == "f":
        finite = np.isfinite(ya)
        if finite.all() and ya.size and np.array_equal(ya, np.floor(ya)):
            raise DataError(
                f"{what}: y has floating dtype {ya.dtype} although its values are whole "
                "numbers; class labels must have an integer dtype: use y.astype(np.int64)"
            )
        if ya.size == 0:
            raise DataError(
                f"{what}: y has floating dtype {ya.dtype}; class labels must have an integer "
                "dtype: use y.astype(np.int64)"
            )
        bad = np.flatnonzero(~finite | (ya != np.floor(np.where(finite, ya, 0))))
        i = int(bad[0]) if bad.size else 0
        raise DataError(
            f"{what}: y must hold integer class labels 0..n_classes-1, but it has floating "
            f"dtype {ya.dtype} with non-integer values (first: {ya[i]!r} at index {i}); "
            "map your targets to integer classes"
        )
    if ykind == "b":
        raise DataError(
            f"{what}: y is boolean; class labels must be integers: use y.astype(np.int64)"
        )
    if ykind not in "iu":
        raise DataError(
            f"{what}: y has dtype {ya.dtype}; class labels must be integers 0..n_classes-1 "
            "(map string/object labels with np.unique(y, return_inverse=True))"
        )

    # ---- lengths
    if xa.shape[0] != ya.shape[0]:
        raise DataError(
            f"{what}: x has {xa.shape[0]} samples but y has {ya.shape[0]} labels; "
            "they must have the same length"
        )
    if xa.shape[0] == 0:
        raise DataError(f"{what}: x and y are empty (0 samples); provide at least one sample")
    if xa.shape[1] == 0:
        raise DataError(f"{what}: x has 0 features per sample; provide at least one feature column")

    # ---- finite features
    if kind == "f":
        finite = np.isfinite(xa)
        if not finite.all():
            bad = ~finite
            n_bad = int(bad.sum())
            n_nan = int(np.isnan(xa).sum())
            first = int(np.flatnonzero(bad.ravel())[0])
            r, c = divmod(first, xa.shape[1])
            raise DataError(
                f"{what}: x contains {n_bad} non-finite value(s) ({n_nan} NaN, "
                f"{n_bad - n_nan} inf), first at row {r}, column {c} ({float(xa[r, c])}); "
                "remove or impute those samples"
            )

    # ---- label range
    if ykind == "i":
        neg = ya < 0
        if neg.any():
            i = int(np.flatnonzero(neg)[0])
            raise DataError(
                f"{what}: y has {int(neg.sum())} negative label(s) (first: {int(ya[i])} at "
                f"index {i}); labels must be 0..n_classes-1: remap them with "
                "np.unique(y, return_inverse=True)"
            )
    y_max = int(ya.max())
    if y_max > np.iinfo(np.int32).max:
        raise DataError(
            f"{what}: y has label {y_max}, which is far too large for a class index; "
            "labels must be 0..n_classes-1: remap them with np.unique(y, return_inverse=True)"
        )
    if n_classes is not None and y_max >= n_classes:
        over = ya >= n_classes
        i = int(np.flatnonzero(over)[0])
        raise DataError(
            f"{what}: y has {int(over.sum())} label(s) >= n_classes={int(n_classes)} (first: "
            f"{int(ya[i])} at index {i}); labels must be 0..{int(n_classes) - 1}"
        )

    # ---- convert
    with np.errstate(over="ignore"):
        x32 = np.ascontiguousarray(xa, dtype=np.float32)
    if kind == "f" and not np.isfinite(x32).all():
        raise DataError(
            f"{what}: x has values beyond the float32 range (|x| > 3.4e38) that overflow; "
            "rescale the features"
        )
    xt = torch.from_numpy(x32.copy() if x32 is xa or np.may_share_memory(x32, xa) else x32)
    yt = torch.from_numpy(np.array(ya, dtype=np.int64, copy=True))
    return xt, yt


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


# --------------------------------------------------------------------------- #
# Synthetic datasets (section 2, A.2)
# --------------------------------------------------------------------------- #

SYNTHETIC_DIM = 10
"""Input dimension of the synthetic datasets (section 2: "a 10-dimensional normal distribution")."""

RELU_WIDTH = 1000
"""Hidden width of the ReLU teachers (A.2: "a single hidden layer of width 1000")."""

RELU_BIAS_STD = 0.1
"""Standard deviation of the ReLU teachers' hidden biases (not given in the paper)."""

BALANCE_MIN_FRACTION = 0.1
"""A ReLU teacher whose minority class is rarer than this gets an output bias that balances it."""

_CALIBRATION_POINTS = 10_000
_CHUNK = 4096

SyntheticFn = Callable[[int, torch.Generator], "tuple[torch.Tensor, torch.Tensor]"]

SYNTHETIC: dict[str, SyntheticFn] = {}
"""Registry of synthetic datasets: name -> ``fn(n_total, generator) -> (x, y)``.

``fn`` draws its teacher first and then ``n_total`` points from ``generator`` and returns
float32 ``x [n_total, d]`` and int64 ``y [n_total]``; :func:`load_dataset` uses the first
``n_train`` points as the training set and the rest as the test set.
"""

_SYNTHETIC_CLASSES: dict[str, int] = {}


def _normalize_name(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_synthetic(name: str, fn: SyntheticFn, *, n_classes: int = 2) -> None:
    """Add (or replace) a synthetic dataset ``name`` generated by ``fn(n_total, generator)``.

    Used by the model code to register the ``rnn`` dataset (A.2: "a random simple RNN with
    T = 3, |V| = 100, k = 50, p = 0.5").  ``n_classes`` defaults to 2 (all synthetic
    datasets of the paper are binary).
    """
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"synthetic dataset name must be a non-empty string, got {name!r}")
    key = _normalize_name(name)
    if key in IMAGE_DATASETS or key.endswith(".npz"):
        raise DataError(
            f"cannot register synthetic dataset {name!r}: the name is reserved for image "
            "datasets / .npz files; pick another name"
        )
    if not callable(fn):
        raise DataError(f"synthetic dataset {name!r}: fn must be callable(n_total, generator)")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise DataError(f"synthetic dataset {name!r}: n_classes must be an int >= 2, got {n_classes!r}")
    SYNTHETIC[key] = fn
    _SYNTHETIC_CLASSES[key] = n_classes


def _standard_normal(n: int, generator: torch.Generator) -> torch.Tensor:
    """Inputs of the synthetic datasets: ``x ~ N(0, I_10)`` (section 2), float32."""
    return torch.randn(n, SYNTHETIC_DIM, generator=generator, dtype=torch.float32)


def _halfspace(n_total: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Halfspace data (section 2, A.2: "labeled by a simple linear threshold function").

    Draws a unit vector ``w`` (normalised standard normal, so uniform on the sphere), then
    ``x ~ N(0, I_10)``; label 1 if ``w . x > 0`` else 0 (computed in float64 on the
    returned float32 ``x``).  The threshold passes through the origin, so the classes are
    balanced in expectation.
    """
    w = torch.randn(SYNTHETIC_DIM, generator=generator, dtype=torch.float64)
    w = w / w.norm()
    x = _standard_normal(n_total, generator)
    y = (x.to(torch.float64) @ w > 0).to(torch.int64)
    return x, y


class _ReluTeacher:
    """One-hidden-layer ReLU network with two outputs (A.2: ReLU1 and ReLU2).

    ``out = V relu(W x + b) + beta``, label ``argmax(out)``.  Weights ("randomly
    initialized", A.2; the distributions are our choice):

    * ``W [1000, 10] ~ N(0, 1/10)`` so every hidden pre-activation has unit variance,
    * ``b [1000] ~ N(0, 0.1^2)`` (small, so the labelling is far from linear but not
      exactly positively homogeneous in ``x``),
    * ``V [2, 1000] ~ N(0, 1/1000)``,
    * ``beta = 0``, unless on a calibration sample of 10,000 fresh points the minority
      class has under 10% of the labels; then ``beta = (0, -median(out_1 - out_0))`` over
      that sample, which balances the classes.  The calibration sample is drawn right
      after the weights, so the teacher depends only on the generator, not on the
      number of points requested.

    Computed in float64 to make labels insensitive to BLAS summation order.
    """

    def __init__(self, generator: torch.Generator):
        d, h = SYNTHETIC_DIM, RELU_WIDTH
        f64 = torch.float64
        self.W = torch.randn(h, d, generator=generator, dtype=f64) / math.sqrt(d)
        self.b = torch.randn(h, generator=generator, dtype=f64) * RELU_BIAS_STD
        self.V = torch.randn(2, h, generator=generator, dtype=f64) / math.sqrt(h)
        self.beta = torch.zeros(2, dtype=f64)
        calib = _standard_normal(_CALIBRATION_POINTS, generator)
        diff = self.margin(calib)
        frac1 = float((diff > 0).to(f64).mean())
        self.balanced = min(frac1, 1.0 - frac1) < BALANCE_MIN_FRACTION
        if self.balanced:
            self.beta[1] = -float(diff.median())

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        xs = x.to(torch.float64)
        parts = []
        for i in range(0, xs.shape[0], _CHUNK):
            hidden = torch.relu(xs[i : i + _CHUNK] @ self.W.T + self.b)
            parts.append(hidden @ self.V.T + self.beta)
        if not parts:
            return torch.zeros(0, 2, dtype=torch.float64)
        return torch.cat(parts)

    def margin(self, x: torch.Tensor) -> torch.Tensor:
        out = self.outputs(x)
        return out[:, 1] - out[:, 0]

    def labels(self, x: torch.Tensor) -> torch.Tensor:
        return torch.argmax(self.outputs(x), dim=1).to(torch.int64)


def _relu(n_total: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """ReLU1 / ReLU2 data (section 2, A.2): argmax of a random ReLU teacher, see :class:`_ReluTeacher`.

    ``relu1`` and ``relu2`` use this same function; they are different teachers because
    :func:`load_dataset` seeds the generator from ``(seed, name)``.
    """
    teacher = _ReluTeacher(generator)
    x = _standard_normal(n_total, generator)
    return x, teacher.labels(x)


register_synthetic("halfspace", _halfspace)
register_synthetic("relu1", _relu)
register_synthetic("relu2", _relu)

# --------------------------------------------------------------------------- #
# Image datasets: files, checksums, data directory (A.2)
# --------------------------------------------------------------------------- #


DEFAULT_BASE_URLS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}

ENV_DATA = "METAPLASTIC_DATA"
DOWNLOAD_TIMEOUT_S = 30.0


class KnownDigest(NamedTuple):
    """A digest that identifies a good copy of one IDX file.

    ``check`` says what is hashed:

    * ``"sha256"``: SHA-256 of the *uncompressed* IDX content; applies to raw and to
      gzip files (which are decompressed first), whatever the gzip wrapper.
    * ``"md5-gz"``: MD5 of the *compressed* canonical ``.gz`` download; applies only to
      gzip files, byte for byte as served by the canonical mirror.
    """

    check: str
    digest: str
    note: str


# Sources:
# * every "sha256" entry: /work/shared/data/README.md (the offline copies).  The
#   Fashion-MNIST ones and the MNIST t10k ones are the official sets, so they also match
#   the canonical downloads once decompressed.  The MNIST train-* ones are the 10,000-image
#   offline subset, NOT the canonical 60,000-image training set.
# * every "md5-gz" entry: the well-known MD5s of the canonical MNIST .gz files (as listed
#   by torchvision and others).  They are the only known check for the canonical 60,000-
#   image MNIST training files; the SHA-256 of their uncompressed content is not recorded
#   here, so an *uncompressed* canonical MNIST train file reports "mismatch": keep the .gz.
KNOWN_DIGESTS: dict[tuple[str, str], tuple[KnownDigest, ...]] = {
    ("mnist", "train-images-idx3-ubyte"): (
        KnownDigest("sha256", "87ff80b1af14cbb3cd72b14f87b48775177b2bbd6ad1b2645c25bd389d95c284",
                    "offline subset (10,000 images)"),
        KnownDigest("md5-gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "canonical MNIST training set (60,000 images), MD5 of the .gz"),
    ),
    ("mnist", "train-labels-idx1-ubyte"): (
        KnownDigest("sha256", "abc1ca0c0af29e09d56751fab3baff6f96ac830fe542e7e091e7f3ed8afce81d",
                    "offline subset (10,000 images)"),
        KnownDigest("md5-gz", "d53e105ee54ea40749a09fcbf8e1fd4e",
                    "canonical MNIST training labels (60,000), MD5 of the .gz"),
    ),
    ("mnist", "t10k-images-idx3-ubyte"): (
        KnownDigest("sha256", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                    "official MNIST test set (10,000 images)"),
        KnownDigest("md5-gz", "9fb629c4189551a2d022fa330f9573f3",
                    "canonical MNIST test set (10,000 images), MD5 of the .gz"),
    ),
    ("mnist", "t10k-labels-idx1-ubyte"): (
        KnownDigest("sha256", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                    "official MNIST test labels (10,000)"),
        KnownDigest("md5-gz", "ec29112dd5afa0611ce80d1b7f02629c",
                    "canonical MNIST test labels (10,000), MD5 of the .gz"),
    ),
    ("fashion-mnist", "train-images-idx3-ubyte"): (
        KnownDigest("sha256", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                    "official Fashion-MNIST training set (60,000 images)"),
    ),
    ("fashion-mnist", "train-labels-idx1-ubyte"): (
        KnownDigest("sha256", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                    "official Fashion-MNIST training labels (60,000)"),
    ),
    ("fashion-mnist", "t10k-images-idx3-ubyte"): (
        KnownDigest("sha256", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                    "official Fashion-MNIST test set (10,000 images)"),
    ),
    ("fashion-mnist", "t10k-labels-idx1-ubyte"): (
        KnownDigest("sha256", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                    "official Fashion-MNIST test labels (10,000)"),
    ),
}


def _as_path(p, what: str) -> pathlib.Path:
    if isinstance(p, pathlib.Path):
        return p
    if isinstance(p, (str, os.PathLike)):
        s = os.fspath(p)
        if isinstance(s, bytes):
            s = os.fsdecode(s)
        if not s:
            raise DataError(f"{what} is an empty string; pass a directory/file path")
        return pathlib.Path(s)
    raise DataError(f"{what} must be a path (str or os.PathLike), got {type(p).__name__}")


def data_dir(explicit=None) -> pathlib.Path:
    """Directory that holds ``mnist/`` and ``fashion-mnist/``.

    Precedence: ``explicit`` if given, else ``$METAPLASTIC_DATA`` if set and non-empty,
    else ``$XDG_CACHE_HOME/metaplastic``, else ``~/.cache/metaplastic``.  The directory
    need not exist.  Returned as an absolute path.
    """
    if explicit is not None:
        p = _as_path(explicit, "data directory")
    elif os.environ.get(ENV_DATA, "").strip():
        p = pathlib.Path(os.environ[ENV_DATA].strip())
    elif os.environ.get("XDG_CACHE_HOME", "").strip():
        p = pathlib.Path(os.environ["XDG_CACHE_HOME"].strip()) / "metaplastic"
    else:
        p = pathlib.Path("~/.cache/metaplastic")
    return pathlib.Path(os.path.abspath(p.expanduser()))


_resolve_data_dir = data_dir  # load_dataset() has a parameter called data_dir


def _find_file(folder: pathlib.Path, fname: str) -> pathlib.Path | None:
    """The copy of ``fname`` to use in ``folder``: ``fname.gz`` if present, else raw ``fname``.

    The ``.gz`` is preferred because :func:`fetch` only ever writes ``.gz`` files (atomically
    and checked), so a fresh download always takes effect over a stale raw copy.
    """
    for cand in (folder / (fname + ".gz"), folder / fname):
        if cand.is_file():
            return cand
    return None


# --------------------------------------------------------------------------- #
# IDX reader
# --------------------------------------------------------------------------- #

_IDX_TYPES = {
    0x08: (np.dtype(np.uint8), "unsigned byte"),
    0x09: (np.dtype(np.int8), "signed byte"),
    0x0B: (np.dtype(">i2"), "int16"),
    0x0C: (np.dtype(">i4"), "int32"),
    0x0D: (np.dtype(">f4"), "float32"),
    0x0E: (np.dtype(">f8"), "float64"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_file_bytes(path: pathlib.Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected an IDX file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None


def _gunzip(raw: bytes, path: pathlib.Path) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path}: corrupt gzip data ({exc or type(exc).__name__}); delete the file and "
            "download it again (`metaplastic data fetch`)"
        ) from None


def _load_bytes(path: pathlib.Path) -> tuple[bytes, bytes | None]:
    """(uncompressed content, compressed bytes or None if the file is not gzip)."""
    raw = _read_file_bytes(path)
    if raw[:2] == _GZIP_MAGIC:
        return _gunzip(raw, path), raw
    return raw, None


def _parse_idx(data: bytes, path: pathlib.Path) -> np.ndarray:
    """Parse IDX content (magic ``00 00 <type> <ndims>``, big-endian uint32 dims, payload)."""
    fix = "re-download it (`metaplastic data fetch`) or replace it with a good copy"
    if len(data) < 4:
        raise DataError(f"{path}: only {len(data)} bytes, too short for an IDX header; {fix}")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES or data[3] == 0:
        head = " ".join(f"{b:02x}" for b in data[:4])
        raise DataError(
            f"{path}: not an IDX file (magic bytes {head}; expected 00 00 <type 08/09/0b/0c/0d/0e> "
            f"<ndims >= 1>); {fix}"
        )
    dtype, type_name = _IDX_TYPES[data[2]]
    ndims = data[3]
    header = 4 + 4 * ndims
    if len(data) < header:
        raise DataError(
            f"{path}: truncated IDX header ({len(data)} bytes, {ndims} dimensions need "
            f"{header}); {fix}"
        )
    dims = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndims, offset=4))
    count = math.prod(dims)
    expected = count * dtype.itemsize
    payload = len(data) - header
    shape = "x".join(str(d) for d in dims)
    if payload < expected:
        raise DataError(
            f"{path}: truncated IDX file: header says {shape} {type_name} values = {expected} "
            f"payload bytes, but only {payload} are present; {fix}"
        )
    if payload > expected:
        raise DataError(
            f"{path}: {payload - expected} unexpected trailing bytes after the {expected}-byte "
            f"payload of a {shape} {type_name} IDX file; the file is corrupt; {fix}"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format), raw or gzip-compressed.

    Gzip is detected from the magic bytes ``1f 8b``, not from the file name.  The header
    must be ``00 00 <type> <ndims>`` followed by ``ndims`` big-endian uint32 sizes; the
    types ubyte (0x08), sbyte (0x09), int16 (0x0B), int32 (0x0C), float32 (0x0D) and
    float64 (0x0E) are supported.  The payload must have exactly the size the header
    announces.  Returns a writable native-endian array of shape ``dims``.
    """
    p = _as_path(path, "IDX file path")
    data, _ = _load_bytes(p)
    return _parse_idx(data, p)


# --------------------------------------------------------------------------- #
# Loading
# --------------------------------------------------------------------------- #


def _missing_files_error(name: str, folder: pathlib.Path, missing: list[str]) -> DataError:
    return DataError(
        f"{name} files not found in {folder} (missing: {', '.join(missing)}); set "
        f"{ENV_DATA} to a folder that contains {name}/ with the files "
        f"{', '.join(IMAGE_FILES)} (each raw or .gz), or run `metaplastic data fetch` "
        "on a machine with internet access"
    )


def _load_image_split(folder: pathlib.Path, name: str, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    img_path = _find_file(folder, f"{prefix}-images-idx3-ubyte")
    lab_path = _find_file(folder, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(img_path)
    labels = read_idx(lab_path)
    if images.dtype != np.uint8 or images.ndim < 2:
        raise DataError(
            f"{img_path}: expected unsigned-byte images of shape [n, rows, cols], got "
            f"{images.dtype} with shape {images.shape}; replace the file with the {name} images"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{lab_path}: expected a 1-D unsigned-byte label file, got {labels.dtype} with shape "
            f"{labels.shape}; replace the file with the {name} labels"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{folder}: {img_path.name} holds {images.shape[0]} images but {lab_path.name} "
            f"holds {labels.shape[0]} labels; the pair must match: re-fetch both files"
        )
    if images.shape[0] == 0:
        raise DataError(f"{img_path}: holds no images; replace it with a good copy")
    if labels.size and int(labels.max()) >= 10:
        raise DataError(
            f"{lab_path}: labels must be 0..9, found {int(labels.max())}; replace it with a good copy"
        )
    return images.reshape(images.shape[0], -1), labels


def _load_images(
    name: str, n_train: int, n_test: int, seed: int, root
) -> Dataset:
    """MNIST / Fashion-MNIST (A.2): pixels/255 as float32, flattened, random subsets.

    ``n_train`` images are drawn without replacement from the training file and ``n_test``
    from the test file, with a generator seeded from ``(seed, name)``; the selected
    indices are kept in ascending file order (so taking all items keeps the file order).
    """
    folder = _resolve_data_dir(root) / name
    missing = [f for f in IMAGE_FILES if _find_file(folder, f) is None]
    if missing:
        raise _missing_files_error(name, folder, missing)
    g = _dataset_generator(seed, name)
    splits = []
    for prefix, n_take, arg in (("train", n_train, "n_train"), ("t10k", n_test, "n_test")):
        images, labels = _load_image_split(folder, name, prefix)
        n_avail = images.shape[0]
        if n_take > n_avail:
            raise DataError(
                f"{arg}={n_take} but the {name} {'training' if prefix == 'train' else 'test'} "
                f"file in {folder} holds only {n_avail} images; use {arg} <= {n_avail}"
            )
        idx = _subset_indices(n_avail, n_take, g).numpy()
        x = torch.from_numpy(images[idx].astype(np.float32) / np.float32(255.0))
        y = torch.from_numpy(labels[idx].astype(np.int64))
        splits.append((x, y))
    (xtr, ytr), (xte, yte) = splits
    return Dataset(name, xtr, ytr, xte, yte, 10)


def _load_synthetic(name: str, n_train: int, n_test: int, seed: int) -> Dataset:
    fn = SYNTHETIC[name]
    n_total = n_train + n_test
    out = fn(n_total, _dataset_generator(seed, name))
    if not isinstance(out, tuple) or len(out) != 2:
        raise DataError(
            f"synthetic dataset {name!r}: its generator must return a tuple (x, y), got "
            f"{type(out).__name__}; fix the function passed to register_synthetic"
        )
    n_classes = _SYNTHETIC_CLASSES.get(name, 2)
    x, y = validate_xy(out[0], out[1], what=f"synthetic dataset {name!r}", n_classes=n_classes)
    if x.shape[0] != n_total:
        raise DataError(
            f"synthetic dataset {name!r}: asked for {n_total} points, its generator returned "
            f"{x.shape[0]}; fix the function passed to register_synthetic"
        )
    return Dataset(name, x[:n_train].clone(), y[:n_train].clone(), x[n_train:].clone(),
                   y[n_train:].clone(), n_classes)


_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _load_npz(path: pathlib.Path, n_train: int, n_test: int, seed: int) -> Dataset:
    """A user dataset from ``.npz`` with ``x_train, y_train, x_test, y_test``.

    Checked with :func:`validate_xy`; features are used as they are (no rescaling).
    ``n_classes`` is the largest label over both splits plus one.  If a split has more
    points than ``n_train`` / ``n_test``, a seeded random subset (ascending order) is taken;
    if it has fewer or equal, all of it is used (no error).
    """
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

    xtr, ytr = validate_xy(arrays["x_train"], arrays["y_train"], what=f"{path.name} (train split)")
    xte, yte = validate_xy(arrays["x_test"], arrays["y_test"], what=f"{path.name} (test split)")
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
    n_classes = int(max(int(ytr.max()), int(yte.max()))) + 1
    name = path.stem
    g = _dataset_generator(seed, "npz:" + name)
    if n_train < xtr.shape[0]:
        idx = _subset_indices(xtr.shape[0], n_train, g)
        xtr, ytr = xtr[idx], ytr[idx]
    if n_test < xte.shape[0]:
        idx = _subset_indices(xte.shape[0], n_test, g)
        xte, yte = xte[idx], yte[idx]
    return Dataset(name, xtr, ytr, xte, yte, n_classes)


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
    return list(DATASET_NAMES) + sorted(n for n in SYNTHETIC if n not in DATASET_NAMES)


def load_dataset(
    name_or_path: str | os.PathLike,
    *,
    n_train: int = 10000,
    n_test: int = 10000,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
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

    Names are case-insensitive and ``_`` may stand for ``-``.
    """
    n_train = _check_count(n_train, "n_train")
    n_test = _check_count(n_test, "n_test")
    seed = _check_seed(seed)
    if isinstance(name_or_path, os.PathLike):
        return _load_npz(pathlib.Path(os.fspath(name_or_path)), n_train, n_test, seed)
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise DataError(
            f"dataset must be a name ({', '.join(_known_names())}) or a path to an .npz file, "
            f"got {name_or_path!r}"
        )
    key = _normalize_name(name_or_path)
    if key in IMAGE_DATASETS:
        return _load_images(key, n_train, n_test, seed, data_dir)
    if key in SYNTHETIC:
        return _load_synthetic(key, n_train, n_test, seed)
    if key in _LAZY_PROVIDERS and key not in SYNTHETIC:
        _import_provider(key)
        if key in SYNTHETIC:
            return _load_synthetic(key, n_train, n_test, seed)
    if key in DATASET_NAMES:  # "rnn" before the model code registered it
        raise DataError(
            f"dataset {key!r} (a random simple RNN teacher, A.2) is not available: its "
            "generator has not been registered in this process; import the model module that "
            f"calls metaplastic.data.register_synthetic({key!r}, fn) first"
        )
    path = pathlib.Path(name_or_path).expanduser()
    if name_or_path.strip().lower().endswith(".npz") or path.is_file():
        return _load_npz(path, n_train, n_test, seed)
    raise DataError(
        f"unknown dataset {name_or_path!r}; valid names: {', '.join(_known_names())}, or a "
        "path to an .npz file with x_train, y_train, x_test, y_test"
    )


# --------------------------------------------------------------------------- #
# Checking and downloading the image files
# --------------------------------------------------------------------------- #


def _check_content(dataset: str, fname: str, data: bytes, gz: bytes | None) -> tuple[bool, str, str]:
    """(matches a known digest, sha256 of the uncompressed content, note)."""
    sha = hashlib.sha256(data).hexdigest()
    md5 = hashlib.md5(gz).hexdigest() if gz is not None else None
    for known in KNOWN_DIGESTS.get((dataset, fname), ()):
        if known.check == "sha256" and sha == known.digest:
            return True, sha, known.note
        if known.check == "md5-gz" and md5 == known.digest:
            return True, sha, known.note
    return False, sha, ""


def _expected_text(dataset: str, fname: str) -> str:
    known = KNOWN_DIGESTS.get((dataset, fname), ())
    return "; ".join(
        f"{'SHA-256 of uncompressed' if k.check == 'sha256' else 'MD5 of .gz'} {k.digest}" for k in known
    ) or "(no known digest)"


def _check_path(dataset: str, fname: str, path: pathlib.Path) -> dict:
    """verify()'s record for one existing file."""
    rec = {"dataset": dataset, "file": fname, "path": str(path), "status": "ok", "sha256": None, "note": ""}
    try:
        data, gz = _load_bytes(path)
    except DataError as exc:
        rec.update(status="corrupt", note=str(exc))
        return rec
    ok, sha, note = _check_content(dataset, fname, data, gz)
    rec["sha256"] = sha
    if ok:
        rec["note"] = note
        return rec
    try:
        _parse_idx(data, path)
    except DataError as exc:
        rec.update(status="corrupt", note=str(exc))
        return rec
    note = f"valid IDX file but matches no known checksum (expected one of: {_expected_text(dataset, fname)})"
    if dataset == "mnist" and fname.startswith("train") and gz is None:
        note += (
            "; no SHA-256 is known for the uncompressed canonical 60,000-image MNIST training "
            "files: keep the downloaded .gz so its MD5 can be checked"
        )
    rec.update(status="mismatch", note=note)
    return rec


def verify(root=None) -> list[dict]:
    """Check the 8 MNIST / Fashion-MNIST files under ``data_dir(root)``.

    One dict per expected file: ``dataset``, ``file``, ``path`` (the copy that would be
    used: ``.gz`` if present, else raw; for a missing file the directory searched),
    ``status`` (``"ok"``: matches a known digest; ``"missing"``; ``"mismatch"``: a valid
    IDX file with unknown content; ``"corrupt"``: unreadable gzip or broken IDX
    structure), ``sha256`` (of the uncompressed content, None if unreadable) and ``note``.
    """
    base = _resolve_data_dir(root)
    out = []
    for dataset in IMAGE_DATASETS:
        folder = base / dataset
        for fname in IMAGE_FILES:
            path = _find_file(folder, fname)
            if path is None:
                out.append({
                    "dataset": dataset, "file": fname, "path": str(folder), "status": "missing",
                    "sha256": None, "note": f"neither {fname} nor {fname}.gz in {folder}",
                })
            else:
                out.append(_check_path(dataset, fname, path))
    return out


def _normalize_fetch_names(names) -> list[str]:
    if isinstance(names, str):
        names = (names,)
    try:
        items = list(names)
    except TypeError:
        raise DataError(f"names must be dataset names ({', '.join(IMAGE_DATASETS)}), got {names!r}") from None
    out = []
    for n in items:
        key = _normalize_name(n) if isinstance(n, str) else n
        if key not in IMAGE_DATASETS:
            raise DataError(
                f"cannot fetch {n!r}: only {', '.join(IMAGE_DATASETS)} are downloaded (the "
                "synthetic datasets are generated)"
            )
        if key not in out:
            out.append(key)
    return out


def _offline_error(url: str, reason: str, folder: pathlib.Path) -> DataError:
    return DataError(
        f"could not download {url} ({reason}); this machine seems to be offline or the mirror is "
        f"unreachable: download the files elsewhere and put them in {folder} "
        f"({', '.join(f + '.gz' for f in IMAGE_FILES)}; raw or .gz), or set {ENV_DATA} to a "
        "folder that already has them"
    )


def _download(url: str, dest: pathlib.Path, folder: pathlib.Path, progress: bool, timeout: float) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "metaplastic-data-fetch"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as out:
            total = resp.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                           desc=url.rsplit("/", 1)[-1], file=sys.stderr, leave=False)
            got = 0
            try:
                while True:
                    chunk = resp.read(1 << 16)
                    if not chunk:
                        break
                    out.write(chunk)
                    got += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
            if total is not None and got != total:
                raise DataError(
                    f"download of {url} was cut off ({got} of {total} bytes); run the fetch again"
                )
    except DataError:
        raise
    except urllib.error.HTTPError as exc:
        raise DataError(
            f"the server answered HTTP {exc.code} {exc.reason} for {url}; check the base URL, or "
            f"put the files in {folder} by hand ({', '.join(f + '.gz' for f in IMAGE_FILES)})"
        ) from None
    except urllib.error.URLError as exc:
        raise _offline_error(url, str(exc.reason), folder) from None
    except (socket.timeout, TimeoutError):
        raise _offline_error(url, f"timed out after {timeout:g} s", folder) from None
    except (http.client.HTTPException, ConnectionError) as exc:
        raise _offline_error(url, f"{type(exc).__name__}: {exc}", folder) from None
    except OSError as exc:
        # local write errors land here too (disk full, permissions)
        raise DataError(f"could not save {url} to {dest} ({exc}); check the target directory") from None


def fetch(
    names: Iterable[str] | str = ("mnist", "fashion-mnist"),
    *,
    root=None,
    base_urls: dict | None = None,
    progress: bool = True,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> list[dict]:
    """Download the MNIST / Fashion-MNIST files (A.2) into ``data_dir(root)/<name>/``.

    For each of the four ``.gz`` files: a copy already present that matches a known digest
    (see :data:`KNOWN_DIGESTS`) is skipped (``status "present"``); otherwise the file is
    downloaded from ``base_urls[name] + file + ".gz"`` (defaults: :data:`DEFAULT_BASE_URLS`)
    into a temporary file in the target directory, checked, and only then atomically
    renamed into place (``status "downloaded"``).  A download that matches no known digest
    is deleted and raises :class:`DataError`; so do network failures (with instructions for
    placing the files by hand).  Progress bars go to stderr when ``progress`` is true.

    Returns one dict per file: ``dataset, file, path, status, sha256, note, url``.
    """
    todo = _normalize_fetch_names(names)
    urls = dict(DEFAULT_BASE_URLS)
    if base_urls is not None:
        if not isinstance(base_urls, dict):
            raise DataError(f"base_urls must be a dict {{dataset name: URL}}, got {type(base_urls).__name__}")
        for k, v in base_urls.items():
            key = _normalize_name(k) if isinstance(k, str) else k
            if key not in IMAGE_DATASETS:
                raise DataError(f"base_urls has unknown dataset {k!r}; valid: {', '.join(IMAGE_DATASETS)}")
            if not isinstance(v, str) or not v.strip():
                raise DataError(f"base_urls[{k!r}] must be a URL string, got {v!r}")
            urls[key] = v.strip()
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise DataError(f"timeout must be a positive number of seconds, got {timeout!r}")
    base = _resolve_data_dir(root)
    results = []
    for dataset in todo:
        folder = base / dataset
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create {folder} ({exc.strerror or exc}); pick a writable data directory") from None
        prefix = urls[dataset] if urls[dataset].endswith("/") else urls[dataset] + "/"
        for fname in IMAGE_FILES:
            url = prefix + fname + ".gz"
            existing = _find_file(folder, fname)
            if existing is not None:
                rec = _check_path(dataset, fname, existing)
                if rec["status"] == "ok":
                    rec.update(status="present", url=url)
                    results.append(rec)
                    continue
            fd, tmp_name = tempfile.mkstemp(prefix=f".{fname}.", suffix=".part", dir=folder)
            os.close(fd)
            tmp = pathlib.Path(tmp_name)
            try:
                _download(url, tmp, folder, progress, float(timeout))
                try:
                    data, gz = _load_bytes(tmp)
                except DataError:
                    data, gz = None, None
                if data is not None:
                    ok, sha, note = _check_content(dataset, fname, data, gz)
                else:
                    ok, sha, note = False, "(not valid gzip)", ""
                if not ok:
                    raise DataError(
                        f"checksum mismatch for {url}: got SHA-256 {sha} of the uncompressed content, "
                        f"expected one of: {_expected_text(dataset, fname)}; the download was deleted: "
                        "check the mirror URL or place a good copy by hand"
                    )
                final = folder / (fname + ".gz" if gz is not None else fname)
                os.replace(tmp, final)
                stale = folder / (fname + ".gz")
                if gz is None and stale.exists():
                    # a bad .gz (it failed the check above) would shadow the new raw file
                    stale.unlink()
            finally:
                if tmp.exists():
                    tmp.unlink()
            results.append({
                "dataset": dataset, "file": fname, "path": str(final), "status": "downloaded",
                "sha256": sha, "note": note, "url": url,
            })
    return results
