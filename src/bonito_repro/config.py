"""Load and validate a workflow config: the JSON schema first, then cross-references.

Every error names the key path (``targets.smollm2_p3.init_adapter.model``) so that a bad config
stops the run before any job starts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .tasks import TASK_TYPES, task_type_name

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"
ZERO_SHOT = "zero_shot"
TAPT = "tapt"
# evaluation keys that only greedy decoding (extractive QA) reads: rank jobs do not get them, so
# changing them reruns no rank classification
EVAL_DECODING_KEYS = ("generation_backend", "max_new_tokens")
# training section -> the resources section its jobs request (train_p3 runs with the adapt stage's)
TRAINING_RESOURCES = {"bonito_training": "train_bonito", "p3_training": "adapt", "adaptation": "adapt"}


class ConfigError(ValueError):
    """A config value is missing, of the wrong type or refers to something undeclared."""


def _path(parts) -> str:
    return ".".join(str(p) for p in parts) or "<root>"


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def validate_schema(config: dict, schema: dict | None = None) -> None:
    """Raise ConfigError listing every schema violation, each with its key path."""
    validator = jsonschema.Draft202012Validator(schema or load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = []
        for error in errors:
            # a oneOf failure hides the useful message in its sub-errors
            best = jsonschema.exceptions.best_match([error])
            lines.append(f"{_path(best.absolute_path)}: {best.message}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))


def check_references(config: dict) -> None:
    """Names used in one section must be declared in another; raise ConfigError naming the key."""
    problems: list[str] = []
    models, targets, generators = config["models"], config["targets"], config["generators"]

    def need(kind: str, name: str, declared: dict, where: str) -> None:
        if name not in declared:
            problems.append(f"{where}: {kind} {name!r} is not declared (known: {sorted(declared)})")

    for name, model in models.items():
        if model.get("adapter") and "base" not in model:
            problems.append(f"models.{name}.base: an adapter needs the model it adapts")
        if "base" in model:
            need("model", model["base"], models, f"models.{name}.base")
    for name, target in targets.items():
        need("model", target["model"], models, f"targets.{name}.model")
        init = target.get("init_adapter", {})
        if "model" in init:
            need("model", init["model"], models, f"targets.{name}.init_adapter.model")
            if init["model"] in models and not models[init["model"]].get("adapter"):
                problems.append(f"targets.{name}.init_adapter.model: {init['model']!r} is not an adapter")
        if init.get("train_on") == "p3" and "p3_training" not in config:
            problems.append(f"targets.{name}.init_adapter.train_on: p3 needs a p3_training section")
    for name, generator in generators.items():
        for key in ("base", "model"):
            if key in generator:
                need("model", generator[key], models, f"generators.{name}.{key}")
    for name, dataset in config["datasets"].items():
        try:
            task_type_name(dataset["task_type"])
        except ValueError as error:
            problems.append(f"datasets.{name}.task_type: {error}")
    for i, source in enumerate(config["sources"]):
        if source != TAPT and source not in generators:
            problems.append(f"sources[{i}]: {source!r} is neither 'tapt' nor a declared generator "
                            f"(known: {sorted(generators)})")
    for section, stage in TRAINING_RESOURCES.items():
        gpus = config.get("resources", {}).get(stage, {}).get("gpus", 0)
        processes = config.get(section, {}).get("processes", gpus)
        if gpus and processes != gpus:  # one process per GPU: fewer idles GPUs, more oversubscribes them
            problems.append(f"{section}.processes: {processes} training processes on resources.{stage}.gpus "
                            f"= {gpus} GPUs; use one process per GPU")
    reserved = {ZERO_SHOT, TAPT} & set(generators)
    if reserved:
        problems.append(f"generators: {sorted(reserved)} are reserved source names")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def validate(config: dict) -> dict:
    validate_schema(config)
    check_references(config)
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    with open(path) as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return validate(config)


__all__ = ["ConfigError", "load_config", "validate", "validate_schema", "check_references",
           "TASK_TYPES", "ZERO_SHOT", "TAPT",
           "EVAL_DECODING_KEYS"]
