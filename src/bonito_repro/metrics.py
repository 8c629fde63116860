"""Public API: the paper's metrics (defined in bonito_repro.core.metrics)."""
from .core.metrics import macro_f1, squad_f1

__all__ = ["macro_f1", "squad_f1"]
