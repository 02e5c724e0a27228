"""MNIST and Fashion-MNIST on disk (appendix A.2): where the files live, the IDX reader, the loader.

The images are 28x28 pixels vectorised to 784 dimensions and divided by 255; a
seeded random subset of the training and test images is used (A.2: "ten thousand
random images").
"""

from __future__ import annotations

import gzip
import math
import os
import pathlib
import zlib

import numpy as np
import torch

from metaplastic.errors import DataError

from .dataset import IMAGE_FILES, Dataset, _dataset_generator, _subset_indices

ENV_DATA = "METAPLASTIC_DATA"


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
