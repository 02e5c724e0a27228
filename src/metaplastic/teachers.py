"""The ``rnn`` dataset: labels from a random simple-RNN teacher (section 2, A.2).

The teacher is a simple RNN with T=3, |V|=100, k=50, p=0.5 on 10-dimensional
standard-normal inputs, with *random* (not learned) weights: standard-normal
input weights on the input mask, graph weights ``N(0, 1/(p |V|))`` on the
graph's edges, output weights ``N(0, 1)`` to 2 labels.  The label is the
argmax of its two logits; the logit difference is centred by its median on a
fixed reference sample of 4,096 inputs from the teacher's own generator, so
both labels are about equally common (an uncentred random teacher can give a
90/10 split, which makes accuracy meaningless).
"""

from __future__ import annotations

import torch

from .network import NetworkConfig, cap, project

TEACHER = dict(d=10, vertices=100, cap=50, rounds=3, p=0.5)


def rnn_teacher(generator: torch.Generator):
    """Draw a teacher; returns ``label(x) -> y`` for x ``[n, 10]``."""
    c = NetworkConfig(d=TEACHER["d"], n_classes=2, vertices=TEACHER["vertices"], cap=TEACHER["cap"],
                      rounds=TEACHER["rounds"], p=TEACHER["p"])
    V = c.vertices
    A = torch.randn(c.d, V, generator=generator, dtype=torch.float64) * (
        torch.rand(c.d, V, generator=generator) < c.p)
    G = torch.rand(V, V, generator=generator) < c.p
    G.fill_diagonal_(False)
    W = torch.randn(V, V, generator=generator, dtype=torch.float64) * G / (c.p * V) ** 0.5
    U = torch.randn(V, 2, generator=generator, dtype=torch.float64)

    def margin(x: torch.Tensor) -> torch.Tensor:
        P = project(x.to(torch.float64), A)
        h = cap(torch.relu(P), c.cap)
        for _ in range(c.rounds - 1):
            h = cap(torch.relu(h @ W + P), c.cap)
        logits = h @ U
        return logits[:, 1] - logits[:, 0]

    ref = torch.randn(4096, c.d, generator=generator, dtype=torch.float64)
    offset = margin(ref).median()
    return lambda x: (margin(x) > offset).long()


def make_rnn_dataset(n_total: int, generator: torch.Generator):
    """``n_total`` points from one teacher drawn from ``generator``."""
    label = rnn_teacher(generator)
    x = torch.randn(n_total, TEACHER["d"], generator=generator, dtype=torch.float64)
    return x.float(), label(x)


def _register() -> None:
    from .data import SYNTHETIC, register_synthetic
    if "rnn" not in SYNTHETIC:
        register_synthetic("rnn", make_rnn_dataset)


_register()
