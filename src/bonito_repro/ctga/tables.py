"""The two reference tables of ctga-v1 (see data/README.md for their origin): which promptsource
templates count as which task type, and which Jinja expression holds the passage per P3 dataset."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..core import PACKAGE_DATA
from ..core.tasks import task_type_name

DATA_DIR = PACKAGE_DATA
TASK_TYPES_CSV = DATA_DIR / "ctga_template_task_types.csv"
CONTEXT_FIELDS_CSV = DATA_DIR / "ctga_context_fields.csv"


@dataclass(frozen=True)
class Annotation:
    """One annotated P3 template: its name in promptsource and its task type (full name)."""

    template: str
    task_type: str


def p3_dataset_name(dataset: str, config: str | None) -> str:
    """The key of a P3 dataset everywhere in the project: ``dataset`` or ``dataset/config``."""
    return f"{dataset}/{config}" if config else dataset


def split_p3_dataset(p3_dataset: str) -> tuple[str, str | None]:
    dataset, _, config = p3_dataset.partition("/")
    return dataset, config or None


def _rows(path: Path, columns: list[str]) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(columns) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        return list(reader)


def read_annotations(path: Path = TASK_TYPES_CSV) -> dict[str, list[Annotation]]:
    """P3 dataset -> its annotated templates, in table order. Task types are checked here."""
    annotations: dict[str, list[Annotation]] = {}
    columns = ["dataset_name", "dataset_config_name", "template_name", "task_type"]
    for line, row in enumerate(_rows(path, columns), start=2):
        try:
            task_type = task_type_name(row["task_type"].strip())
        except ValueError as error:
            raise ValueError(f"{path}, line {line}: {error}") from None
        p3_dataset = p3_dataset_name(row["dataset_name"], row["dataset_config_name"])
        annotations.setdefault(p3_dataset, []).append(Annotation(row["template_name"], task_type))
    return annotations


def read_context_expressions(path: Path = CONTEXT_FIELDS_CSV) -> dict[str, str]:
    """P3 dataset -> the Jinja expression that renders its passage."""
    columns = ["dataset_name", "dataset_config_name", "context_expression"]
    return {p3_dataset_name(row["dataset_name"], row["dataset_config_name"]): row["context_expression"]
            for row in _rows(path, columns)}
