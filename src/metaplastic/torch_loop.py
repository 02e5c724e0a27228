"""The torch loop of :func:`metaplastic.learner.train_rules`: the GPU path and the reference.

Each step evaluates a chunk of every network's upcoming examples with one batched product, moves
each network to its first mistake in its chunk (or past the chunk) and applies that update; the
learner module docstring says why this is the one-example-at-a-time loop's sequence of updates.
The input drive ``x @ A`` and round 1 come from :class:`FeatureCache`.
"""

from __future__ import annotations

import torch

from .learner import (FINITE_CHECK_EVERY, Scheme, Tables, apply_updates, check_finite, cut_record, new_record,
                      output_gain)
from .network import Networks, fired_mask, first_round, project, run_rounds, words_of


class FeatureCache:
    """Input drive of every example per network, and its first round.

    ``x @ A`` does not depend on the plastic weights, so it is computed once in
    blocks; neither does round 1, ``cap_k(relu(x @ A))`` (at T = 1 the whole
    hidden state), which is cached beside it when both fit.  When ``B * n * V``
    values exceed ``max_bytes`` they are recomputed per chunk instead.  (Both
    are row-wise, so a cached row equals a recomputed one bit for bit.)  Both
    recurrences share them: round 1 is ``cap_k(relu(x @ A))`` under either, and
    ``x @ A`` enters later rounds as ``+ x @ A`` or inside ``(h + x @ A) @ W``.
    """

    def __init__(self, nets: Networks, x: torch.Tensor, max_bytes: int, block: int = 2048):
        c = nets.config
        self.nets, self.x = nets, x
        self.k, self.t1 = c.k, c.rounds == 1
        B, n, V = nets.batch, x.shape[0], c.vertices
        self.data = self.first = None
        one = B * n * V * nets.A.element_size()
        if one <= max_bytes:
            parts = [self._compute(x[i:i + block]) for i in range(0, n, block)]
            self.data = torch.cat(parts, dim=1)
            if not self.t1 and 2 * one <= max_bytes:  # in blocks: the cap's temporaries stay small
                self.first = torch.cat([first_round(self.data[:, i:i + block], self.k)
                                        for i in range(0, n, block)], dim=1)

    def _compute(self, xs: torch.Tensor) -> torch.Tensor:
        P = project(xs, self.nets.A)
        return first_round(P, self.k) if self.t1 else P

    def gather(self, ex: torch.Tensor):
        """Features of examples ``ex`` ``[B, m]``: ``(P, h1)``, each ``[B, m, V]``.

        At T = 1 ``P`` is already the hidden state; ``h1`` is None where the
        first round is not cached (run_rounds computes it).
        """
        if self.data is not None:
            if ex.shape[0] == 1:  # one network: no batch index needed
                e = ex[0]
                return self.data[:, e], (None if self.first is None else self.first[:, e])
            bi = torch.arange(ex.shape[0], device=ex.device)[:, None]
            return self.data[bi, ex], (None if self.first is None else self.first[bi, ex])
        return self._compute_batched(self.x[ex]), None

    def _compute_batched(self, xb: torch.Tensor) -> torch.Tensor:
        P = torch.bmm(xb, self.nets.A)
        return first_round(P, self.k) if self.t1 else P


def _chunk_positions(pos: torch.Tensor, pos_list: list, offsets: torch.Tensor, N: int, max_chunk: int):
    """Sequence positions of each network's next chunk ``[B, m]`` (clamped into the padding)
    and which are real (None when no chunk reaches past the end of its sequence)."""
    idx = (pos[:, None] + offsets).clamp_max_(N + max_chunk - 1)
    tail = max(pos_list) + offsets.shape[0] > N
    return idx, (idx < N if tail else None)


def _decide(pred: torch.Tensor, yy: torch.Tensor, valid, every: bool, m: int):
    """Which example of its chunk each network updates on (``first``), whether it does
    (``active``), and how many examples it consumes (``adv``)."""
    B, dev = pred.shape[0], pred.device
    if every:  # the chunk's first example, unless the sequence is done
        first = torch.zeros(B, dtype=torch.long, device=dev)
        active = valid[:, 0] if valid is not None else torch.ones(B, dtype=torch.bool, device=dev)
        return first, active, active.long()
    wrong = pred != yy
    if valid is not None:
        wrong &= valid
    active = wrong.any(1)
    first = wrong.byte().argmax(1)  # 0 where no mistake: consumes the whole chunk
    adv = torch.where(active, first + 1, valid.sum(1) if valid is not None else m)
    return first, active, adv


@torch.no_grad()
def train_torch(nets: Networks, x: torch.Tensor, y: torch.Tensor, tables: Tables, orders: torch.Tensor,
                scheme: Scheme, *, record=False, max_chunk: int, cache_bytes: int, progress=None):
    """The torch loop of :func:`train_rules` (see the module docstring), on any device.

    Each step evaluates a chunk of every network's upcoming examples at once,
    moves each network to its first mistake in its chunk (or past the chunk)
    and applies that update.  ``x, y, orders`` are on the networks' device.
    """
    c = nets.config
    dev = nets.A.device
    B, N = orders.shape
    cache = FeatureCache(nets, x, cache_bytes)
    dtype = nets.U.dtype
    work = None  # scratch for the dense graph update, allocated once
    if tables.graph is not None and nets.W is not None:
        work = torch.empty_like(nets.W)
    tables = Tables(tables.output.detach().to(dev, dtype), tables.output_mode, tables.output_eta,
                    None if tables.graph is None else tables.graph.detach().to(dev, dtype),
                    tables.graph_mode, tables.graph_eta)
    every = scheme.update_on == "all"
    t1 = c.rounds == 1
    valued = scheme.output_input == "value"
    keep_states = record == "states" and not t1
    topk = c.firing == "top-k" and c.k is not None   # else fired = non-zero (network.fired_mask)
    keep_drive = keep_states and c.recurrence == "w(h+ax)"
    rec, ints = (new_record(N, B, c, dtype, dev, valued, keep_states, keep_drive) if record
                 else (None, None))
    bi = torch.arange(B, device=dev)
    pos = torch.zeros(B, dtype=torch.long, device=dev)
    mistakes = torch.zeros(B, dtype=torch.long, device=dev)
    offsets = torch.arange(max_chunk, device=dev)
    # sequences padded by a chunk so that a chunk never reads past the end
    pad = lambda t: torch.cat([t, t[:, -1:].expand(B, max_chunk)], dim=1)  # noqa: E731
    orders_p, labels_p = (pad(orders), pad(y[orders])) if N > 0 else (orders, orders)
    run_avg = 4.0  # running average of the examples consumed per step: sets the chunk size
    pos_list, pos_sum = [0] * B, 0
    step = done_before = 0
    checked = [0] * B  # positions at the last finite check
    while min(pos_list) < N:
        # at least 2 rows (see the module docstring); in the update-on-all
        # scheme only the first row is used
        m = 2 if every else max(2, min(max_chunk, int(2 * run_avg + 1)))
        idx, valid = _chunk_positions(pos, pos_list, offsets[:m], N, max_chunk)
        ex = orders_p.gather(1, idx)
        yy = labels_p.gather(1, idx)
        feats, h1 = cache.gather(ex)
        if t1:  # words of the chosen example only, below
            h, hs = feats, None
        else:
            hs = []  # words of the picked example only, from its states (below)
            h, _ = run_rounds(feats, nets.W, c.k, c.rounds, h1=h1, states=hs, words=False, **c.semantics)
        pred = torch.bmm(h, nets.U).argmax(-1)
        first, active, adv = _decide(pred, yy, valid, every, m)
        pick = lambda t: t[bi, first]  # noqa: E731
        h_f, y_f, p_f = pick(h), pick(yy), pick(pred)
        if t1:
            w_f = (fired_mask(h_f, c.k, c.firing) if topk else h_f != 0).to(torch.uint8)
        else:
            st_f = torch.stack([pick(hst) for hst in hs], 1,
                               out=rec.states[step] if keep_states else None)       # [B, T, V]
            w_f = words_of(st_f, c.k, c.firing)
            if keep_drive:
                rec.drive[step] = pick(feats)
        if valued:  # appendix B's chi: h_i where the unit fired, 1 where not
            g_f = output_gain(h_f, out=rec.gain[step] if rec is not None else None,
                              fired=(w_f & 1).bool() if topk else None)
        else:
            g_f = None
        if any(active.tolist()):
            apply_updates(nets, tables, w_f, y_f, p_f, active, scheme.output_rows, g_f, work)
        mistakes += (active & (p_f != y_f)) if every else active
        if rec is not None:
            rec.words[step] = w_f
            rec.active[step] = active
            torch.stack([y_f, p_f, pick(ex)], out=ints[step])
        pos += adv
        pos_list = pos.tolist()
        if not every:
            run_avg = 0.7 * run_avg + 0.3 * (sum(pos_list) - pos_sum) / B
            pos_sum = sum(pos_list)
        step += 1
        if step % FINITE_CHECK_EVERY == 0 or min(pos_list) >= N:
            checked = check_finite(nets, tables, [min(p, N) for p in pos_list], checked)
        if progress is not None and step % 32 == 0:
            done = sum(min(p, N) for p in pos_list)
            progress(done - done_before)
            done_before = done
    if progress is not None:
        progress(B * N - done_before)
    return mistakes, (None if rec is None else cut_record(rec, step))
