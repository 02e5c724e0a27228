"""Tests for metaplastic.data (paper section 2 "Data sets", appendix A.2).

No network: fetch() is exercised against a local http.server on 127.0.0.1.
"""

from __future__ import annotations

import functools
import json
import gzip
import hashlib
import http.server
import os
import re
import shutil
import socket
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from metaplastic import data
from metaplastic.data import checksums, loading, synthetic
from metaplastic.data import (
    DATASET_NAMES,
    DataWarning,
    IMAGE_FILES,
    SYNTHETIC,
    Dataset,
    KnownDigest,
    fetch,
    load_dataset,
    read_idx,
    register_synthetic,
    validate_xy,
    verify,
)
from metaplastic.errors import DataError, MetaplasticError

SYNTH = ("halfspace", "relu1", "relu2")


def _shared_data() -> Path | None:
    env = os.environ.get("METAPLASTIC_DATA", "").strip()
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if all((root / ds / (f + ".gz")).is_file() or (root / ds / f).is_file()
           for ds in ("mnist", "fashion-mnist") for f in IMAGE_FILES):
        return root
    return None


SHARED = _shared_data()
needs_shared = pytest.mark.skipif(
    SHARED is None,
    reason="offline MNIST/Fashion-MNIST files not found (set METAPLASTIC_DATA or provide ../shared/data)",
)


# --------------------------------------------------------------------------- helpers


def idx_bytes(arr: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
             np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}
    big = arr.astype(arr.dtype.newbyteorder(">")) if arr.dtype.itemsize > 1 else arr
    header = bytes([0, 0, codes[big.dtype], arr.ndim]) + np.array(arr.shape, dtype=">u4").tobytes()
    return header + big.tobytes()


def make_image_files(folder: Path, n_train=30, n_test=20, gz=True, seed=0) -> dict[str, bytes]:
    """Tiny fake MNIST-like set; returns uncompressed content by file name."""
    rng = np.random.default_rng(seed)
    content = {
        "train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)),
        "train-labels-idx1-ubyte": idx_bytes(np.arange(n_train, dtype=np.uint8) % 10),
        "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)),
        "t10k-labels-idx1-ubyte": idx_bytes(np.arange(n_test, dtype=np.uint8) % 10),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, raw in content.items():
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw, mtime=0))
        else:
            (folder / name).write_bytes(raw)
    return content


def patch_digests(monkeypatch, dataset: str, content: dict[str, bytes]) -> None:
    table = dict(checksums.KNOWN_DIGESTS)
    for name, raw in content.items():
        table[(dataset, name)] = (KnownDigest("sha256", hashlib.sha256(raw).hexdigest(), "test file"),)
    monkeypatch.setattr(checksums, "KNOWN_DIGESTS", table)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list = []

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serve tmp_path/'srv' on 127.0.0.1; yields (base_url, served_dir, request_log)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv_dir = tmp_path / "srv"
    srv_dir.mkdir()
    log: list = []
    handler = type("H", (_QuietHandler,), {"requests": log})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(srv_dir)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", srv_dir, log
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- synthetic


def test_error_type_is_value_error():
    assert issubclass(DataError, MetaplasticError) and issubclass(DataError, ValueError)


@pytest.mark.parametrize("name", SYNTH)
def test_synthetic_deterministic_shapes(name):
    a = load_dataset(name, n_train=1500, n_test=700, seed=0)
    b = load_dataset(name, n_train=1500, n_test=700, seed=0)
    c = load_dataset(name, n_train=1500, n_test=700, seed=1)
    assert isinstance(a, Dataset) and a.name == name and a.n_classes == 2 and a.dim == 10
    for t1, t2 in ((a.x_train, b.x_train), (a.y_train, b.y_train), (a.x_test, b.x_test), (a.y_test, b.y_test)):
        assert torch.equal(t1, t2)
    assert not torch.equal(a.x_train, c.x_train)
    assert not torch.equal(a.y_train, c.y_train)
    assert a.x_train.shape == (1500, 10) and a.x_test.shape == (700, 10)
    assert a.y_train.shape == (1500,) and a.y_test.shape == (700,)
    assert a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    for y in (a.y_train, a.y_test):
        assert set(y.unique().tolist()) == {0, 1}
    # inputs are standard normal (section 2)
    assert abs(float(a.x_train.mean())) < 0.05 and abs(float(a.x_train.std()) - 1) < 0.05
    assert "n_train=1500" in repr(a)


@pytest.mark.parametrize("name", ("relu1", "relu2"))
def test_relu_train_and_test_share_the_teacher(name):
    # rebuild the teacher from the same generator: it labels both splits exactly
    ds = load_dataset(name, n_train=1200, n_test=500, seed=3)
    teacher = data._ReluTeacher(data._dataset_generator(3, name))
    assert torch.equal(teacher.labels(ds.x_train), ds.y_train)
    assert torch.equal(teacher.labels(ds.x_test), ds.y_test)


def test_halfspace_is_linearly_separable_across_splits():
    ds = load_dataset("halfspace", n_train=2000, n_test=2000, seed=5)
    # least squares on +-1 targets recovers the direction of w for Gaussian inputs
    w = torch.linalg.lstsq(ds.x_train.double(), (2.0 * ds.y_train - 1).double().unsqueeze(1)).solution
    acc = float(((ds.x_test.double() @ w).squeeze(1) > 0).long().eq(ds.y_test).float().mean())
    assert acc > 0.95, acc


def test_relu1_relu2_are_different_teachers():
    a = load_dataset("relu1", n_train=1000, n_test=100, seed=0)
    b = load_dataset("relu2", n_train=1000, n_test=100, seed=0)
    assert not torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.y_train, b.y_train)
    # same inputs through both teachers: the labelling functions differ
    t1 = data._ReluTeacher(data._dataset_generator(0, "relu1"))
    t2 = data._ReluTeacher(data._dataset_generator(0, "relu2"))
    x = torch.randn(4000, 10, generator=torch.Generator().manual_seed(123))
    agree = float((t1.labels(x) == t2.labels(x)).float().mean())
    assert agree < 0.9, agree
    assert torch.equal(t1.W, data._ReluTeacher(data._dataset_generator(0, "relu1")).W)


@pytest.mark.parametrize("name", ("relu1", "relu2"))
def test_relu_classes_not_degenerate(name):
    for seed in range(3):
        y = load_dataset(name, n_train=2000, n_test=10, seed=seed).y_train
        frac = float(y.float().mean())
        assert 0.08 < frac < 0.92, (seed, frac)


def test_relu_balancing_kicks_in_for_skewed_teacher(monkeypatch):
    # force a teacher whose minority class is tiny by making the bias threshold strict
    monkeypatch.setattr(synthetic, "BALANCE_MIN_FRACTION", 0.5 + 1e-9)
    t = data._ReluTeacher(data._dataset_generator(0, "relu2"))
    assert t.balanced
    x = torch.randn(20000, 10, generator=torch.Generator().manual_seed(1))
    frac = float(t.labels(x).float().mean())
    assert abs(frac - 0.5) < 0.03


def test_register_synthetic_and_rnn_placeholder(monkeypatch):
    monkeypatch.setattr(synthetic, "SYNTHETIC", dict(SYNTHETIC))
    monkeypatch.setattr(synthetic, "_SYNTHETIC_CLASSES", dict(synthetic._SYNTHETIC_CLASSES))
    monkeypatch.setattr(loading, "_LAZY_PROVIDERS", {})
    synthetic.SYNTHETIC.pop("rnn", None)
    assert "rnn" in DATASET_NAMES
    with pytest.raises(DataError, match="rnn.*not been registered"):
        load_dataset("rnn", n_train=10, n_test=10)

    calls = []

    def fake(n_total, generator):
        calls.append(n_total)
        x = torch.randn(n_total, 4, generator=generator)
        return x, (x[:, 0] > 0).long()

    data.register_synthetic("rnn", fake)
    ds = load_dataset("rnn", n_train=20, n_test=5, seed=2)
    assert calls == [25] and ds.x_train.shape == (20, 4) and ds.x_test.shape == (5, 4)
    assert torch.equal(ds.x_train, load_dataset("rnn", n_train=20, n_test=5, seed=2).x_train)

    data.register_synthetic("short", lambda n, g: (torch.zeros(n - 1, 3), torch.zeros(n - 1, dtype=torch.long)))
    with pytest.raises(DataError, match="asked for 6 points"):
        load_dataset("short", n_train=3, n_test=3)
    data.register_synthetic("badlab", lambda n, g: (torch.zeros(n, 3), torch.full((n,), 2)))
    with pytest.raises(DataError, match="n_classes=2"):
        load_dataset("badlab", n_train=3, n_test=3)
    with pytest.raises(DataError, match="reserved"):
        register_synthetic("mnist", fake)
    with pytest.raises(DataError, match="callable"):
        register_synthetic("x", 3)


@pytest.mark.parametrize("kw, msg", [
    ({"n_train": 0}, "n_train must be a positive integer"),
    ({"n_test": -5}, "n_test must be a positive integer"),
    ({"n_train": 10.0}, "n_train must be a positive integer"),
    ({"n_train": True}, "n_train must be a positive integer"),
    ({"seed": "0"}, "seed must be an integer"),
])
def test_bad_sizes_and_seed(kw, msg):
    with pytest.raises(DataError, match=msg):
        load_dataset("halfspace", **kw)


def test_unknown_dataset_name():
    with pytest.raises(DataError) as ei:
        load_dataset("cifar10")
    msg = str(ei.value)
    assert "unknown dataset 'cifar10'" in msg
    for n in DATASET_NAMES:
        assert n in msg
    assert ".npz" in msg
    with pytest.raises(DataError, match="dataset must be a name"):
        load_dataset(42)


def test_name_normalisation():
    a = load_dataset("HalfSpace", n_train=5, n_test=5)
    b = load_dataset("halfspace", n_train=5, n_test=5)
    assert torch.equal(a.x_train, b.x_train)


# --------------------------------------------------------------------------- data_dir


def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("METAPLASTIC_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.data_dir(tmp_path / "x") == tmp_path / "x"
    assert data.data_dir() == tmp_path / "env"
    monkeypatch.delenv("METAPLASTIC_DATA")
    assert data.data_dir() == tmp_path / "xdg" / "metaplastic"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.data_dir() == tmp_path / "home" / ".cache" / "metaplastic"
    with pytest.raises(DataError, match="must be a path"):
        data.data_dir(3)


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"])
def test_read_idx_raw_and_gzip(tmp_path, dtype):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if np.dtype(dtype) == np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = idx_bytes(arr)
    (tmp_path / "a").write_bytes(raw)
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "gz-without-suffix").write_bytes(gzip.compress(raw))  # detected by magic
    (tmp_path / "raw-with-suffix.gz").write_bytes(raw)
    for name in ("a", "a.gz", "gz-without-suffix", "raw-with-suffix.gz"):
        got = read_idx(tmp_path / name)
        assert got.shape == (2, 3, 4) and got.dtype.isnative
        np.testing.assert_array_equal(got, arr)
    got[0, 0, 0] = 1  # writable


@pytest.mark.parametrize("case, msg", [
    ("truncated", "truncated IDX file"),
    ("trailing", "unexpected trailing bytes"),
    ("bad_magic", "not an IDX file"),
    ("bad_type", "not an IDX file"),
    ("short", "too short for an IDX header"),
    ("short_header", "truncated IDX header"),
    ("corrupt_gzip", "corrupt gzip"),
    ("truncated_gzip", "corrupt gzip"),
    ("empty", "too short"),
])
def test_read_idx_rejects_broken_files(tmp_path, case, msg):
    raw = idx_bytes(np.arange(100, dtype=np.uint8).reshape(4, 25))
    blob = {
        "truncated": raw[:-7],
        "trailing": raw + b"\x00" * 5,
        "bad_magic": b"PK\x03\x04" + raw[4:],
        "bad_type": b"\x00\x00\x07\x02" + raw[4:],
        "short": raw[:3],
        "short_header": raw[:9],
        "corrupt_gzip": gzip.compress(raw)[:10] + b"garbage" * 10,
        "truncated_gzip": gzip.compress(raw)[:-12],
        "empty": b"",
    }[case]
    path = tmp_path / f"{case}-idx1-ubyte"
    path.write_bytes(blob)
    with pytest.raises(DataError, match=msg) as ei:
        read_idx(path)
    assert str(path) in str(ei.value)
    assert "\n" not in str(ei.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DataError, match="is a directory"):
        read_idx(tmp_path)


# --------------------------------------------------------------------------- image datasets (fake files)


def test_image_loading_from_fake_files(tmp_path):
    make_image_files(tmp_path / "mnist", n_train=30, n_test=20, gz=False)
    ds = load_dataset("mnist", n_train=12, n_test=20, seed=4, data_dir=tmp_path)
    assert ds.x_train.shape == (12, 784) and ds.x_test.shape == (20, 784) and ds.n_classes == 10
    assert ds.x_train.dtype == torch.float32 and float(ds.x_train.max()) <= 1.0
    # all test items requested -> file order kept
    np.testing.assert_array_equal(ds.y_test.numpy(), np.arange(20) % 10)
    raw = read_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte").reshape(20, -1)
    assert torch.equal(ds.x_test, torch.from_numpy(raw.astype(np.float32) / 255))
    again = load_dataset("mnist", n_train=12, n_test=20, seed=4, data_dir=tmp_path)
    other = load_dataset("mnist", n_train=12, n_test=20, seed=5, data_dir=tmp_path)
    assert torch.equal(ds.x_train, again.x_train)
    assert not torch.equal(ds.y_train, other.y_train) or not torch.equal(ds.x_train, other.x_train)
    with pytest.raises(DataError, match="holds only 30 images"):
        load_dataset("mnist", n_train=31, n_test=5, data_dir=tmp_path)


def test_image_count_mismatch(tmp_path):
    folder = tmp_path / "fashion-mnist"
    make_image_files(folder)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(29, np.uint8))))
    with pytest.raises(DataError, match="30 images but .* 29 labels"):
        load_dataset("fashion-mnist", n_train=5, n_test=5, data_dir=tmp_path)


def test_missing_image_files_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("METAPLASTIC_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataError) as ei:
        load_dataset("mnist")
    msg = str(ei.value)
    assert str(tmp_path / "empty" / "mnist") in msg
    assert "METAPLASTIC_DATA" in msg and "metaplastic data fetch" in msg
    for f in IMAGE_FILES:
        assert f in msg


# --------------------------------------------------------------------------- real files


@needs_shared
def test_real_mnist():
    imgs = read_idx(SHARED / "mnist" / "train-images-idx3-ubyte.gz")
    assert imgs.shape == (10000, 28, 28) and imgs.dtype == np.uint8
    ds = load_dataset("mnist", n_train=10000, n_test=10000, data_dir=SHARED)
    assert ds.x_train.shape == (10000, 784) and ds.x_test.shape == (10000, 784)
    assert float(ds.x_train.min()) >= 0.0 and float(ds.x_train.max()) <= 1.0
    assert set(ds.y_train.unique().tolist()) == set(range(10))
    with pytest.raises(DataError, match="holds only 10000 images"):
        load_dataset("mnist", n_train=10001, data_dir=SHARED)


@needs_shared
def test_real_fashion_subset_and_raw_copy(tmp_path):
    ds = load_dataset("fashion-mnist", n_train=500, n_test=300, seed=1, data_dir=SHARED)
    assert ds.x_train.shape == (500, 784) and ds.n_classes == 10
    # raw (decompressed) copies read the same as the .gz
    folder = tmp_path / "mnist"
    folder.mkdir()
    for f in IMAGE_FILES:
        (folder / f).write_bytes(gzip.decompress((SHARED / "mnist" / (f + ".gz")).read_bytes()))
    np.testing.assert_array_equal(read_idx(folder / "t10k-labels-idx1-ubyte"),
                                  read_idx(SHARED / "mnist" / "t10k-labels-idx1-ubyte.gz"))
    a = load_dataset("mnist", n_train=100, n_test=100, seed=7, data_dir=tmp_path)
    b = load_dataset("mnist", n_train=100, n_test=100, seed=7, data_dir=SHARED)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)


@needs_shared
def test_verify_real_files():
    recs = verify(SHARED)
    assert len(recs) == 8 and all(r["status"] == "ok" for r in recs), recs
    notes = {(r["dataset"], r["file"]): r["note"] for r in recs}
    assert notes[("mnist", "train-images-idx3-ubyte")] == "offline subset (10,000 images)"


# --------------------------------------------------------------------------- verify


def test_verify_statuses(tmp_path, monkeypatch):
    content = make_image_files(tmp_path / "mnist", gz=True)
    patch_digests(monkeypatch, "mnist", content)
    folder = tmp_path / "mnist"
    # mismatch: a valid IDX with other content
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.ones(20, np.uint8)))
    # corrupt: broken gzip
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b" + b"junk" * 20)
    # missing
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    recs = {(r["dataset"], r["file"]): r for r in verify(tmp_path)}
    assert len(recs) == 8
    assert recs[("mnist", "train-images-idx3-ubyte")]["status"] == "ok"
    assert recs[("mnist", "train-images-idx3-ubyte")]["sha256"] == hashlib.sha256(
        content["train-images-idx3-ubyte"]).hexdigest()
    assert recs[("mnist", "train-labels-idx1-ubyte")]["status"] == "missing"
    assert recs[("mnist", "t10k-images-idx3-ubyte")]["status"] == "corrupt"
    m = recs[("mnist", "t10k-labels-idx1-ubyte")]
    assert m["status"] == "mismatch" and "expected one of" in m["note"]
    assert all(recs[("fashion-mnist", f)]["status"] == "missing" for f in IMAGE_FILES)
    for r in recs.values():
        assert set(r) == {"dataset", "file", "path", "status", "sha256", "note"}


def test_verify_structurally_corrupt_raw(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(10, np.uint8))[:-1])
    rec = [r for r in verify(tmp_path) if r["file"] == "train-labels-idx1-ubyte" and r["dataset"] == "mnist"][0]
    assert rec["status"] == "corrupt" and "truncated" in rec["note"]


# --------------------------------------------------------------------------- fetch


def test_fetch_downloads_checks_and_skips(tmp_path, monkeypatch, server):
    base, srv_dir, log = server
    content = make_image_files(srv_dir, gz=True)
    patch_digests(monkeypatch, "mnist", content)
    root = tmp_path / "root"
    res = fetch(["mnist"], root=root, base_urls={"mnist": base}, progress=False)
    assert [r["status"] for r in res] == ["downloaded"] * 4
    assert len(log) == 4
    for f, raw in content.items():
        p = root / "mnist" / (f + ".gz")
        assert p.is_file() and gzip.decompress(p.read_bytes()) == raw
    assert not list((root / "mnist").glob(".*part"))
    res2 = fetch("mnist", root=root, base_urls={"mnist": base}, progress=True)
    assert [r["status"] for r in res2] == ["present"] * 4
    assert len(log) == 4  # nothing downloaded the second time
    assert all(r["status"] == "ok" for r in verify(root) if r["dataset"] == "mnist")
    ds = load_dataset("mnist", n_train=10, n_test=10, data_dir=root)
    assert ds.x_train.shape == (10, 784)


def test_fetch_checksum_mismatch_leaves_no_file(tmp_path, monkeypatch, server):
    base, srv_dir, _ = server
    content = make_image_files(srv_dir, gz=True)
    patch_digests(monkeypatch, "mnist", content)
    (srv_dir / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.ones(30, np.uint8))))
    root = tmp_path / "root"
    with pytest.raises(DataError, match="checksum mismatch.*expected one of") as ei:
        fetch(["mnist"], root=root, base_urls={"mnist": base}, progress=False)
    assert "train-labels-idx1-ubyte.gz" in str(ei.value)
    folder = root / "mnist"
    assert not (folder / "train-labels-idx1-ubyte.gz").exists()
    assert not (folder / "train-labels-idx1-ubyte").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["train-images-idx3-ubyte.gz"]


def test_fetch_replaces_bad_existing_file(tmp_path, monkeypatch, server):
    base, srv_dir, log = server
    content = make_image_files(srv_dir, gz=True)
    patch_digests(monkeypatch, "mnist", content)
    root = tmp_path / "root"
    make_image_files(root / "mnist", gz=True, seed=99)  # other images, same labels
    res = fetch(["mnist"], root=root, base_urls={"mnist": base}, progress=False)
    assert [r["status"] for r in res] == ["downloaded", "present", "downloaded", "present"]
    assert all(r["status"] == "ok" for r in verify(root) if r["dataset"] == "mnist")


@needs_shared
def test_fetch_real_checksums(tmp_path, server):
    base, srv_dir, _ = server
    for f in IMAGE_FILES:
        shutil.copy(SHARED / "mnist" / (f + ".gz"), srv_dir / (f + ".gz"))
    res = fetch(["mnist"], root=tmp_path / "r", base_urls={"mnist": base}, progress=False)
    assert [r["status"] for r in res] == ["downloaded"] * 4
    assert res[0]["note"] == "offline subset (10,000 images)"


def test_fetch_offline_and_http_errors(tmp_path, server):
    base, _, _ = server
    port = free_port()
    with pytest.raises(DataError, match="offline") as ei:
        fetch(["fashion-mnist"], root=tmp_path, base_urls={"fashion-mnist": f"http://127.0.0.1:{port}/"},
              progress=False, timeout=5)
    assert str(tmp_path / "fashion-mnist") in str(ei.value)
    assert not (tmp_path / "fashion-mnist").exists()  # the folder it made is gone again
    with pytest.raises(DataError, match="HTTP 404"):
        fetch(["mnist"], root=tmp_path, base_urls={"mnist": base}, progress=False)
    assert not (tmp_path / "mnist").exists()
    assert tmp_path.is_dir()  # a data directory that was there before stays


def test_fetch_offline_cli_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    # no network needed: nothing listens on the port, as on a machine that is offline
    from metaplastic import cli
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "cache" / "metaplastic"
    rc = cli.main(["data", "fetch", "mnist", "--data-dir", str(root),
                   "--base-url", f"http://127.0.0.1:{free_port()}/"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: could not download http://127.0.0.1:") and "offline" in err
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # neither mnist/ nor the folders above it
    # an existing data directory and the files checked so far are kept
    (root / "mnist").mkdir(parents=True)
    (root / "mnist" / "mine.txt").write_text("x")
    assert cli.main(["data", "fetch", "mnist", "--data-dir", str(root),
                     "--base-url", f"http://127.0.0.1:{free_port()}/"]) == 2
    assert [p.name for p in (root / "mnist").iterdir()] == ["mine.txt"]


def test_fetch_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="cannot fetch 'relu1'"):
        fetch(["relu1"], root=tmp_path)
    with pytest.raises(DataError, match="base_urls has unknown dataset"):
        fetch(["mnist"], root=tmp_path, base_urls={"cifar": "http://x/"})


# --------------------------------------------------------------------------- npz and validate_xy


def _good_arrays(n_train=40, n_test=30, d=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.normal(size=(n_train, d)) * 7 + 3,
        "y_train": np.arange(n_train) % classes,
        "x_test": rng.normal(size=(n_test, d)),
        "y_test": np.arange(n_test) % classes,
    }


def test_npz_good(tmp_path):
    arrs = _good_arrays()
    path = tmp_path / "mydata.npz"
    np.savez(path, **arrs)
    ds = load_dataset(str(path))
    assert ds.name == "mydata" and ds.n_classes == 3 and ds.dim == 5
    assert ds.x_train.shape == (40, 5) and ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    # no rescaling
    np.testing.assert_allclose(ds.x_train.numpy(), arrs["x_train"].astype(np.float32))
    # subset when smaller, deterministic; all when larger
    sub = load_dataset(path, n_train=10, n_test=100, seed=1)
    assert sub.x_train.shape == (10, 5) and sub.x_test.shape == (30, 5)
    assert torch.equal(sub.x_train, load_dataset(path, n_train=10, seed=1).x_train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # a 10-point subset may miss a class
        assert not torch.equal(sub.x_train, load_dataset(path, n_train=10, seed=2).x_train)
    # a label found only in the test split is not a new class
    arrs["y_test"] = arrs["y_test"].copy()
    arrs["y_test"][0] = 4
    np.savez(tmp_path / "more.npz", **arrs)
    with pytest.raises(DataError, match=r"class 4 appears only in the test split \(first at y_test index 0"):
        load_dataset(tmp_path / "more.npz")
    # ... unless the user states the number of classes; the classes without training examples warn
    with pytest.warns(DataWarning, match=r"training split has no example of classes 3, 4 \(of 0\.\.4\)"):
        assert load_dataset(tmp_path / "more.npz", n_classes=5).n_classes == 5


def _bad(arrs, **changes):
    out = dict(arrs)
    out.update(changes)
    return {k: v for k, v in out.items() if v is not None}


_G = _good_arrays()
_nan = _G["x_train"].copy(); _nan[3, 2] = np.nan; _nan[7, 0] = np.nan
_inf = _G["x_test"].copy(); _inf[5, 1] = np.inf


@pytest.mark.parametrize("arrays, msg", [
    (_bad(_G, x_train=_nan), r"2 non-finite value\(s\) \(2 NaN, 0 inf\), first at row 3, column 2"),
    (_bad(_G, x_test=_inf), r"test split.*1 non-finite.*row 5, column 1"),
    (_bad(_G, x_train=_G["x_train"][:, 0]), "x must be 2-D.*reshape"),
    (_bad(_G, x_train=_G["x_train"].reshape(40, 5, 1)), "x must be 2-D.*flatten"),
    (_bad(_G, y_train=_G["y_train"].astype(np.float64)), "floating dtype.*whole numbers.*astype"),
    (_bad(_G, y_train=_G["y_train"] + 0.5), "non-integer values"),
    (_bad(_G, x_train=_G["x_train"].astype(str)), "non-numeric dtype"),
    (_bad(_G, y_train=_G["y_train"] - 1), "negative label"),
    (_bad(_G, y_train=np.zeros(40, dtype=np.int64)), "single class"),
    (_bad(_G, x_train=np.zeros((0, 5)), y_train=np.zeros(0, dtype=np.int64)), "empty"),
    (_bad(_G, y_test=None), "missing array.*y_test"),
    (_bad(_G, y_train=_G["y_train"][:-1]), "40 samples but y has 39"),
    (_bad(_G, x_test=np.zeros((30, 4))), "5 features but x_test has 4"),
    (_bad(_G, y_train=_G["y_train"].reshape(-1, 1)), r"y\.ravel"),
])
def test_npz_bad(tmp_path, arrays, msg):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=msg) as ei:
        load_dataset(path)
    assert "\n" not in str(ei.value)


def test_npz_unreadable(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(str(tmp_path / "nothing.npz"))
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DataError, match="not an .npz archive"):
        load_dataset(str(tmp_path / "text.npz"))
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(DataError, match="single .npy array"):
        load_dataset(str(tmp_path / "single.npy"))
    good = tmp_path / "g.npz"
    np.savez(good, **_G)
    (tmp_path / "trunc.npz").write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataError, match="cannot read"):
        load_dataset(str(tmp_path / "trunc.npz"))
    np.savez(tmp_path / "obj.npz", **_bad(_G, y_train=np.array([1, "a"] * 20, dtype=object)))
    with pytest.raises(DataError, match="object"):
        load_dataset(str(tmp_path / "obj.npz"))


def test_validate_xy_direct():
    x, y = validate_xy(torch.ones(4, 2, dtype=torch.float64), torch.tensor([0, 1, 1, 0]))
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    src = np.ones((3, 2), dtype=np.float32)
    x2, _ = validate_xy(src, np.array([0, 1, 2], dtype=np.uint8))
    src[0, 0] = 5  # result does not alias the input
    assert float(x2[0, 0]) == 1.0
    with pytest.raises(DataError, match="n_classes=2"):
        validate_xy(np.ones((3, 2)), np.array([0, 1, 2]), n_classes=2)
    with pytest.raises(DataError, match="complex"):
        validate_xy(np.ones((3, 2), dtype=complex), np.array([0, 1, 1]))
    with pytest.raises(DataError, match="boolean"):
        validate_xy(np.ones((3, 2)), np.array([True, False, True]))
    with pytest.raises(DataError, match="float32 range"):
        validate_xy(np.full((2, 2), 1e300), np.array([0, 1]))
    with pytest.raises(DataError, match="one-hot"):
        validate_xy(np.ones((3, 2)), np.eye(3, dtype=np.int64))
    with pytest.raises(DataError, match="^mine: "):
        validate_xy(np.ones(3), np.array([0, 1, 1]), what="mine")


# --------------------------------------------------------------------------- classes of a user dataset


def _class_npz(path, y_train, y_test):
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.normal(size=(len(y_train), 4)), y_train=np.asarray(y_train, np.int64),
             x_test=rng.normal(size=(len(y_test), 4)), y_test=np.asarray(y_test, np.int64))
    return str(path)


_TEN = np.arange(200) % 10


@pytest.mark.parametrize("y_train, y_test, flags, msg", [
    (_TEN, np.r_[np.arange(49) % 10, 10], [], r"class 10 appears only in the test split"),
    (np.r_[_TEN, 5000], np.arange(50) % 10, [],
     r"y_train has labels up to 5000 \(first at index 200\) but classes 10\.\.4999 never appear in it"),
    (_TEN[_TEN != 7], np.arange(50) % 10, [], r"but class 7 never appears in it \(1 of 10\)"),
    (np.r_[_TEN, 10], np.arange(50) % 10, ["--n-classes", "10"],
     r"\(train split\): y has 1 label\(s\) >= n_classes=10 \(first: 10 at index 200\)"),
    (_TEN, np.r_[np.arange(49) % 10, 10], ["--n-classes", "10"], r"\(test split\).*>= n_classes=10"),
])
@pytest.mark.parametrize("command", ["train", "learn-rule"])
def test_stray_labels_are_refused_by_the_cli(tmp_path, capsys, command, y_train, y_test, flags, msg):
    from metaplastic import cli
    path = _class_npz(tmp_path / "d.npz", y_train, y_test)
    out = tmp_path / "out"
    args = [command, "--dataset", path, "--vertices", "20", "--cap", "10", "--no-progress", *flags]
    args += ["--out", str(out / "r.json" if command == "learn-rule" else out)]
    rc = cli.main(args)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: d.npz") and err.count("\n") == 1, err
    assert re.search(msg, err), err
    assert not out.exists()


def test_stated_n_classes_cli(tmp_path, capsys):
    from metaplastic import cli
    path = _class_npz(tmp_path / "d.npz", _TEN, np.r_[np.arange(49) % 10, 10])
    rc = cli.main(["train", "--dataset", path, "--vertices", "20", "--cap", "10", "--n-classes", "11",
                   "--no-progress", "--json"])
    cap = capsys.readouterr()
    assert rc == 0
    # the data warning first (this tiny model may add degeneracy warnings after it)
    assert cap.err.startswith("warning: d.npz: the training split has no example of class 10 "
                              "(of 0..10); the networks cannot learn to predict it\n")
    res = json.loads(cap.out)
    assert res["dataset"]["n_classes"] == 11 and res["config"]["n_classes"] == 11
    # a built-in dataset has its own number of classes
    rc = cli.main(["train", "--dataset", "halfspace", "--n-train", "50", "--n-test", "50", "--n-classes", "3"])
    err = capsys.readouterr().err
    assert rc == 2 and err == ("error: dataset 'halfspace' has 2 classes, but n_classes=3 was stated; "
                               "drop --n-classes or give that number\n")
    assert load_dataset("mnist" if SHARED.is_dir() else "halfspace", n_train=20, n_test=20,
                        data_dir=SHARED if SHARED.is_dir() else None,
                        n_classes=10 if SHARED.is_dir() else 2).n_classes in (2, 10)


def test_rare_class_and_thin_subset_warn(tmp_path):
    # one label 10 among 200 training labels 0..9: probably stray, but a valid class 0..l-1 set
    path = _class_npz(tmp_path / "d.npz", np.r_[_TEN, 10], np.arange(50) % 10)
    with pytest.warns(DataWarning, match=r"class 10 \(1 example\) has very few training examples"):
        assert load_dataset(path).n_classes == 11
    with pytest.raises(DataError, match=r">= n_classes=10"):
        load_dataset(path, n_classes=10)
    # a drawn training subset that misses a class
    path = _class_npz(tmp_path / "e.npz", _TEN, np.arange(50) % 10)
    with pytest.warns(DataWarning, match=r"the 3 training points drawn \(n_train\) has no example of classes"):
        load_dataset(path, n_train=3)
    with pytest.raises(DataError, match="n_classes must be at least 2"):
        load_dataset(path, n_classes=1)
