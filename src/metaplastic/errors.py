"""User-facing errors.

Every check on user input raises :class:`MetaplasticError` (or a subclass) with a
message that says what was wrong and how to fix it, so the CLI can print one line
instead of a traceback from deep inside torch.
"""


class MetaplasticError(ValueError):
    """Bad input or configuration given by the user."""


class DataError(MetaplasticError):
    """A dataset is missing, corrupt or malformed."""
