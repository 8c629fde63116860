"""Baselines on the rows the evaluation scores: what an F1 means beside a constant or random guess.

- majority class (yes-no QA, NLI): every row answered with the most frequent gold label of the
  evaluated rows. It knows the test distribution, so it is the best any constant answer can do;
- random label: each row a label drawn uniformly from the dataset's label set (seeded);
- random span (extractive QA): 1 to 3 consecutive words drawn from the row's passage (seeded).
Scores as the evaluation computes them (macro F1; SQuAD token F1 against the first answer), on the
same rows (the same ``max_examples`` sample), with the same bootstrap interval. No model is loaded.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.config import COMPARABLE_SCALES
from ..core import metrics
from ..core.io import Manifest, parse_params, setup_logging, write_csv, write_text
from .main_table import DEMO_LABEL
from ..core.tasks import RANK, scoring
from ..evaluate.job import select_rows
from ..evaluate.rank_classification import gold_labels
from ..evaluate.truncation import passage_texts

COLUMNS = ["baseline", "dataset", "n_examples", "f1", "ci_low", "ci_high", "confidence"]
MAX_SPAN_WORDS = 3


def random_span(passage: str, rng: np.random.Generator) -> str:
    """1 to ``MAX_SPAN_WORDS`` consecutive words of ``passage``, uniformly at random."""
    words = passage.split()
    if not words:
        return ""
    length = int(rng.integers(1, min(MAX_SPAN_WORDS, len(words)) + 1))
    start = int(rng.integers(0, len(words) - length + 1))
    return " ".join(words[start:start + length])


def _row(baseline: str, dataset: str, f1: float, interval: tuple[float, float], n: int, bootstrap: dict) -> dict:
    return {"baseline": baseline, "dataset": dataset, "n_examples": n, "f1": 100 * f1,
            "ci_low": 100 * interval[0], "ci_high": 100 * interval[1], "confidence": bootstrap["confidence"]}


def rank_baselines(gold: list[str], classes: list[str], dataset: str, bootstrap: dict, seed: int) -> list[dict]:
    """Majority-class and random-label macro F1 of ``gold`` (labels among ``classes``)."""
    gold_idx = np.array([classes.index(label) for label in gold])
    majority = np.full_like(gold_idx, np.bincount(gold_idx, minlength=len(classes)).argmax())
    uniform = np.random.default_rng(seed).integers(0, len(classes), size=len(gold_idx))
    rows = []
    for name, predicted in (("majority class", majority), ("random label", uniform)):
        def statistic(index: np.ndarray, predicted=predicted) -> np.ndarray:
            return metrics.macro_f1_rows(predicted[index], gold_idx[index], len(classes))
        f1 = metrics.macro_f1([classes[i] for i in predicted], gold)
        interval = metrics.bootstrap_interval(statistic, len(gold), bootstrap["samples"],
                                              bootstrap["confidence"], bootstrap["seed"])
        rows.append(_row(name, dataset, f1, interval, len(gold), bootstrap))
    return rows


def span_baseline(passages: list[str], references: list[str], dataset: str, bootstrap: dict, seed: int) -> dict:
    """Random-span SQuAD F1 against the first gold answer of each row."""
    rng = np.random.default_rng(seed)
    per_row = np.array([metrics.squad_f1(random_span(p, rng), ref) for p, ref in zip(passages, references)])
    interval = metrics.bootstrap_interval(lambda index: per_row[index].mean(axis=1), len(per_row),
                                          bootstrap["samples"], bootstrap["confidence"], bootstrap["seed"])
    return _row("random span", dataset, float(per_row.mean()), interval, len(per_row), bootstrap)


def dataset_baselines(test: Path, dataset: str, spec: dict, evaluation: dict, manifest: Manifest) -> list[dict]:
    """The baselines of one dataset on the rows its evaluations score."""
    rank = scoring(spec["task_type"]) == RANK
    rows_of = argparse.Namespace(test=test, dataset=dataset, fields=spec["test_fields"], labels=spec.get("labels"))
    _, rows, row_ids = select_rows(rows_of, evaluation, manifest)
    seed, bootstrap = evaluation["seed"], evaluation["bootstrap"]
    if rank:
        classes = sorted(set(spec["labels"]["map"].values()))
        return rank_baselines(gold_labels(rows, spec["labels"], str(test), row_ids), classes, dataset, bootstrap, seed)
    fields = [spec["passage"]] if isinstance(spec["passage"], str) else spec["passage"]
    passages = [" ".join(passage_texts(row, fields, f"{test}: row {i}")) for i, row in zip(row_ids, rows)]
    return [span_baseline(passages, [row["answers"]["text"][0] for row in rows], dataset, bootstrap, seed)]


def markdown(table: pd.DataFrame, titles: dict[str, str], scale: str, decimals: int) -> str:
    """Baselines as rows, datasets as columns: ``F1 [low, high]``; a dash where a baseline does not apply."""
    cells = table.assign(cell=[f"{f:.{decimals}f} [{lo:.{decimals}f}, {hi:.{decimals}f}]"
                               for f, lo, hi in zip(table.f1, table.ci_low, table.ci_high)])
    wide = cells.pivot(index="baseline", columns="dataset", values="cell")
    wide = wide.reindex(columns=list(table.dataset.unique())).fillna("--")
    wide = wide.rename(columns=titles).reset_index()
    confidence = f"{100 * table.confidence.iloc[0]:g}%"
    notes = "" if scale in COMPARABLE_SCALES else f"**{DEMO_LABEL.format(scale=scale)}**\n\n"
    return (f"F1 in percent of answers that need no model, on the evaluated test rows, with the "
            f"{confidence} bootstrap interval.\n\n{notes}" + wide.to_markdown(index=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bonito-repro baselines", description=__doc__)
    parser.add_argument("--tests", nargs="+", required=True, type=Path,
                        help="test splits, each named DATASET.parquet")
    parser.add_argument("--params", required=True,
                        help="JSON: scale, tables, evaluation, and datasets (task_type, labels, passage, title, test_fields)")
    parser.add_argument("--csv", required=True, type=Path)
    parser.add_argument("--md", required=True, type=Path)
    parser.add_argument("--manifest", required=True, type=Path)
    args = parser.parse_args(argv)
    setup_logging()
    params = parse_params(args.params)
    manifest = Manifest("baselines", params)
    rows = []
    for test in args.tests:
        dataset = test.name.removesuffix(".parquet")
        if dataset not in params["datasets"]:
            parser.error(f"--tests: {test} names dataset {dataset!r}, which --params does not describe")
        rows += dataset_baselines(test, dataset, params["datasets"][dataset], params["evaluation"], manifest)
    table = pd.DataFrame(rows, columns=COLUMNS)
    titles = {d: params["datasets"][d]["title"] for d in params["datasets"]}
    write_csv(table, args.csv)
    write_text(markdown(table, titles, params["scale"], params["tables"]["decimals"]), args.md)
    manifest.counts = {"datasets": len(args.tests), "rows": len(table)}
    manifest.write(args.manifest)
    return 0
