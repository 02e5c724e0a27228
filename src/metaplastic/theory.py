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

Also here: :func:`classical_perceptron` / :func:`classical_winnow` (the
classical algorithms in plain Python, for Table 1); appendix B's closed form
for the all-examples, all-rows scheme (:func:`class_sums`,
:func:`closed_form_weights`, :func:`closed_form_features`,
:func:`mse_optimal_output_rule`); and the ``[-a, a; b, -b]`` rules of
Theorems 3 and 4 on one unit (:func:`ab_rule`, :func:`trace_ab_unit`,
:func:`periodic_certificate`, a proof that a run never converges).
"""

from __future__ import annotations

import numpy as np
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


# ---------------------------------------------------------------------------
# Table 1: the classical algorithms, written independently of the rule code
# (plain Python floats, no rule tables), so that agreement with
# train_single_unit is a real check.
# ---------------------------------------------------------------------------

def _rows(X) -> list[list[float]]:
    return [[float(v) for v in row] for row in (X.tolist() if hasattr(X, "tolist") else X)]


def classical_perceptron(X, y, epochs: int = 1) -> tuple[torch.Tensor, list[torch.Tensor], int]:
    """Rosenblatt's perceptron from w = 0: on a mistake ``w <- w + l(x) x``.

    X ``[n, d]`` (+-1 features), y ``[n]`` in {0, 1} (1 = positive, l(x) = +1).
    Predicts positive when ``w . x > 0`` (sign(0) = -1).  Returns the final w,
    w after every mistake, and the number of mistakes (all as float64 tensors).
    """
    rows, labels = _rows(X), [int(v) for v in (y.tolist() if hasattr(y, "tolist") else y)]
    w = [0.0] * len(rows[0])
    traj, mistakes = [], 0
    for _ in range(epochs):
        for x, label in zip(rows, labels):
            s = 1.0 if label else -1.0
            pred = 1.0 if sum(wi * xi for wi, xi in zip(w, x)) > 0 else -1.0
            if pred != s:
                mistakes += 1
                w = [wi + s * xi for wi, xi in zip(w, x)]
                traj.append(torch.tensor(w, dtype=torch.float64))
    return torch.tensor(w, dtype=torch.float64), traj, mistakes


def classical_winnow(X, y, threshold: float, alpha: float = 2.0,
                     epochs: int = 1) -> tuple[torch.Tensor, list[torch.Tensor], int]:
    """Littlestone's Winnow (Winnow2) from w = 1 on 0/1 features.

    Predicts positive when ``w . x > threshold``.  On a mistake every weight of
    an active feature (``x_i = 1``) is multiplied by ``alpha`` (promotion, true
    label 1) or divided by ``alpha`` (demotion, true label 0).
    """
    rows, labels = _rows(X), [int(v) for v in (y.tolist() if hasattr(y, "tolist") else y)]
    w = [1.0] * len(rows[0])
    traj, mistakes = [], 0
    for _ in range(epochs):
        for x, label in zip(rows, labels):
            pred = sum(wi * xi for wi, xi in zip(w, x)) > threshold
            if pred != bool(label):
                mistakes += 1
                w = [(wi * alpha if label else wi / alpha) if xi > 0 else wi for wi, xi in zip(w, x)]
                traj.append(torch.tensor(w, dtype=torch.float64))
    return torch.tensor(w, dtype=torch.float64), traj, mistakes


# ---------------------------------------------------------------------------
# Appendix B: the MSE-optimal output rule, updates on all examples and all rows.
#
# With U = 0 at the start, updating on every example and every row gives
#     U[:, c] = eta * sum_{a, b} r(a, b) * sum_{j : l_c(x_j) != b} chi^a(h_j)
# (b = 0: the examples of label c, b = 1: all others), where chi^1(h)_i = h_i
# for a unit that fired (h_i != 0) and chi^0(h)_i = 1 for one that did not:
# our value gain g_i.  The logits are linear in the four entries of r, so the
# MSE after training is a quadratic in r (a 4 x 4 linear system).
# Entries of r are flattened as r.reshape(4) = [r00, r01, r10, r11].
# ---------------------------------------------------------------------------

def chi(H: torch.Tensor) -> torch.Tensor:
    """``[2, n, V]``: ``chi^0(h)`` (1 where a unit did not fire) and ``chi^1(h)`` (h where it did)."""
    fired = H != 0
    return torch.stack([(~fired).to(H.dtype), torch.where(fired, H, torch.zeros_like(H))])


def class_sums(H: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``S[a, c] = sum over training examples of label c of chi^a(h)``, shape ``[2, l, V]``."""
    onehot = torch.nn.functional.one_hot(y.long(), n_classes).to(H.dtype)  # [n, l]
    return torch.einsum("nc,anv->acv", onehot, chi(H))


def closed_form_weights(S: torch.Tensor, r: torch.Tensor, eta: float = 1.0) -> torch.Tensor:
    """Final output weights ``U [V, l]`` of the all-examples, all-rows scheme (appendix B)."""
    r = r.reshape(2, 2).to(S.dtype)
    total = S.sum(dim=1, keepdim=True)                      # [2, 1, V]
    per_col = torch.stack([S, total - S], dim=1)            # [2(a), 2(b), l, V]
    return eta * torch.einsum("ab,abcv->vc", r, per_col)


def closed_form_features(H: torch.Tensor, S: torch.Tensor, eta: float = 1.0) -> torch.Tensor:
    """``Phi [m, l, 4]`` with logits ``f_c(x) = Phi[x, c] @ r.reshape(4)``.

    ``Phi[x, c, 2a + b] = eta * h(x) . (S[a, c] if b == 0 else sum_c' S[a, c'] - S[a, c])``:
    O(m l V) work.
    """
    total = S.sum(dim=1, keepdim=True)
    per_col = torch.stack([S, total - S], dim=1)            # [2, 2, l, V]
    F = torch.einsum("mv,abcv->mcab", H, per_col)           # [m, l, 2, 2]
    return eta * F.reshape(H.shape[0], S.shape[1], 4)


def mse_loss(logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Appendix B's loss: ``1/n sum_i 1/l sum_c (f_c(x_i) - l_c(x_i))^2`` (no softmax)."""
    onehot = torch.nn.functional.one_hot(y.long(), n_classes).to(logits.dtype)
    return ((logits - onehot) ** 2).mean()


def mse_optimal_output_rule(H: torch.Tensor, y: torch.Tensor, n_classes: int,
                            eta: float = 1.0) -> dict:
    """The output rule minimizing the training MSE after one all-examples, all-rows pass.

    Builds the normal equations ``M r = v`` of the quadratic ``L(r)``
    (``M = Phi^T Phi / (n l)``, ``v = Phi^T onehot / (n l)``) and solves them
    after a diagonal (Jacobi) rescaling, which changes nothing but the
    rounding.  If the system is singular (or numerically so: condition number
    of the rescaled matrix above 1e13) a ridge ``1e-12 * trace/4`` is added and
    ``ridge`` in the result says so.  Returns ``r [2, 2]``, ``M``, ``v``, the
    condition number, the ridge used (0.0 if none), ``S`` and the training loss.
    """
    H = H.to(torch.float64)
    S = class_sums(H, y, n_classes)
    Phi = closed_form_features(H, S, eta).reshape(-1, 4)     # [n*l, 4]
    target = torch.nn.functional.one_hot(y.long(), n_classes).to(H.dtype).reshape(-1)
    nl = Phi.shape[0]
    M = Phi.T @ Phi / nl
    v = Phi.T @ target / nl
    d = M.diagonal().clamp_min(torch.finfo(M.dtype).tiny).rsqrt()
    Ms = d[:, None] * M * d[None, :]
    cond = float(torch.linalg.cond(Ms))
    ridge = 0.0
    z = None
    if cond < 1e13:
        try:
            z = torch.linalg.solve(Ms, d * v)
        except RuntimeError:  # torch.linalg.LinAlgError subclasses RuntimeError
            z = None
    if z is None or not torch.isfinite(z).all():
        ridge = 1e-12 * float(Ms.trace()) / 4
        z = torch.linalg.solve(Ms + ridge * torch.eye(4, dtype=Ms.dtype), d * v)
    r = (d * z).reshape(2, 2)
    U = closed_form_weights(S, r, eta)
    loss = float(mse_loss(H @ U, y, n_classes))
    return {"r": r, "M": M, "v": v, "cond": cond, "ridge": ridge, "S": S, "U": U, "loss": loss}


# ---------------------------------------------------------------------------
# Theorems 3 and 4: one threshold unit on +-1 data with the rule
# r = [-a, a; b, -b] (rows: x_i = -1, x_i = +1; columns: prediction -1, +1).
# ---------------------------------------------------------------------------

def ab_rule(a: float, b: float, dtype=torch.float64):
    """Theorem 3's rule ``[-a, a; b, -b]`` as an additive output rule with eta = 1."""
    from .rules import TableRule
    return TableRule("output", 1, "additive", 1.0,
                     values=torch.tensor([[-a, a], [b, -b]], dtype=dtype), dtype=dtype)


def ab_update(a: float, b: float, x: np.ndarray, label: int) -> np.ndarray:
    """The change the rule makes on an update of example x (+-1 entries) with label +-1.

    Label +1 (column "predicted -1"): ``+b`` where ``x_i = 1``, ``-a`` where ``x_i = -1``;
    label -1: the negation.  For general real x the value-gain reading
    ``|x_i| * r[x_i > 0, col]`` is used (the perceptron ``l(x) x`` when a = b = 1).
    """
    u = np.where(x > 0, b, -a) * np.abs(x)
    return u if label > 0 else -u


def trace_ab_unit(a: float, b: float, X: np.ndarray, y: np.ndarray, epochs: int = 1, *,
                  tie_positive: bool = False, margin: float = 0.0, normalized: bool = True,
                  stop_when_clean: bool = True, certify: bool = True,
                  wstar: np.ndarray | None = None, record_steps: bool = False,
                  max_period: int = 64) -> dict:
    """Instrumented run of the ``[-a, a; b, -b]`` rule on one unit, epoch after epoch.

    X ``[m, n]``, y ``[m]`` in {-1, +1}; w starts at 0.  The unit predicts +1
    when ``w . x > 0`` (or ``>= 0`` with ``tie_positive``).  An example is
    updated when it is mistaken or, with ``margin > 0`` (Theorem 4), when
    ``y w.x <= margin * ||w||`` (``normalized``) or ``|w . x| < margin``
    (literal "within margin of the threshold").  Epochs go through the data in
    order; the run stops after an epoch without mistakes (``stop_when_clean``)
    and, with ``certify``, as soon as :func:`periodic_certificate` (periods up
    to ``max_period`` epochs) proves that the mistakes never stop.  Returns mistakes, updates, epochs, per-epoch
    patterns and weights, the certificate, and (``record_steps``) per-update
    records for checking the steps of the proof of Theorem 3.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.zeros(X.shape[1])
    epoch_w = [w.copy()]
    patterns, epoch_mistakes, epoch_updates = [], [], []
    steps = [] if record_steps else None
    converged = False
    cert = None
    for e in range(epochs):
        w, pat, mis, upd = _ab_epoch(a, b, X, y, w, e, tie_positive=tie_positive, margin=margin,
                                     normalized=normalized, wstar=wstar, steps=steps)
        patterns.append(tuple(pat))
        epoch_mistakes.append(mis)
        epoch_updates.append(upd)
        epoch_w.append(w.copy())
        if mis == 0 and upd == 0 and stop_when_clean:
            converged = True
            break
        if mis == 0 and margin == 0 and stop_when_clean:
            converged = True
            break
        if certify and margin == 0 and mis > 0:
            cert = periodic_certificate(X, y, epoch_w, patterns, max_period=max_period)
            if cert is not None:
                break
    return {"w": w, "mistakes": sum(epoch_mistakes), "updates": sum(epoch_updates), "epochs": len(patterns),
            "converged": converged, "certificate": cert, "epoch_mistakes": epoch_mistakes,
            "epoch_updates": epoch_updates, "patterns": patterns, "epoch_w": epoch_w, "steps": steps}


def _ab_epoch(a: float, b: float, X: np.ndarray, y: np.ndarray, w: np.ndarray, e: int, *,
              tie_positive: bool, margin: float, normalized: bool, wstar, steps: list | None):
    """One epoch of :func:`trace_ab_unit` in order: ``(w, [(j, mistaken)] updated, mistakes,
    updates)``; each update's record appended to ``steps`` when it is a list."""
    pat, mis, upd = [], 0, 0
    for j in range(X.shape[0]):
        x = X[j]
        s = float(x @ w)
        pos = s > 0 or (tie_positive and s == 0)
        wrong = bool(pos != (y[j] > 0))
        update = wrong
        if not wrong and margin > 0:
            if normalized:
                update = bool(y[j] * s <= margin * float(np.sqrt(w @ w)))
            else:
                update = abs(s) < margin
        if not update:
            continue
        u = ab_update(a, b, x, y[j])
        if steps is not None:
            steps.append(_step_record(e, j, x, y[j], s, wrong, w, u, wstar))
        w = w + u
        pat.append((j, bool(wrong)))
        mis += wrong
        upd += 1
    return w, pat, mis, upd


def _step_record(e: int, j: int, x, label, s: float, wrong: bool, w, u, wstar) -> dict:
    """What the proof of Theorem 3 says about one update, before and after it."""
    return {"epoch": e, "index": j, "label": int(label), "score": s, "mistake": wrong,
            "w_norm2": float(w @ w), "w_norm2_after": float((w + u) @ (w + u)),
            "sum_w_on": float(w[x > 0].sum()),
            "wstar_dot_w": None if wstar is None else float(wstar @ w),
            "wstar_dot_w_after": None if wstar is None else float(wstar @ (w + u)),
            "wstar_on": None if wstar is None else float(wstar[x > 0].sum()),
            "wstar_off": None if wstar is None else float(wstar[x < 0].sum())}


def periodic_certificate(X: np.ndarray, y: np.ndarray, epoch_w: list, patterns: list, *,
                         max_period: int = 64) -> dict | None:
    """A proof that mistakes never stop, from the last ``p`` epochs of a run (or None).

    Let ``D = w_E - w_{E-p}`` be the change over the last p epochs.  Started
    from ``w_{E-p} + k D`` the same p epochs (same examples updated, in the
    same order) happen again for every k >= 0 if every example updated in the
    window satisfies ``y (D . x) <= 0`` and every example left alone satisfies
    ``y (D . x) >= 0``: each score moves by ``k D . x`` and no decision flips
    (ties included, for either tie convention).  With at least one mistake in
    the window, the rule then makes infinitely many mistakes on a finite
    separable data set.  ``D = 0`` (w returns exactly to an earlier value) is
    the special case of a plain cycle.  The check is exact for integer (or
    dyadic) data and rules.
    """
    E = len(patterns)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m = X.shape[0]
    any_hit = np.zeros(m, dtype=bool)    # updated in some epoch of the window
    any_miss = np.zeros(m, dtype=bool)   # left alone in some epoch of the window
    mistakes = 0
    for p in range(1, min(max_period, E) + 1):
        pat = patterns[E - p]
        hit = np.zeros(m, dtype=bool)
        hit[[j for j, _ in pat]] = True
        any_hit |= hit
        any_miss |= ~hit
        mistakes += sum(1 for _, mis in pat if mis)
        if mistakes == 0:
            continue
        D = epoch_w[E] - epoch_w[E - p]  # D = 0: w came back exactly, a plain cycle
        yd = y * (X @ D)
        if not ((any_hit & (yd > 0)) | (any_miss & (yd < 0))).any():
            return {"period_epochs": p, "drift": D.tolist(), "start_epoch": E - p,
                    "mistakes_per_period": int(mistakes)}
    return None
