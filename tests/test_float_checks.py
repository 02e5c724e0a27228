"""Float flags that reach torch are checked up front: one ``error:`` line naming the flag, exit 2,
before any data is loaded (never a traceback from inside Adam)."""

import pytest
import torch

from metaplastic.checks import check_number
from metaplastic.cli import main
from metaplastic.errors import MetaplasticError
from metaplastic.metatrain import MetaConfig
from metaplastic.runner import TrainJob

BAD = {  # the flags, the start of the error line
    "gd-lr float32 overflow in Adam": (["train", "--gd", "output", "--gd-lr", "3.4e38"], "--gd-lr"),
    "gd-lr inf": (["train", "--gd", "output", "--gd-lr", "1e309"], "argument --gd-lr"),
    "gd-lr 0": (["train", "--gd", "output", "--gd-lr", "0"], "--gd-lr"),
    "gd-lr float64 overflow": (["train", "--gd", "all", "--gd-lr", "1e308", "--dtype", "float64"], "--gd-lr"),
    "train eta beyond float32": (["train", "--eta", "1e39"], "--eta"),
    "lr float32 overflow in Adam": (["learn-rule", "--lr", "3.4e38"], "--lr"),
    "lr nan": (["learn-rule", "--lr", "nan"], "argument --lr"),
    "lr negative": (["learn-rule", "--lr=-1e-2"], "--lr"),
    "eta beyond float32": (["learn-rule", "--eta", "1e300"], "--eta"),
    "init-scale negative": (["learn-rule", "--init-scale", "-1"], "--init-scale"),
    "init-scale beyond float32": (["learn-rule", "--init-scale", "1e39"], "--init-scale"),
    "weight-decay negative": (["learn-rule", "--weight-decay", "-1"], "--weight-decay"),
    "weight-decay beyond float32": (["learn-rule", "--weight-decay", "1e300"], "--weight-decay"),
    "es-sigma 0": (["learn-rule", "--estimator", "es", "--es-sigma", "0"], "--es-sigma"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_float_flag_is_one_error_line_before_the_data(case, capsys, tmp_path, monkeypatch):
    args, flag = BAD[case]
    empty = tmp_path / "nodata"  # a command that got as far as loading MNIST would fail on that instead
    empty.mkdir()
    monkeypatch.setenv("METAPLASTIC_DATA", str(empty))
    monkeypatch.chdir(tmp_path)
    rc = main([*args, "--dataset", "mnist", "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "", err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag}"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodata"]  # no run folder written


def test_adam_bound_is_ten_times_the_dtype_limit():
    largest = torch.finfo(torch.float32).max / 10
    check_number("--lr", largest, "float32", factor=10)
    with pytest.raises(MetaplasticError, match=r"^--lr must be a positive finite number no larger than 3.403e\+37 "
                                               r"\(Adam's first step, 10 x lr, must fit float32\), got "):
        check_number("--lr", largest * 1.001, "float32", factor=10, why="Adam's first step, 10 x lr")
    check_number("--lr", largest * 1.001, "float64", factor=10)  # fits float64


@pytest.mark.parametrize("value", [0.0, -0.0, 1.0, 3])
def test_zero_ok_accepts_zero_and_positive(value):
    check_number("--init-scale", value, torch.float32, zero_ok=True)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1e-300, True, "1", None])
def test_non_numbers_and_negatives_are_refused(value):
    with pytest.raises(MetaplasticError, match="^--x must be a finite number >= 0"):
        check_number("--x", value, "float64", zero_ok=True)


def test_the_python_api_checks_too():
    with pytest.raises(MetaplasticError, match="^--lr "):
        MetaConfig(lr=float("inf")).validate()
    with pytest.raises(MetaplasticError, match="^--init-scale "):
        MetaConfig(init_scale=-0.5).validate()
    with pytest.raises(MetaplasticError, match="^--gd-lr "):
        TrainJob(gd="output", gd_lr=1e39).validate()
    MetaConfig(lr=1e37, dtype="float64", init_scale=0.0, weight_decay=0.0).validate()
