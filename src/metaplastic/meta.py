"""Meta-learning plasticity rules by gradient descent (paper section 2, A.1 "GD to Learn a Rule").

Each meta-step trains fresh networks with the current rules on a batch, one
example at a time (:func:`metaplastic.learner.train_rules`), computes the loss
of the trained networks, and moves the rule parameters with Adam and an L2
penalty.  Three estimators of the gradient share one interface
(:data:`ESTIMATORS`):

``replay`` -- exact, tape-free (the default)
    The firing words and the update decisions (mistake or not) are discrete:
    locally they do not move when the rule moves, and they carry no gradient.
    Given them, every update is ``eta * table[code]`` (times the output gain
    ``g``), so the final weights are

        W_T = W_0 + sum_s eta a_s G * R[c_s(i), c_s(j)]        (additive)
        U_T = U_0 + sum_s eta a_s (R_o[c_s] * g_s) @ Sel_s

    (``log W_T``, ``log U_T`` likewise for multiplicative rules).  Hence

        dL/dR[a, b] = eta sum_s a_s sum_ij [c_s(i)=a][c_s(j)=b] (G * dL/dW_T)_ij

    a contraction of the final ``dL/dW`` with how often each pattern pair hit
    each synapse; the output table likewise with ``dL/dU_T``; an MLP rule
    chains through its materialized table; a multiplicative rule uses
    ``dL/dW * W`` (the gradient with respect to ``log W``).  We record the
    words (one byte per unit) and decisions of each update during the inner
    loop (:class:`~metaplastic.learner.UpdateRecord`), backpropagate the loss
    once to ``dL/dW_T, dL/dU_T``, and replay the record.

    One more path exists when the output update is value-weighted (the
    default ``output_input="value"``, appendix B) and a graph rule is learned
    at T > 1: the gains ``g_s`` are the hidden values of training example s,
    which depend on ``W_s`` and so on the graph rule.  The replay then runs a
    reverse sweep (an adjoint): it walks the updates backwards, undoing each
    one to recover ``W_s``, and adds the vector-Jacobian product of that
    example's forward pass to the running ``dL/dW``.  Memory stays
    ``O(|V|^2)``; nothing grows with the sequence length but the byte record.

    This equals autograd through the updates (``tape``) to rounding
    (tests/test_meta.py).  What neither captures: the loss jumps where a
    firing word, a cap selection or a mistake decision flips; both estimate
    the gradient of the piecewise-smooth loss on the current piece.

    Under the paper's code semantics (:mod:`metaplastic.semantics`) nothing
    changes but two inputs: the firing words come from the loop under top-k
    firing, and under ``recurrence="w(h+ax)"`` round t computes
    ``(h_{t-1} + x @ A) @ W``, so the record keeps each update's input drive and
    the sweep's VJP uses ``(h_{t-1} + x @ A)^T dz_t``.  A meta-loss on the
    softmax outputs (``loss_on="softmax"``) changes only ``dL/dW_T, dL/dU_T``.
    Every estimator supports every option.

``tape`` -- autograd through every update
    The paper's approach, written here as a plain per-example loop with an
    autograd tape; memory grows with |V|^2 times the sequence length.  Kept
    for tests and comparisons at small sizes.

``es`` -- evolution strategies
    Antithetic Gaussian perturbations of the flat rule parameters, rank-
    normalized losses, ``g = sum_i (rank(L+_i) - rank(L-_i)) eps_i / (2 P sigma)``;
    all ``2P`` candidates train at once as one ensemble with per-network tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import MetaplasticError
from .learner import (Scheme, Tables, graph_delta, lookup, one_hot, output_gain, output_selector,
                      train_rules)
from .meta_sweep import _graph_sweep
from .network import Networks, fired, project, run_rounds

ESTIMATORS = ("replay", "tape", "es")
LOSSES = ("ce", "mse")
#: What the meta-loss is applied to: the logits (default) or, as in the paper's
#: code, the softmax outputs (cross-entropy of the softmax: softmax twice).
LOSS_ON = ("logits", "softmax")


@dataclass
class RuleSet:
    """The rules in play: an output rule and an optional graph rule, and which are learned."""

    output: object  # metaplastic.rules.Rule
    graph: object | None = None
    learn_output: bool = True
    learn_graph: bool = False

    def parameters(self) -> list[torch.nn.Parameter]:
        ps = []
        if self.learn_output:
            ps += list(self.output.parameters())
        if self.learn_graph and self.graph is not None:
            ps += list(self.graph.parameters())
        return ps

    def tables(self, grad: bool = False):
        """Materialized tables ``(output, graph)``; with grad=False detached."""
        with torch.set_grad_enabled(grad):
            out = self.output.table()
            gr = None if self.graph is None else self.graph.table()
        if not grad:
            out = out.detach()
            gr = None if gr is None else gr.detach()
        return out, gr

    def make_tables(self, out, gr) -> Tables:
        return Tables(output=out, output_mode=self.output.mode, output_eta=self.output.eta,
                      graph=gr, graph_mode=self.graph.mode if self.graph is not None else "additive",
                      graph_eta=self.graph.eta if self.graph is not None else 1e-2)


@dataclass
class MetaBatch:
    """One meta-step's inputs: B fresh networks, their data, and the evaluation data."""

    nets: Networks        # initial state (weights reset); not modified
    x: torch.Tensor       # [n, d] training pool
    y: torch.Tensor
    orders: torch.Tensor  # [B, S] per-network training sequence (indices into x)
    x_eval: torch.Tensor  # [B, m, d] evaluation inputs per network
    y_eval: torch.Tensor  # [B, m]


def meta_loss(nets: Networks, W, U, x_eval, y_eval, loss: str = "ce", on: str = "logits"):
    """Per-network loss ``[B]`` and accuracy ``[B]`` of networks with weights (W, U).

    ``ce``: cross-entropy on the logits.  ``mse``: appendix B's mean over
    labels of the squared difference between logits and one-hot labels.
    ``on="softmax"`` applies either to the softmax outputs instead, as the
    paper's code does (its network returns softmax outputs and its
    ``CrossEntropyLoss`` applies a second softmax; the loss then lies in a
    narrow range and its gradients are flat).
    """
    if on not in LOSS_ON:
        raise MetaplasticError(f"meta-loss-on must be one of {LOSS_ON}, got {on!r}")
    c = nets.config
    P = project(x_eval.to(nets.A.dtype), nets.A)
    h, _ = run_rounds(P, W, c.k, c.rounds, words=False, **c.semantics)
    logits = torch.bmm(h, U)
    out = logits if on == "logits" else torch.softmax(logits, dim=-1)
    if loss == "ce":
        per = F.cross_entropy(out.transpose(1, 2), y_eval, reduction="none").mean(1)
    elif loss == "mse":
        target = F.one_hot(y_eval, out.shape[-1]).to(out.dtype)
        per = ((out - target) ** 2).mean(dim=(1, 2))
    else:
        raise MetaplasticError(f"loss must be one of {LOSSES}, got {loss!r}")
    acc = (logits.detach().argmax(-1) == y_eval).double().mean(1)
    return per, acc


def _final_grads(nets: Networks, batch: MetaBatch, loss: str, loss_on: str = "logits"):
    """Loss, accuracy and ``dL/dW_T, dL/dU_T`` of the mean loss over networks."""
    W = None if nets.W is None else nets.W.detach().requires_grad_(True)
    U = nets.U.detach().requires_grad_(True)
    with torch.enable_grad():
        per, acc = meta_loss(nets, W, U, batch.x_eval, batch.y_eval, loss, loss_on)
        L = per.mean()
        grads = torch.autograd.grad(L, [U] + ([W] if W is not None else []))
    dU = grads[0]
    dW = grads[1] if W is not None else None
    return per.detach(), acc, dW, dU


def _column_grads(dE: torch.Tensor, y: torch.Tensor, pred: torch.Tensor, output_rows: str):
    """``M[s, b, i, col]``: dL/d(exponent of U) routed to column 0 / 1 of the output rule."""
    dEt = dE.transpose(1, 2)                      # [B, l, V]
    bi = torch.arange(dE.shape[0], device=dE.device)[None, :]
    g_true = dEt[bi, y]                           # [S, B, V]
    if output_rows == "true-and-predicted":
        g_other = dEt[bi, pred]
    else:
        g_other = dEt.sum(1)[None] - g_true
    return torch.stack([g_true, g_other], dim=-1)  # [S, B, V, 2]


def replay_gradients(nets: Networks, rec, rules: RuleSet, tables: Tables, dW, dU,
                     scheme: Scheme, chunk: int = 256):
    """dL/d(output table), dL/d(graph table) from the record (see the module docstring).

    ``nets`` are the trained networks; ``dW``, ``dU`` the gradients of the loss
    with respect to their final weights.
    """
    c = nets.config
    K = 2**c.rounds
    dtype = nets.U.dtype
    S = rec.words.shape[0]
    act = rec.active.to(dtype)                                   # [S, B]
    dE = dU * nets.U if tables.output_mode == "multiplicative" else dU
    g_out = torch.zeros(K, 2, dtype=dtype, device=dU.device)
    dlg = None  # dL/d(gain) per step, only for the adjoint sweep
    sweep = (rules.learn_graph and tables.graph is not None and nets.W is not None
             and rec.gain is not None)
    if sweep:
        dlg = torch.zeros(S, nets.batch, c.vertices, dtype=dtype, device=dU.device)
    for s0 in range(0, S, chunk):
        sl = slice(s0, s0 + chunk)
        M = _column_grads(dE, rec.y[sl], rec.pred[sl], scheme.output_rows)  # [s, B, V, 2]
        scale = (tables.output_eta * act[sl])[:, :, None]
        codes = rec.words[sl].long()
        gain = rec.gain[sl] if rec.gain is not None else None
        if rules.learn_output:
            vals = M * scale[..., None]
            if gain is not None:
                vals = vals * gain[..., None]
            g_out.index_add_(0, codes.reshape(-1), vals.reshape(-1, 2))
        if sweep:
            dlg[sl] = (lookup(tables.output, codes) * M).sum(-1) * scale
    g_graph = None
    if rules.learn_graph and tables.graph is not None and nets.W is not None:
        if sweep:
            g_graph = _graph_sweep(nets, rec, tables, dW, dlg)
        else:
            D = nets.G * (dW * nets.W if tables.graph_mode == "multiplicative" else dW)
            g_graph = torch.zeros(K, K, dtype=dtype, device=dW.device)
            for s0 in range(0, S, chunk):
                sl = slice(s0, s0 + chunk)
                Y = one_hot(rec.words[sl].long(), K, dtype)       # [s, B, V, K]
                s_, B, V, _ = Y.shape
                Ya = (Y * act[sl][..., None, None]).permute(1, 2, 0, 3).reshape(B, V, s_ * K)
                Z = torch.bmm(D, Ya).reshape(B, V, s_, K)               # sum_j D_ij [c_s(j)=l]
                g_graph += torch.einsum("sbvk,bvsl->kl", Y, Z)
            g_graph *= tables.graph_eta
    return g_out, g_graph




# ---------------------------------------------------------------------------
# Estimators: each sets ``.grad`` of ``rules.parameters()`` and returns stats.
# ---------------------------------------------------------------------------

def _set_grads(params, grads) -> None:
    for p, g in zip(params, grads):
        p.grad = torch.zeros_like(p) if g is None else g.detach().to(p.dtype)


def estimate_replay(rules: RuleSet, batch: MetaBatch, scheme: Scheme, loss: str = "ce",
                    loss_on: str = "logits", **_):
    """Exact tape-free gradient by count replay (module docstring)."""
    out_t, gr_t = rules.tables(grad=True)
    tables = rules.make_tables(out_t.detach(), None if gr_t is None else gr_t.detach())
    nets = batch.nets.clone()
    sweep = (rules.learn_graph and tables.graph is not None and nets.W is not None
             and scheme.output_input == "value")
    _, rec = train_rules(nets, batch.x, batch.y, tables, batch.orders, scheme,
                         record="states" if sweep else True)
    per, acc, dW, dU = _final_grads(nets, batch, loss, loss_on)
    g_out, g_graph = replay_gradients(nets, rec, rules, tables, dW, dU, scheme)
    outs, grads = [], []
    if rules.learn_output:
        outs.append(out_t)
        grads.append(g_out.to(out_t.dtype))
    if rules.learn_graph and gr_t is not None and g_graph is not None:
        outs.append(gr_t)
        grads.append(g_graph.to(gr_t.dtype))
    params = rules.parameters()
    gs = torch.autograd.grad(outs, params, grads, allow_unused=True) if outs else [None] * len(params)
    _set_grads(params, gs)
    return {"loss": float(per.mean()), "accuracy": float(acc.mean()), "trainings": nets.batch,
            "record_bytes": rec.nbytes()}


def train_with_tape(rules: RuleSet, nets0: Networks, x, y, orders, scheme: Scheme, out_t, gr_t):
    """Autograd through every update: the plain per-example loop, differentiable.

    Returns the final (W, U) as functions of the rule tables ``out_t, gr_t``.
    """
    c = nets0.config
    W = None if nets0.W is None else nets0.W.clone()
    U = nets0.U.clone()
    tab = rules.make_tables(out_t, gr_t)
    x = x.to(nets0.A.dtype)
    for t in range(orders.shape[1]):
        ex = orders[:, t]
        P = torch.bmm(x[ex][:, None, :], nets0.A)
        h, words = run_rounds(P, W, c.k, c.rounds, **c.semantics)
        h, codes = h[:, 0], words[:, 0].long()
        pred = torch.bmm(h[:, None, :].detach(), U.detach())[:, 0].argmax(-1)
        yy = y[ex]
        act = torch.ones_like(yy, dtype=U.dtype) if scheme.update_on == "all" else (pred != yy).to(U.dtype)
        if tab.graph is not None and W is not None:
            delta = nets0.G * graph_delta(tab.graph, codes, act * tab.graph_eta)
            W = W + delta if tab.graph_mode == "additive" else W * torch.exp(delta)
        rows = lookup(tab.output, codes) * (act * tab.output_eta)[:, None, None]
        if scheme.output_input == "value":
            rows = rows * output_gain(h, fired=fired(h, c))[..., None]
        dU = torch.bmm(rows, output_selector(yy, pred, U.shape[2], scheme.output_rows, U.dtype))
        U = U + dU if tab.output_mode == "additive" else U * torch.exp(dU)
    return W, U


def estimate_tape(rules: RuleSet, batch: MetaBatch, scheme: Scheme, loss: str = "ce",
                  loss_on: str = "logits", **_):
    """Gradient by autograd through the updates (the paper's approach; small sizes)."""
    params = rules.parameters()
    with torch.enable_grad():
        out_t, gr_t = rules.tables(grad=True)
        W, U = train_with_tape(rules, batch.nets, batch.x, batch.y, batch.orders, scheme, out_t, gr_t)
        per, acc = meta_loss(batch.nets, W, U, batch.x_eval, batch.y_eval, loss, loss_on)
        L = per.mean()
        gs = torch.autograd.grad(L, params, allow_unused=True)
    _set_grads(params, gs)
    return {"loss": float(L.detach()), "accuracy": float(acc.mean()), "trainings": batch.nets.batch}


def _repeat_nets(nets: Networks, C: int) -> Networks:
    r = lambda t: None if t is None else t.repeat(C, *([1] * (t.dim() - 1)))  # noqa: E731
    return Networks(nets.config, r(nets.A), r(nets.G), r(nets.W), r(nets.U))


def centered_ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks of v scaled to [-0.5, 0.5] (lowest value -> -0.5)."""
    ranks = torch.empty_like(v)
    ranks[v.argsort()] = torch.arange(v.numel(), dtype=v.dtype, device=v.device)
    return ranks / max(v.numel() - 1, 1) - 0.5


def estimate_es(rules: RuleSet, batch: MetaBatch, scheme: Scheme, loss: str = "ce",
                loss_on: str = "logits", *, population: int = 8, sigma: float = 0.05, generator: torch.Generator | None = None, **_):
    """Antithetic ES gradient; the 2P+1 candidates (and the tasks) train as one ensemble."""
    if population < 1 or not sigma > 0:
        raise MetaplasticError("ES needs population >= 1 and sigma > 0")
    params = rules.parameters()
    theta = torch.nn.utils.parameters_to_vector(params).detach().clone()
    eps = torch.randn(population, theta.numel(), generator=generator, dtype=torch.float64).to(theta.dtype)
    cands = torch.cat([theta + sigma * eps, theta - sigma * eps, theta[None]])
    outs, grs = [], []
    with torch.no_grad():
        for cand in cands:
            torch.nn.utils.vector_to_parameters(cand, params)
            o, g = rules.tables(grad=False)
            outs.append(o)
            grs.append(g)
        torch.nn.utils.vector_to_parameters(theta, params)
    C, B = cands.shape[0], batch.nets.batch
    out_stack = torch.stack(outs).repeat_interleave(B, dim=0)
    gr_stack = None if grs[0] is None else torch.stack(grs).repeat_interleave(B, dim=0)
    tables = rules.make_tables(out_stack, gr_stack)
    nets = _repeat_nets(batch.nets, C)
    train_rules(nets, batch.x, batch.y, tables, batch.orders.repeat(C, 1), scheme)
    with torch.no_grad():
        per, acc = meta_loss(nets, nets.W, nets.U, batch.x_eval.repeat(C, 1, 1),
                             batch.y_eval.repeat(C, 1), loss, loss_on)
    per = per.reshape(C, B).mean(1)
    acc = acc.reshape(C, B).mean(1)
    r = centered_ranks(per[:2 * population])
    ghat = ((r[:population] - r[population:])[:, None] * eps).sum(0) / (2 * population * sigma)
    grads, i = [], 0
    for p in params:
        grads.append(ghat[i:i + p.numel()].reshape(p.shape))
        i += p.numel()
    _set_grads(params, grads)
    return {"loss": float(per[-1]), "accuracy": float(acc[-1]), "trainings": C * B}


ESTIMATOR_FNS = {"replay": estimate_replay, "tape": estimate_tape, "es": estimate_es}
