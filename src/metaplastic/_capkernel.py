"""numba kernel of :mod:`metaplastic.capmask`: the cap's kept set per row (compiled once, cached on disk).

The k-th largest value of a row is found by a radix selection on the bits of
the values (an order-preserving unsigned key per value, 8 bits a pass, the
candidates narrowed to one bucket each pass, without branches): linear time,
where a comparison quickselect is bound by mispredicted branches.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _kth_key(cand, n, hist, k, nbits):
    """The k-th largest of the keys ``cand[:n]`` (uint64; radix selection, ``cand`` is overwritten)."""
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
        if hist[b] == n:  # every candidate is in this bucket: nothing to narrow
            shift -= 8
            continue
        m = 0
        for j in range(n):  # branch-free compaction (a float's first byte splits poorly)
            c = cand[j]
            cand[m] = c
            m += ((c >> sh) & mask8) == bb
        n = m
        shift -= 8
    return prefix


@njit(cache=True, nogil=True)
def _kth_value(row, bits_row, cand, hist, ubuf, fbuf, k, nbits, sign, full):
    """The k-th largest value of ``row``, and whether the row holds a NaN (then the value is void)."""
    V = row.shape[0]
    nan = False
    for j in range(V):
        v = row[j]
        nan |= v != v
        u = np.uint64(bits_row[j])
        key = ((~u) & full) if (u & sign) != 0 else (u | sign)
        cand[j] = sign if v == 0 else key  # -0 and +0 are one value
    if nan:
        return row[0], True
    kk = _kth_key(cand, V, hist, k, nbits)
    ubuf[0] = (kk ^ sign) if (kk & sign) != 0 else ((~kk) & full)
    return fbuf[0], False


@njit(cache=True, nogil=True)
def mask_rows(z, bits, nbits, k, keep, out, ubuf, fbuf):
    """The cap's kept set of each row of ``z`` ``[m, V]``: the entries above the k-th largest
    value, and of those equal to it the lowest-indexed as needed for k (every one when it
    is 0).  Writes ``keep`` (bool ``[m, V]``) when it has rows, and ``out = z * keep`` when it
    has rows.  ``bits`` is ``z`` viewed as unsigned integers of width ``nbits``; ``ubuf`` /
    ``fbuf`` are one-element views of the same 8 bytes as unsigned integer / float.  Returns
    False (outputs unfinished) when a row holds a NaN."""
    m, V = z.shape
    sign = np.uint64(1) << np.uint64(nbits - 1)
    full = (sign - np.uint64(1)) | sign
    cand = np.empty(V, dtype=np.uint64)
    hist = np.zeros(256, dtype=np.int64)
    want_keep = keep.shape[0] > 0
    want_out = out.shape[0] > 0
    one = z.dtype.type(1.0)
    nil = z.dtype.type(0.0)
    for r in range(m):
        row = z[r]
        kth, nan = _kth_value(row, bits[r], cand, hist, ubuf, fbuf, k, nbits, sign, full)
        if nan:
            return False
        kept = 0  # first as if no entry but the k-th itself equals it (the usual case)
        for j in range(V):
            v = row[j]
            s = v >= kth
            kept += s
            if want_keep:
                keep[r, j] = s
            if want_out:
                out[r, j] = v * (one if s else nil)
        if kth != 0 and kept > k:  # ties at the k-th value: only the lowest-indexed as needed
            need = k
            for j in range(V):
                need -= row[j] > kth
            t = 0
            for j in range(V):
                v = row[j]
                e = v == kth
                s = (v > kth) | (e & (t < need))
                t += e
                if want_keep:
                    keep[r, j] = s
                if want_out:
                    out[r, j] = v * (one if s else nil)
    return True
