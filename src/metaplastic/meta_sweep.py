"""The replay's reverse sweep (adjoint) for a learned graph rule whose output gains depend on W.

With the value-weighted output update (appendix B) at T > 1, the gains of training example s
are its hidden values, which depend on ``W_s`` and so on the graph rule.
:func:`metaplastic.meta.replay_gradients` then calls :func:`_graph_sweep`: it walks the
updates backwards, undoing each one to recover ``W_s``, and adds the vector-Jacobian product of
that example's forward pass to the running ``dL/dW`` (the ``meta`` module docstring derives it).
"""

from __future__ import annotations

import torch

from .learner import Tables, graph_delta, lookup, one_hot
from .network import Networks


#: Memory for one block of the adjoint sweep's batched temporaries (see _graph_sweep).
SWEEP_BYTES = 8 << 20


def _graph_sweep(nets: Networks, rec, tables: Tables, dW, dlg):
    """Reverse sweep (adjoint) for the graph table when output gains depend on W.

    Walks the updates backwards holding ``Q = dL/dW_{s+1}`` and ``W_{s+1}``:
    contracts ``Q`` with update s's pattern pairs, recovers ``W_s`` by undoing
    update s, and adds the vector-Jacobian product ``X_s`` of example s's
    forward pass (through the recorded hidden states of its T rounds; the cap
    and ReLU pass gradients where a unit's value is non-zero) to ``Q``.

    Nothing in ``X_s`` depends on ``Q``, so the walk runs in blocks of steps
    (up to 64, as many as ``SWEEP_BYTES`` allows; small blocks stay in cache),
    each with a handful of batched products instead of ~20 small calls per
    step (where not even 2 steps fit, as at |V|=1000,
    :func:`_graph_sweep_steps` walks step by step):

        W_s     = W_end - sum_{s' >= s} D_{s'}             (D: update s's delta)
        Q_{s+1} = Q_end + sum_{s' > s}  X_{s'}             (reverse cumulative sums)

    For a multiplicative graph rule (``W_{s+1} = W_s * exp(D_s)``) the same
    holds for ``log W`` and for ``R = Q * W``, the gradient with respect to
    ``log W``: ``R_s = R_{s+1} + X_s * W_s``.  Steps where no network updated
    are skipped (their delta and their gain gradient are zero).
    """
    c = nets.config
    T, K = c.rounds, 2**c.rounds
    dtype = nets.U.dtype
    B, V = nets.batch, c.vertices
    G = nets.G
    mult = tables.graph_mode == "multiplicative"
    Wc = nets.W.clone()                            # W at the end of the current block
    base = G * dW * (Wc if mult else 1)            # Q (or R = Q * W) at the end of the block
    g = torch.zeros(K, K, dtype=dtype, device=dW.device)
    steps = rec.active.any(1).nonzero()[:, 0]
    per_step = 3 * B * V * V * nets.U.element_size()   # three [B, V, V] temporaries per step
    C = min(64, SWEEP_BYTES // per_step)
    if C < 2:
        return _graph_sweep_steps(nets, rec, tables, dW, dlg)
    table = tables.graph
    steps = steps.flip(0)                                             # latest first
    for lo in range(0, steps.numel(), C):
        ids = steps[lo:lo + C]                                         # descending step numbers
        n = ids.numel()
        codes = rec.words[ids].long()                                  # [n, B, V]
        a = rec.active[ids].to(dtype)                                  # [n, B]
        Y = one_hot(codes, K, dtype).reshape(n * B, V, K)
        Ws = _block_weights(table, codes, a * tables.graph_eta, Y, G, Wc, mult)
        X = _block_vjp(rec, ids, dlg, Ws, T)                           # X_s, with W_s
        X.mul_(G)
        if mult:
            X.mul_(Ws)
        Wc = Ws[-1].clone()                                            # W before the block
        del Ws
        # Q (or R) after step s: base + X_{s+1} + ... + X_last
        X.cumsum_(0)
        after = torch.empty_like(X)
        after[0] = base
        torch.add(X[:-1], base, out=after[1:])
        base = base + X[-1]
        del X
        Z = torch.bmm(after.reshape(n * B, V, V), Y)                   # [n*B, V, K]
        Cm = torch.bmm(Y.transpose(1, 2), Z).reshape(n, B, K, K)
        g += (Cm * a[..., None, None]).sum((0, 1))
        del after
    return g * tables.graph_eta


def _block_weights(table, codes, a_eta, Y, G, Wc, mult: bool):
    """``W_s`` before each update of a block of steps (latest first) from ``W_c`` after the block:
    ``W_end - (D_s + ... + D_last)`` (or ``W_end * exp(-(...))`` for a multiplicative rule).
    ``codes [n, B, V]``, ``a_eta [n, B]`` (active x eta), ``Y`` their one-hot ``[n*B, V, K]``."""
    n, B, V = codes.shape
    rows = (lookup(table, codes) * a_eta[..., None, None]).reshape(n * B, V, -1)
    Ws = torch.bmm(rows, Y.transpose(1, 2)).reshape(n, B, V, V)  # update deltas D_s
    Ws.mul_(G).cumsum_(0)                       # D_s + ... + D_last (steps run latest first)
    if mult:                                    # W_s = W_end * exp(-(...)) or W_end - (...)
        Ws.neg_().exp_().mul_(Wc)
    else:
        Ws.neg_().add_(Wc)
    return Ws


def _block_vjp(rec, ids, dlg, Ws, T: int):
    """``X_s [n, B, V, V]``: the vector-Jacobian product of example s's T rounds with respect to
    ``W_s`` (through the recorded hidden states; the cap and ReLU pass gradients where a unit's
    value is non-zero), for the block's steps ``ids``, before the mask ``G``."""
    n, B, V, _ = Ws.shape
    hs = rec.states[ids]                                           # [n, B, T, V]
    P = None if rec.drive is None else rec.drive[ids]              # W(h + Ax): [n, B, V]
    d = dlg[ids]                                                   # [n, B, V]
    Wf = Ws.reshape(n * B, V, V)
    us, vs = [], []
    for t in range(T - 1, 0, -1):
        dz = d * (hs[:, :, t] != 0)
        us.append(hs[:, :, t - 1] if P is None else hs[:, :, t - 1] + P)
        vs.append(dz)
        if t > 1:
            d = torch.bmm(Wf, dz.reshape(n * B, V, 1)).reshape(n, B, V)
    return torch.bmm(torch.stack(us, -1).reshape(n * B, V, T - 1),
                     torch.stack(vs, -2).reshape(n * B, T - 1, V)).reshape(n, B, V, V)


def _graph_sweep_steps(nets: Networks, rec, tables: Tables, dW, dlg, chunk: int = 128):
    """The adjoint sweep one step at a time (large |V|, where a block of steps does not fit).

    In place on preallocated buffers: at |V|=1000 every fresh 4 MB temporary
    costs page faults, and one step's products are large enough to keep the
    cores busy without batching.

    Walks the updates backwards holding ``Q = dL/dW_{s+1}`` and ``W_{s+1}``:
    contracts ``Q`` with update s's pattern pairs, undoes update s to get
    ``W_s``, and adds the vector-Jacobian product of example s's forward pass
    (through the recorded hidden states of its T rounds; the cap and ReLU pass
    gradients where a unit's value is non-zero) to ``Q``.
    """
    c = nets.config
    T, K = c.rounds, 2**c.rounds
    dtype = nets.U.dtype
    G = nets.G
    mult = tables.graph_mode == "multiplicative"
    Q = G * dW                       # dL/dW_{s+1}, on the graph
    Wc = nets.W.clone()              # W_{s+1}
    buf = torch.empty_like(Wc)       # [B, V, V] scratch, reused (no page faults per update)
    g = torch.zeros(K, K, dtype=dtype, device=dW.device)
    act = rec.active.to(dtype)
    S = rec.words.shape[0]
    for s1 in range(S, 0, -chunk):
        s0 = max(0, s1 - chunk)
        Ych = one_hot(rec.words[s0:s1].long(), K, dtype)    # [s, B, V, K]
        any_act = rec.active[s0:s1].any(1).tolist()
        for s in range(s1 - 1, s0 - 1, -1):
            if not any_act[s - s0]:
                continue
            a = act[s]
            Y = Ych[s - s0]
            base = torch.mul(Q, Wc, out=buf) if mult else Q
            C = torch.bmm(Y.transpose(1, 2), torch.bmm(base, Y))    # [B, K, K]
            g += (C * a[:, None, None]).sum(0)
            delta = graph_delta(tables.graph, rec.words[s].long(), a * tables.graph_eta, out=buf)
            delta.mul_(G)
            if mult:                     # W_{s+1} = W_s * exp(delta)
                delta.exp_()
                Wc.div_(delta)
                Q.mul_(delta)
            else:
                Wc.sub_(delta)
            hs = rec.states[s]                                         # [B, T, V]
            d = dlg[s]
            us, vs = [], []
            for t in range(T - 1, 0, -1):        # round t+1 computes h_t from h_{t-1} @ W
                dz = d * (hs[:, t] != 0)         # (or from (h_{t-1} + P) @ W: W(h + Ax))
                us.append(hs[:, t - 1] if rec.drive is None else hs[:, t - 1] + rec.drive[s])
                vs.append(dz)
                if t > 1:
                    d = torch.bmm(Wc, dz[..., None])[..., 0]
            Q.addcmul_(G, torch.bmm(torch.stack(us, -1), torch.stack(vs, 1), out=buf))
    return g * tables.graph_eta
