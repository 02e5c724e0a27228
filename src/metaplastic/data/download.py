"""``metaplastic data fetch``: download the MNIST / Fashion-MNIST files of appendix A.2, checked."""

from __future__ import annotations

import http.client
import os
import pathlib
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from typing import Iterable

from metaplastic.errors import DataError

from .checksums import _check_content, _check_path, _expected_text
from .dataset import IMAGE_DATASETS, IMAGE_FILES, _normalize_name
from .idx import ENV_DATA, _find_file, _load_bytes, data_dir as _resolve_data_dir

DEFAULT_BASE_URLS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}


DOWNLOAD_TIMEOUT_S = 30.0



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


def _check_base_urls(base_urls) -> dict[str, str]:
    """The mirror of each dataset: :data:`DEFAULT_BASE_URLS` overridden by ``base_urls``."""
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
    return urls


def _make_folder(folder: pathlib.Path) -> list[pathlib.Path]:
    """Create ``folder`` and its missing parents; return the ones created, outermost first."""
    created = []
    p = folder
    while not p.exists() and p != p.parent:
        created.append(p)
        p = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {folder} ({exc.strerror or exc}); pick a writable data directory") from None
    return created[::-1]


def _remove_empty(created: list[pathlib.Path]) -> None:
    """Remove the folders a failed fetch created, innermost first, as long as they are empty."""
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:  # not empty (a file this run verified, or someone else's) or gone
            return


def _fetch_file(dataset: str, fname: str, folder: pathlib.Path, url: str, progress: bool,
                timeout: float) -> dict:
    """One file: keep a good copy, else download to a temporary file, check it, rename it in."""
    existing = _find_file(folder, fname)
    if existing is not None:
        rec = _check_path(dataset, fname, existing)
        if rec["status"] == "ok":
            rec.update(status="present", url=url)
            return rec
    fd, tmp_name = tempfile.mkstemp(prefix=f".{fname}.", suffix=".part", dir=folder)
    os.close(fd)
    tmp = pathlib.Path(tmp_name)
    try:
        _download(url, tmp, folder, progress, timeout)
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
    return {"dataset": dataset, "file": fname, "path": str(final), "status": "downloaded",
            "sha256": sha, "note": note, "url": url}


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

    A failed fetch leaves no partial file behind, and removes the folders it created
    (``<name>/``, and the data directory itself) when they are empty; files it already
    downloaded and checked are kept, so running it again fetches only the rest.

    Returns one dict per file: ``dataset, file, path, status, sha256, note, url``.
    """
    todo = _normalize_fetch_names(names)
    urls = _check_base_urls(base_urls)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise DataError(f"timeout must be a positive number of seconds, got {timeout!r}")
    base = _resolve_data_dir(root)
    results = []
    for dataset in todo:
        folder = base / dataset
        created = _make_folder(folder)
        prefix = urls[dataset] if urls[dataset].endswith("/") else urls[dataset] + "/"
        try:
            for fname in IMAGE_FILES:
                url = prefix + fname + ".gz"
                results.append(_fetch_file(dataset, fname, folder, url, progress, float(timeout)))
        except BaseException:  # network failure, bad checksum, Ctrl-C: tidy up, then report
            _remove_empty(created)
            raise
    return results
