"""The error every bad input raises: a config key, an input file or one of its rows."""


class InputError(ValueError):
    """Bad input: the message names the file (and row or line) or the config key and says what was
    expected. A stage command prints the message alone, no traceback, and exits 1."""
