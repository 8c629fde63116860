"""Public API: the Bonito input string and its parser (defined in bonito_repro.core.prompts)."""
from .core.prompts import bonito_input, parse_bonito_output

__all__ = ["bonito_input", "parse_bonito_output"]
