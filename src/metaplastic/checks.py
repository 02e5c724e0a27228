"""Checks on the numbers a config hands to torch, made before any data is loaded.

A float flag (a learning rate, a step size, a scale) that is not a number, is
out of range, or does not fit the run's dtype would otherwise surface as a
traceback from deep inside torch (``RuntimeError: value cannot be converted to
type float without overflow`` in Adam) or as a silent misreading (a negative
``init_scale`` started the table at zero).  :func:`check_number` turns each into
one :class:`~metaplastic.errors.MetaplasticError` line that names the flag.
"""

from __future__ import annotations

import math

import torch

from .errors import MetaplasticError

#: Adam's first step is ``lr / (1 - beta1)`` = 10 lr per parameter (torch's default beta1 = 0.9).
ADAM_STEP_PER_LR = 10.0


def check_number(flag: str, value, dtype: str | torch.dtype, *, zero_ok: bool = False,
                 factor: float = 1.0, why: str = "") -> None:
    """``value`` is a real number > 0 (``>= 0`` with ``zero_ok``) with ``factor * value`` no larger
    than the largest finite number of ``dtype`` ("float32", "float64" or a torch dtype).

    ``why`` says where ``factor`` comes from, e.g. ``"Adam's first step, 10 x lr"``.
    """
    dt = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    largest = torch.finfo(dt).max / factor
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          and (value >= 0 if zero_ok else value > 0) and value <= largest)
    if not ok:
        where = f"{why}, must fit {dt}".replace("torch.", "") if why else f"the largest {dt} number".replace("torch.", "")
        kind = "finite number >= 0" if zero_ok else "positive finite number"
        raise MetaplasticError(f"{flag} must be a {kind} no larger than {largest:.4g} ({where}), got {value!r}")
