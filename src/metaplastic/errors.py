"""User-facing errors.

Every check on user input raises :class:`MetaplasticError` (or a subclass) with a
message that says what was wrong and how to fix it, so the CLI can print one line
instead of a traceback from deep inside torch.
"""


class MetaplasticError(ValueError):
    """Bad input or configuration given by the user."""


class DataError(MetaplasticError):
    """A dataset is missing, corrupt or malformed."""


class TrainingDiverged(MetaplasticError):
    """Rule-based training produced non-finite weights or logits (too large a step size).

    Raised by every training backend (torch loop, compiled loop) and by the
    rule-learning outer loop; the CLI prints its one-line message and exits
    with :data:`EXIT_DIVERGED`, writing nothing.  ``example`` is the position
    in the training sequence at which the weights were first found
    non-finite (None if unknown), ``network`` the ensemble member.
    """

    def __init__(self, message: str, *, example: int | None = None, network: int | None = None):
        super().__init__(message)
        self.example = example
        self.network = network


#: Exit code of the CLI for a diverged run (bad input exits 2).
EXIT_DIVERGED = 3
