"""A fixed random recurrent weight matrix W at a chosen drive ratio (issue 11, part 2).

Not in the paper.  The paper's simple RNN (section 2, ``h <- cap_k(relu(h @ W +
x @ A))`` for T rounds) starts W at 0 and grows it by a graph rule (A.1 step 3);
no plastic graph rule we found keeps rounds 2..T active and paying off
(docs/RECURRENCE.md).  The best recurrent network with active rounds that the
issue-11 search found is this control: W fixed (never updated), random signs on
the graph's edges, each column scaled so that the recurrent drive ``h1 @ W`` is
about ``s`` times the spread of the input drive ``x @ A`` ("drive ratio" s; at
s = 1, MNIST T=3 with the perceptron output rule reaches ~0.84 test accuracy with
~49% of units firing in every round).  Only the output weights U are then
trained by a plasticity rule.

The scale: each column of W gets L2 norm ``s * sigma_P * sqrt(|V|) / ||h1||``
(:func:`column_norm`), with sigma_P the standard deviation over units of the
input drive and ||h1|| the norm of round 1's state, both averaged over the
first 1,000 training images (:func:`drive_stats`).  A column of |V| independent
signs of norm c meets a state h1 in ``h1 . w`` of standard deviation about
``c ||h1|| / sqrt(|V|)``, hence the formula.  The measured ratio is
:func:`drive_ratio`.

Randomness: member b's W is drawn from ``torch.Generator().manual_seed(seeds[b] +
W_SEED_OFFSET)``, so a network's W depends on its seed only (not on the
ensemble it is trained in) and never shares a stream with the masks and input
weights that ``init_networks`` draws from ``seeds[b]``.
"""

from __future__ import annotations

import math

import torch

from .errors import MetaplasticError
from .homeostasis import rescale_columns
from .network import Networks, project, run_rounds

#: Added to a network's seed for the generator of its random W.
W_SEED_OFFSET = 0x77_0000
#: Kinds of random W: random signs (normal), all-positive (|normal|), all ones.
KINDS = ("normal", "absnormal", "positive")
#: Training images the drive statistics are computed from.
DRIVE_IMAGES = 1000


def _drives(nets: Networks, x: torch.Tensor):
    """(input drive P, what W multiplies in round 2): round 1's state, or under the paper's code's
    ``recurrence="w(h+ax)"`` round 1's state plus P."""
    P = project(x[:DRIVE_IMAGES].to(nets.A.dtype), nets.A)
    h1 = run_rounds(P, None, nets.config.k, 1, words=False)[0]
    if nets.config.recurrence == "w(h+ax)":
        h1 = h1 + P
    return P, h1


@torch.no_grad()
def drive_stats(nets: Networks, x: torch.Tensor, per_network: bool = False):
    """(sigma_P, ||h1||): spread of the input drive over units and the norm of round 1's state
    (under ``recurrence="w(h+ax)"``: of ``h1 + x @ A``, what W multiplies in round 2), averaged
    over the first :data:`DRIVE_IMAGES` of ``x`` (and over the networks, unless ``per_network``:
    then two tensors ``[B]``)."""
    P, h1 = _drives(nets, x)
    if per_network:
        return P.std(-1).mean(-1), h1.norm(dim=-1).mean(-1)
    return float(P.std(-1).mean()), float(h1.norm(dim=-1).mean())


def column_norm(s, sigma, hnorm, V: int):
    """The column L2 norm that gives a random-sign W a drive ratio of about ``s`` (module docstring)."""
    return s * sigma * math.sqrt(V) / hnorm


def random_w(G: torch.Tensor, kind: str, seeds, norm) -> torch.Tensor:
    """Random W ``[B, V, V]`` on the graph's edges ``G`` with every column of L2 norm ``norm``
    (a number, or one per network: a tensor ``[B]``)."""
    if kind not in KINDS:
        raise MetaplasticError(f"random W kind must be one of {KINDS}, got {kind!r}")
    ws = []
    for b, sd in enumerate(seeds):
        g = torch.Generator().manual_seed(int(sd) + W_SEED_OFFSET)
        z = torch.randn(G.shape[1:], generator=g)
        z = {"normal": z, "absnormal": z.abs(), "positive": torch.ones_like(z)}[kind]
        ws.append(z.to(G.dtype) * G[b])
    if isinstance(norm, torch.Tensor):
        norm = norm.to(G.dtype).reshape(-1, 1, 1)
    return rescale_columns(torch.stack(ws), norm)


@torch.no_grad()
def drive_ratio(nets: Networks, x: torch.Tensor) -> torch.Tensor:
    """Measured drive ratio per network ``[B]``: the spread over units of ``h1 @ W`` over that
    of ``x @ A`` (first :data:`DRIVE_IMAGES` of ``x``, averaged over them)."""
    if nets.W is None:
        return torch.zeros(nets.batch, dtype=torch.float64)
    P, h1 = _drives(nets, x)
    rec = torch.bmm(h1, nets.W)
    return (rec.std(-1).mean(-1) / P.std(-1).mean(-1)).double()


def set_fixed_random_w(nets: Networks, x_train: torch.Tensor, seeds, ratio: float = 1.0,
                       kind: str = "normal") -> dict:
    """Give every network of ``nets`` (T > 1) a fixed random W at drive ratio ``ratio``, scaled from
    the training images ``x_train`` network by network (so a member equals a separate run).

    W is replaced in place; train the output afterwards with no graph rule to keep it fixed.
    Returns ``{"column_norm": [B], "drive_ratio": [B]}`` (the ratio measured on ``x_train``).
    """
    if nets.G is None:
        raise MetaplasticError("a fixed random W needs a recurrent network (T > 1)")
    if not (isinstance(ratio, (int, float)) and 0 < ratio < float("inf")):
        raise MetaplasticError(f"drive ratio must be a positive finite number, got {ratio!r}")
    seeds = [int(s) for s in seeds]
    if len(seeds) != nets.batch:
        raise MetaplasticError(f"need one seed per network ({nets.batch}), got {len(seeds)}")
    sigma, hnorm = drive_stats(nets, x_train, per_network=True)
    norm = column_norm(ratio, sigma, hnorm, nets.config.vertices)
    nets.W = random_w(nets.G, kind, seeds, norm)
    return {"column_norm": norm.tolist(), "drive_ratio": drive_ratio(nets, x_train).tolist()}
