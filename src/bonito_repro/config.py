"""Public API: a workflow config, merged, validated and resolved (defined in
bonito_repro.core.config)."""
from .core.config import ConfigError, load_config, load_scale, read_yaml

__all__ = ["ConfigError", "load_config", "load_scale", "read_yaml"]
