"""metaplastic: learning with synaptic plasticity rules, and learning the rules.

Reference implementation of "Learning with plasticity rules: generalization and
robustness" (paper text in ``shared/paper``).  Section numbers in docstrings refer
to that paper.
"""

__version__ = "0.1.0"
