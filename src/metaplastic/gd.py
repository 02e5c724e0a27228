"""GD baselines (Fig. 2, Fig. 3, A.3, the robustness section): Adam on the cross-entropy of the logits,
training the output weights alone or every weight through the cap."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import MetaplasticError
from .learner import _on_device, check_finite
from .network import Networks, project, run_rounds


def train_gd(nets: Networks, x: torch.Tensor, y: torch.Tensor, orders: torch.Tensor, *,
             which: str = "output", lr: float = 1e-2, batch_size: int = 10, progress=None,
             step_callback=None) -> None:
    """GD baselines, in place: Adam on cross-entropy of the logits (Fig. 2, A.3).

    ``which="output"``: only U is trained (the rest stays as drawn, W = 0, so
    the hidden features are fixed and computed once).  ``which="all"``: A, W
    and U are trained through the cap (gradients flow through the kept values),
    with A and W restricted to their masks.  The B networks are trained at
    once; Adam is elementwise, so this equals B separate optimizers.
    ``step_callback(examples_seen, nets_now)`` is called after every step with
    the networks' current weights (detached; Fig. 2 curves).
    """
    if which not in ("output", "all"):
        raise MetaplasticError(f"gd must be 'output' or 'all', got {which!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise MetaplasticError(f"batch size must be a positive integer, got {batch_size!r}")
    c = nets.config
    dev = nets.A.device
    x, y, orders = _on_device(nets, x, y, orders)
    B, N = orders.shape
    bi = torch.arange(B, device=dev)[:, None]
    U = nets.U.detach().clone().requires_grad_(True)
    params = [U]
    if which == "output":
        with torch.no_grad():
            H = torch.cat([run_rounds(project(x[i:i + 2048], nets.A), nets.W, c.k, c.rounds, words=False,
                                      **c.semantics)[0]
                           for i in range(0, x.shape[0], 2048)], dim=1)
    else:
        A_mask = (nets.A != 0).to(nets.A.dtype)
        A = nets.A.detach().clone().requires_grad_(True)
        params.append(A)
        if nets.W is not None:
            W = nets.W.detach().clone().requires_grad_(True)
            params.append(W)
    opt = torch.optim.Adam(params, lr=lr)
    for s in range(0, N, batch_size):
        ex = orders[:, s:s + batch_size]
        if which == "output":
            h = H[bi, ex]
        else:
            P = torch.bmm(x[ex], A * A_mask)
            h, _ = run_rounds(P, None if nets.W is None else W * nets.G, c.k, c.rounds, words=False,
                              **c.semantics)
        logits = torch.bmm(h, U)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[ex].reshape(-1),
                               reduction="sum") / ex.shape[1]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress is not None:
            progress(B * ex.shape[1])
        if step_callback is not None:
            with torch.no_grad():
                now = Networks(c, (A * A_mask).detach() if which == "all" else nets.A,
                               nets.G, (W * nets.G).detach() if which == "all" and nets.W is not None
                               else nets.W, U.detach())
            step_callback(s + ex.shape[1], now)
    with torch.no_grad():
        nets.U.copy_(U)
        if which == "all":
            nets.A.copy_(A * A_mask)
            if nets.W is not None:
                nets.W.copy_(W * nets.G)
    check_finite(nets, None, [N] * B, [N] * B)
