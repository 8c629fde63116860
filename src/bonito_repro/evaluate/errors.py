"""The error of an evaluation job."""
from ..core.errors import InputError


class EvaluationError(InputError):
    """Bad input to an evaluation: the message names the file, row or key."""
