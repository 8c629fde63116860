"""`bonito-repro list datasets|generators|targets|task-types [--scale SCALE]`: what a run can
name. Datasets: the package's dataset files; generators and targets: those the scale's own config
files declare (a CPU scale's merged config also holds the paper's 7B entries, which only the paper
scale runs); task types: the 16 of Bonito, with how each is scored. An entry the scale runs by
default (its `run` section) is marked with *."""
from __future__ import annotations

import argparse
import sys
from typing import Iterable

from ..core.config import DATASETS_DIR, evaluated, merged_config, read_yaml, scale_files, shipped_datasets
from ..core.tasks import GREEDY, RANK, TASK_TYPE_SPECS, TASK_TYPES
from .scales import SCALE_PROFILES, own_entries

SCORING = {RANK: "F1, rank classification", GREEDY: "F1, greedy generation", None: "no F1 (generated for only)"}
KINDS = ("datasets", "generators", "targets", "task-types")


def columns(rows: Iterable[tuple[str, ...]]) -> list[str]:
    rows = list(rows)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)] if rows else []
    return ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[-1]]).rstrip() for row in rows]


def mark(selected: bool) -> str:
    return "*" if selected else " "


def describe_model(name: str, models: dict) -> str:
    """A model entry in a few words: its Hub id, GGUF file, random tiny architecture or folder."""
    entry = models.get(name, {})
    if "hub" in entry:
        return f"{name} ({entry['hub']['id']})"
    if "gguf" in entry:
        return f"{name} ({entry['gguf']['file']})"
    if "tiny" in entry:
        return f"{name} (random tiny {entry['tiny']['architecture']})"
    return f"{name} ({entry.get('path', 'declared elsewhere')})"


def list_datasets(config: dict) -> list[str]:
    runs = set(config["run"]["datasets"])
    rows = [("", "name", "task type", "F1", "title")]
    for name in shipped_datasets():
        spec = read_yaml(DATASETS_DIR / f"{name}.yaml")
        f1 = "yes" if evaluated(spec) and TASK_TYPE_SPECS[spec["task_type"]].scoring else "no"
        rows.append((mark(name in runs), name, TASK_TYPES[spec["task_type"]], f1, spec["title"]))
    return columns(rows) + ["", "a dataset of your own: bonito-repro corpus (docs/own-text.md), or a dataset file "
                            "(docs/configuration.md)"]


def list_generators(config: dict, scale: str) -> list[str]:
    runs = set(config["run"]["sources"])
    rows = [("", "name", "kind", "generates with")]
    for name in sorted(own_entries(scale, "generators")):
        spec = config["generators"][name]
        model = spec.get("model") or spec.get("base")
        if "base" in spec and spec["kind"] == "bonito":
            how = f"a Q-LoRA of {describe_model(model, config['models'])}, trained on ctga"
        elif model:
            how = describe_model(model, config["models"])
        elif "origin" in spec:  # released sets
            how = f"released sets ({spec['origin'].get('hub', {}).get('id', 'files')})"
        else:  # an endpoint
            how = f"{spec['served_model']} at {spec['base_url']}"
        rows.append((mark(name in runs), name, spec["kind"], how))
    return columns(rows)


def list_targets(config: dict, scale: str) -> list[str]:
    runs = set(config["run"]["targets"])
    rows = [("", "name", "model", "adapter it starts from")]
    for name in sorted(own_entries(scale, "targets")):
        spec = config["targets"][name]
        start = spec.get("init_adapter")
        start = "none" if not start else start.get("model") or f"trained on {start.get('train_on')}"
        rows.append((mark(name in runs), name, describe_model(spec["model"], config["models"]), start))
    return columns(rows)


def list_task_types() -> list[str]:
    rows = [("code", "task type", "evaluation", "a labelled set of yours takes the templates of")]
    rows += [(code, spec.name, SCORING[spec.scoring], spec.template_dataset or "-") for code, spec in TASK_TYPE_SPECS.items()]
    return columns(rows)


def listing(kind: str, scale: str) -> list[str]:
    if kind == "task-types":
        return list_task_types()
    config = merged_config(scale_files(scale))
    lines = {"datasets": lambda: list_datasets(config), "generators": lambda: list_generators(config, scale),
             "targets": lambda: list_targets(config, scale)}[kind]()
    return [f"{kind} of the {scale} scale (* it runs them by default; bonito-repro list {kind} --scale SCALE "
            f"for another)", *lines]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bonito-repro list", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=KINDS, help="what to list")
    parser.add_argument("--scale", choices=sorted(SCALE_PROFILES), default="local",
                        help="the scale whose config is read (default: local, the CPU demo)")
    args = parser.parse_args(argv)
    print("\n".join(listing(args.kind, args.scale)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
