"""L2 adversarial attacks on the logits of any module mapping flat inputs ``[N, d]`` to logits.

Used by :mod:`metaplastic.robustness` to reproduce section 4 / A.3 of the paper
(robustness to a targeted multi-step L2 attack) and to tell real robustness from
gradient masking (the cap is k-winners-take-all, whose reported robustness was
masking, Tramer et al. 2020).  Every attack

* works on the **logits** of ``model`` (softmax appears only inside losses),
* is batched (chunks of ``batch_size`` inputs; with ``stop_on_success`` an
  input leaves the batch as soon as it is misclassified),
* draws all randomness from an explicit :class:`torch.Generator`,
* returns an :class:`AttackResult` whose every output was verified to lie
  within ``eps`` of its input (tolerance :data:`TOL` = 1e-6) and in [0, 1]^d
  (:func:`check_ball`), and
* counts an input as *broken* when the model's argmax (ties to the lower
  label) differs from the true label at **any** point it evaluated; the point
  returned is then the first such point.

Attacks (``ATTACKS``):

``paper``      section 4 / A.3: for each of the 9 targets y' != y,
               ``x <- Proj(x - alpha * grad_x CE(logits(x), y'))`` with the
               *raw* gradient, from x itself, ``steps`` steps.  The paper gives
               neither alpha nor the number of steps; defaults: 20 steps and
               ``alpha = eps / 4`` (a gradient of unit L2 norm moves eps/4 per
               step).  Because the step is the raw gradient, the attack depends
               on the logit scale: the result records how often the gradient is
               exactly zero and the median ratio ``alpha * ||g|| / eps``.
``apgd-ce``    APGD (Croce & Hein 2020), L2, untargeted cross-entropy.
``apgd-dlr``   APGD with the targeted DLR loss, for the ``dlr_targets`` (3)
               highest non-true classes by clean logits (AutoAttack uses 9).
``square``     Square attack (Andriushchenko et al. 2020), L2, gradient-free,
               simplified (see :func:`square_attack`).
``noise``      ``draws`` random directions of norm eps (projected to the box).
``blend``      gradient-free line to the nearest reference images of another
               predicted class (a decision-based start point): the point
               ``x + t (x' - x)`` with the largest t the ball allows.
``bpda-st``    APGD (margin loss) through a surrogate whose forward is the model's exact
               forward and whose backward treats the cap as the identity
               (straight-through; BPDA, Athalye et al. 2018).
``bpda-soft``  the same with a soft top-k backward,
               ``z * sigmoid((z - t) / tau)``, t between the k-th and (k+1)-th
               values, tau = ``tau_rel`` x the standard deviation of z.
``nes``        normalized-step PGD on an antithetic-Gaussian finite-difference
               (NES) estimate of the margin gradient (gradient-free, queries only).
``transfer``   APGD (margin loss) crafted on another model (the GD-trained
               twin), the highest-loss point on that model evaluated on this one.

Modules, one job each: :mod:`.projection` (ball-and-box projection, checks),
:mod:`.common` (result, losses, helpers), :mod:`.paper`, :mod:`.apgd`,
:mod:`.gradient_free` (square, noise, blend, NES), :mod:`.adaptive` (BPDA,
transfer) and :mod:`.registry` (:func:`run_attack`, the zero-gradient
diagnostic); every name is importable from :mod:`metaplastic.attacks`.
"""

from __future__ import annotations

from .adaptive import BPDASurrogate, _CapBPDA, bpda_attack, transfer_attack
from .apgd import _checkpoints, apgd, apgd_dlr_targeted
from .common import (ADAPTIVE, ATTACKS, GRADIENT, GRADIENT_FREE, AttackResult, _chunks, _finish, _loss_grad,
                     _random_sphere, _unit, dlr_targeted, logits_of, margin, predict)
from .gradient_free import _bump, _square_p, blend_attack, nes_attack, noise_attack, square_attack
from .paper import paper_attack
from .projection import (TOL, _eps_vector, _project_compiled, _project_torch, _root_by_sorting, check_ball,
                         project_l2_box)
from .registry import run_attack, zero_gradient_fractions

__all__ = ["ADAPTIVE", "ATTACKS", "GRADIENT", "GRADIENT_FREE", "TOL", "AttackResult", "BPDASurrogate", "apgd",
           "apgd_dlr_targeted", "blend_attack", "bpda_attack", "check_ball", "dlr_targeted", "logits_of", "margin",
           "nes_attack", "noise_attack", "paper_attack", "predict", "project_l2_box", "run_attack",
           "square_attack", "transfer_attack", "zero_gradient_fractions"]
