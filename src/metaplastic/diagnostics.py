"""Is a trained network degenerate?  Firing per round and the spread of its predictions.

A network can train "successfully" and still be useless: a graph rule that
silences rounds 2..T computes T=1's representation, and a rule that drives
every input to one attractor predicts one class (relu1 at T=3 with hebb:
test accuracy 0.5621, exactly the share of class 1).  ``metaplastic train``
and ``learn-rule`` therefore report, per network, the fraction of units firing
in each round and the share of the most frequent prediction, and warn
(:func:`degeneracy_warnings`) when

* a round is silent (no unit active) for most inputs,
* a network predicts one class for nearly all inputs,
* a network's test accuracy is not above the majority-class rate.

Firing is decided by one function, :func:`metaplastic.network.fired`, under the network's notion of
firing (``NetworkConfig.firing``: a non-zero capped value, the paper's text; or
membership of the cap's top-k set, its code).
"""

from __future__ import annotations

import torch

from .errors import MetaplasticError, TrainingDiverged
from .network import Networks, fired, project, run_rounds

#: A round is "silent for most inputs" when no unit is active in it for more than this share of inputs.
SILENT_SHARE = 0.5
#: A network "predicts a single class" when its most frequent prediction has at least this share...
SINGLE_CLASS_SHARE = 0.95


@torch.no_grad()
def diagnose(nets: Networks, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> dict:
    """Per-network firing and prediction statistics on inputs ``x`` (labels ``y``).

    Returns plain lists: ``firing_per_round`` ``[B][T]`` (mean fraction of units
    firing in each round, under the config's notion of firing), ``active_per_round``
    ``[B][T]`` (mean fraction of units with a non-zero value: the same under the
    text's firing; under top-k firing every round *fires* k units, a silent one
    included, so activity is what shows a dead round), ``silent_per_round``
    ``[B][T]`` (share of inputs with no active unit in that round),
    ``majority_prediction_share`` ``[B]`` and
    ``predicted_class`` ``[B]`` (the most frequent prediction), the labels'
    ``majority_class_rate``, and ``finite_logits`` ``[B]``.
    """
    c = nets.config
    B, T, V, n = nets.batch, c.rounds, c.vertices, x.shape[0]
    if n == 0:
        raise MetaplasticError("diagnose needs at least one input")
    fire = torch.zeros(B, T, dtype=torch.float64)
    active = torch.zeros(B, T, dtype=torch.float64)
    silent = torch.zeros(B, T, dtype=torch.float64)
    counts = torch.zeros(B, c.n_classes, dtype=torch.long)
    finite = torch.ones(B, dtype=torch.bool)
    x = x.to(device=nets.A.device, dtype=nets.A.dtype)
    for i in range(0, n, batch_size):
        states: list = []
        h, _ = run_rounds(project(x[i:i + batch_size], nets.A), nets.W, c.k, T, states=states, words=False,
                          **c.semantics)
        logits = torch.bmm(h, nets.U)
        finite &= torch.isfinite(logits).flatten(1).all(1).cpu()
        for t, st in enumerate(states):
            fire[:, t] += fired(st, c).sum((1, 2)).double().cpu() / V
            per_input = (st != 0).sum(-1)                       # [B, m] active units
            active[:, t] += per_input.sum(1).double().cpu() / V
            silent[:, t] += (per_input == 0).sum(1).double().cpu()
        pred = logits.argmax(-1).cpu()                          # [B, m]
        counts += torch.nn.functional.one_hot(pred, c.n_classes).sum(1)
    share, cls = counts.max(1)
    labels = torch.bincount(y.reshape(-1).cpu().long(), minlength=c.n_classes)
    return {"firing_per_round": (fire / n).tolist(), "active_per_round": (active / n).tolist(),
            "silent_per_round": (silent / n).tolist(),
            "majority_prediction_share": (share.double() / n).tolist(), "predicted_class": cls.tolist(),
            "majority_class_rate": float(labels.max()) / max(int(labels.sum()), 1),
            "finite_logits": finite.tolist()}


def check_logits(diag: dict) -> None:
    """Raise :class:`TrainingDiverged` when a trained network gives non-finite logits."""
    bad = [b for b, ok in enumerate(diag["finite_logits"]) if not ok]
    if bad:
        raise TrainingDiverged(f"training diverged: network {bad[0]} gives non-finite logits on the "
                               f"test set (its weights grew too large); try a smaller step size (--eta)",
                               network=bad[0])


def degeneracy_warnings(diag: dict, test_accuracy, *, what: str = "network") -> list[str]:
    """One line per degenerate network: silent rounds, a single predicted class,
    accuracy not above the majority-class rate (``test_accuracy`` per network)."""
    out = []
    B = len(diag["majority_prediction_share"])
    rate = diag["majority_class_rate"]
    name = (lambda b: f"the {what}") if B == 1 else (lambda b: f"{what} {b}")  # noqa: E731
    for b in range(B):
        silent = [t + 1 for t, s in enumerate(diag["silent_per_round"][b]) if s > SILENT_SHARE]
        if silent:
            share = max(diag["silent_per_round"][b][t - 1] for t in silent)
            out.append(f"{name(b)} has round{'s' if len(silent) > 1 else ''} "
                       f"{', '.join(map(str, silent))} silent (no unit active) for up to {share:.0%} "
                       f"of test inputs")
        share = diag["majority_prediction_share"][b]
        if share >= SINGLE_CLASS_SHARE and rate < SINGLE_CLASS_SHARE:
            out.append(f"{name(b)} predicts class {diag['predicted_class'][b]} for {share:.1%} of test "
                       f"inputs (a degenerate model)")
        acc = float(test_accuracy[b])
        if acc <= rate:
            out.append(f"{name(b)} has test accuracy {acc:.4f}, not above the majority-class rate "
                       f"{rate:.4f} (always predicting the most frequent class)")
    return out


def summary(diag: dict, warnings: list[str]) -> dict:
    """The fields ``train``/``learn-rule`` put in their results: means over the
    networks at the top, one entry per network in ``*_per_network``."""
    fpr = diag["firing_per_round"]
    B = len(fpr)
    mean = [sum(f[t] for f in fpr) / B for t in range(len(fpr[0]))]
    share = diag["majority_prediction_share"]
    act = diag["active_per_round"]
    return {"firing_per_round": mean, "firing_per_round_per_network": fpr,
            "active_per_round": [sum(a[t] for a in act) / B for t in range(len(act[0]))],
            "active_per_round_per_network": act,
            "silent_per_round_per_network": diag["silent_per_round"],
            "majority_prediction_share": sum(share) / B, "majority_prediction_share_per_network": share,
            "majority_class_rate": diag["majority_class_rate"], "warnings": warnings}
