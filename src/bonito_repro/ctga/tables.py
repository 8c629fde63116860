"""The two reference tables of ctga-v1 (see data/README.md for their origin): which promptsource
templates count as which task type, and which Jinja expression holds the passage per source."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..tasks import task_type_name

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
TASK_TYPES_CSV = DATA_DIR / "ctga_template_task_types.csv"
CONTEXT_FIELDS_CSV = DATA_DIR / "ctga_context_fields.csv"


@dataclass(frozen=True)
class Annotation:
    """One annotated P3 template: its name in promptsource and its task type (full name)."""

    template: str
    task_type: str


def source_name(dataset: str, config: str | None) -> str:
    """The key of a source everywhere in the project: ``dataset`` or ``dataset/config``."""
    return f"{dataset}/{config}" if config else dataset


def split_source(source: str) -> tuple[str, str | None]:
    dataset, _, config = source.partition("/")
    return dataset, config or None


def _rows(path: Path, columns: list[str]) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(columns) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        return list(reader)


def read_annotations(path: Path = TASK_TYPES_CSV) -> dict[str, list[Annotation]]:
    """source -> its annotated templates, in table order. Task types are checked here."""
    annotations: dict[str, list[Annotation]] = {}
    columns = ["dataset_name", "dataset_config_name", "template_name", "task_type"]
    for line, row in enumerate(_rows(path, columns), start=2):
        try:
            task_type = task_type_name(row["task_type"].strip())
        except ValueError as error:
            raise ValueError(f"{path}, line {line}: {error}") from None
        source = source_name(row["dataset_name"], row["dataset_config_name"])
        annotations.setdefault(source, []).append(Annotation(row["template_name"], task_type))
    return annotations


def read_context_expressions(path: Path = CONTEXT_FIELDS_CSV) -> dict[str, str]:
    """source -> the Jinja expression that renders its passage."""
    columns = ["dataset_name", "dataset_config_name", "context_expression"]
    return {source_name(row["dataset_name"], row["dataset_config_name"]): row["context_expression"]
            for row in _rows(path, columns)}
