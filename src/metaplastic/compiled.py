"""The compiled CPU backend of rule-based training (A.1, A.4; issue 13).

:func:`metaplastic.learner.train_rules` runs either its torch loop (the GPU
path and the reference) or this one: plain per-example code compiled with
numba (:mod:`metaplastic._kernels`, cached on disk after the first call), one
compiled call for whole stretches of every network's sequence.

What is the same as the torch loop
    The input drive ``x @ A`` is computed by torch exactly as the torch loop
    computes it (:func:`~metaplastic.network.project`, in the same blocks), so
    round 1 and, at T = 1, the hidden state are the same bits. The cap keeps
    the same set (ties to the lowest index), firing is decided as
    :func:`~metaplastic.network.fired_mask` decides it (non-zero; or, under
    the paper's code's ``firing="top-k"``, the non-zero units plus the
    lowest-indexed zero-valued ones up to k), the updates are the same operations in
    the same order and dtype, and the loop steps through the sequences on the
    torch loop's schedule, so a record (``record=True`` or ``"states"``) has
    the same rows as the torch path's (with the input drive of each row under
    ``recurrence="w(h+ax)"`` and ``record="states"``, as the replay gradient
    needs). What differs is rounding: the products of rounds 2..T and the
    logits are summed in another order (and ``exp`` is another
    implementation), so weights agree to rounding and decisions agree except
    on near-ties (tests/test_compiled.py).

How it is fast
    Per example: round 1 from the cached drive, each further round one pass
    over the rows of W of the units that fired (under the paper's code's
    ``recurrence="w(h+ax)"``: of the non-zero entries of ``h + x A``, formed
    from the cached drive ``x A``), the logits as dot products with U held
    transposed (``[l, V]``), an argmax. An update is one pass over W
    (``W[i] += D[c_i]`` on the edges, where ``D[a, j] = eta r[a, c_j]`` is built once
    per update; rows whose pattern row is zero are skipped; the mask G is held
    as bytes) and two row updates of U. Non-finite weights are detected on the
    rows just written and raise :class:`~metaplastic.errors.TrainingDiverged`
    with the example's position.

Both semantics of :mod:`metaplastic.semantics` (the text's and the code's,
each option alone or together) run compiled.  Not supported
(``backend="auto"`` then uses torch; ``"compiled"`` refuses): a CUDA device
and dtypes other than float32/float64.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from .errors import MetaplasticError, TrainingDiverged
from .network import Networks, project

BACKENDS = ("auto", "torch", "compiled")
#: Environment variable holding the process-wide default backend ("auto" when unset);
#: ``--backend`` sets it, so worker processes (``reproduce all``) inherit it.
BACKEND_ENV = "METAPLASTIC_BACKEND"
_NP = {torch.float32: np.float32, torch.float64: np.float64}


def default_backend() -> str:
    """The process-wide default backend: ``$METAPLASTIC_BACKEND`` or ``"auto"``."""
    name = os.environ.get(BACKEND_ENV, "auto") or "auto"
    if name not in BACKENDS:
        raise MetaplasticError(f"{BACKEND_ENV}={name!r}: backend must be one of {BACKENDS}")
    return name


def set_default_backend(name: str) -> None:
    """Make ``name`` the default backend of this process and of the processes it starts."""
    if name not in BACKENDS:
        raise MetaplasticError(f"backend must be one of {BACKENDS}, got {name!r}")
    os.environ[BACKEND_ENV] = name


def unsupported(config, device, dtype) -> str | None:
    """Why the compiled backend cannot train such networks (None if it can)."""
    device = torch.device(device)
    if device.type != "cpu":
        return f"device {device.type} is"
    if dtype not in _NP:
        return f"dtype {dtype} is"
    try:
        import numba  # noqa: F401
    except ImportError:
        return "numba is not installed, so the compiled backend is"
    return None


def resolve_for(backend: str | None, config, device, dtype) -> str:
    """``"torch"`` or ``"compiled"``: ``auto`` picks compiled where it can run (the CPU).

    ``None`` is the process default; ``"compiled"`` where it cannot run is an error.
    """
    name = default_backend() if backend is None else backend
    if name not in BACKENDS:
        raise MetaplasticError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "torch":
        return "torch"
    why = unsupported(config, device, dtype)
    if name == "compiled" and why is not None:
        raise MetaplasticError(f"{why} not supported by the compiled backend; use --backend torch")
    return "torch" if why else "compiled"


def resolve_backend(backend: str | None, nets: Networks) -> str:
    """:func:`resolve_for` the networks ``nets``."""
    return resolve_for(backend, nets.config, nets.A.device, nets.U.dtype)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _tables(t: torch.Tensor | None, B: int, shape, dtype) -> torch.Tensor:
    """A rule table as ``[B, *shape]`` (one per network), contiguous, in ``dtype``."""
    if t is None:
        return torch.zeros(B, 1, 1, dtype=dtype)
    t = t.detach().to("cpu", dtype)
    return t.expand(B, *shape).contiguous() if t.dim() == 2 else t.contiguous()


class _Drive:
    """Input drive ``x @ A`` of every example, or of a window of each sequence.

    When ``B * n * V`` values fit in ``max_bytes`` all of it is computed once,
    in the torch loop's blocks (so bit for bit its values); otherwise a window
    of the next examples of each network's sequence is computed when needed.
    """

    def __init__(self, nets: Networks, x: torch.Tensor, orders: torch.Tensor, max_bytes: int,
                 min_window: int, block: int = 2048):
        B, N = orders.shape
        V = nets.config.vertices
        self.nets, self.x, self.orders = nets, x, orders
        self.base = np.zeros(B, np.int64)
        self.win_hi = np.full(B, N, np.int64)
        per_row = B * V * nets.A.element_size()
        if x.shape[0] * per_row <= max_bytes:
            self.P = torch.cat([project(x[i:i + block], nets.A) for i in range(0, x.shape[0], block)],
                               dim=1).contiguous().numpy()
            self.rowof = _np(orders)
            self.window = 0
        else:
            self.window = int(min(N, max(min_window, max_bytes // per_row)))
            self.rowof = np.ascontiguousarray(np.broadcast_to(np.arange(N, dtype=np.int64), (B, N)))
            self.P = None

    def refill(self, pos: np.ndarray) -> None:
        """Windows starting at each network's position (at its last example once done)."""
        N = self.orders.shape[1]
        lo = np.minimum(pos, N - 1)
        idx = torch.from_numpy(lo)[:, None] + torch.arange(self.window)
        idx.clamp_(max=N - 1)
        ex = self.orders.gather(1, idx)
        self.P = torch.bmm(self.x[ex], self.nets.A).contiguous().numpy()
        self.base[:] = lo
        self.win_hi[:] = np.minimum(lo + self.window, N)


def train_compiled(nets: Networks, x: torch.Tensor, y: torch.Tensor, tables, orders: torch.Tensor,
                   scheme, *, record=False, max_chunk: int, cache_bytes: int, progress=None):
    """The compiled twin of :func:`metaplastic.learner.train_rules` (same arguments, same results).

    ``x, y, orders`` are already on the CPU (x in the networks' dtype) and the
    tables checked; returns ``(mistakes [B], record or None)``.
    """
    from . import _kernels
    from .learner import cut_record, new_record

    c = nets.config
    B, N = orders.shape
    V, T, K = c.vertices, c.rounds, 2**c.rounds
    dtype = nets.U.dtype
    npd = _NP[dtype]
    drive = _Drive(nets, x, orders, cache_bytes, 4 * max_chunk)
    labels = _np(y[orders].long())
    graph = tables.graph is not None and nets.W is not None
    gmult = tables.graph_mode == "multiplicative"
    omult = tables.output_mode == "multiplicative"
    W = nets.W.contiguous() if nets.W is not None else torch.zeros(B, 0, 0, dtype=dtype)
    G = ((nets.G != 0).to(torch.uint8) if graph and not gmult
         else torch.zeros(B, 0, 0, dtype=torch.uint8))
    Ut = nets.U.transpose(1, 2).contiguous()
    Ro = _tables(tables.output, B, (K, 2), dtype)
    Rg = _tables(tables.graph if graph else None, B, (K, K), dtype)
    etas = np.array([tables.graph_eta, tables.output_eta], dtype=npd)
    valued = scheme.output_input == "value"
    keep_states = record == "states" and T > 1
    through = c.recurrence == "w(h+ax)"            # the paper's code: (h + x A) W
    topk = c.firing == "top-k" and c.k is not None  # else fired = non-zero (network.fired_mask)
    keep_drive = keep_states and through
    rec = None
    none3 = np.zeros((0, 0, 0), npd)
    if record:
        rec, ints = new_record(N, B, c, dtype, "cpu", valued, keep_states, keep_drive)
        rec_args = (rec.words.numpy(), rec.active.numpy(), ints.numpy(),
                    rec.gain.numpy() if valued else none3,
                    rec.states.numpy() if keep_states else np.zeros((0, 0, 0, 0), npd),
                    rec.drive.numpy() if keep_drive else none3)
    else:
        rec_args = (np.zeros((0, 0, 0), np.uint8), np.zeros((0, 0), np.bool_),
                    np.zeros((0, 0, 0), np.int64), none3, np.zeros((0, 0, 0, 0), npd), none3)
    pos = np.zeros(B, np.int64)
    istate = np.zeros(2, np.int64)        # step, sum of positions
    fstate = np.array([4.0])              # running average of the advance (the torch loop's run_avg)
    mistakes = np.zeros(B, np.int64)
    diverged = np.full(2, -1, np.int64)
    budget = 1 << 62 if progress is None else 32  # steps per call: doubled while calls take < 0.2 s
    k = V if c.k is None else c.k
    done_before = 0
    W_np, Ut_np = W.numpy(), Ut.numpy()
    wzero = ~W_np.reshape(B, -1).any(1)  # W all zero: rounds 2..T skip their products until it changes
    status = 2
    while True:
        if drive.window and status == 2:
            drive.refill(pos)
        t0 = time.perf_counter()
        status = _kernels.run_steps(
            drive.P, drive.rowof, drive.base, drive.win_hi, _np(orders), labels, W_np, G.numpy(),
            Ut_np, Rg.numpy(), Ro.numpy(), etas, k, T, scheme.update_on == "all",
            scheme.output_rows == "all", valued, graph, gmult, omult, through, topk, wzero, max_chunk,
            pos, istate, fstate, mistakes, *rec_args, rec is not None, budget, diverged)
        if progress is not None:
            if time.perf_counter() - t0 < 0.2 and budget < 1 << 40:
                budget *= 2
            done = int(np.minimum(pos, N).sum())
            progress(done - done_before)
            done_before = done
        if status == 0:
            break
        if status == 3:
            _write_back(nets, W, Ut)
            q, b = int(diverged[0]), int(diverged[1])
            # the torch loop's message (rule, eta, a smaller eta), counting examples consumed
            from .learner import check_finite
            check_finite(nets, tables, [q + 1] * B, [q] * B)
            raise TrainingDiverged(
                f"training diverged: non-finite weights after the update on example {q} of network {b}'s "
                f"sequence (step size too large?)", example=q, network=b)
    _write_back(nets, W, Ut)
    record_out = None if rec is None else cut_record(rec, int(istate[0]))
    return torch.from_numpy(mistakes), record_out


def _write_back(nets: Networks, W: torch.Tensor, Ut: torch.Tensor) -> None:
    nets.U.copy_(Ut.transpose(1, 2))
    if nets.W is not None and W.data_ptr() != nets.W.data_ptr():
        nets.W.copy_(W)
