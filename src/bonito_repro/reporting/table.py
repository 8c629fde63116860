"""Collect evaluation results (results/eval/{target}/{source}/{dataset}.json) into one table:
per (target, source, dataset) the F1 mean over templates (the table number), the median, the
bootstrap interval and the example count. The CSV is what the main table and the plots read.
A cell whose alternative generator kept no task has no scores and says so (``no_tasks``: "no
tasks (0 of N kept)"). Tables made at the local or smoke scale say that they come from embedded
demo data.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..core.config import COMPARABLE_SCALES
from ..core.io import (InputFileError, check_writable, read_json, require_keys, setup_logging, write_csv, write_text)
from .main_table import DEMO_LABEL

COLUMNS = ["target", "source", "dataset", "task_type", "wrapper", "n_examples", "f1", "f1_median",
           "ci_low", "ci_high", "confidence", "templates", "template_f1", "no_tasks"]
RESULT_KEYS = ["target", "source", "dataset", "task_type", "wrapper", "n_examples", "mean", "median", "ci",
               "confidence", "templates"]


def collect_scores(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per evaluation JSON, sorted by target, source and dataset."""
    rows = []
    for path in paths:
        result = read_json(path)
        if "no_tasks" in result:  # an alternative generator's empty set: nothing was evaluated
            rows.append({**{k: result[k] for k in ("target", "source", "dataset", "task_type", "wrapper")},
                         "n_examples": 0, "templates": 0, "template_f1": "", "no_tasks": result["no_tasks"]})
            continue
        result = require_keys(result, RESULT_KEYS, path, "an evaluation result")
        try:
            rows.append({
                "target": result["target"], "source": result["source"], "dataset": result["dataset"],
                "task_type": result["task_type"], "wrapper": result["wrapper"],
                "n_examples": result["n_examples"], "f1": result["mean"], "f1_median": result["median"],
                "ci_low": result["ci"][0], "ci_high": result["ci"][1], "confidence": result["confidence"],
                "templates": len(result["templates"]),
                "template_f1": "; ".join(f"{name}: {s['f1']:.1f}" for name, s in result["templates"].items()),
                "no_tasks": None,
            })
        except (KeyError, IndexError, TypeError) as error:
            raise InputFileError(f"{path}: not an evaluation result ({type(error).__name__}: {error})") from None
    return pd.DataFrame(rows, columns=COLUMNS).sort_values(["target", "source", "dataset"],
                                                           ignore_index=True)


def markdown(scores: pd.DataFrame, scale: str, decimals: int = 1) -> str:
    notes = "" if scale in COMPARABLE_SCALES else f"**{DEMO_LABEL.format(scale=scale)}**\n\n"
    shown = scores.drop(columns=["template_f1"]).copy()
    shown["ci"] = [note if isinstance(note, str) else f"[{lo:.{decimals}f}, {hi:.{decimals}f}] ({100 * c:g}%)"
                   for lo, hi, c, note in zip(shown.ci_low, shown.ci_high, shown.confidence, shown.no_tasks)]
    shown = shown.drop(columns=["ci_low", "ci_high", "confidence", "no_tasks"])
    caption = ("F1 in percent: mean over the templates (the table number), median, and the bootstrap "
               "interval of the mean at the given confidence.\n\n")
    return caption + notes + shown.to_markdown(index=False, floatfmt=f".{decimals}f") + "\n"


def write_scores(scores: pd.DataFrame, csv: Path, md: Path, scale: str) -> None:
    if scale not in COMPARABLE_SCALES:
        scores = scores.assign(data=DEMO_LABEL.format(scale=scale))
    write_csv(scores, csv)
    write_text(markdown(scores.drop(columns=["data"], errors="ignore"), scale), md)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bonito-repro table", description=__doc__)
    parser.add_argument("--inputs", nargs="+", required=True, type=Path, help="evaluation JSONs")
    parser.add_argument("--scale", required=True, help="the config's scale (paper, local, smoke)")
    parser.add_argument("--csv", required=True, type=Path)
    parser.add_argument("--md", required=True, type=Path)
    args = parser.parse_args(argv)
    setup_logging()
    check_writable(args.csv, args.md)
    write_scores(collect_scores(args.inputs), args.csv, args.md, args.scale)
    return 0
