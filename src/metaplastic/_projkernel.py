"""numba kernel of :func:`metaplastic.attacks.project_l2_box` (compiled once, cached on disk).

The same active-set iteration as the torch form, one row at a time: every
elementwise step is the same operation in the same dtype (so the same bits);
the sums ``A``, ``C`` and the rounding-repair norm are accumulated in float64
in index order, where torch sums in blocks, so ``t`` can differ from the torch
form's in its last bits (float64).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def project_rows(xa, x, e, out, maxit):
    """Project each row of ``xa`` onto ``{||z - x|| <= e} ∩ [0,1]^d`` into ``out``.

    Returns a bool array, True for the rows whose iteration had not settled after
    ``maxit`` steps (their ``out`` is not written; the caller solves them by sorting)."""
    n, dim = x.shape
    ft = x.dtype.type
    one = ft(1.0)
    zero = ft(0.0)
    d = np.empty(dim, dtype=x.dtype)
    a2 = np.empty(dim, dtype=x.dtype)
    c2 = np.empty(dim, dtype=x.dtype)
    b = np.empty(dim, dtype=x.dtype)
    S = np.empty(dim, dtype=np.bool_)
    unsettled = np.zeros(n, dtype=np.bool_)
    for r in range(n):
        xr = x[r]
        er = e[r]
        e2 = er * er
        for j in range(dim):
            v = xa[r, j] - xr[j]
            if v != v:
                v = zero
            elif v == np.inf:
                v = one
            elif v == -np.inf:
                v = -one
            d[j] = v
            c = (one - xr[j]) if v > 0 else xr[j]
            a = abs(v)
            b[j] = c / a if a != 0 else (np.inf if c > 0 else np.nan)
            a2[j] = a * a
            c2[j] = c * c
            S[j] = b[j] <= 0
        t = 0.0
        todo = True
        for _ in range(maxit):
            A = 0.0
            C = 0.0
            for j in range(dim):
                if S[j]:
                    C += np.float64(c2[j])
                else:
                    A += np.float64(a2[j])
            if A > 0:
                tn = math.sqrt(max(e2 - C, 0.0) / max(A, 1e-300))
                tn = min(max(tn, 0.0), 1.0)
            else:
                tn = 1.0
            t = tn
            tf = ft(t)
            changed = False
            for j in range(dim):
                s = b[j] <= tf
                changed |= s != S[j]
                S[j] = s
            todo = changed and t < 1
            if not todo:
                break
        if todo:
            unsettled[r] = True
            continue
        if er == 0:
            t = 0.0
        # the point, and a rounding repair (rare): shrink t until the row is inside the ball
        for _ in range(61):
            ss = 0.0
            for j in range(dim):
                v = np.float64(xr[j]) + t * np.float64(d[j])
                v = min(max(v, 0.0), 1.0)
                o = ft(v)
                out[r, j] = o
                q = np.float64(o) - np.float64(xr[j])
                ss += q * q
            if math.sqrt(ss) <= er + 1e-7:
                break
            t = max(t * (1 - 1e-6) - 1e-12, 0.0)
    return unsettled
