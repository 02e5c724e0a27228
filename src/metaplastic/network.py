"""The simple RNN of paper section 2 ("Model"), with a leading ensemble dimension.

Shapes (B independent networks, d inputs, V = |V| units, l labels):

* ``A``  ``[B, d, V]`` input weights: a random mask (probability p) times
  standard-normal weights, or times one (the paper's T=1* option, Table 2).
* ``G``  ``[B, V, V]`` graph mask: edge ``i -> j`` with probability p, no
  self-loops.  ``G[b, i, j] = 1`` means unit i feeds unit j.
* ``W``  ``[B, V, V]`` plastic graph weights, zero off the graph;
  ``W[b, i, j]`` is the weight of edge ``i -> j`` (pre-synaptic i,
  post-synaptic j), so a round computes ``z = h @ W + x @ A``.
* ``U``  ``[B, V, l]`` output weights; logits are ``h @ U``.

A forward pass starts from ``h = 0`` and runs T rounds of
``h <- cap_k(relu(h @ W + x @ A))`` (the paper's ``W h + A x``; *not* the
``W (h + A x)`` of the paper's code).  A unit fires in a round when its capped
value is non-zero (not merely when it is among the top k: a zero entry in the
top k does not fire).  The round fed only by the input is round 1, so a firing
word has exactly T bits (first round = most significant bit, see
:mod:`metaplastic.rules`).  The network returns logits; softmax appears only
inside losses.

The paper's released code (BrainNetwork/BrainNet) computes differently; two of
its differences are options of :class:`NetworkConfig` (the text stays the default):

* ``recurrence="w(h+ax)"``: round 1 is ``cap_k(relu(x @ A))`` as in the text,
  every later round ``cap_k(relu((h + x @ A) @ W))``: the input re-enters only
  through W (with additive rules W starts at 0, so rounds 2..T output zeros
  until the rule has grown W).
* ``firing="top-k"``: a unit fires when it is in the cap's top-k set, even at
  value 0.  When fewer than k units are positive the set is filled with
  zero-valued units, lowest index first (the cap's own tie rule; the code
  leaves this order to ``torch.topk``), so every round fires exactly k units.
  :func:`fired` is the one place that turns states into firing.  A cap-free
  network has no top-k set: there it fires where non-zero either way.

Cap ties are broken towards the lower unit index: among entries equal to the
k-th largest value, the ones with the smallest indices are kept.  This is
deterministic and independent of the device and of the ``topk`` kernel.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
from torch import nn

from .errors import MetaplasticError
from .capmask import capped, keep_mask
from .rules import check_rounds

INPUT_WEIGHTS = ("normal", "ones")
#: Recurrence after round 1: the paper's text ``h <- cap_k(relu(W h + A x))`` ("wh+ax",
#: the default) or its released code's ``h <- cap_k(relu(W (h + A x)))`` ("w(h+ax)").
RECURRENCE = ("wh+ax", "w(h+ax)")
#: When a unit "fires": its capped value is non-zero (the paper's text, section 2;
#: the default) or it is in the cap's top-k set even at value 0 (the paper's code).
FIRING = ("nonzero", "top-k")


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of a simple RNN (section 2; A.2 uses |V|=100/1000, k=|V|/2, p=0.5)."""

    d: int
    n_classes: int
    vertices: int = 1000
    cap: int = 500
    rounds: int = 1
    p: float = 0.5
    input_weights: str = "normal"
    capped: bool = True  # False: the cap-free twin, h <- relu(h @ W + x @ A) (issue: robustness)
    recurrence: str = "wh+ax"  # see RECURRENCE
    firing: str = "nonzero"    # see FIRING

    @property
    def k(self) -> int | None:
        """The cap's k, or None for a cap-free network."""
        return self.cap if self.capped else None

    def __post_init__(self):
        def posint(name, v):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise MetaplasticError(f"{name} must be a positive integer, got {v!r}")
        posint("input dimension d", self.d)
        posint("vertices |V|", self.vertices)
        if not isinstance(self.n_classes, int) or isinstance(self.n_classes, bool) or self.n_classes < 2:
            raise MetaplasticError(f"need at least 2 classes, got {self.n_classes!r}")
        if not isinstance(self.cap, int) or isinstance(self.cap, bool) or not 0 < self.cap < self.vertices:
            raise MetaplasticError(
                f"cap k must satisfy 0 < k < |V| = {self.vertices}, got {self.cap!r}")
        check_rounds(self.rounds)
        if not isinstance(self.p, (int, float)) or isinstance(self.p, bool) or not 0 < self.p <= 1:
            raise MetaplasticError(f"edge probability p must be in (0, 1], got {self.p!r}")
        if self.input_weights not in INPUT_WEIGHTS:
            raise MetaplasticError(
                f"input weights must be one of {INPUT_WEIGHTS}, got {self.input_weights!r}")

        if self.recurrence not in RECURRENCE:
            raise MetaplasticError(f"recurrence must be one of {RECURRENCE}, got {self.recurrence!r}")
        if self.firing not in FIRING:
            raise MetaplasticError(f"firing must be one of {FIRING}, got {self.firing!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def semantics(self) -> dict:
        """The rounds' semantics as keyword arguments of :func:`run_rounds` / :func:`words_of`."""
        return {"recurrence": self.recurrence, "firing": self.firing}


@dataclass
class Networks:
    """State of B networks.  Plain tensors; functions below are pure."""

    config: NetworkConfig
    A: torch.Tensor
    G: torch.Tensor | None  # None at T = 1 (the graph never influences the output)
    W: torch.Tensor | None
    U: torch.Tensor

    @property
    def batch(self) -> int:
        return self.A.shape[0]

    def member(self, b: int) -> "Networks":
        """Network b of the ensemble, as an ensemble of one (views, no copy)."""
        sl = slice(b, b + 1)
        return Networks(self.config, self.A[sl], None if self.G is None else self.G[sl],
                        None if self.W is None else self.W[sl], self.U[sl])

    def clone(self) -> "Networks":
        c = lambda t: None if t is None else t.clone()  # noqa: E731
        return Networks(self.config, c(self.A), c(self.G), c(self.W), c(self.U))


def init_networks(config: NetworkConfig, seeds, *, mode: str = "additive",
                  dtype=torch.float32, device="cpu") -> Networks:
    """Draw one network per seed (member b uses ``torch.Generator().manual_seed(seeds[b])``).

    So member b of an ensemble is exactly the network a single run with seed
    ``seeds[b]`` draws.  Plastic weights start at 0 (additive) or 1 on the
    graph's edges and on U (multiplicative), as in A.1 step 1.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise MetaplasticError("need at least one network (ensemble size B >= 1)")
    c = config
    As, Gs = [], []
    for s in seeds:
        g = torch.Generator().manual_seed(s)
        mask = torch.rand(c.d, c.vertices, generator=g) < c.p
        weights = torch.randn(c.d, c.vertices, generator=g, dtype=torch.float64)
        if c.input_weights == "ones":
            weights = torch.ones_like(weights)
        As.append(weights * mask)
        if c.rounds > 1:
            gm = torch.rand(c.vertices, c.vertices, generator=g) < c.p
            gm.fill_diagonal_(False)
            Gs.append(gm)
    A = torch.stack(As).to(dtype=dtype, device=device)
    start = 0.0 if mode == "additive" else 1.0
    G = W = None
    if c.rounds > 1:
        G = torch.stack(Gs).to(dtype=dtype, device=device)
        W = G * start
    U = torch.full((len(seeds), c.vertices, c.n_classes), start, dtype=dtype, device=device)
    return Networks(c, A, G, W, U)


#: Up to this many units, and this many rows, the cap selects by a stable sort
#: (the same result in fewer calls; for more rows or units top-k is faster).
SORT_CAP_MAX = 256
SORT_CAP_MAX_ROWS = 16


def cap(z: torch.Tensor, k: int) -> torch.Tensor:
    """``cap_k``: keep the k largest entries of the last dimension, zero the rest.

    Ties at the k-th largest value go to the lowest indices.  Gradients flow
    through the kept values (the selection itself is piecewise constant).
    ``k=None`` keeps everything (a cap-free network).
    Zero entries at the k-th value may be left in place (they are zero either
    way); so ``cap(z, k) != 0`` marks at most k entries, exactly the k largest
    when at least k entries are non-zero.
    """
    if k is None:
        return z
    zd = z.detach()
    if z.shape[-1] <= SORT_CAP_MAX and z.numel() <= SORT_CAP_MAX_ROWS * z.shape[-1]:
        # A few rows of a small |V|: one stable sort puts tied values in index
        # order, so its first k indices are exactly the kept set (4 calls
        # instead of ~10; the inner loop at |V|=100 is call-overhead bound).
        # For more rows or units the sort costs more than the tie check below.
        idx = torch.sort(zd, dim=-1, descending=True, stable=True).indices[..., :k]
        return torch.zeros_like(z).scatter(-1, idx, z.gather(-1, idx))
    # the same set, one compiled call on the CPU (metaplastic.capmask); without autograd the
    # product z * keep comes from the same call
    if not z.requires_grad:
        out = capped(zd, k)
        if out is not None:
            return out
    keep = keep_mask(zd, k)
    if keep is None:
        keep = torch_keep(zd, k)
    return z * keep


def torch_keep(zd: torch.Tensor, k: int) -> torch.Tensor:
    """The kept set of :func:`cap` in torch calls (any device and dtype; the compiled
    :func:`metaplastic.capmask.keep_mask` computes the same set on the CPU)."""
    kth = zd.topk(k, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)
    keep = zd >= kth
    # Where the k-th largest value is 0, keeping every zero changes nothing.
    # Otherwise more than k kept entries means a tie at the k-th value (also a
    # negative one, for inputs not passed through a ReLU): keep the lowest
    # indices among the tied.
    excess = (keep.sum(dim=-1, keepdim=True) > k) & (kth != 0)
    if bool(excess.any()):
        tied = (zd == kth) & excess
        need = k - (zd > kth).sum(dim=-1, keepdim=True)
        keep = keep & ~(tied & (tied.cumsum(dim=-1) > need))
    return keep


def project(x: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Input drive ``x @ A``: x ``[B, m, d]`` (or ``[m, d]`` shared) -> ``[B, m, V]``."""
    if x.dim() == 2:
        return torch.matmul(x, A)  # broadcasts [m, d] @ [B, d, V]
    return torch.bmm(x, A)


def first_round(P: torch.Tensor, k: int) -> torch.Tensor:
    """Round 1 from ``h = 0``: ``cap_k(relu(x @ A))``."""
    return cap(torch.relu(P), k)


def fired_mask(h: torch.Tensor, k: int | None, firing: str = "nonzero") -> torch.Tensor:
    """Which units fired (bool, same shape) given capped states ``h`` ``[..., V]`` (any
    number of leading dimensions, e.g. ``[..., T, V]`` for every round).

    ``"nonzero"`` (the paper's text): ``h != 0``.  ``"top-k"`` (the paper's code):
    membership of the cap's top-k set of ``relu(z)``: the non-zero units plus,
    when fewer than k are non-zero, the lowest-indexed zero-valued units up to k
    (all non-positive drives tie at 0 after the ReLU; ties go to the lowest
    index as in :func:`cap`).  ``k=None`` (no cap): non-zero either way.
    """
    nz = h != 0
    if firing == "nonzero" or k is None:
        return nz
    if firing != "top-k":
        raise MetaplasticError(f"firing must be one of {FIRING}, got {firing!r}")
    zero = ~nz
    need = k - nz.sum(-1, keepdim=True)
    return nz | (zero & (zero.cumsum(-1) <= need))


def fired(h: torch.Tensor, config: NetworkConfig) -> torch.Tensor:
    """:func:`fired_mask` under a network config's notion of firing (``config.firing``, ``config.k``).

    The one function that derives "fired" from states, for firing words,
    output gains and firing statistics alike.
    """
    return fired_mask(h, config.k, config.firing)


def run_rounds(P: torch.Tensor, W: torch.Tensor | None, k: int, rounds: int,
               h1: torch.Tensor | None = None, states: list | None = None, words: bool = True,
               *, recurrence: str = "wh+ax", firing: str = "nonzero"):
    """T rounds from the input drive ``P`` ``[B, m, V]``.

    Returns the final hidden state ``[B, m, V]`` and the firing words
    ``[B, m, V]`` (uint8; None with ``words=False``).  ``h1`` may pass a
    precomputed first round; a list passed as ``states`` receives the hidden
    state of every round.  ``recurrence`` and ``firing`` select the paper's
    text (default) or its code (module docstring); pass ``**config.semantics``.
    """
    if recurrence not in RECURRENCE:
        raise MetaplasticError(f"recurrence must be one of {RECURRENCE}, got {recurrence!r}")
    if firing not in FIRING:
        raise MetaplasticError(f"firing must be one of {FIRING}, got {firing!r}")
    topk = firing != "nonzero" and k is not None
    h = first_round(P, k) if h1 is None else h1
    if words:
        code = (fired_mask(h, k, firing) if topk else h != 0).to(torch.uint8)
    else:
        code = None
    if states is not None:
        states.append(h)
    through = recurrence == "w(h+ax)"
    facts = _ShortcutFacts(P, W, None if h1 is not None else h, k) \
        if rounds > 1 and _may_shortcut(P, W, h1) else None
    for _ in range(rounds - 1):
        nxt = facts.next_round(h, through) if facts is not None else None
        if nxt is None:
            nxt = cap(torch.relu(recurrent_drive(h, P, W, recurrence)), k)
        h = nxt
        if words:
            code = (code << 1) | (fired_mask(h, k, firing) if topk else h != 0).to(torch.uint8)
        if states is not None:
            states.append(h)
    return h, code


#: Rows (networks x inputs) from which :func:`run_rounds` looks for its shortcuts.  A silent round
#: is found by a pass over h and needs W finite (the sum of W, one fast pass, about a product over
#: 4 rows at |V| = 1000, one thread); an all-zero W needs a slower pass (its smallest and largest
#: entry, about a product over 16 rows), made only for batches of ``SHORTCUT_ZERO_W_ROWS`` rows, so
#: that models whose W is not zero (most) lose little to the check.
SHORTCUT_MIN_ROWS = 64
SHORTCUT_ZERO_W_ROWS = 512


def recurrent_drive(h: torch.Tensor, P: torch.Tensor, W: torch.Tensor, recurrence: str = "wh+ax") -> torch.Tensor:
    """A later round's drive before the ReLU and the cap, from the previous state ``h`` and the
    input drive ``P`` (``[B, m, V]``): the text's ``h @ W + P`` or the code's ``(h + P) @ W``."""
    return torch.bmm(h + P, W) if recurrence == "w(h+ax)" else torch.bmm(h, W) + P


def _may_shortcut(P: torch.Tensor, W: torch.Tensor | None, h1: torch.Tensor | None) -> bool:
    """Whether :func:`run_rounds` may skip a product ``h @ W`` that is exactly zero: on the CPU
    (the checks read a value back, which would stall a GPU's queue), for enough rows that the
    checks pay, and not while autograd needs W's gradient (``d(h @ W)/dW = h``, non-zero even at
    W = 0) or a given first round's."""
    if W is None or P.device.type != "cpu" or P.shape[0] * P.shape[1] < SHORTCUT_MIN_ROWS:
        return False
    return not (torch.is_grad_enabled() and (W.requires_grad or (h1 is not None and h1.requires_grad)))


class _ShortcutFacts:
    """Rounds of :func:`run_rounds` that need no product, found by checks cheaper than the product.

    Under the text's recurrence ``z = h @ W + P``: when h is all zero (a silent round, e.g. under
    a learned rule that silences round 2) and W is finite, or when W is all zero (a zero graph
    rule, an untrained W) and h is finite, ``h @ W`` is a sum of zeros, so ``z = P`` and the round
    is round 1 again, ``cap_k(relu(P))``.  Under the code's ``z = (h + P) @ W``: when W is all
    zero and h + P finite, z is zero and so is the round.  The shortcut gives the same values
    up to the sign of zeros, which changes no firing, cap decision, prediction or input
    gradient (through a silent or constant round the input gradient is a sum of exact zeros).
    Each fact about W is read at most once per call, and only when a round could use it: W is
    finite when its sum is (an inf or NaN entry makes every sum inf or NaN; an overflowing
    finite W only declines the shortcut), all zero when its smallest and largest entry are 0.
    """

    def __init__(self, P: torch.Tensor, W: torch.Tensor, first: torch.Tensor | None, k: int | None):
        self.P, self.W, self.k, self._first = P, W, k, first  # first: round 1 as computed here, or None
        self._big = P.shape[0] * P.shape[1] >= SHORTCUT_ZERO_W_ROWS
        self._w_zero = self._w_finite = self._p_finite = None

    def w_finite(self) -> bool:
        if self._w_finite is None:
            self._w_finite = math.isfinite(float(self.W.sum()))
        return self._w_finite

    def w_zero(self) -> bool:
        """W all zero (checked only for large batches; False otherwise)."""
        if self._w_zero is None:
            if self._big:
                lo, hi = (float(v) for v in torch.aminmax(self.W))  # a NaN makes both NaN
                self._w_zero = lo == 0.0 and hi == 0.0
            else:
                self._w_zero = False
        return self._w_zero

    def first(self) -> torch.Tensor:
        if self._first is None:  # a caller's h1 may be anything: round 1 from P, once
            self._first = first_round(self.P, self.k)
        return self._first

    def next_round(self, h: torch.Tensor, through: bool) -> torch.Tensor | None:
        """The next round's state when it needs no product, else None."""
        if through:
            if self.w_zero():
                if self._p_finite is None:
                    self._p_finite = bool(torch.isfinite(self.P).all())
                if self._p_finite and bool(torch.isfinite(h).all()):
                    return torch.zeros_like(self.P)
            return None
        if not bool(h.any()):
            return self.first() if self.w_finite() else None
        if self.w_zero() and bool(torch.isfinite(h).all()):
            return self.first()
        return None


def words_of(states: torch.Tensor, k: int | None = None, firing: str = "nonzero") -> torch.Tensor:
    """Firing words (uint8, first round = most significant bit) from hidden states ``[..., T, V]``
    (``firing="top-k"`` needs the cap's ``k``; see :func:`fired_mask`)."""
    weights = _bit_weights(states.shape[-2], states.device)
    bits = fired_mask(states, k, firing) if firing != "nonzero" else states != 0
    return (bits.to(torch.uint8) * weights).sum(-2, dtype=torch.uint8)


@lru_cache(maxsize=None)
def _bit_weights(T: int, device) -> torch.Tensor:
    """``[T, 1]`` uint8 place values of the rounds (made once: this is on the inner loop)."""
    return torch.tensor([[1 << (T - 1 - t)] for t in range(T)], dtype=torch.uint8, device=device)


def forward(nets: Networks, x: torch.Tensor):
    """Logits ``[B, m, l]`` and firing words ``[B, m, V]`` for inputs x."""
    c = nets.config
    h, words = run_rounds(project(x.to(nets.A.dtype), nets.A), nets.W, c.k, c.rounds, **c.semantics)
    return torch.bmm(h, nets.U), words


@torch.no_grad()
def firing_fractions(nets: Networks, x: torch.Tensor, batch_size: int = 2048,
                     firing: str | None = None) -> torch.Tensor:
    """``[B, T]``: the fraction of units firing in each round, over the inputs x, under the
    config's notion of firing (:func:`fired`; under top-k firing every round fires k/|V|),
    or under ``firing`` (``"nonzero"``: the units active, whatever the config's notion)."""
    c = nets.config
    firing = c.firing if firing is None else firing
    total = torch.zeros(nets.batch, c.rounds, dtype=torch.float64, device=nets.A.device)
    for i in range(0, x.shape[0], batch_size):
        P = project(x[i:i + batch_size].to(nets.A.dtype), nets.A)
        _, words = run_rounds(P, nets.W, c.k, c.rounds, recurrence=c.recurrence, firing=firing)
        for t in range(c.rounds):
            total[:, t] += ((words >> (c.rounds - 1 - t)) & 1).sum((1, 2), dtype=torch.float64)
    return total / max(x.shape[0] * c.vertices, 1)


@torch.no_grad()
def predict(nets: Networks, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Predicted labels ``[B, n]`` (argmax of the logits; ties to the lower label)."""
    c = nets.config
    out = []
    for i in range(0, x.shape[0], batch_size):  # forward's logits, without the firing words
        h, _ = run_rounds(project(x[i:i + batch_size].to(nets.A.dtype), nets.A), nets.W, c.k, c.rounds,
                          words=False, **c.semantics)
        out.append(torch.bmm(h, nets.U).argmax(-1))
    return torch.cat(out, dim=1)


def accuracy(nets: Networks, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Accuracy of each network ``[B]``."""
    return (predict(nets, x) == y.to(nets.A.device)).double().mean(dim=1)


class SimpleRNN(nn.Module):
    """One trained network as an ordinary module: flat inputs ``[N, d]`` -> logits ``[N, l]``.

    Thin wrapper over the pure functions above (member ``b`` of an ensemble).
    Gradients with respect to the input flow through the cap's kept values.
    """

    def __init__(self, nets: Networks, b: int = 0):
        super().__init__()
        if not isinstance(b, int) or not 0 <= b < nets.batch:
            raise MetaplasticError(f"network index b must be in 0..{nets.batch - 1}, got {b!r}")
        one = nets.member(b)
        self.config = nets.config
        self.register_buffer("A", one.A[0].clone())
        # G is kept as its own buffer: an edge of the graph can carry weight 0,
        # so it cannot be recovered from W.
        self.register_buffer("G", None if one.G is None else one.G[0].clone())
        self.register_buffer("W", None if one.W is None else one.W[0].clone())
        self.register_buffer("U", one.U[0].clone())

    def networks(self) -> Networks:
        """This network as an ensemble of one (copies of the buffers)."""
        c = lambda t: None if t is None else t[None].clone()  # noqa: E731
        return Networks(self.config, c(self.A), c(self.G), c(self.W), c(self.U))

    def _rounds(self, x: torch.Tensor, words: bool = True):
        c = self.config
        P = (x.to(self.A.dtype) @ self.A)[None]
        return run_rounds(P, None if self.W is None else self.W[None], c.k, c.rounds, words=words, **c.semantics)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self._rounds(x, words=False)
        return (h @ self.U)[0]

    def firing_words(self, x: torch.Tensor) -> torch.Tensor:
        return self._rounds(x)[1][0]
