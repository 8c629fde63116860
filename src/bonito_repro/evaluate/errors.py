"""The error of an evaluation job."""


class EvaluationError(ValueError):
    """Bad input to an evaluation: the message names the file, row or key."""
