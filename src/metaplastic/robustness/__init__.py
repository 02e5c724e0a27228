"""Adversarial robustness of plasticity- and GD-trained networks (paper section 4, A.3, Table 2).

Models (|V|=1000, k=500, p=0.5, MNIST, 10,000 training images, 2 epochs; one
set per seed, the seed drawing the masks, weights and data order):

===================  ==============================================================
``plastic-T1``       T=1, perceptron output rule, normal input weights
``plastic-T1star``   T=1*, the same with all input weights one (Table 2)
``plastic-T3``       T=3, perceptron output rule + the shipped A.3 graph rule
                     ``rules/mnist-mlp-graph-T3-V200.json`` (when absent: the
                     shipped ``relu1-mlp-T3`` graph rule, as the Table 2 section
                     does, else no graph rule; the run records which)
``plastic-T3-randomW``  opt-in (not in the default set; ``--models``): T=3 with a FIXED random
                     recurrent W (not learned, no graph plasticity) at drive ratio
                     1 (:mod:`metaplastic.fixed_recurrence`; issue 11, not the
                     paper), same perceptron output rule: a plastic network whose
                     rounds 2 and 3 actually run, unlike ``plastic-T3``'s
``gd-T1``, ``gd-T3``  Adam (lr 1e-2, batch 10) on cross-entropy, all weights (A, W,
                     U) through the cap (``train_gd(which="all")``)
``*-nocap``          the cap-free twin of each (``NetworkConfig(capped=False)``),
                     trained the same way
===================  ==============================================================

Protocol (:func:`evaluate`): the same ``n_images`` test images for every model;
an image is *robust at eps* when it is classified correctly and no attack
breaks it within the L2 ball of radius eps (intersected with [0,1]^d).

Economy, all of it sound: an image broken at eps is broken at every larger eps
(the same perturbation lies in the larger ball), so at each eps of the
increasing grid only the survivors are attacked ("worst-case survivors" S);
an attack stops on an image at its first misclassified point; the expensive
attacks only see what the cheaper ones left; the sweep stops when nothing
survives.  Order at each eps: the model's own-gradient attacks (the paper's,
APGD-DLR, APGD-CE) on S; the gradient-free noise, blend and square on what the
own-gradient attacks left (so any success there is, per image, a
gradient-free attack beating every own-gradient attack: the masking gate);
then the adaptive BPDA-ST, BPDA-soft and transfer, and NES on its subset, on
what is left.  The paper's attack runs stand-alone on all images (its own
survivors), which is the paper's measurement.  Every other attack also runs
stand-alone on the first ``per_attack_images`` images (per-attack curves of
Fig. 5; there the per-image masking comparison is made again); everything
found anywhere enters the worst case.

Sanity gates (:func:`gates`), each checked in code and reported:
``eps0`` (every attack run at eps = 0 breaks nothing; robust == clean),
``monotone`` (every curve non-increasing in eps), ``large_eps`` (worst case
about 0 at the largest eps), ``in_ball`` (every stored adversarial input is
within its eps (1e-6), in [0,1], and misclassified when re-evaluated),
``masking`` (no image is broken by a gradient-free attack at a smaller eps than
by every own-gradient attack; failing flags the model "masked"),
``scale`` (multiplying U by constants leaves the worst-case robust accuracy
unchanged), plus the fraction of exactly-zero input gradients (softmax output,
cross-entropy and logit margin).

Modules, one job each: :mod:`.protocol` (attack order, budgets, the Wilson interval),
:mod:`.models` (the models: names, training, saving, measurements on a model),
:mod:`.sweep` (the steps of an evaluation) and :mod:`.evaluate` (one model's evaluation, the
curves read from it, the U-scale check and the gates).  Every public name is importable from here.
"""

from __future__ import annotations

from .protocol import EPS0_BUDGET, ORDER, Protocol, wilson
from .models import (BASE_MODELS, LABELS, MODELS, OPTIONAL_MODELS, RANDOM_W, SELECTABLE, ModelSetup,
                     cap_binding, graph_rule_table, is_capped, label, load_model, model_dir, model_spec, round_activity, scaled,
                     train_models, transfer_source, unstable_predictions)
from .evaluate import evaluate, gates, nes_subset, rate, scale_check, standalone_curve

__all__ = ["BASE_MODELS", "EPS0_BUDGET", "LABELS", "MODELS", "OPTIONAL_MODELS", "ORDER", "RANDOM_W", "SELECTABLE",
           "ModelSetup", "Protocol", "cap_binding", "evaluate", "gates", "graph_rule_table", "is_capped", "label", "load_model",
           "model_dir", "model_spec", "nes_subset", "rate", "round_activity", "scale_check", "scaled",
           "standalone_curve", "train_models", "transfer_source", "unstable_predictions", "wilson"]
