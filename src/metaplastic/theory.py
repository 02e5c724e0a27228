"""Output-rule theory (paper section 3.1, Table 1, Theorems 1-4, appendix B).

:func:`train_single_unit` is the setting of section 3.1: one linear threshold
unit on +-1 (or 0/1) features, trained by an output rule read as Table 1 reads
it: rows are the feature's bit (``x_i > 0``), columns the unit's prediction
(column 0 when it predicts the negative class, i.e. on a mistake whose true
label is positive; column 1 when it predicts the positive class).  On a
mistake it applies ``w_i += eta * r[bit_i, col]`` (additive) or
``w_i *= m[bit_i, col] ** eta`` (multiplicative), using the same rule objects
and the same update arithmetic as the network.  With the Table 1 tables this
is exactly the perceptron and Winnow (tests/test_theory.py).
"""

from __future__ import annotations

import torch

from .rules import Rule


def train_single_unit(rule: Rule, X: torch.Tensor, y: torch.Tensor, *, eta: float | None = None,
                      threshold: float = 0.0, w0: torch.Tensor | None = None,
                      epochs: int = 1) -> tuple[torch.Tensor, list[torch.Tensor], int]:
    """Train one threshold unit with an output rule; returns final w, trajectory, mistakes.

    X ``[n, d]`` with entries +-1 or 0/1; y ``[n]`` in {0, 1} (1 = positive);
    the unit predicts positive when ``w . x > threshold`` (the perceptron's
    ``sign`` with sign(0) = -1; Winnow uses threshold n).  ``w0`` defaults to 0 (additive) or 1 (multiplicative).
    The trajectory holds w after every mistake.
    """
    table = rule.table().detach().to(X.dtype)
    eta = rule.eta if eta is None else eta
    mult = rule.mode == "multiplicative"
    if w0 is None:
        w0 = torch.full((X.shape[1],), 1.0 if mult else 0.0, dtype=X.dtype)
    w = w0.clone()
    traj = []
    mistakes = 0
    bits = (X > 0).long()
    for _ in range(epochs):
        for t in range(X.shape[0]):
            positive = bool(X[t] @ w > threshold)
            if positive == bool(y[t]):
                continue
            mistakes += 1
            col = 1 if positive else 0
            delta = table[bits[t], col]
            if mult:
                w = w * torch.exp(eta * delta)
            else:
                w = w + eta * delta
            traj.append(w.clone())
    return w, traj, mistakes
