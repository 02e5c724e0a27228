"""How much memory a run will take, checked before anything large is allocated.

A network with T > 1 holds ``[B, V, V]`` tensors (graph mask G, weights W):
``B * |V|^2 * bytes`` each, 360 GB at |V| = 300,000 in float32.  The functions
below count, for ``train``, ``learn-rule`` and ``attack``, the largest tensors
the code allocates at its peak, so that a run that cannot fit stops at once
with one line (:func:`check`) instead of a traceback from an allocation, or the
kernel's OOM killer, minutes into the work.  They are estimates of the peak
(the big tensors only, rounded up where the code's temporaries come and go),
not measurements; everything here is a pure function of the sizes except
:func:`available_bytes`.

Where the counts come from (``E`` = bytes per weight, 4 or 8):

* networks (:func:`metaplastic.network.init_networks`): ``A [B, d, V]``,
  ``U [B, V, l]``, and at T > 1 ``G`` and ``W`` ``[B, V, V]``;
* rule training (:func:`metaplastic.learner.train_rules`): one ``[B, V, V]``
  scratch for the graph update when a graph rule is used; the feature cache
  (``x @ A`` of every example, ``B * n * V * E`` when it fits its 2 GiB budget,
  built in blocks and concatenated, so twice that while it is built, plus the
  cached first round at T > 1 when twice the cache fits the budget);
* evaluation (:func:`metaplastic.network.predict`): blocks of 2,048 examples,
  about five ``[B, 2048, V]`` tensors alive at once (drive, ReLU, cap, product);
* GD baselines (:func:`metaplastic.gd.train_gd`): ``output`` keeps the
  hidden states of every training example (``[B, n, V]``, twice while built);
  ``all`` trains W with Adam: the parameter, its gradient, two moments, the
  masked product and its gradient, beside G and W (8 ``[B, V, V]`` in all);
* rule learning (:mod:`metaplastic.meta`, replay): per task the step's
  networks and their trained clone (4), the update scratch, ``dL/dW`` and its
  autograd temporary, and the replay's or adjoint sweep's three (10 in all);
  the update record of ``batch`` steps (words, gains, hidden states of every
  round) kept twice (it is cut to length by a copy); ES trains the ``2P + 1``
  candidates of every task as one ensemble; the tape keeps about three
  ``[B, V, V]`` tensors per example of the batch;
* attack: the saved ensemble as loaded, the attacked member's copy, and
  batches of up to 4,096 images through T rounds with autograd (about
  ``3T + 3`` ``[4096, V]`` tensors).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import MetaplasticError

#: FeatureCache's default budget (learner.train_rules ``cache_bytes``; torch_loop.FeatureCache).
CACHE_BYTES = 2 << 30
#: Examples per evaluation block (network.predict) and tensors of that block alive at once.
EVAL_BLOCK, EVAL_TENSORS = 2048, 5
#: Images per attack batch (the largest batch an attack uses) and tensors per round.
ATTACK_BLOCK = 4096


@dataclass(frozen=True)
class Estimate:
    """Peak bytes of a run, by part (insertion order is the order they are shown)."""

    parts: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        shown = [f"{k} {format_bytes(v)}" for k, v in self.parts.items() if v > 0 and v >= self.total / 100]
        return ", ".join(shown)


def format_bytes(n: float) -> str:
    """``1536 -> '1.5 KB'`` (powers of 1,024, as ``free -h`` shows them)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def network_bytes(B: int, V: int, d: int, l: int, T: int, E: int) -> int:
    """A, U and (T > 1) G and W of B networks."""
    return B * (d * V + V * l) * E + (2 * B * V * V * E if T > 1 else 0)


def feature_cache_bytes(B: int, n: int, V: int, T: int, E: int, budget: int = CACHE_BYTES) -> int:
    """Peak of torch_loop.FeatureCache over ``n`` examples (0 when it does not fit its budget)."""
    one = B * n * V * E
    if one > budget:
        return 0
    if T > 1 and 2 * one <= budget:
        return 3 * one  # the drive, and the first round while it is concatenated
    return 2 * one      # the blocks and their concatenation


def eval_bytes(B: int, V: int, n: int, E: int) -> int:
    """network.predict's block of up to 2,048 examples."""
    return EVAL_TENSORS * B * min(EVAL_BLOCK, max(n, 1)) * V * E


def data_bytes(n: int, d: int, E: int) -> int:
    """The examples, as loaded (float32) and in the networks' dtype."""
    return n * d * (4 + E)


def train_estimate(*, B: int, V: int, d: int, l: int, T: int, n_train: int, n_test: int, E: int,
                   graph_rule: bool, gd: str = "none") -> Estimate:
    """``metaplastic train``: rule-based (``gd="none"``) or a GD baseline."""
    vv = B * V * V * E if T > 1 else 0
    parts = {"networks": network_bytes(B, V, d, l, T, E)}
    if gd == "none":
        parts["training buffers"] = vv if graph_rule else 0
        parts["feature cache"] = feature_cache_bytes(B, n_train, V, T, E)
    elif gd == "output":
        parts["hidden states"] = 2 * B * n_train * V * E
    else:
        parts["training buffers"] = 6 * vv + 3 * B * d * V * E  # Adam on W (and on A)
    parts["evaluation"] = eval_bytes(B, V, max(n_train, n_test), E)
    parts["data"] = data_bytes(n_train + n_test, d, E)
    return Estimate(parts)


def learn_rule_estimate(*, tasks: int, V: int, d: int, l: int, T: int, batch: int, n_train: int,
                        n_test: int, E: int, estimator: str = "replay", graph: bool = False,
                        es_population: int = 8, final_networks: int = 1) -> Estimate:
    """``metaplastic learn-rule``: the larger of a meta-step and the final training.

    ``graph``: a graph rule (learned or fixed) is in play.
    """
    vv1 = V * V * E if T > 1 else 0  # one [V, V] buffer
    nets = (2 * es_population + 1) * tasks if estimator == "es" else tasks
    if estimator == "es":
        buffers = nets * (2 * vv1 + (vv1 if graph else 0)) + 2 * tasks * vv1
    elif estimator == "tape":
        buffers = tasks * vv1 * (2 + 3 * batch)
    else:
        buffers = tasks * vv1 * 10
    step = {"networks": nets * (d * V + V * l) * E,
            "meta-step buffers": buffers,
            "update record": (2 * batch * (tasks * V * (1 + E + T * E) + 4 * tasks * 8)
                              if estimator == "replay" else 0),
            "feature cache": feature_cache_bytes(nets, batch, V, T, E),
            "evaluation": eval_bytes(nets, V, batch, E),
            "data": data_bytes(n_train + n_test, d, E)}
    final = train_estimate(B=final_networks, V=V, d=d, l=l, T=T, n_train=n_train, n_test=n_test,
                           E=E, graph_rule=graph).parts
    final = {"final networks" if k == "networks" else k: v for k, v in final.items()}
    final["last meta-step's networks"] = 2 * tasks * vv1  # still referenced then
    step, final = Estimate(step), Estimate(final)
    return step if step.total >= final.total else final


def attack_estimate(*, model_bytes: int, members: int, V: int, T: int, E: int,
                    source_bytes: int = 0, n_images: int = ATTACK_BLOCK) -> Estimate:
    """``metaplastic attack``: the saved ensemble, the attacked member, and image batches."""
    rows = min(ATTACK_BLOCK, max(n_images, 1))
    return Estimate({"models": model_bytes + model_bytes // max(members, 1) + 2 * source_bytes,
                     "activations": (3 * T + 3) * rows * V * E})


def saved_networks(path) -> dict | None:
    """Sizes of the networks saved at ``path`` (a run folder or its networks.pt), read
    without loading the weights (memory-mapped): ``bytes, members, V, T, E``.
    None when the file is missing or not a networks file (the loader reports that)."""
    import torch
    path = Path(path)
    if path.is_dir():
        path = path / "networks.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        U, cfg = state["U"], state["config"]
        return {"bytes": path.stat().st_size, "members": int(U.shape[0]), "V": int(U.shape[1]),
                "T": int(cfg["rounds"]), "E": U.element_size()}
    except Exception:  # noqa: BLE001 -- any unreadable file: leave the message to the loader
        return None


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def available_bytes(device: str = "cpu") -> tuple[int | None, str]:
    """Memory free for this process now, and where the figure comes from (None: unknown).

    A CUDA device: ``torch.cuda.mem_get_info``.  The CPU: ``MemAvailable`` of
    /proc/meminfo, lowered to a cgroup (container) limit when one is set;
    psutil where there is no /proc; None where neither exists (no check then).
    """
    if str(device).startswith("cuda"):
        import torch
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free), f"free on {device}"
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        avail = None
    where = "RAM available (MemAvailable in /proc/meminfo)"
    if avail is None:
        try:
            import psutil
        except ImportError:
            return None, "unknown"
        return int(psutil.virtual_memory().available), "RAM available (psutil)"
    for limit_f, usage_f in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                             ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                              "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_f), _read_int(usage_f)
        if limit is not None and usage is not None and limit - usage < avail:
            avail, where = max(limit - usage, 0), "left under this container's memory limit"
    return avail, where


def refusal(estimate: Estimate, available: int | None, where: str, hint: str) -> str | None:
    """The one-line reason to refuse a run, or None when it fits (or nothing is known)."""
    if available is None or estimate.total <= available:
        return None
    return (f"this run needs about {format_bytes(estimate.total)} of memory "
            f"({estimate.describe()}), but only {format_bytes(available)} is {where}: {hint}")


def check(estimate: Estimate, hint: str, device: str = "cpu") -> None:
    """Raise :class:`MetaplasticError` when ``estimate`` exceeds the memory available now.

    ``METAPLASTIC_SKIP_MEMORY_CHECK=1`` skips the check (for a machine whose
    swap or overcommit the estimate does not know about).
    """
    if os.environ.get("METAPLASTIC_SKIP_MEMORY_CHECK") == "1":
        return
    avail, where = available_bytes(device)
    msg = refusal(estimate, avail, where, hint + " (METAPLASTIC_SKIP_MEMORY_CHECK=1 skips this check)")
    if msg:
        raise MetaplasticError(msg)
