"""Checking user data before any work (paper section 2: inputs in R^d, labels in 0..l-1).

:func:`validate_xy` turns a feature matrix and label vector into float32 and int64
tensors or raises :class:`~metaplastic.errors.DataError` with one line that says
what is wrong and how to fix it.  Each check is a named step below, run in order.
"""

from __future__ import annotations

import numpy as np
import torch

from metaplastic.errors import DataError

REMAP_HINT = "remap them with np.unique(y, return_inverse=True)"


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


def _check_n_classes_arg(n_classes, what: str) -> None:
    if n_classes is not None and (
        isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1
    ):
        raise DataError(f"{what}: n_classes must be a positive int, got {n_classes!r}")


def _check_feature_type_and_shape(xa: np.ndarray, what: str) -> None:
    """x has a real numeric dtype and is 2-D ``[n_samples, n_features]``."""
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


def _check_label_shape(ya: np.ndarray, what: str) -> None:
    """y is 1-D ``[n_samples]`` (one label per sample, not one-hot)."""
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


def _reject_float_labels(ya: np.ndarray, what: str) -> None:
    """Floating labels are refused, saying whether they are whole numbers (a cast) or not."""
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


def _check_label_dtype(ya: np.ndarray, what: str) -> None:
    """y has an integer dtype (integer-valued floats are refused too: never guess labels)."""
    ykind = ya.dtype.kind
    if ykind == "f":
        _reject_float_labels(ya, what)
    if ykind == "b":
        raise DataError(
            f"{what}: y is boolean; class labels must be integers: use y.astype(np.int64)"
        )
    if ykind not in "iu":
        raise DataError(
            f"{what}: y has dtype {ya.dtype}; class labels must be integers 0..n_classes-1 "
            "(map string/object labels with np.unique(y, return_inverse=True))"
        )


def _check_lengths(xa: np.ndarray, ya: np.ndarray, what: str) -> None:
    """As many labels as samples, at least one sample and one feature."""
    if xa.shape[0] != ya.shape[0]:
        raise DataError(
            f"{what}: x has {xa.shape[0]} samples but y has {ya.shape[0]} labels; "
            "they must have the same length"
        )
    if xa.shape[0] == 0:
        raise DataError(f"{what}: x and y are empty (0 samples); provide at least one sample")
    if xa.shape[1] == 0:
        raise DataError(f"{what}: x has 0 features per sample; provide at least one feature column")


def _check_finite_features(xa: np.ndarray, what: str) -> None:
    """No NaN or inf among floating features; the first one is located."""
    if xa.dtype.kind != "f":
        return
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


def _check_label_range(ya: np.ndarray, n_classes, what: str) -> None:
    """Labels are >= 0, fit a class index, and are < ``n_classes`` when it is given."""
    if ya.dtype.kind == "i":
        neg = ya < 0
        if neg.any():
            i = int(np.flatnonzero(neg)[0])
            raise DataError(
                f"{what}: y has {int(neg.sum())} negative label(s) (first: {int(ya[i])} at "
                f"index {i}); labels must be 0..n_classes-1: {REMAP_HINT}"
            )
    y_max = int(ya.max())
    if y_max > np.iinfo(np.int32).max:
        raise DataError(
            f"{what}: y has label {y_max}, which is far too large for a class index; "
            f"labels must be 0..n_classes-1: {REMAP_HINT}"
        )
    if n_classes is not None and y_max >= n_classes:
        over = ya >= n_classes
        i = int(np.flatnonzero(over)[0])
        raise DataError(
            f"{what}: y has {int(over.sum())} label(s) >= n_classes={int(n_classes)} (first: "
            f"{int(ya[i])} at index {i}); labels must be 0..{int(n_classes) - 1}"
        )


def _convert(xa: np.ndarray, ya: np.ndarray, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """New contiguous float32 x and int64 y (refusing features that overflow float32)."""
    with np.errstate(over="ignore"):
        x32 = np.ascontiguousarray(xa, dtype=np.float32)
    if xa.dtype.kind == "f" and not np.isfinite(x32).all():
        raise DataError(
            f"{what}: x has values beyond the float32 range (|x| > 3.4e38) that overflow; "
            "rescale the features"
        )
    xt = torch.from_numpy(x32.copy() if x32 is xa or np.may_share_memory(x32, xa) else x32)
    yt = torch.from_numpy(np.array(ya, dtype=np.int64, copy=True))
    return xt, yt


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
    _check_n_classes_arg(n_classes, what)
    xa = _to_numpy(x, what, "x")
    ya = _to_numpy(y, what, "y")
    _check_feature_type_and_shape(xa, what)
    _check_label_shape(ya, what)
    _check_label_dtype(ya, what)
    _check_lengths(xa, ya, what)
    _check_finite_features(xa, what)
    _check_label_range(ya, n_classes, what)
    return _convert(xa, ya, what)
