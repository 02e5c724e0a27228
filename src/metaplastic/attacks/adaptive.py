"""Adaptive attacks on the cap: BPDA surrogates (straight-through, soft top-k) and transfer from the GD twin."""

from __future__ import annotations


import torch
from torch import nn

from ..errors import MetaplasticError
from ..network import recurrent_drive
from .apgd import apgd
from .common import AttackResult, _finish, predict
from .projection import _eps_vector, check_ball


# --------------------------------------------------------------------------- #
# Adaptive attacks on the cap: BPDA surrogates, transfer
# --------------------------------------------------------------------------- #

class _CapBPDA(torch.autograd.Function):
    """Forward: the exact cap; backward: identity or a soft top-k derivative."""

    @staticmethod
    def forward(ctx, z, k, mode, tau_rel):
        from ..network import cap
        out = cap(z, k)
        ctx.save_for_backward(z)
        ctx.k, ctx.mode, ctx.tau_rel = k, mode, tau_rel
        return out

    @staticmethod
    def backward(ctx, g):
        z, = ctx.saved_tensors
        if ctx.mode == "identity":
            return g, None, None, None
        k = ctx.k
        top = z.topk(k + 1, dim=-1).values
        t = 0.5 * (top[..., k - 1:k] + top[..., k:k + 1])
        tau = (ctx.tau_rel * z.std(dim=-1, keepdim=True)).clamp_min(1e-12)
        s = torch.sigmoid((z - t) / tau)
        return g * (s + z * s * (1 - s) / tau), None, None, None


class BPDASurrogate(nn.Module):
    """A :class:`~metaplastic.network.SimpleRNN` whose cap has a replaced backward.

    Forward equals the model's forward exactly (same operations, the exact
    cap); the backward of every cap is the identity (``mode="identity"``,
    straight-through) or the derivative of ``z * sigmoid((z - t) / tau)``
    (``mode="soft"``).  ReLU keeps its own derivative.
    """

    def __init__(self, model: nn.Module, mode: str = "identity", tau_rel: float = 0.1):
        super().__init__()
        if mode not in ("identity", "soft"):
            raise MetaplasticError(f"BPDA mode must be identity or soft, got {mode!r}")
        for name in ("A", "U"):
            if not hasattr(model, name):
                raise MetaplasticError("BPDA surrogates need a SimpleRNN (buffers A, W, U)")
        self.model = model
        self.mode, self.tau_rel = mode, tau_rel

    def _cap(self, z):
        k = self.model.config.k
        if k is None:
            return z
        return _CapBPDA.apply(z, k, self.mode, self.tau_rel)

    def forward(self, x):
        m = self.model  # the operations of SimpleRNN.forward / network.run_rounds
        P = (x.to(m.A.dtype) @ m.A)[None]
        h = self._cap(torch.relu(P))
        recurrence = getattr(m.config, "recurrence", "wh+ax")  # the paper's code: W (h + A x)
        for _ in range(m.config.rounds - 1):
            h = self._cap(torch.relu(recurrent_drive(h, P, m.W[None], recurrence)))
        return (h @ m.U)[0]


def bpda_attack(model, x, y, eps, *, mode: str = "identity", tau_rel: float = 0.1, iters: int = 50,
                loss: str = "margin", generator=None, batch_size: int = 500) -> AttackResult:
    """APGD through a BPDA surrogate of ``model`` (a SimpleRNN).

    The loss defaults to the logit margin (``"margin"``), not cross-entropy:
    on networks whose softmax saturates in float32 (the plasticity-trained
    ones, logits in the hundreds) the CE gradient is exactly zero, which would
    make the surrogate fail for a reason unrelated to the cap.  ``loss="ce"``
    gives APGD-CE.  Success is judged on the surrogate's forward, which
    equals the model's; the points found are re-checked on the model itself.
    """
    sur = BPDASurrogate(model, mode, tau_rel)
    res = apgd(sur, x, y, eps, loss=loss, iters=iters, generator=generator, batch_size=batch_size)
    if res.success.any():
        real = predict(model, res.x_adv[res.success]) != y[res.success]
        s = res.success.clone()
        s[res.success] = real
        res.success = s
    res.stats.update(mode=mode, tau_rel=tau_rel)
    return res


def transfer_attack(model, x, y, eps, *, source: nn.Module | None = None, x_src=None, iters: int = 50,
                    generator=None, batch_size: int = 500) -> AttackResult:
    """Adversarial inputs crafted by APGD on ``source``, evaluated on ``model``.

    APGD runs all ``iters`` iterations on the source with the margin loss
    (cross-entropy saturates in float32 on confident inputs, see
    :func:`bpda_attack`) and the highest-loss (most confidently wrong) point
    is transferred.  ``x_src`` may pass points already crafted on the source.
    """
    n = x.shape[0]
    e = _eps_vector(eps, n).to(x.device)
    grads = 0
    if x_src is None:
        if source is None:
            raise MetaplasticError("transfer needs a source model")
        r = apgd(source, x, y, e, loss="margin", iters=iters, generator=generator, stop_on_success=False,
                 batch_size=batch_size)
        x_src = r.stats["x_best"]
        grads = r.grads
    check_ball(x_src, x, e)
    success = predict(model, x_src) != y
    return _finish(x_src.clone(), x, e, success, queries=n, stats={"source_grads": grads})
