"""Training without backpropagation (paper A.1 "Rule-based training", A.4 schemes).

One example at a time per network: forward pass, firing words, then

* graph:  ``W_ij += eta * r[s_i, s_j]`` on every edge ``i -> j`` of G
  (multiplicative: ``W_ij *= m[s_i, s_j] ** eta``);
* output: row ``y`` (true label) of U gets ``eta * r_o[s_i, 0] * g_i`` and the
  predicted row gets ``eta * r_o[s_i, 1] * g_i`` (when the two coincide, as on a
  correctly classified example in the update-on-all scheme, that row gets
  both, so the perceptron table leaves it unchanged); in the all-rows scheme
  (A.4) every row other than ``y`` gets column 1.  The gain ``g_i`` is
  appendix B's ``chi^a(y)``: the unit's final value ``h_i`` if it fired in the
  final round, 1 if it did not (``output_input="value"``, the default); with
  ``output_input="bit"`` it is always 1 (a pure pattern table).  The choice
  matters: with the perceptron table at |V|=100, T=1 on halfspace the value
  form reaches 0.95 test accuracy and the bit form 0.72; on MNIST (|V|=1000,
  T=1) 0.91 and 0.82.  See docs/DESIGN.md.

Schemes (A.4): update on misclassified examples only (default) or on all;
output updates to the true and predicted rows (default) or to all rows.

How it is fast while staying exact
    In the misclassified-only scheme weights change only at mistakes, so
    between two mistakes every network is a *fixed* function.  The loop
    therefore evaluates a chunk of upcoming examples with one batched matrix
    product, finds each network's first mistake in the chunk, applies that
    update and moves each network past it.  The result is the same sequence
    of updates as the one-at-a-time loop (the examples before the first
    mistake are correctly classified and cause no update).  The chunk size
    adapts to the observed run length between mistakes.  The input drive
    ``x @ A`` never changes, so it is computed for all examples at once (and
    at T = 1 the whole hidden state is); every loop carries the ensemble
    dimension B.

    Reproducibility: a matrix product's rounding depends on its shape and on
    the CPU (MKL uses one kernel for one row and another for several, in
    float64 another for 2 rows than for 3, and others again on AVX2 than on
    AVX-512).  So the hidden values and weights of a chunked run, of an
    ensemble and of separate runs agree to rounding, not bit for bit, and
    their decisions (mistakes, predictions, firing words) agree except where a
    value lies within rounding of a tie.  Chunks hold at least two rows and at
    most :data:`MAX_CHUNK` ``[dtype]``: on the reference machine (MKL,
    AVX-512) sizes at which every row rounds as it would alone in a 2-row
    chunk, which removes the shape dependence there, but nothing guarantees
    that on another CPU or BLAS.  What holds on every machine: the same run
    (same data, seeds, ensemble and thread count) repeats bit for bit, and
    where the arithmetic is exact (small integers, step sizes that are powers
    of two) an ensemble equals separate runs bit for bit.  tests/test_learner.py
    checks decisions exactly and values to a tolerance per dtype.

The loop can record, per update, each network's firing words (one byte per
unit), whether it updated, the label and the prediction: all that the
count-replay meta-gradient needs (:class:`UpdateRecord`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from .compiled import resolve_backend, train_compiled
from .errors import MetaplasticError, TrainingDiverged
from .network import Networks

UPDATE_ON = ("misclassified", "all")
OUTPUT_ROWS = ("true-and-predicted", "all")
OUTPUT_INPUT = ("value", "bit")
# Largest speculative chunk per dtype (see the module docstring): with MKL on
# AVX-512, float64 GEMMs of 2 and 3 rows round differently, float32 ones agree
# from 2 to 191 rows (a property of that machine, not a guarantee).
MAX_CHUNK = {torch.float32: 128, torch.float64: 2}
#: Update steps of the inner loop between two checks that the plastic weights
#: are finite (a check is one reduction and a sync; see :func:`check_finite`).
FINITE_CHECK_EVERY = 64


@dataclass(frozen=True)
class Scheme:
    """Update scheme of the inner loop (A.1, A.4)."""

    update_on: str = "misclassified"
    output_rows: str = "true-and-predicted"
    output_input: str = "value"

    def __post_init__(self):
        if self.update_on not in UPDATE_ON:
            raise MetaplasticError(f"update-on must be one of {UPDATE_ON}, got {self.update_on!r}")
        if self.output_rows not in OUTPUT_ROWS:
            raise MetaplasticError(f"output-rows must be one of {OUTPUT_ROWS}, got {self.output_rows!r}")
        if self.output_input not in OUTPUT_INPUT:
            raise MetaplasticError(
                f"output-input must be one of {OUTPUT_INPUT}, got {self.output_input!r}")


@dataclass
class Tables:
    """Materialized rule tables the inner loop applies (linear domain, see rules.py).

    ``graph`` is ``[2^T, 2^T]`` or None (no graph plasticity); ``output`` is
    ``[2^T, 2]``.  Either may carry a leading ensemble dimension (``[B, ...]``:
    one table per network, as evolution strategies use).  ``*_mode`` is
    "additive" or "multiplicative"; ``*_eta`` the step size.
    """

    output: torch.Tensor
    output_mode: str = "additive"
    output_eta: float = 1e-2
    graph: torch.Tensor | None = None
    graph_mode: str = "additive"
    graph_eta: float = 1e-2

    @classmethod
    def from_rules(cls, output_rule, graph_rule=None, eta: float | None = None) -> "Tables":
        """Tables from :class:`~metaplastic.rules.Rule` objects (``eta`` overrides theirs)."""
        return cls(
            output=output_rule.table(), output_mode=output_rule.mode,
            output_eta=output_rule.eta if eta is None else eta,
            graph=None if graph_rule is None else graph_rule.table(),
            graph_mode="additive" if graph_rule is None else graph_rule.mode,
            graph_eta=(graph_rule.eta if eta is None else eta) if graph_rule is not None else 1e-2,
        )


@dataclass
class UpdateRecord:
    """What happened at each update step of the inner loop (``S`` steps).

    ``words[s, b]`` are network b's firing words (uint8, one byte per unit) on
    the example it updated on at step s; ``active[s, b]`` whether it updated
    then; ``y`` and ``pred`` the label and prediction of that example;
    ``gain[s, b]`` the output-update gains ``g_i`` (None in the bit form);
    ``index[s, b]`` the example's index into the training data; ``states[s, b]``
    (only when asked for) the hidden state of every round ``[T, V]``, which the
    adjoint sweep of the replay gradient needs, and with it ``drive[s, b]``, the
    example's input drive ``x @ A`` ``[V]``, under ``recurrence="w(h+ax)"`` only
    (where rounds 2..T multiply ``h + x @ A`` by W).
    """

    words: torch.Tensor   # [S, B, V] uint8
    active: torch.Tensor  # [S, B] bool
    y: torch.Tensor       # [S, B] long
    pred: torch.Tensor    # [S, B] long
    gain: torch.Tensor | None = None  # [S, B, V] float
    index: torch.Tensor | None = None  # [S, B] long
    states: torch.Tensor | None = None  # [S, B, T, V] float
    drive: torch.Tensor | None = None   # [S, B, V] float

    def nbytes(self) -> int:
        ts = (self.words, self.active, self.y, self.pred, self.gain, self.index, self.states, self.drive)
        return sum(t.numel() * t.element_size() for t in ts if t is not None)


def data_orders(n: int, epochs: int, seeds) -> torch.Tensor:
    """Data order of each network ``[B, epochs * n]``: a fresh shuffle per epoch.

    The shuffle of member b comes from its own seed (a stream separate from the
    one that draws its masks), so ensembles equal separate runs.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise MetaplasticError(f"epochs must be a positive integer, got {epochs!r}")
    rows = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s) + 0x5EED_0000)
        rows.append(torch.cat([torch.randperm(n, generator=g) for _ in range(epochs)]))
    return torch.stack(rows)


def output_selector(y: torch.Tensor, pred: torch.Tensor, n_classes: int, output_rows: str,
                    dtype) -> torch.Tensor:
    """``[B, 2, l]``: which output rows receive column 0 and column 1 of r_o."""
    B = y.shape[0]
    sel = torch.zeros(B, 2, n_classes, dtype=dtype, device=y.device)
    bi = torch.arange(B, device=y.device)
    sel[bi, 0, y] = 1.0
    if output_rows == "true-and-predicted":
        sel[bi, 1, pred] += 1.0
    else:
        sel[:, 1, :] = 1.0
        sel[bi, 1, y] = 0.0
    return sel


def lookup(table: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Rows of a shared ``[R, C]`` or per-network ``[B, R, C]`` table for codes ``[..., B, V]``."""
    if table.dim() == 2:
        return table[codes]
    return table[torch.arange(codes.shape[-2], device=codes.device)[:, None], codes]


def one_hot(codes: torch.Tensor, n: int, dtype) -> torch.Tensor:
    """``F.one_hot(codes, n).to(dtype)`` without its range checks (two
    reductions and a sync per call, a fifth of a small update's cost); codes
    come from firing words, so they are in range by construction."""
    return (codes[..., None] == _arange(n, codes.device)).to(dtype)


@lru_cache(maxsize=None)
def _arange(n: int, device) -> torch.Tensor:
    """``torch.arange(n)``, made once per size and device (it is on the inner loop)."""
    return torch.arange(n, device=device)


def graph_delta(table: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, V, V]`` with entry ``scale_b * table[c_i, c_j]`` (not yet masked by G).

    ``out`` (no autograd): a preallocated ``[B, V, V]`` buffer to write into.
    At |V|=1000 a fresh 4 MB-per-network result costs as much in page faults
    as the product itself (an ensemble of 10 updates in 16 ms instead of 34).
    """
    rows = lookup(table, codes) * scale[:, None, None]               # [B, V, 2^T]
    onehot = one_hot(codes, table.shape[-1], table.dtype)            # [B, V, 2^T]
    if out is not None:
        return torch.bmm(rows, onehot.transpose(1, 2), out=out)
    return torch.bmm(rows, onehot.transpose(1, 2))


def output_gain(h: torch.Tensor, out: torch.Tensor | None = None,
                fired: torch.Tensor | None = None) -> torch.Tensor:
    """Appendix B's ``chi``: ``h_i`` where the unit fired, 1 where it did not (into ``out`` if given).

    ``fired`` (bool, like ``h``) is the final round's firing under a network's
    notion (:func:`metaplastic.network.fired`); None means ``h != 0``.  Under
    top-k firing a top-k member of value 0 fired, so its gain is its value, 0:
    ``chi^1(y)_i = y_i`` for a fired unit, as appendix B writes it (the paper's
    code has no value-weighted output update to settle this; it uses the bit form).
    """
    return torch.where(h != 0 if fired is None else fired, h, _one(h.dtype, h.device), out=out)


@lru_cache(maxsize=None)
def _one(dtype, device) -> torch.Tensor:
    return torch.ones((), dtype=dtype, device=device)


def apply_updates(nets: Networks, tables: Tables, words: torch.Tensor, y: torch.Tensor,
                  pred: torch.Tensor, active: torch.Tensor, output_rows: str,
                  gain: torch.Tensor | None = None, work: torch.Tensor | None = None) -> None:
    """One rule update of every active network, in place (A.1 step 3).

    ``gain`` ``[B, V]`` scales each unit's output update (None: 1); ``work``
    is an optional ``[B, V, V]`` scratch buffer for the graph update.
    """
    codes = words.long()
    dtype = nets.U.dtype
    act = active.to(dtype)
    if tables.graph is not None and nets.W is not None:
        delta = graph_delta(tables.graph, codes, act * tables.graph_eta, out=work)
        if tables.graph_mode == "additive":
            nets.W.addcmul_(nets.G, delta)
        else:  # W is zero off the graph, so the factor needs no mask
            nets.W.mul_(delta.exp_())
    rows = lookup(tables.output, codes) * (act * tables.output_eta)[:, None, None]  # [B, V, 2]
    if gain is not None:
        rows = rows * gain[..., None]
    bi = torch.arange(codes.shape[0], device=codes.device)
    U = nets.U
    if tables.output_mode == "additive":
        Ut = U.transpose(1, 2)  # [B, l, V] view: row (b, y) is U[b, :, y]; one in-place op per column
        if output_rows == "true-and-predicted":
            Ut.index_put_((bi, y), rows[..., 0], accumulate=True)
            Ut.index_put_((bi, pred), rows[..., 1], accumulate=True)
        else:
            U += rows[..., 1:2]
            Ut.index_put_((bi, y), rows[..., 0] - rows[..., 1], accumulate=True)
    else:
        if output_rows == "true-and-predicted":
            U[bi, :, y] *= rows[..., 0].exp()
            U[bi, :, pred] *= rows[..., 1].exp()
        else:
            U *= rows[..., 1:2].exp()
            U[bi, :, y] *= (rows[..., 0] - rows[..., 1]).exp()


def check_finite(nets: Networks, tables: Tables | None, done, before=None) -> list[int]:
    """Raise :class:`TrainingDiverged` unless every network's plastic weights are finite.

    A step size too large for a rule makes the weights overflow (winnow at eta 1
    on halfspace reaches inf within a few thousand mistakes); the networks then
    predict from NaN logits, so training must stop instead of reporting them.
    ``done[b]`` examples of network b's sequence have been consumed, ``before[b]``
    at the last check that passed, so the weights first went bad at an example
    of that window.  ``tables=None`` means the GD baseline (Adam).  Returns a
    copy of ``done`` (the window start of the next check).
    """
    B = nets.batch
    before = [0] * B if before is None else before
    checks = [("graph weights W", nets.W, "graph"), ("output weights U", nets.U, "output")]
    if tables is None:  # GD on everything also trains A
        checks.insert(0, ("input weights A", nets.A, "input"))
    for name, t, rule in checks:
        if t is None:
            continue
        ok = torch.isfinite(t).flatten(1).all(1)
        if bool(ok.all()):
            continue
        b = int((~ok).nonzero()[0, 0])
        window = (f"after example {done[b]} of its training sequence (finite after example {before[b]})"
                  if done[b] != before[b] else f"after example {done[b]} of its training sequence")
        if tables is None:
            how, hint = "Adam (GD baseline)", "try a smaller --gd-lr"
        else:
            mode = tables.graph_mode if rule == "graph" else tables.output_mode
            eta = tables.graph_eta if rule == "graph" else tables.output_eta
            how = f"the {rule} rule ({mode}, eta {eta:g})"
            hint = f"try a smaller step size, e.g. --eta {eta / 10:g}"
        err = TrainingDiverged(f"training diverged: {how} made network {b}'s {name} non-finite "
                               f"{window}; {hint}", example=int(done[b]), network=b)
        err.rule = None if tables is None else rule
        raise err
    return list(done)


def _on_device(nets: Networks, x, y, orders):
    """Data and orders on the networks' device (x in their dtype); one order row per network."""
    dev = nets.A.device
    if orders.dim() != 2 or orders.shape[0] != nets.batch:
        raise MetaplasticError(f"orders must have one row per network: shape {tuple(orders.shape)} "
                               f"for {nets.batch} networks")
    return x.to(device=dev, dtype=nets.A.dtype), y.to(dev), orders.to(dev)


@torch.no_grad()
def train_rules(nets: Networks, x: torch.Tensor, y: torch.Tensor, tables: Tables,
                orders: torch.Tensor, scheme: Scheme = Scheme(), *, record: bool = False,
                max_chunk: int | None = None, cache_bytes: int = 2 << 30, progress=None,
                backend: str | None = None):
    """Train every network of ``nets`` in place by the rules (A.1), no backprop.

    ``orders`` ``[B, N]`` gives each network's example sequence (indices into
    x, y; several epochs concatenated, see :func:`data_orders`).  Returns the
    number of online mistakes per network ``[B]`` and, with ``record=True``,
    an :class:`UpdateRecord` (``record="states"`` also keeps every round's
    hidden state of each update).  ``progress`` is called with the number of
    examples consumed (summed over networks) after every step.

    ``backend``: "torch" (:func:`metaplastic.torch_loop.train_torch`), "compiled"
    (:mod:`metaplastic.compiled`, the same results to rounding) or "auto"
    (compiled where it can run, i.e. on the CPU); None means the process
    default (:func:`~metaplastic.compiled.default_backend`).
    """
    x, y, orders = _on_device(nets, x, y, orders)
    _check_tables(tables, orders.shape[0], nets.config.rounds)
    if max_chunk is None:
        max_chunk = MAX_CHUNK.get(nets.A.dtype, 2)
    max_chunk = max(2, max_chunk)
    if resolve_backend(backend, nets) == "compiled":
        train = train_compiled
    else:
        from .torch_loop import train_torch as train
    return train(nets, x, y, tables, orders, scheme, record=record, max_chunk=max_chunk,
                 cache_bytes=cache_bytes, progress=progress)


def _check_tables(tables: Tables, B: int, rounds: int) -> None:
    for name, t, shape in (("output", tables.output, (2**rounds, 2)),
                           ("graph", tables.graph, (2**rounds, 2**rounds))):
        if t is not None and tuple(t.shape) not in (shape, (B,) + shape):
            raise MetaplasticError(f"{name} rule table must be {shape} (or {(B,) + shape} per "
                                   f"network) at T={rounds}, got {tuple(t.shape)}")


def new_record(N: int, B: int, config, dtype, device, valued: bool, keep_states: bool,
               keep_drive: bool = False):
    """An :class:`UpdateRecord` of ``N`` rows (a step consumes at least one example) and its int block.

    Preallocated: appending small tensors step by step fragments the heap (at
    |V|=1000 and 10,000 examples it held 6 GB of freed chunk buffers).  Label,
    prediction and example index share one ``[N, 3, B]`` tensor: one write per step.
    """
    V, T = config.vertices, config.rounds
    ints = torch.zeros(N, 3, B, dtype=torch.long, device=device)
    rec = UpdateRecord(torch.zeros(N, B, V, dtype=torch.uint8, device=device),
                       torch.zeros(N, B, dtype=torch.bool, device=device), ints[:, 0], ints[:, 1],
                       torch.zeros(N, B, V, dtype=dtype, device=device) if valued else None, ints[:, 2],
                       torch.zeros(N, B, T, V, dtype=dtype, device=device) if keep_states else None,
                       torch.zeros(N, B, V, dtype=dtype, device=device) if keep_drive else None)
    return rec, ints


def cut_record(rec: UpdateRecord, steps: int) -> UpdateRecord:
    """The first ``steps`` rows of a preallocated record, as a record of its own."""
    cut = lambda t: None if t is None else t[:steps].clone()  # noqa: E731
    return UpdateRecord(cut(rec.words), cut(rec.active), cut(rec.y), cut(rec.pred), cut(rec.gain),
                        cut(rec.index), cut(rec.states), cut(rec.drive))


def __getattr__(name: str):
    """Names that moved to modules of their own, still importable from here."""
    if name in ("train_torch", "FeatureCache"):
        from . import torch_loop
        return getattr(torch_loop, name)
    if name == "train_gd":
        from .gd import train_gd
        return train_gd
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

