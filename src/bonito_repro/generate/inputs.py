"""What the generate stage reads: the passages of an unannotated parquet, or a published
synthetic set in their place."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..io import read_parquet, seeded_subset
from ..origins import load_origin
from ..schemas import UNANNOTATED_FIELDS, validate_rows


def read_passages(path: str | Path, max_passages: int | None, seed: int) -> tuple[list[str], list[int], dict]:
    """(passages, context_ids, counts) from an unannotated parquet: context_id is the row index
    in that file; blank passages are skipped and counted; ``max_passages`` takes a seeded random
    subset (kept in file order), as the experiment code's --max_eval_samples with --shuffle."""
    table = read_parquet(path, list(UNANNOTATED_FIELDS))
    frame = table.to_pandas()
    validate_rows(table.to_pylist(), Path(path).stem, "unannotated", str(path), columns=table.column_names)
    for row, value in enumerate(frame["input"]):  # the data stage writes no null passage
        if not isinstance(value, str):
            raise InputError(f"{path}: row {row} (0-based): field 'input': missing")
    ids = [i for i, text in enumerate(frame["input"]) if text.strip()]
    counts = {"passages_in_file": len(frame), "blank_passages": len(frame) - len(ids)}
    ids = [ids[i] for i in seeded_subset(len(ids), max_passages, seed)]
    counts["passages"] = len(ids)
    return [frame["input"].iloc[i] for i in ids], ids, counts


def load_published(origin: dict) -> pd.DataFrame:
    """A published synthetic set (``BatsResearch/bonito-experiment``, config ``bonito_<key>``, or
    files of the same schema: ``input``, ``output``) as funnel input; its passages are unknown."""
    rows = load_origin(origin, "synthetic").to_pandas()
    missing = {"input", "output"} - set(rows.columns)
    if missing:
        raise InputError(f"published set {origin}: missing columns {sorted(missing)}")
    return pd.DataFrame({"context_id": pd.array([None] * len(rows), dtype="Int64"), "sample": 0,
                         "input": rows["input"], "output": rows["output"], "passage": ""})
