"""Homeostatic synaptic scaling of the recurrent weights (issue 11, part 2).

Not in the paper: an experiment towards recurrent (T > 1) networks whose later
rounds stay active.  Biological neurons keep their total excitatory input in a
working range by slowly scaling all their incoming synapses by a common factor
("synaptic scaling", Turrigiano et al. 1998, Nature 391:892; Turrigiano 2008,
Cell 135:422); it acts over hours, far slower than the synaptic changes it
regulates.  Here: every ``interval`` training examples each unit's incoming
recurrent weights (column j of W, ``W[:, j]``: the edges ``i -> j``) are
rescaled to a fixed L2 norm.  The rule's sign pattern and the ratios within a
column are kept; only the column's size is reset.  Columns that are all zero
stay zero.

:func:`rescale_columns` is the pure function; :func:`train_rules_homeostatic`
runs :func:`metaplastic.learner.train_rules` on consecutive slices of each
network's example order and rescales between slices (an ensemble of B
networks is scaled column by column, network by network).

With ``center=True`` each column is first shifted to mean zero over its graph
edges (the mask is kept), so a unit's recurrent excitation and inhibition
balance (E/I balance; van Vreeswijk & Sompolinsky 1996, Science 274:1724;
inhibitory plasticity that restores it: Vogels et al. 2011, Science 334:1569).
Without it a rule whose updates are all negative (anti-Hebb, the learned
relu1 rule) keeps a normalized but all-negative W, and the ReLU silences the
next round whatever its norm.

``decay`` (round 2 of the search, multiplicative rules with decay): before any
rescaling, every ``interval`` examples W moves a fraction ``decay`` of the way
back to where it started, ``W <- W0 + (1 - decay) (W - W0)`` (``W0`` = 0 for
additive rules, the graph mask of ones for multiplicative ones: weight decay
towards the start, so a rule's changes are forgotten at rate ``decay`` per
interval and W stays near a fixed point of rule and decay).  ``norm=None`` then
means decay alone, no rescaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import MetaplasticError
from .learner import Scheme, Tables, train_rules
from .network import Networks


@dataclass(frozen=True)
class Homeostasis:
    """Synaptic scaling of W: column L2 norm ``norm`` every ``interval`` examples."""

    norm: float | None
    interval: int = 100
    center: bool = False
    decay: float = 0.0

    def __post_init__(self):
        if not (isinstance(self.decay, (int, float)) and 0.0 <= self.decay <= 1.0):
            raise MetaplasticError(f"homeostasis decay must be in [0, 1], got {self.decay!r}")
        if self.norm is None and self.decay > 0:
            return
        if not (isinstance(self.norm, (int, float)) and self.norm > 0 and self.norm < float("inf")):
            raise MetaplasticError(f"homeostasis norm must be a positive finite number, got {self.norm!r}")
        if not isinstance(self.interval, int) or isinstance(self.interval, bool) or self.interval < 1:
            raise MetaplasticError(f"homeostasis interval must be a positive integer, got {self.interval!r}")


def center_columns(W: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """W with each column's mean over its edges (``G != 0``) subtracted, off-graph entries zero."""
    m = G != 0
    cnt = m.sum(dim=-2, keepdim=True).clamp_min(1)
    mean = (W * m).sum(dim=-2, keepdim=True) / cnt
    return torch.where(m, W - mean, torch.zeros_like(W))


def rescale_columns(W: torch.Tensor, norm: float, eps: float = 1e-12,
                    G: torch.Tensor | None = None) -> torch.Tensor:
    """W ``[..., V, V]`` with every non-zero column ``W[..., :, j]`` scaled to L2 norm ``norm``.

    Scaling keeps zeros zero, so the graph mask is kept; an all-zero column stays zero.
    With the graph mask ``G`` given, columns are first centred (:func:`center_columns`).
    """
    if G is not None:
        W = center_columns(W, G)
    n = W.norm(dim=-2, keepdim=True)
    return torch.where(n > eps, W * (norm / n.clamp_min(eps)), torch.zeros_like(W))


def decay_towards(W: torch.Tensor, W0: torch.Tensor, decay: float) -> torch.Tensor:
    """``W0 + (1 - decay) (W - W0)``: W moved the fraction ``decay`` back to ``W0``."""
    return W0 + (1.0 - decay) * (W - W0)


@torch.no_grad()
def train_rules_homeostatic(nets: Networks, x: torch.Tensor, y: torch.Tensor, tables: Tables,
                            orders: torch.Tensor, scheme: Scheme = Scheme(),
                            homeostasis: Homeostasis | None = None, **kw):
    """:func:`~metaplastic.learner.train_rules` with W rescaled every ``interval`` examples.

    Also rescales once before training (a random or zero start); with ``decay``
    the start W is the point W decays towards.  Returns the
    online mistakes per network ``[B]`` (records are not supported here).
    Each slice is trained on the slice's own examples (gathered per network),
    so the features of the whole training set are not recomputed per slice.
    """
    if homeostasis is None or nets.W is None:
        return train_rules(nets, x, y, tables, orders, scheme, **kw)[0]
    B, N = orders.shape
    m = homeostasis.interval
    G = nets.G if homeostasis.center else None

    def regulate():
        if W0 is not None:
            nets.W.copy_(decay_towards(nets.W, W0, homeostasis.decay))
        if homeostasis.norm is not None:
            nets.W.copy_(rescale_columns(nets.W, homeostasis.norm, G=G))

    if homeostasis.norm is not None:
        nets.W.copy_(rescale_columns(nets.W, homeostasis.norm, G=G))
    W0 = nets.W.clone() if homeostasis.decay > 0 else None
    mistakes = torch.zeros(B, dtype=torch.long)
    for a in range(0, N, m):
        sl = orders[:, a:a + m]                     # [B, m'] example indices
        mm = sl.shape[1]
        xs, ys = x[sl.reshape(-1)], y[sl.reshape(-1)]  # network b's slice at rows b*mm..
        local = torch.arange(B)[:, None] * mm + torch.arange(mm)[None, :]
        mk, _ = train_rules(nets, xs, ys, tables, local, scheme, **kw)
        mistakes += mk.cpu()
        regulate()
    return mistakes
