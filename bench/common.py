"""Shared by the benchmarks: the local scale's config and its SmolLM2 model directory."""
from __future__ import annotations

from pathlib import Path

from bonito_repro.core import layout
from bonito_repro.core.config import load_scale

REPO = Path(__file__).resolve().parents[1]


def local_config() -> dict:
    return load_scale("local", REPO)


def smollm2_dir(given: str | None, scratch: Path) -> Path:
    """The model given, else the workflow's converted SmolLM2, else a fresh conversion in scratch."""
    if given:
        return Path(given)
    local = REPO / layout.model_dir("smollm2")
    if (local / "config.json").exists():
        return local
    from bonito_repro.prepare.models import prepare_model

    spec = local_config()["models"]["smollm2"]
    return prepare_model(spec, scratch / "smollm2")
