"""The published ctga-v1 (BatsResearch/ctga-v1): read it in place of building, or count its rows
per task type to compare with a built set.

Its authors' script writes the columns ``input`` and ``output`` (the Bonito pair) beside
``context, task_input, task_output, dataset, dataset_config, task_type``; only ``input`` and
``output`` are required here: everything else is parsed back from them.
"""
from __future__ import annotations

import re

import datasets
import pandas as pd

from ..core.prompts import parse_bonito_output
from ..core.origins import load_origin
from ..core.tasks import task_type_name
from .build import OUTPUT_COLUMNS, CtgaBuild, per_task_type, split_validation

_INPUT = re.compile(
    r"<\|tasktype\|>\n(?P<task_type>.*?)\n<\|context\|>\n(?P<context>.*)\n<\|task\|>\n", re.DOTALL)


def parse_bonito_input(text: str) -> tuple[str, str] | None:
    """(full task type, passage) of a Bonito input string, or None if it is not one."""
    match = _INPUT.fullmatch(text)
    if not match:
        return None
    try:
        return task_type_name(match["task_type"].strip()), match["context"]
    except ValueError:
        return None


def _p3_dataset_names(frame: pd.DataFrame) -> list[str]:
    if "dataset" not in frame.columns:
        return ["published"] * len(frame)
    configs = frame["dataset_config"] if "dataset_config" in frame.columns else [None] * len(frame)
    return [f"{d}/{c}" if pd.notna(c) and c else str(d) for d, c in zip(frame["dataset"], configs)]


def _require_columns(dataset: datasets.Dataset, origin: dict) -> None:
    missing = {"input", "output"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"ctga.published {origin}: missing columns {sorted(missing)} "
                         f"(has {dataset.column_names})")


def published_rows(dataset: datasets.Dataset) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """ctga rows and P3 rows (the instruction and response with the passage filled in) of the
    published set, and the rows dropped by reason."""
    frame = dataset.to_pandas()
    p3_datasets = _p3_dataset_names(frame)
    ctga, p3 = [], []
    drops = {"published_unparseable_input": 0, "published_unparseable_output": 0}
    for text, output, p3_dataset in zip(frame["input"], frame["output"], p3_datasets):
        parsed = parse_bonito_input(text)
        if parsed is None:
            drops["published_unparseable_input"] += 1
            continue
        task_type, context = parsed
        pair = parse_bonito_output(output, context)
        if pair is None:
            drops["published_unparseable_output"] += 1
            continue
        ctga.append((text, output, task_type, p3_dataset, None))
        p3.append((*pair, task_type, p3_dataset, None))
    return (pd.DataFrame(ctga, columns=OUTPUT_COLUMNS), pd.DataFrame(p3, columns=OUTPUT_COLUMNS),
            {k: v for k, v in drops.items() if v})


def from_published(hp: dict) -> CtgaBuild:
    """The published ctga-v1 in this stage's schema, split like a built one."""
    dataset = load_origin(hp["published"], "ctga")
    _require_columns(dataset, hp["published"])
    ctga, p3, drops = published_rows(dataset)
    (validation, p3_validation), (train, p3_train) = split_validation(
        [ctga, p3], hp["validation_size"], hp["seed"])
    p3 = pd.concat([p3_train, p3_validation], ignore_index=True)
    counts = {
        "rows_published": len(dataset),
        "rows_kept": len(ctga),
        "train": len(train),
        "validation": len(validation),
        "p3": len(p3),
        "per_p3_dataset": ctga["p3_dataset"].value_counts().sort_index().to_dict(),
        "per_task_type": per_task_type({"train": train, "validation": validation}),
    }
    return CtgaBuild(train, validation, p3, counts, drops)


def published_task_types(origin: dict) -> pd.Series:
    """Rows per task type (full names) of the published set."""
    dataset = load_origin(origin, "ctga")
    _require_columns(dataset, origin)
    if "task_type" in dataset.column_names:
        names = [task_type_name(t.strip()) for t in dataset["task_type"]]
    else:
        names = [(parse_bonito_input(t) or ("unparseable",))[0] for t in dataset["input"]]
    return pd.Series(names).value_counts()


def compare_task_types(built: pd.DataFrame, published: pd.Series) -> pd.DataFrame:
    """Rows per task type, built (train and validation) beside published, with shares."""
    counts = pd.DataFrame({"built": built["task_type"].value_counts(), "published": published})
    counts = counts.fillna(0).astype(int).rename_axis("task_type").reset_index()
    for column in ("built", "published"):
        counts[f"{column}_share"] = (counts[column] / max(counts[column].sum(), 1)).round(4)
    return counts.sort_values("task_type").reset_index(drop=True)
