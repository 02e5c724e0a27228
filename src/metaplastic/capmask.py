"""The cap's kept set, compiled: which entries of each row ``cap_k`` keeps (paper section 2).

:func:`metaplastic.network.cap` keeps the k largest entries of each row, ties at
the k-th largest value to the lowest indices.  Its torch form needs a ``topk``
(a partial sort of every row) and about ten further passes; on the CPU, at
|V| = 1000 and k = 500, that was a third of a forward pass of the network
(the attacks of the robustness section and the accuracy evaluations of fig3
are forward/backward bound).  :func:`keep_mask` computes the same mask with
one compiled call (:mod:`metaplastic._capkernel`): per row, a radix
selection of the k-th largest value on order-preserving integer keys, and
one pass that marks ``z >= kth`` (a second one, only when more than k
entries reach kth, keeps the lowest-indexed tied entries as needed);
:func:`capped` writes ``z * mask`` in the same call when no gradient is
needed.

The mask is exactly the torch form's (the k-th largest value is a value of
the row, whatever algorithm finds it), so ``z * mask`` and its gradient are
the same bits; ``tests/test_fast_paths.py`` checks it against the torch form
on ties, zeros of both signs, infinities, negative rows and random rows.  Rows holding a NaN are left to
the torch form (``None`` is returned).  Compiled with numba, cached on disk.
"""

from __future__ import annotations

import numpy as np
import torch

#: The compiled mask is used for rows of at least this many entries (below, torch's calls are cheap).
MIN_UNITS = 64


_UINT = {4: np.uint32, 8: np.uint64}
_compiled = []  # [the compiled kernel] after the first call (numba imported then), or [None]


def _kernel():
    if not _compiled:
        try:
            from ._capkernel import mask_rows
        except ImportError:  # pragma: no cover - numba is a dependency; torch stays the fallback
            mask_rows = None
        _compiled.append(mask_rows)
    return _compiled[0]


def _run(zd: torch.Tensor, k: int, values: bool):
    V = zd.shape[-1]
    if (zd.device.type != "cpu" or zd.dtype not in (torch.float32, torch.float64)
            or V < MIN_UNITS or not 0 < k < V or zd.numel() == 0):
        return None
    kernel = _kernel()
    if kernel is None:
        return None
    z2 = zd.detach().reshape(-1, V)
    if not z2.is_contiguous():
        z2 = z2.contiguous()
    zn = z2.numpy()
    res = torch.empty(z2.shape, dtype=zd.dtype if values else torch.bool)
    none = res.new_empty((0, V))
    u = np.zeros(1, dtype=_UINT[zn.dtype.itemsize])
    f = u.view(zn.dtype)
    ok = kernel(zn, zn.view(_UINT[zn.dtype.itemsize]), 8 * zn.dtype.itemsize, int(k),
                none.numpy() if values else res.numpy(), res.numpy() if values else none.numpy(), u, f)
    return res.reshape(zd.shape) if ok else None


def keep_mask(zd: torch.Tensor, k: int) -> torch.Tensor | None:
    """Bool mask of the entries ``cap_k`` keeps in each row of ``zd`` (last dimension), or None
    when the compiled form does not apply (no numba, a GPU tensor, another dtype, short rows, k
    out of range, a NaN): the caller then uses its torch form."""
    return _run(zd, k, values=False)


def capped(zd: torch.Tensor, k: int) -> torch.Tensor | None:
    """``zd * keep_mask(zd, k)`` in the same call (the same bits as that product; no autograd),
    or None where :func:`keep_mask` is None."""
    return _run(zd, k, values=True)
