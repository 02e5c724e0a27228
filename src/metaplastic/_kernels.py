"""Numba kernels of the compiled rule-training loop (driver: :mod:`metaplastic.compiled`).

Plain per-example code, compiled once and cached on disk (``cache=True``).
Every function works in the networks' dtype (float32 or float64): no Python
float literal enters an arithmetic expression, so nothing is promoted.  Only
the reductions (logits, the recurrent product, the finite-check) allow
reassociation, which lets LLVM vectorize them; the updates themselves are the
torch path's operations in the torch path's order (A.1 step 3).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_REDUCE = {"reassoc", "contract"}  # never nnan/ninf: the finite-checks must survive


@njit(cache=True)
def _kth_largest(a, k):
    """The k-th largest value of ``a`` (1-based; ``a`` is scratch and gets reordered).

    Quickselect with a median-of-three pivot and a three-way partition, so the
    many equal zeros after a ReLU cost one pass.
    """
    n = a.shape[0]
    target = n - k  # ascending position of the k-th largest
    lo, hi = 0, n - 1
    while lo < hi:
        x, y, z = a[lo], a[(lo + hi) >> 1], a[hi]
        if x > y:
            x, y = y, x
        if y > z:
            y = z
            if x > y:
                y = x
        pivot = y
        lt, i, gt = lo, lo, hi
        while i <= gt:
            v = a[i]
            if v < pivot:
                a[i] = a[lt]
                a[lt] = v
                lt += 1
                i += 1
            elif v > pivot:
                a[i] = a[gt]
                a[gt] = v
                gt -= 1
            else:
                i += 1
        if target < lt:
            hi = lt - 1
        elif target > gt:
            lo = gt + 1
        else:
            return pivot
    return a[target]


@njit(cache=True)
def _relu_cap(z, k, tmp):
    """In place: ``cap_k(relu(z))`` with :func:`metaplastic.network.cap`'s ties.

    Among values equal to the k-th largest the lowest indices are kept; when
    the k-th largest is 0 every positive value is kept (zeros never fire).
    ``k >= len(z)`` is the cap-free network (ReLU only).
    """
    V = z.shape[0]
    for j in range(V):
        if not z[j] > 0:
            z[j] = 0
    if k >= V:
        return
    for j in range(V):
        tmp[j] = z[j]
    t = _kth_largest(tmp, k)
    if not t > 0:
        return
    gt = 0
    for j in range(V):
        if z[j] > t:
            gt += 1
    need = k - gt
    for j in range(V):
        v = z[j]
        if v > t:
            continue
        if v == t and need > 0:
            need -= 1
        else:
            z[j] = 0


@njit(fastmath=_REDUCE, cache=True)
def _axpy(z, a, w):
    for j in range(z.shape[0]):
        z[j] += a * w[j]


@njit(fastmath=_REDUCE, cache=True)
def _dot(a, b, zero):
    s = zero
    for j in range(a.shape[0]):
        s += a[j] * b[j]
    return s


@njit(fastmath=_REDUCE, cache=True)
def _nonfinite(w):
    """True when some entry of ``w`` is inf or NaN (``x - x`` is 0 exactly for finite x)."""
    s = w[0] - w[0]
    for j in range(w.shape[0]):
        s += w[j] - w[j]
    return s != s


@njit(cache=True)
def _fire(code, h, k, topk):
    """Append this round's firing bit to every unit's word (:func:`metaplastic.network.fired_mask`).

    ``h_i != 0``; with ``topk`` (the paper's code) membership of the cap's top-k
    set: the non-zero units plus, when fewer than k are non-zero, the
    zero-valued units of lowest index up to k.
    """
    V = h.shape[0]
    need = 0
    if topk:
        need = k
        for j in range(V):
            if h[j] != 0:
                need -= 1
    for j in range(V):
        bit = 1 if h[j] != 0 else 0
        if bit == 0 and need > 0:
            bit = 1
            need -= 1
        code[j] = (code[j] << 1) | bit


@njit(cache=True)
def _forward(Prow, W, k, T, hs, z, u, tmp, code, h1, z2, fused, through, topk, wzero):
    """Rounds of one example (section 2): states into ``hs[T, V]``, words into ``code``.

    Round 1 is ``cap(relu(x A))``; round t+1 is ``cap(relu(h_t W + x A))``,
    or with ``through`` (the paper's code) ``cap(relu((h_t + x A) W))`` with
    ``u = h_t + x A`` formed first; the product is summed over the rows of W
    of the non-zero entries of ``h_t`` (``u``) in index order.  With
    ``fused``, round 1 and round 2's product were already computed (``h1``,
    ``z2``) during the pass of the previous update over W (same operations,
    same order: the same bits).  ``topk``: top-k firing (:func:`_fire`).
    ``wzero``: W is all zero (additive rules before the first graph update, or
    no graph rule), so every product is 0 and is not computed (the sum it
    skips is of zeros: the same state after the ReLU).
    """
    V = Prow.shape[0]
    h = hs[0]
    for j in range(V):
        h[j] = h1[j] if fused else Prow[j]
        code[j] = 0
    if not fused:
        _relu_cap(h, k, tmp)
    _fire(code, h, k, topk)
    for t in range(1, T):
        if fused and t == 1:
            for j in range(V):
                z[j] = z2[j]
        elif wzero:
            for j in range(V):
                z[j] = 0
        elif through:
            hp = hs[t - 1]
            for j in range(V):
                u[j] = hp[j] + Prow[j]
            _rows_product(z, u, W)
        else:
            _rows_product(z, hs[t - 1], W)
        hn = hs[t]
        if through:
            for j in range(V):
                hn[j] = z[j]
        else:
            for j in range(V):
                hn[j] = z[j] + Prow[j]
        _relu_cap(hn, k, tmp)
        _fire(code, hn, k, topk)


@njit(cache=True)
def _rows_product(z, h, W):
    """``z = h @ W`` as a sum of the rows of W of the non-zero entries of h, in index order."""
    for j in range(z.shape[0]):
        z[j] = 0
    for i in range(h.shape[0]):
        if h[i] != 0:
            _axpy(z, h[i], W[i])


@njit(cache=True)
def _predict(h, Ut, logits, zero):
    """Logits ``h @ U`` (U held transposed, ``[l, V]``) and their argmax (ties: lowest label)."""
    best = 0
    for c in range(Ut.shape[0]):
        logits[c] = _dot(h, Ut[c], zero)
        if logits[c] > logits[best]:
            best = c
    return best


@njit(cache=True)
def _add_row(row, v, mult):
    """``row += v`` (additive) or ``row *= exp(v)`` (multiplicative); True if a result is not finite."""
    if mult:
        for i in range(row.shape[0]):
            row[i] = row[i] * np.exp(v[i])
    else:
        for i in range(row.shape[0]):
            row[i] = row[i] + v[i]
    return _nonfinite(row)


@njit(cache=True)
def _output_update(Ut, Ro, code, h, y, pred, s, mult, rows_all, valued, v0, v1):
    """The output update of one example (A.1 step 3, A.4), in the torch path's order.

    Column 0 of r_o goes to the true row y, column 1 to the predicted row (or,
    with ``rows_all``, to every row other than y: all rows get column 1, then y
    gets column 0 minus column 1).  With ``valued`` each unit's entry is
    scaled by appendix B's gain: ``h_i`` where the unit fired in the final
    round (the low bit of its word: under top-k firing also at value 0), else 1.
    ``v0, v1`` are scratch ``[V]``.
    Returns True when an updated entry is not finite.
    """
    V = h.shape[0]
    for i in range(V):
        c = code[i]
        a = Ro[c, 0] * s
        b = Ro[c, 1] * s
        if valued and c & 1:  # appendix B's gain: h_i where the unit fired, else 1
            a = a * h[i]
            b = b * h[i]
        v0[i] = a
        v1[i] = b
    bad = False
    if rows_all:
        for i in range(V):
            v0[i] = v0[i] - v1[i]
        for c in range(Ut.shape[0]):
            bad = _add_row(Ut[c], v1, mult) or bad
        bad = _add_row(Ut[y], v0, mult) or bad
    else:
        bad = _add_row(Ut[y], v0, mult)
        bad = _add_row(Ut[pred], v1, mult) or bad
    return bad


@njit(cache=True)
def _graph_update(W, G, Rg, code, s, mult, D, live, u1, z2, fuse):
    """``W_ij += s r[c_i, c_j]`` on the edges (``W_ij *= exp(s r[c_i, c_j])``): one pass over W.

    ``D[a, j]`` holds the row of pattern a (``s r[a, c_j]``, or its exp), so
    the pass over row i is one stream over W[i], G[i] and D[c_i]; rows whose
    pattern row is all zeros (all ones) are skipped.  With ``fuse`` the same
    pass sums round 2's product ``z2 = u1 @ W`` of the next example over the
    new rows while they are in cache (``u1`` is its round 1, or round 1 plus
    its input drive under the code's recurrence).  Returns True when an
    updated weight is not finite.
    """
    K = Rg.shape[0]
    V = code.shape[0]
    for a in range(K):
        any_ = False
        for j in range(V):
            d = Rg[a, code[j]] * s
            if mult:
                d = np.exp(d)
                any_ = any_ or d != 1
            else:
                any_ = any_ or d != 0
            D[a, j] = d
        live[a] = any_
    if fuse:
        for j in range(V):
            z2[j] = 0
    bad = False
    for i in range(V):
        a = code[i]
        if live[a]:
            if mult:  # W is zero off the graph, so the factor needs no mask
                bad = _scale_row(W[i], D[a]) or bad
            else:
                bad = _add_masked_row(W[i], G[i], D[a]) or bad
        if fuse and u1[i] != 0:
            _axpy(z2, u1[i], W[i])
    return bad


@njit(fastmath=_REDUCE, cache=True)
def _add_masked_row(w, g, d):
    """``w += d`` where ``g`` (the edges); True if a result is not finite."""
    chk = w[0] - w[0]
    for j in range(w.shape[0]):
        v = w[j] + (d[j] if g[j] else 0)
        w[j] = v
        chk += v - v
    return chk != chk


@njit(fastmath=_REDUCE, cache=True)
def _scale_row(w, f):
    """``w *= f``; True if a result is not finite."""
    chk = w[0] - w[0]
    for j in range(w.shape[0]):
        v = w[j] * f[j]
        w[j] = v
        chk += v - v
    return chk != chk


@njit(cache=True)
def run_steps(P, rowof, base, win_hi, orders, labels, W, G, Ut, Rg, Ro, etas,
              k, T, every, rows_all, valued, graph, gmult, omult, through, topk, wzero, max_chunk,
              pos, istate, fstate, mistakes, rec_words, rec_active, rec_ints, rec_gain,
              rec_states, rec_drive, record, max_steps, diverged):
    """Steps of the rule-training loop for all B networks, in lockstep.

    The step schedule is the torch loop's (``learner.train_rules``): in the
    misclassified-only scheme a step hands each network a chunk of its next
    ``m`` examples (``m`` from the running average of the advance) and ends at
    its first mistake, so a record made here has the same rows as the torch
    path's.  Each example is evaluated on its own: rounds, logits, argmax.
    ``through`` and ``topk`` select the paper's code's recurrence
    ``(h + x A) W`` and top-k firing (:func:`_forward`, :func:`_fire`);
    ``wzero[b]`` says network b's W is all zero (cleared at its first graph
    update), which spares rounds 2..T their products.

    ``P[b, rowof[b, q] - base[b]]`` is network b's input drive at sequence
    position q (only positions below ``win_hi[b]`` are present); ``orders``
    and ``labels`` ``[B, N]`` its example indices and labels.  State
    carried between calls: ``pos`` [B], ``istate`` = (step, sum of pos),
    ``fstate`` = (running average,).  Returns 0 when every sequence is done,
    1 after ``max_steps`` steps, 2 when a network needs drive beyond its
    window, 3 on a non-finite weight (``diverged`` = position, network).
    """
    B, N = labels.shape
    V = P.shape[2]
    K = Ro.shape[1]
    zero = np.zeros(1, Ut.dtype)[0]
    hs = np.zeros((T, V), Ut.dtype)
    z = np.zeros(V, Ut.dtype)
    u = np.zeros(V, Ut.dtype)
    tmp = np.zeros(V, Ut.dtype)
    v0 = np.zeros(V, Ut.dtype)
    v1 = np.zeros(V, Ut.dtype)
    D = np.zeros((K, V), Ut.dtype)
    live = np.zeros(K, np.bool_)
    logits = np.zeros(Ut.shape[1], Ut.dtype)
    code = np.zeros(V, np.uint8)
    h1n = np.zeros((B, V), Ut.dtype)        # the next example's round 1, per network ...
    z2n = np.zeros((B, V), Ut.dtype)        # ... and round 2's product, summed during the update
    u1n = np.zeros((B, V) if through else (0, 0), Ut.dtype)  # round 1 + drive, W's multiplier
    fused_at = np.full(B, -1, np.int64)     # the position they belong to (-1: none)
    sg = etas[0]
    so = etas[1]
    done = 0
    while done < max_steps:
        lo = N
        for b in range(B):
            lo = min(lo, pos[b])
        if lo >= N:
            return 0
        if every:
            m = 2
        else:
            m = max(2, min(max_chunk, int(2.0 * fstate[0] + 1.0)))
        for b in range(B):
            if min(pos[b] + m, N) > win_hi[b]:
                return 2
        step = istate[0]
        for b in range(B):
            p0 = pos[b]
            lim = min(m, N - p0)
            if lim <= 0:  # finished: the torch loop looks at its last example again
                if record:
                    q = N - 1
                    Pq = P[b, rowof[b, q] - base[b]]
                    _forward(Pq, W[b], k, T, hs, z, u, tmp, code, h1n[b], z2n[b],
                             fused_at[b] == q, through, topk, wzero[b])
                    pred = _predict(hs[T - 1], Ut[b], logits, zero)
                    _write_row(rec_words, rec_active, rec_ints, rec_gain, rec_states, rec_drive, step, b,
                               code, hs, Pq, labels[b, q], pred, orders[b, q], False)
                continue
            active = False
            adv = lim
            for j in range(lim):
                q = p0 + j
                Pq = P[b, rowof[b, q] - base[b]]
                _forward(Pq, W[b], k, T, hs, z, u, tmp, code, h1n[b], z2n[b], fused_at[b] == q,
                         through, topk, wzero[b])
                pred = _predict(hs[T - 1], Ut[b], logits, zero)
                yq = labels[b, q]
                if every or pred != yq:
                    active = True
                    adv = j + 1
                if record and (j == 0 or active):
                    _write_row(rec_words, rec_active, rec_ints, rec_gain, rec_states, rec_drive, step, b,
                               code, hs, Pq, yq, pred, orders[b, q], active)
                if active:
                    if every:
                        if pred != yq:
                            mistakes[b] += 1
                    else:
                        mistakes[b] += 1
                    bad = False
                    if graph:
                        # the next example in b's sequence is evaluated next: its round 2 rides along
                        fuse = T > 1 and q + 1 < win_hi[b]
                        fused_at[b] = -1  # W changes: an earlier sum is stale
                        mul = h1n[b]
                        if fuse:
                            hx = h1n[b]
                            Pn = P[b, rowof[b, q + 1] - base[b]]
                            for j in range(V):
                                hx[j] = Pn[j]
                            _relu_cap(hx, k, tmp)
                            if through:
                                mul = u1n[b]
                                for j in range(V):
                                    mul[j] = hx[j] + Pn[j]
                            fused_at[b] = q + 1
                        bad = _graph_update(W[b], G[b], Rg[b], code, sg, gmult, D, live, mul, z2n[b],
                                            fuse)
                        wzero[b] = False
                    bad = _output_update(Ut[b], Ro[b], code, hs[T - 1], yq, pred, so, omult,
                                         rows_all, valued, v0, v1) or bad
                    if bad:
                        diverged[0] = q
                        diverged[1] = b
                        pos[b] = q + 1
                        istate[0] = step + 1
                        return 3
                    break
            pos[b] = p0 + adv
        istate[0] = step + 1
        total = 0
        for b in range(B):
            total += pos[b]
        if not every:
            fstate[0] = 0.7 * fstate[0] + 0.3 * (total - istate[1]) / B
            istate[1] = total
        done += 1
    return 1


@njit(cache=True)
def _write_row(words, active, ints, gain, states, drive, s, b, code, hs, Prow, y, pred, index, act):
    """One row of the :class:`~metaplastic.learner.UpdateRecord` (gain/states/drive if allocated).

    The gain is ``h_i`` where the unit fired in the final round (the low bit
    of its word), else 1, as in :func:`_output_update`.
    """
    T, V = hs.shape
    for j in range(V):
        words[s, b, j] = code[j]
    active[s, b] = act
    ints[s, 0, b] = y
    ints[s, 1, b] = pred
    ints[s, 2, b] = index
    if gain.shape[0] > 0:
        h = hs[T - 1]
        for j in range(V):
            gain[s, b, j] = h[j] if code[j] & 1 else 1
    if states.shape[0] > 0:
        for t in range(T):
            for j in range(V):
                states[s, b, t, j] = hs[t, j]
    if drive.shape[0] > 0:
        for j in range(V):
            drive[s, b, j] = Prow[j]
