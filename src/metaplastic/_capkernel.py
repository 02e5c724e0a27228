"""numba kernel of :mod:`metaplastic.capmask`: the cap's kept set per row (compiled once, cached on disk).

The k-th largest value of a row is found by a radix selection on the bits of
the values (an order-preserving unsigned key per value, 8 bits a pass, the
candidates narrowed to one bucket each pass): branch-light and linear, where
a comparison quickselect is bound by mispredicted branches.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _kth_key(keys, cand, hist, k, nbits):
    """The k-th largest of ``keys`` (uint64; radix selection, ``cand`` scratch of the same length)."""
    n = keys.shape[0]
    for j in range(n):
        cand[j] = keys[j]
    rem = k
    prefix = np.uint64(0)
    mask8 = np.uint64(255)
    shift = nbits - 8
    while shift >= 0:
        sh = np.uint64(shift)
        hist[:] = 0
        for j in range(n):
            hist[(cand[j] >> sh) & mask8] += 1
        b = 255
        while hist[b] < rem:
            rem -= hist[b]
            b -= 1
        bb = np.uint64(b)
        prefix = prefix | (bb << sh)
        m = 0
        for j in range(n):  # branch-free compaction (the first byte of a float splits poorly)
            c = cand[j]
            cand[m] = c
            m += ((c >> sh) & mask8) == bb
        n = m
        shift -= 8
    return prefix


@njit(cache=True, nogil=True)
def mask_rows(z, bits, nbits, k, keep):
    """Fill ``keep`` (bool ``[m, V]``) with the cap's kept set of each row of ``z`` ``[m, V]``:
    the entries above the k-th largest value, and of those equal to it the lowest-indexed as
    needed for k (every one when it is 0).  ``bits`` is ``z`` viewed as unsigned integers of
    its width ``nbits``.  False (``keep`` unfinished) when a row holds a NaN."""
    m, V = z.shape
    sign = np.uint64(1) << np.uint64(nbits - 1)
    full = (sign - np.uint64(1)) | sign
    keys = np.empty(V, dtype=np.uint64)
    cand = np.empty(V, dtype=np.uint64)
    hist = np.zeros(256, dtype=np.int64)
    for r in range(m):
        row = z[r]
        nan = False
        for j in range(V):
            v = row[j]
            nan |= v != v
            u = np.uint64(bits[r, j])
            neg = (u & sign) != 0
            key = ((~u) & full) if neg else (u | sign)
            keys[j] = sign if v == 0 else key  # -0 and +0 are one value
        if nan:
            return False
        kk = _kth_key(keys, cand, hist, k, nbits)
        kth = row[0]
        for j in range(V):
            if keys[j] == kk:
                kth = row[j]
                break
        above = 0
        equal = 0
        for j in range(V):
            above += row[j] > kth
            equal += row[j] == kth
        need = k - above
        if kth == 0 or equal <= need:  # every tied entry kept (where the k-th value is 0, zero either way)
            for j in range(V):
                keep[r, j] = row[j] >= kth
        else:  # the lowest-indexed tied entries, as many as needed for k
            t = 0
            for j in range(V):
                v = row[j]
                e = v == kth
                keep[r, j] = (v > kth) | (e & (t < need))
                t += e
    return True
