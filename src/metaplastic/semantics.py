"""The paper's text against its released code: the switches, the ``--paper-code`` preset, and
the record of the semantics a rule was learned under (issue 11, part 1).

The paper's text (the default everywhere) and its code (BrainNetwork/BrainNet,
cited in appendix A) differ in four ways that change what a rule does and what
gradient descent finds; each is a setting of its own:

============  ======================  ======================  ==================================
setting       text (default)          code (``--paper-code``) where
============  ======================  ======================  ==================================
recurrence    ``wh+ax``:              ``w(h+ax)``:            :class:`~metaplastic.network.NetworkConfig`
              cap(relu(W h + A x))    cap(relu(W (h + A x)))
firing        ``nonzero``: h_i != 0   ``top-k``: in the cap's :class:`~metaplastic.network.NetworkConfig`
                                      top-k set, even at 0
output_input  ``value``: appendix     ``bit``: section 2's    :class:`~metaplastic.learner.Scheme`
              B's chi weighting       r_o(s_i, row) alone
meta_loss_on  ``logits``              ``softmax`` (CE of the  learn-rule (``MetaConfig``)
                                      softmax: twice)
============  ======================  ======================  ==================================

``--paper-code`` sets all four; an explicit flag that contradicts it is an
error (say ``--recurrence w(h+ax) --firing top-k ...`` one by one to mix).
"""

from __future__ import annotations

import warnings

from .errors import MetaplasticError

#: The defaults: the paper's text.
TEXT = {"recurrence": "wh+ax", "firing": "nonzero", "output_input": "value", "meta_loss_on": "logits"}
#: ``--paper-code``: the paper's released code.
PAPER_CODE = {"recurrence": "w(h+ax)", "firing": "top-k", "output_input": "bit", "meta_loss_on": "softmax"}
#: The settings that change how a learned rule acts when it trains a network (a rule
#: used under other values than it was learned with gets a warning); ``meta_loss_on``
#: only changed how it was learned.
APPLIED = ("recurrence", "firing", "output_input")


class SemanticsWarning(UserWarning):
    """A rule is used under other semantics than it was learned with."""


def resolve(paper_code: bool, explicit: dict) -> dict:
    """The settings of ``explicit`` (None = not given) after the preset.

    Without ``paper_code`` an unset setting takes the text's value; with it,
    the code's, and an explicit value that differs from the code's is an error.
    Only the keys of ``explicit`` are returned.
    """
    out = {}
    for name, value in explicit.items():
        if name not in TEXT:
            raise MetaplasticError(f"unknown semantics setting {name!r}")
        if paper_code:
            if value is not None and value != PAPER_CODE[name]:
                flag = "--" + name.replace("_", "-")
                raise MetaplasticError(f"--paper-code sets {flag} {PAPER_CODE[name]}; {flag} {value} "
                                       f"contradicts it (drop one, or give the settings one by one)")
            out[name] = PAPER_CODE[name]
        else:
            out[name] = TEXT[name] if value is None else value
    return out


def record(settings) -> dict:
    """The semantics record of a config (a dataclass or dict with some of the settings)."""
    get = settings.get if isinstance(settings, dict) else lambda k, d=None: getattr(settings, k, d)
    return {k: get(k, TEXT[k]) for k in TEXT}


def name_of(rec: dict) -> str:
    """'text', 'paper-code' or the settings spelled out."""
    for name, ref in (("text", TEXT), ("paper-code", PAPER_CODE)):
        if all(rec.get(k, ref[k]) == ref[k] for k in APPLIED):
            return name
    return ", ".join(f"{k}={rec.get(k)}" for k in APPLIED)


def check_rule(rule, using: dict, where: str) -> list[str]:
    """Warn (:class:`SemanticsWarning`, once per call) when ``rule`` was learned under other
    settings than ``using``; returns the warnings' texts.

    ``rule.made_under`` is the record its file carried (None for the classic
    rules, which belong to no semantics); a learned rule's file without a
    record was made before the switches existed, so under the text's.
    """
    made = getattr(rule, "made_under", None)
    if made is None:
        return []
    diff = [k for k in APPLIED if k in using and k in made and made[k] != using[k]]
    if not diff:
        return []
    msg = (f"{where} was learned under " + ", ".join(f"{k}={made[k]}" for k in diff)
           + " but is used under " + ", ".join(f"{k}={using[k]}" for k in diff)
           + " (see --paper-code)")
    warnings.warn(msg, SemanticsWarning, stacklevel=2)
    return [msg]
