"""Appendix C, "Evolution can simulate (a variant of) GD", as functions one can run.

The model (appendix C): a haploid organism carries, for each real parameter
``Y_p`` of its phenotype (say an entry of the output rule), ``n`` genes with
alleles ``{+eps, -eps}``; ``Y_p`` is their sum.  ``x[p, i]`` is the frequency
of the ``+eps`` allele of gene i of parameter p, so the population mean is

    Ybar_p = eps * sum_i (2 x[p, i] - 1),

and conditioning gene i on one allele gives (appendix C)

    Ybar_{|+eps} = Ybar - eps (1 - 2 x_i) + eps = Ybar + 2 eps (1 - x_i),
    Ybar_{|-eps} = Ybar - 2 eps x_i.

Write ``D+ = L(Ybar) - L(Ybar_{|+eps})`` and ``D- = L(Ybar) - L(Ybar_{|-eps})``
(how much better than the reference an individual carrying each allele is),
and ``theta`` for the weak selection strength.  The appendix prints

    (C.1)  x_i' = [x_i - theta D+] / Z,
           Z = 1 + theta [x_i D+ + (1 - x_i) D-],
    (C.2)  x_i' = x_i - theta [D+ (1 - x_i^2) - D- x_i (1 - x_i)] + O(theta^2),
    (C.3)  x_i' = x_i - theta dL/dx_i (2 - 2 x_i) + O(theta^2 + eps^2 |L''|),

and calls (C.3) GD on ``z_i = 2 x_i - x_i^2``.

What selection actually does.  With fitness ``w = 1 + theta (L(Ybar) - L)``
(the paper's: reference ``L(Ybar)``, weak selection) an allele's marginal
fitness is ``w± = 1 + theta D±`` and the standard haploid selection
(replicator) equation is

    (S)    x_i' = x_i w+ / (x_i w+ + (1 - x_i) w-) = x_i (1 + theta D+) / Z,

whose denominator is *exactly* the paper's Z (the mean fitness).  So the
paper's normalizer belongs to (S); the printed numerator ``x_i - theta D+``
drops the factor ``x_i`` and flips the sign.  Consequences, each checked
numerically in :mod:`metaplastic.reproduce.evolution` and tests/test_evolution.py:

* (C.1) does not normalize: the two allele frequencies it produces sum to
  ``(1 - theta (D+ + D-)) / Z``, not 1; it moves frequencies *against* the
  fitter allele; and at ``x_i = 0`` it creates the allele from nothing
  (``x' = -theta D+ / Z``, negative when + is the fitter allele).
* (C.2) is not the expansion of (C.1), which is
  ``x - theta [(1 + x^2) D+ + x (1 - x) D-]``.  (C.2) is, up to its overall
  sign, the expansion of the sign-corrected *additive* variant
  ``(x + theta D+) / Z``, whose GD limit has the factor ``1 - x``.
* The expansion of (S) is ``x' = x + theta x (1 - x)(D+ - D-) + O(theta^2 eps^3)``
  (the ``O(theta)`` part of Z is ``O(eps^2)``), and ``D+ - D- = -dL/dx_i + O(eps^2 L'')``
  with ``dL/dx_i = 2 eps L'(Ybar)``, so

      (S')  x_i' = x_i - theta x_i (1 - x_i) dL/dx_i + O(theta eps^2 |L''| + theta^2 eps^3):

  the factor is Fisher's ``x (1 - x)`` (the Shahshahani gradient), not
  ``2 - 2x``.  It vanishes at both ends, so frequencies stay in [0, 1].
* "GD on z = phi(x)" moves x by ``-theta phi'(x)^-2 dL/dx``; for
  ``phi = 2x - x^2`` that is the factor ``(2 - 2x)^-2``, not ``2 - 2x``.
  (S') is GD on ``z = 2 arcsin(sqrt(x))``.
* The error term: the GD step itself is ``O(theta eps)``, and
  ``theta eps <= (theta^2 + eps^2) / 2``, so a per-step error of
  ``O(theta^2 + eps^2)`` holds for *any* of these forms and says nothing.
  Over a fixed time (``~1 / (theta eps)`` steps) the trajectories of (S) and
  (S') differ by ``O(eps)``, those of (S) and (C.3) by ``O(1)``.  The
  ``eps^2 L''`` term is not noise: for a quadratic loss ``D+ - D-`` is
  exactly ``-d/dx_i`` of the population's *expected* loss
  ``L(Ybar) + (L''/2) Var(Y)``, ``Var(Y) = 4 eps^2 sum_i x_i (1 - x_i)``;
  selection also shrinks the genetic variance.

Everything here works on tensors with a leading "parameter" axis:
``x`` is ``[P, n]`` (P parameters, n genes each), ``Y`` ``[..., P]``.  A loss
is any function ``loss(Y) -> L`` mapping ``[..., P]`` to ``[...]``; the GD
forms differentiate it with autograd.  Randomness (Wright-Fisher) comes only
from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .errors import MetaplasticError

Loss = Callable[[torch.Tensor], torch.Tensor]

FITNESS = ("linear", "exp")
GD_FACTORS = ("paper", "selection", "additive", "plain")
Z_TRANSFORMS = ("2x-x^2", "2asin(sqrt(x))")


def _check_x(x: torch.Tensor) -> torch.Tensor:
    if x.dim() != 2:
        raise MetaplasticError(f"allele frequencies must be [P parameters, n genes], got {tuple(x.shape)}")
    return x


def trait_mean(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``Ybar_p = eps * sum_i (2 x[p, i] - 1)`` (appendix C), ``[P]``."""
    return eps * (2 * _check_x(x) - 1).sum(-1)


def frequencies_for(ybar: torch.Tensor, n: int, eps: float) -> torch.Tensor:
    """Equal frequencies ``[P, n]`` with mean ``ybar`` (clipped to the genetic range ``n eps``)."""
    f = ((torch.as_tensor(ybar, dtype=torch.float64) / (n * eps) + 1) / 2).clamp(0.0, 1.0)
    return f[:, None].expand(f.shape[0], n).clone()


def genetic_variance(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Variance of ``Y_p`` at linkage equilibrium: ``4 eps^2 sum_i x_i (1 - x_i)``, ``[P]``."""
    return 4 * eps**2 * (x * (1 - x)).sum(-1)


def conditional_means(x: torch.Tensor, eps: float):
    """``(Ybar, Y+, Y-)``: ``Y±[p, i, :]`` is the mean trait vector given gene (p, i) = ±eps.

    ``Y±`` are ``[P, n, P]``: only coordinate p moves, by ``2 eps (1 - x)`` or
    ``-2 eps x`` (appendix C's ``Ybar_{|+eps}``, ``Ybar_{|-eps}``).
    """
    ybar = trait_mean(x, eps)
    P = x.shape[0]
    eye = torch.eye(P, dtype=x.dtype, device=x.device)[:, None, :]       # [P, 1, P]
    yp = ybar + (2 * eps * (1 - x))[..., None] * eye
    ym = ybar + (-2 * eps * x)[..., None] * eye
    return ybar, yp, ym


def allele_advantages(loss: Loss, x: torch.Tensor, eps: float):
    """``(D+, D-, L(Ybar))``: ``D± = L(Ybar) - L(Ybar_{|±eps})``, each ``[P, n]``.

    When every gene of a parameter has the same frequency (the symmetric
    case, which the dynamics preserve) the loss is evaluated once per
    parameter instead of once per gene; the values are the same.
    """
    ybar, yp, ym = conditional_means(x, eps)
    same = x.shape[1] > 1 and bool((x == x[:, :1]).all())
    if same:
        yp, ym = yp[:, :1], ym[:, :1]
    with torch.no_grad():
        l0 = loss(ybar[None])[0]
        dp, dm = l0 - loss(yp), l0 - loss(ym)
    if same:
        dp, dm = dp.expand_as(x), dm.expand_as(x)
    return dp, dm, l0


def _fitness(adv: torch.Tensor, theta: float, kind: str) -> torch.Tensor:
    if kind == "linear":
        return 1 + theta * adv
    if kind == "exp":
        return torch.exp(theta * adv)
    raise MetaplasticError(f"fitness must be one of {FITNESS}, got {kind!r}")


# ---------------------------------------------------------------------------
# (a) the infinite-population recursions
# ---------------------------------------------------------------------------

def selection_step(loss: Loss, x: torch.Tensor, eps: float, theta: float,
                   fitness: str = "linear") -> torch.Tensor:
    """One generation of haploid selection (S): ``x' = x w+ / (x w+ + (1 - x) w-)``.

    ``w± = 1 + theta D±`` (``fitness="linear"``, the paper's weights with the
    reference ``L(Ybar)``; then the denominator is the paper's ``Z``) or
    ``exp(theta D±)`` (``"exp"``, the weights of :func:`wright_fisher_step`'s
    default).  Frequencies stay in [0, 1] while the weights are positive.
    """
    dp, dm, _ = allele_advantages(loss, x, eps)
    wp, wm = _fitness(dp, theta, fitness), _fitness(dm, theta, fitness)
    if (wp <= 0).any() or (wm <= 0).any():
        raise MetaplasticError("selection strength too large: a fitness 1 + theta*D is not positive")
    return x * wp / (x * wp + (1 - x) * wm)


def paper_printed_step(loss: Loss, x: torch.Tensor, eps: float, theta: float,
                       sign: float = -1.0, other_allele: bool = False) -> torch.Tensor:
    """The recursion as printed (C.1): ``x' = [x - theta D+] / Z``.

    ``sign=+1`` gives the sign-corrected additive variant ``[x + theta D+] / Z``
    (whose expansion is (C.2) up to its overall sign).  ``other_allele=True``
    returns the printed update of the ``-eps`` allele's frequency,
    ``[(1 - x) + sign theta D-] / Z``; for a proper recursion the two add to 1.
    """
    dp, dm, _ = allele_advantages(loss, x, eps)
    Z = 1 + theta * (x * dp + (1 - x) * dm)
    if other_allele:
        return ((1 - x) + sign * theta * dm) / Z
    return (x + sign * theta * dp) / Z


def selection_linear_step(loss: Loss, x: torch.Tensor, eps: float, theta: float) -> torch.Tensor:
    """First order in theta of (S): ``x + theta x (1 - x)(D+ - D-)`` (finite differences kept).

    For a quadratic loss ``D+ - D-`` is exactly ``-d/dx`` of the population's
    expected loss ``L(Ybar) + (L''/2) Var(Y)``, so this is the Shahshahani
    gradient step on it; (S) differs from it by ``O(theta^2 eps^3)`` per step.
    """
    dp, dm, _ = allele_advantages(loss, x, eps)
    return x + theta * x * (1 - x) * (dp - dm)


# ---------------------------------------------------------------------------
# (c) the GD forms
# ---------------------------------------------------------------------------

def loss_gradient(loss: Loss, y: torch.Tensor) -> torch.Tensor:
    """``dL/dY`` at ``y`` ``[P]`` by autograd."""
    with torch.enable_grad():
        yy = y.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(yy[None])[0], yy)
    return g


def frequency_gradient(loss: Loss, x: torch.Tensor, eps: float) -> torch.Tensor:
    """``dL(Ybar)/dx[p, i] = 2 eps dL/dY_p`` (appendix C: ``dYbar/dx_i = 2 eps``), ``[P, n]``."""
    g = loss_gradient(loss, trait_mean(x, eps))
    return (2 * eps * g)[:, None].expand_as(x)


def gd_factor(x: torch.Tensor, factor: str) -> torch.Tensor:
    """The preconditioner of each GD form.

    ``paper``: (C.3)'s ``2 - 2x``; ``selection``: ``x (1 - x)``, the limit of
    (S); ``additive``: ``1 - x``, the limit of the sign-corrected (C.1);
    ``plain``: 1 (GD on the frequencies themselves).
    """
    if factor == "paper":
        return 2 - 2 * x
    if factor == "selection":
        return x * (1 - x)
    if factor == "additive":
        return 1 - x
    if factor == "plain":
        return torch.ones_like(x)
    raise MetaplasticError(f"GD factor must be one of {GD_FACTORS}, got {factor!r}")


def gd_form_step(loss: Loss, x: torch.Tensor, eps: float, theta: float,
                 factor: str = "paper") -> torch.Tensor:
    """``x' = x - theta f(x) dL/dx``; ``factor="paper"`` is (C.3), ``"selection"`` is (S')."""
    return x - theta * gd_factor(x, factor) * frequency_gradient(loss, x, eps)


def gd_on_z_step(loss: Loss, x: torch.Tensor, eps: float, theta: float,
                 transform: str = "2x-x^2") -> torch.Tensor:
    """Literal GD on ``z = phi(x)``: ``z' = z - theta dL/dz``, mapped back to x.

    ``dL/dz = dL/dx / phi'(x)``, so ``x' = x - theta phi'(x)^-2 dL/dx + O(theta^2)``.
    ``"2x-x^2"`` is the variable appendix C names (factor ``(2 - 2x)^-2``);
    ``"2asin(sqrt(x))"`` is the one whose factor is ``x (1 - x)``.
    """
    g = frequency_gradient(loss, x, eps)
    if transform == "2x-x^2":
        z = 2 * x - x**2
        z = (z - theta * g / (2 - 2 * x)).clamp(max=1.0)
        return 1 - torch.sqrt(1 - z)
    if transform == "2asin(sqrt(x))":
        z = 2 * torch.asin(torch.sqrt(x))
        z = (z - theta * g * torch.sqrt(x * (1 - x))).clamp(0.0, math.pi)
        return torch.sin(z / 2) ** 2
    raise MetaplasticError(f"transform must be one of {Z_TRANSFORMS}, got {transform!r}")


def gd_y_step(loss: Loss, y: torch.Tensor, lr: float) -> torch.Tensor:
    """Plain GD on the trait: ``Y' = Y - lr dL/dY``.

    With ``lr = theta n eps^2`` one step matches (S') at ``x = 1/2``: (S')
    moves ``Ybar`` by ``-theta n eps^2 * 4 x (1 - x) L'`` when all n genes share
    the frequency x, i.e. GD on Y preconditioned by ``1 - (Ybar / (n eps))^2``.
    """
    return y - lr * loss_gradient(loss, y)


def time_per_step(theta: float, n: int, eps: float) -> float:
    """The common time scale: one generation is ``tau = theta n eps^2`` (see :func:`gd_y_step`)."""
    return theta * n * eps**2


def iterate(step: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, steps: int) -> torch.Tensor:
    """``[steps + 1, ...]``: x0 and the states after each step."""
    xs = [x0]
    x = x0
    for _ in range(steps):
        x = step(x)
        xs.append(x)
    return torch.stack(xs)


def one_step_residual(loss: Loss, x: torch.Tensor, eps: float, theta: float,
                      form: str = "selection") -> torch.Tensor:
    """``max |S(x) - F(x)|``: how far one step of the recursion (S) is from a GD form F at x.

    ``form`` is a :data:`GD_FACTORS` entry or ``"linear"`` (:func:`selection_linear_step`).
    """
    nxt = selection_step(loss, x, eps, theta)
    other = (selection_linear_step(loss, x, eps, theta) if form == "linear"
             else gd_form_step(loss, x, eps, theta, form))
    return (nxt - other).abs().max()


# ---------------------------------------------------------------------------
# (b) finite population: Wright-Fisher
# ---------------------------------------------------------------------------

def sample_genotypes(x: torch.Tensor, N: int, generator: torch.Generator) -> torch.Tensor:
    """``[N, P, n]`` 0/1 genotypes (1 = the +eps allele), loci independent (linkage equilibrium)."""
    return torch.bernoulli(_check_x(x).expand(N, *x.shape).contiguous(), generator=generator)


def phenotypes(genotypes: torch.Tensor, eps: float) -> torch.Tensor:
    """``Y = eps * sum_i (+1 or -1)``: ``[N, P]``."""
    return eps * (2 * genotypes - 1).sum(-1)


def fitness_weights(losses: torch.Tensor, theta: float, kind: str = "exp",
                    reference: torch.Tensor | float | None = None) -> torch.Tensor:
    """Individual fitness from losses ``[N]``.

    ``exp``: ``exp(-theta (L - min L))`` (the shift cancels in the sampling);
    ``linear``: ``1 + theta (reference - L)`` clipped at 0, ``reference``
    defaulting to the mean loss (the paper uses ``L(Ybar)``).
    """
    if kind == "exp":
        return torch.exp(-theta * (losses - losses.min()))
    if kind == "linear":
        ref = losses.mean() if reference is None else reference
        return (1 + theta * (ref - losses)).clamp_min(0.0)
    raise MetaplasticError(f"fitness must be one of {FITNESS}, got {kind!r}")


def wright_fisher_step(loss: Loss, x: torch.Tensor, eps: float, theta: float, N: int,
                       generator: torch.Generator, *, fitness: str = "exp", mutation: float = 0.0,
                       reference: str = "ybar"):
    """One Wright-Fisher generation of a haploid population of N.

    Draw N genotypes from the allele frequencies (free recombination), score
    each individual's phenotype ``Y [P]`` by the loss, draw N parents with
    probability proportional to fitness (multinomial), and return the allele
    frequencies of the offspring (then symmetric mutation: each allele flips
    with probability ``mutation``).  Returns ``(x', info)`` with the
    individuals' losses and phenotypes.  ``reference="ybar"`` uses ``L(Ybar)``
    as the linear fitness reference (the paper's), ``"mean"`` the mean loss.
    """
    if not isinstance(N, int) or N < 1:
        raise MetaplasticError(f"population size must be a positive integer, got {N!r}")
    G = sample_genotypes(x, N, generator)
    Y = phenotypes(G, eps)
    with torch.no_grad():
        L = loss(Y)
        ref = None
        if fitness == "linear" and reference == "ybar":
            ref = loss(trait_mean(x, eps)[None])[0]
    w = fitness_weights(L, theta, fitness, ref)
    if not (w > 0).any():
        raise MetaplasticError("every individual has fitness 0; lower theta")
    parents = torch.multinomial(w, N, replacement=True, generator=generator)
    x_new = G[parents].mean(0)
    if mutation:
        x_new = x_new * (1 - mutation) + (1 - x_new) * mutation
    return x_new, {"losses": L, "phenotypes": Y, "fitness": w}


def wright_fisher(loss, x0: torch.Tensor, eps: float, theta: float, N: int, generations: int,
                  generator: torch.Generator, **kw) -> torch.Tensor:
    """Frequencies ``[generations + 1, P, n]`` of a Wright-Fisher run.

    ``loss`` is a :data:`Loss` or a function ``gen -> Loss`` (a fresh
    environment each generation) marked by ``loss.per_generation = True``.
    """
    per_gen = getattr(loss, "per_generation", False)
    xs = [x0]
    x = x0
    for t in range(generations):
        x, _ = wright_fisher_step(loss(t) if per_gen else loss, x, eps, theta, N, generator, **kw)
        xs.append(x)
    return torch.stack(xs)


# ---------------------------------------------------------------------------
# Measuring the difference and its scaling
# ---------------------------------------------------------------------------

def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max_t max_entries |a_t - b_t|`` of two trajectories on the same steps."""
    return float((a - b).abs().max())


def _least_squares(X: list[list[float]], y: list[float]) -> list[float]:
    """Normal equations solved in plain Python floats (bit-reproducible, unlike BLAS/LAPACK calls)."""
    k = len(X[0])
    A = [[sum(r[i] * r[j] for r in X) for j in range(k)] + [sum(r[i] * v for r, v in zip(X, y))]
         for i in range(k)]
    for c in range(k):
        piv = max(range(c, k), key=lambda r: abs(A[r][c]))
        A[c], A[piv] = A[piv], A[c]
        if A[c][c] == 0:
            raise MetaplasticError("power-law fit: the grid does not vary both theta and eps")
        for r in range(k):
            if r != c:
                f = A[r][c] / A[c][c]
                A[r] = [a - f * b for a, b in zip(A[r], A[c])]
    return [A[i][k] / A[i][i] for i in range(k)]


def fit_power_law(thetas, epss, errors) -> dict:
    """Least squares ``log err = c + a log theta + b log eps``; returns a, b, c and R^2."""
    X = [[math.log(t), math.log(e), 1.0] for t, e in zip(thetas, epss)]
    y = [math.log(max(e, 1e-300)) for e in errors]
    a, b, c = _least_squares(X, y)
    pred = [a * r[0] + b * r[1] + c for r in X]
    mean = sum(y) / len(y)
    ss_res = sum((v - p) ** 2 for v, p in zip(y, pred))
    ss_tot = sum((v - mean) ** 2 for v in y)
    return {"theta_exponent": a, "eps_exponent": b, "log_constant": c,
            "r2": 1 - ss_res / ss_tot if ss_tot > 0 else float("nan")}


def quadratic_loss(target) -> Loss:
    """``L(Y) = sum_p (Y_p - Y*_p)^2``."""
    t = torch.as_tensor(target, dtype=torch.float64)

    def loss(y):
        return ((y - t.to(y.dtype)) ** 2).sum(-1)
    return loss
