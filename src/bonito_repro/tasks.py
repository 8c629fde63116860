"""Public API: the 16 task types (defined in bonito_repro.core.tasks)."""
from .core.tasks import TASK_TYPES, task_type_code, task_type_name

__all__ = ["TASK_TYPES", "task_type_code", "task_type_name"]
