"""numba kernel of the Square attack's candidates (:func:`metaplastic.attacks.square_attack`).

The same steps as the torch form, one row at a time (compiled once, cached on
disk): every elementwise step is the same operation in float64; the three
norms are summed in index order (torch sums in blocks), so a candidate can
differ from the torch form's in the last bits of float64 before it is
rounded to the inputs' dtype.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def square_candidates(cur, xb, eb, r1, c1, r2, c2, sign, sh, sw, H, W, bump, out):
    """Per row i: a bump of sign ``sign[i]`` added to the normalized content of window 1 (side
    ``sh`` x ``sw`` at ``r1[i], c1[i]``), window 2 (at ``r2[i], c2[i]``, less window 1) zeroed,
    and window 1 rescaled to take all the norm ``eb[i]`` leaves; ``out[i] = xb[i] + delta``."""
    k, dim = cur.shape
    delta = np.empty(dim, dtype=np.float64)
    for i in range(k):
        a1, b1, a2, b2 = r1[i], c1[i], r2[i], c2[i]
        oldsq = 0.0
        restsq = 0.0
        for j in range(dim):
            d = np.float64(cur[i, j] - xb[i, j])
            delta[j] = d
            r = j // W
            c = j - r * W
            in1 = a1 <= r < a1 + sh and b1 <= c < b1 + sw
            in2 = a2 <= r < a2 + sh and b2 <= c < b2 + sw
            if in1:
                oldsq += d * d
            elif not in2:
                restsq += d * d
        oldn = math.sqrt(oldsq)
        winsq = 0.0
        for r in range(a1, a1 + sh):
            for c in range(b1, b1 + sw):
                j = r * W + c
                w = (delta[j] / max(oldn, 1e-300) if oldn > 0 else 0.0) + bump[(r - a1) * sw + (c - b1)] * sign[i]
                winsq += w * w
        winn = max(math.sqrt(winsq), 1e-300)
        budget = math.sqrt(max(eb[i] ** 2 - restsq, 0.0))
        for j in range(dim):
            r = j // W
            c = j - r * W
            in1 = a1 <= r < a1 + sh and b1 <= c < b1 + sw
            in2 = a2 <= r < a2 + sh and b2 <= c < b2 + sw
            x = np.float64(xb[i, j])
            if in1:
                w = (delta[j] / max(oldn, 1e-300) if oldn > 0 else 0.0) + bump[(r - a1) * sw + (c - b1)] * sign[i]
                v = (x + 0.0) + w / winn * budget
            elif in2:
                v = (x + 0.0) + 0.0
            else:
                v = (x + delta[j]) + 0.0
            out[i, j] = v
