"""Known digests of the MNIST / Fashion-MNIST files (appendix A.2) and ``metaplastic data verify``."""

from __future__ import annotations

import hashlib
import pathlib
from typing import NamedTuple

from metaplastic.errors import DataError

from .dataset import IMAGE_DATASETS, IMAGE_FILES
from .idx import _find_file, _load_bytes, _parse_idx, data_dir as _resolve_data_dir


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
