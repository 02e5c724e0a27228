"""Plasticity rules (paper section 2, "Landscape of rules"; section 3.1, Table 1).

A rule maps the firing words of a synapse's two ends to a weight change.

* **Graph rule** r: {0,1}^T x {0,1}^T -> R, a ``2^T x 2^T`` table indexed by
  ``[pre-synaptic word, post-synaptic word]``.
* **Output rule** r_o: {0,1}^T x {0,1} -> R, a ``2^T x 2`` table indexed by
  ``[word of hidden unit i, column]``; column 0 is the update of the row of the
  *true* label, column 1 the update of the *predicted* row (in the all-rows
  scheme of A.4: of every row other than the true one).

Firing words
    A unit's firing word packs its T firing bits into an integer with the
    **first round in the most significant bit**: bits ``(s_1, ..., s_T)`` give
    ``sum_t s_t * 2**(T - t)``.  So at T=3, word 4 = ``100`` means "fired in
    round 1 only" and word 1 = ``001`` "fired in the last round only".
    (:data:`BIT_ORDER` is written into every rule file.)

Modes (A.1 step 1 and 3)
    *additive*: weights start at 0 and ``w += eta * r``.
    *multiplicative*: weights start at 1 and ``w *= m ** eta`` where ``m > 0``
    is the rule's factor; equivalently ``log w += eta * log m``.  Internally a
    multiplicative rule stores ``log m``, so in both modes the trained weights
    are *linear* in what :meth:`Rule.table` returns (in log space for
    multiplicative rules): the fact that makes the tape-free meta-gradient
    exact.  With ``eta = 1`` the Table 1 MW factors (x2, x1/2) are Winnow.

Both parameterizations (look-up table, small MLP over the 2T or T+1 bits)
materialize a differentiable table through :meth:`Rule.table`; the training
loop only ever sees that table.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import MetaplasticError

BIT_ORDER = "first-round-msb"
MODES = ("additive", "multiplicative")
KINDS = ("graph", "output")
MAX_ROUNDS = 8  # words are stored as uint8 (one byte per unit and example)


def check_rounds(rounds: int) -> int:
    if not isinstance(rounds, int) or isinstance(rounds, bool) or not 1 <= rounds <= MAX_ROUNDS:
        raise MetaplasticError(f"rounds T must be an integer in 1..{MAX_ROUNDS}, got {rounds!r}")
    return rounds


def word_bits(words: torch.Tensor, rounds: int) -> torch.Tensor:
    """Unpack firing words into bits ``[..., T]`` (first round first)."""
    shifts = torch.arange(rounds - 1, -1, -1, device=words.device)
    return (words.long().unsqueeze(-1) >> shifts) & 1


def all_words(rounds: int, dtype=torch.float32) -> torch.Tensor:
    """Bits of every word ``0 .. 2^T - 1``, shape ``[2^T, T]``."""
    return word_bits(torch.arange(2**rounds), rounds).to(dtype)


def last_round_fired(rounds: int) -> torch.Tensor:
    """Boolean ``[2^T]``: did a unit with this word fire in the final round?"""
    return (torch.arange(2**rounds) & 1).bool()


def table_shape(kind: str, rounds: int) -> tuple[int, int]:
    if kind == "graph":
        return (2**rounds, 2**rounds)
    if kind == "output":
        return (2**rounds, 2)
    raise MetaplasticError(f"rule kind must be one of {KINDS}, got {kind!r}")


class Rule(nn.Module):
    """A plasticity rule: a differentiable table plus its mode and step size.

    ``table()`` returns the update table in the rule's linear domain: the
    increments for an additive rule, ``log`` of the factors for a
    multiplicative one.  ``factors()`` gives what a person reads (for an
    additive rule the same table).
    """

    param_kind = "abstract"

    def __init__(self, kind: str, rounds: int, mode: str = "additive", eta: float = 1e-2):
        super().__init__()
        table_shape(kind, rounds)  # validates kind
        check_rounds(rounds)
        if mode not in MODES:
            raise MetaplasticError(f"rule mode must be one of {MODES}, got {mode!r}")
        if not (isinstance(eta, (int, float)) and math.isfinite(eta) and eta > 0):
            raise MetaplasticError(f"step size eta must be a positive finite number, got {eta!r}")
        self.kind = kind
        self.rounds = rounds
        self.mode = mode
        self.eta = float(eta)

    @property
    def shape(self) -> tuple[int, int]:
        return table_shape(self.kind, self.rounds)

    def table(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def factors(self) -> torch.Tensor:
        t = self.table()
        return t.exp() if self.mode == "multiplicative" else t

    def extra_repr(self) -> str:
        return f"kind={self.kind}, T={self.rounds}, mode={self.mode}, eta={self.eta:g}"


class TableRule(Rule):
    """Look-up table rule: every entry is a parameter (section 2, parameterization 1)."""

    param_kind = "table"

    def __init__(self, kind: str, rounds: int, mode: str = "additive", eta: float = 1e-2,
                 values: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
                 init_scale: float = 0.0, dtype=torch.float32):
        """``values`` are in the rule's linear domain (log factors if multiplicative).

        Without ``values`` the table starts at zero, or at ``N(0, init_scale^2)``
        entries drawn from ``generator`` when ``init_scale > 0``.
        """
        super().__init__(kind, rounds, mode, eta)
        shape = self.shape
        if values is None:
            values = torch.zeros(shape, dtype=dtype)
            if init_scale > 0:
                values = init_scale * torch.randn(shape, generator=generator, dtype=dtype)
        values = torch.as_tensor(values, dtype=dtype)
        if tuple(values.shape) != shape:
            raise MetaplasticError(
                f"a {kind} rule at T={rounds} needs a table of shape {shape}, got {tuple(values.shape)}")
        if not torch.isfinite(values).all():
            raise MetaplasticError(f"{kind} rule table has non-finite entries")
        self.values = nn.Parameter(values.clone())

    @classmethod
    def from_factors(cls, kind, rounds, factors, eta=1e-2, **kw) -> "TableRule":
        f = torch.as_tensor(factors, dtype=torch.float64)
        if (f <= 0).any():
            raise MetaplasticError("multiplicative factors must be positive")
        return cls(kind, rounds, "multiplicative", eta, values=f.log(), **kw)

    def table(self) -> torch.Tensor:
        return self.values


class MLPRule(Rule):
    """Small MLP rule (section 2, parameterization 2; A.3 uses hidden width 20).

    Inputs are the bits of the two ends: for a graph rule the T pre-synaptic
    bits then the T post-synaptic bits; for an output rule the T bits of unit
    i then the column bit (0 = true-label row, 1 = predicted/other row).  One
    hidden ReLU layer, one linear output.  ``table()`` evaluates the MLP on
    every input once, so training costs the same as with a table rule.
    """

    param_kind = "mlp"

    def __init__(self, kind: str, rounds: int, mode: str = "additive", eta: float = 1e-2,
                 hidden: int = 20, *, generator: torch.Generator | None = None, dtype=torch.float32):
        super().__init__(kind, rounds, mode, eta)
        if not isinstance(hidden, int) or hidden < 1:
            raise MetaplasticError(f"MLP hidden width must be a positive integer, got {hidden!r}")
        self.hidden = hidden
        n_in = 2 * rounds if kind == "graph" else rounds + 1
        # PyTorch's default Linear init, drawn from the explicit generator.
        b1 = 1.0 / math.sqrt(n_in)
        b2 = 1.0 / math.sqrt(hidden)
        u = lambda shape, b: (torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1) * b  # noqa: E731
        self.w1 = nn.Parameter(u((n_in, hidden), b1))
        self.b1 = nn.Parameter(u((hidden,), b1))
        self.w2 = nn.Parameter(u((hidden,), b2))
        self.b2 = nn.Parameter(u((), b2))

    def inputs(self) -> torch.Tensor:
        rows, cols = self.shape
        wb = all_words(self.rounds, self.w1.dtype).to(self.w1.device)
        if self.kind == "graph":
            pre = wb[:, None, :].expand(rows, cols, self.rounds)
            post = wb[None, :, :].expand(rows, cols, self.rounds)
            return torch.cat([pre, post], dim=-1)
        col = torch.tensor([0.0, 1.0], dtype=wb.dtype, device=wb.device)
        return torch.cat([wb[:, None, :].expand(rows, 2, self.rounds),
                          col[None, :, None].expand(rows, 2, 1)], dim=-1)

    def table(self) -> torch.Tensor:
        z = torch.relu(self.inputs() @ self.w1 + self.b1)
        return z @ self.w2 + self.b2


# ---------------------------------------------------------------------------
# Classic rules (section 3.1, Table 1; Hebb 1949).
# ---------------------------------------------------------------------------

def perceptron_table(rounds: int = 1) -> torch.Tensor:
    """Table 1 (Perceptron, additive): ``[[-1, +1], [+1, -1]]``.

    Rows: the unit's bit (0 ~ x_i = -1, 1 ~ x_i = +1); columns: true-label row,
    predicted row.  On a mistake the true row gains ``+x_i`` and the predicted
    row ``-x_i``: the multi-class perceptron on +-1 features.  At T > 1 the row
    is read from the final round's bit (the state the output layer sees).
    """
    fired = last_round_fired(check_rounds(rounds))
    t = torch.empty(2**rounds, 2)
    t[fired] = torch.tensor([1.0, -1.0])
    t[~fired] = torch.tensor([-1.0, 1.0])
    return t


def winnow_factors(rounds: int = 1) -> torch.Tensor:
    """Table 1 (Multiplicative Weights / Winnow): factors ``[[1, 1], [2, 1/2]]``.

    A unit that did not fire keeps its weights; one that fired doubles its
    weight to the true-label row and halves it to the predicted row.
    """
    fired = last_round_fired(check_rounds(rounds))
    t = torch.ones(2**rounds, 2)
    t[fired] = torch.tensor([2.0, 0.5])
    return t


def hebb_table(rounds: int) -> torch.Tensor:
    """Hebbian graph table: +1 where both ends fired in the same round, else 0."""
    w = torch.arange(2 ** check_rounds(rounds))
    return ((w[:, None] & w[None, :]) != 0).float()


def perceptron_rule(rounds: int = 1, eta: float = 1e-2, dtype=torch.float32) -> TableRule:
    return TableRule("output", rounds, "additive", eta, values=perceptron_table(rounds), dtype=dtype)


def winnow_rule(rounds: int = 1, eta: float = 1e-2, dtype=torch.float32) -> TableRule:
    return TableRule.from_factors("output", rounds, winnow_factors(rounds).double(), eta, dtype=dtype)


def hebb_rule(rounds: int, eta: float = 1e-2, dtype=torch.float32) -> TableRule:
    return TableRule("graph", rounds, "additive", eta, values=hebb_table(rounds), dtype=dtype)
