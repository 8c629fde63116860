"""Baselines on the rows the evaluation scores: what an F1 means beside a constant or random guess.

- majority class (yes-no QA, NLI): every row answered with the most frequent gold label of the
  evaluated rows. It knows the test distribution, so it is the best any constant answer can do;
- random label: the expected macro F1 of answering each row with a label drawn uniformly from the
  dataset's label set, computed exactly from the gold labels' counts (no draw, no seed);
- random span (extractive QA): the expected SQuAD F1 of answering with 1 to 3 consecutive words of
  the row's passage (a length drawn uniformly, then a start), exact per row: the mean over every span.
Scores as the evaluation computes them (macro F1; SQuAD token F1 against the first answer), on the
same rows (the same ``max_examples`` sample), with the same bootstrap interval over those rows (for
the expected values: the expectation on each resample of the rows). No model is loaded.
"""
from __future__ import annotations

import argparse
from math import comb
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..core import metrics
from ..core.io import Manifest, parse_params, setup_logging, write_csv, write_text
from ..core.tasks import RANK, scoring
from ..evaluate.job import select_rows
from ..evaluate.rank_classification import gold_labels
from ..evaluate.truncation import passage_texts

COLUMNS = ["baseline", "dataset", "n_examples", "f1", "ci_low", "ci_high", "confidence"]
MAX_SPAN_WORDS = 3


def spans(passage: str) -> list[list[str]]:
    """Every answer the random span can give, by length: ``spans(p)[L - 1]`` holds the spans of L
    consecutive words, for L from 1 to ``MAX_SPAN_WORDS`` (at most the passage's length)."""
    words = passage.split()
    return [[" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
            for n in range(1, min(MAX_SPAN_WORDS, len(words)) + 1)]


def expected_span_f1(passage: str, reference: str) -> float:
    """The expected SQuAD F1 of a random span of ``passage`` against ``reference``: a length
    uniform over 1 to 3 words (at most the passage's), then a start uniform over the passage."""
    by_length = spans(passage)
    if not by_length:
        return 0.0
    reference_tokens = set(metrics.normalize_answer(reference).split())
    def f1(span: str) -> float:  # a span sharing no token with the reference scores 0: skip the metric
        return metrics.squad_f1(span, reference) if reference_tokens & set(metrics.normalize_answer(span).split()) else 0.0
    return float(np.mean([np.mean([f1(span) for span in group]) for group in by_length]))


def _binomial_pmf(n: int, p: float) -> np.ndarray:
    """P(K = k) for k = 0..n, K ~ Binomial(n, p), computed in logs (no overflow at any n)."""
    if p >= 1.0:
        return np.eye(n + 1)[n]
    k = np.arange(1, n + 1)
    log_choose = np.concatenate([[0.0], np.cumsum(np.log(n - k + 1) - np.log(k))])
    return np.exp(log_choose + np.arange(n + 1) * np.log(p) + (n - np.arange(n + 1)) * np.log1p(-p))


def _expected_f1_sum(counts: np.ndarray, n_labels: int) -> float:
    """The expected sum of the per-class F1 of the classes in gold when each of the rows gets one of
    ``n_labels`` labels uniformly. A class with n gold rows and P predictions has F1 = 2 TP / (n + P),
    and given P, TP has mean P n / N (the P rows are a uniform subset of the N), so E[F1] is a sum over P."""
    total = int(counts.sum())
    predicted = np.arange(total + 1)
    pmf = _binomial_pmf(total, 1 / n_labels)
    return float(sum((pmf * 2 * predicted * n / (total * (n + predicted))).sum() for n in counts if n))


def expected_random_label_f1(counts: Sequence[int]) -> float:
    """The exact expected macro F1 (the evaluation's: over the classes seen in gold or predictions)
    of labels drawn uniformly from ``len(counts)`` classes for rows whose gold classes have these
    counts. A class absent from gold counts (with F1 0) only when predicted: with a of them, the
    expectation sums over how many stay unpredicted (inclusion-exclusion: given that t named ones
    are unpredicted, the labels are uniform over the other classes)."""
    counts = np.asarray(counts)
    n_classes, total = len(counts), int(counts.sum())
    absent = int((counts == 0).sum())
    gold = n_classes - absent
    by_empty = [((n_classes - t) / n_classes) ** total * _expected_f1_sum(counts, n_classes - t)
                for t in range(absent + 1)]  # E[F1 sum; t named absent classes unpredicted]
    return sum(comb(absent, s) / (gold + absent - s)
               * sum(comb(absent - s, t - s) * (-1) ** (t - s) * by_empty[t] for t in range(s, absent + 1))
               for s in range(absent + 1))


def _row(baseline: str, dataset: str, f1: float, interval: tuple[float, float], n: int, bootstrap: dict) -> dict:
    return {"baseline": baseline, "dataset": dataset, "n_examples": n, "f1": 100 * f1,
            "ci_low": 100 * interval[0], "ci_high": 100 * interval[1], "confidence": bootstrap["confidence"]}


def rank_baselines(gold: list[str], classes: list[str], dataset: str, bootstrap: dict) -> list[dict]:
    """Majority-class and (expected) random-label macro F1 of ``gold`` (labels among ``classes``)."""
    gold_idx = np.array([classes.index(label) for label in gold])
    majority = np.full_like(gold_idx, np.bincount(gold_idx, minlength=len(classes)).argmax())

    def majority_f1(index: np.ndarray) -> np.ndarray:
        return metrics.macro_f1_rows(majority[index], gold_idx[index], len(classes))

    def random_f1(index: np.ndarray) -> np.ndarray:
        counts = (gold_idx[index][:, :, None] == np.arange(len(classes))).sum(axis=1)
        cache: dict[tuple, float] = {}
        return np.array([cache.setdefault(tuple(c), expected_random_label_f1(c)) for c in counts])

    scored = (("majority class", metrics.macro_f1([classes[i] for i in majority], gold), majority_f1),
              ("random label", expected_random_label_f1(np.bincount(gold_idx, minlength=len(classes))), random_f1))
    return [_row(name, dataset, f1, metrics.bootstrap_interval(statistic, len(gold), bootstrap["samples"],
                                                                bootstrap["confidence"], bootstrap["seed"]),
                 len(gold), bootstrap)
            for name, f1, statistic in scored]


def span_baseline(passages: list[str], references: list[str], dataset: str, bootstrap: dict) -> dict:
    """Expected random-span SQuAD F1 against the first gold answer of each row."""
    per_row = np.array([expected_span_f1(p, ref) for p, ref in zip(passages, references)])
    interval = metrics.bootstrap_interval(lambda index: per_row[index].mean(axis=1), len(per_row),
                                          bootstrap["samples"], bootstrap["confidence"], bootstrap["seed"])
    return _row("random span", dataset, float(per_row.mean()), interval, len(per_row), bootstrap)


def dataset_baselines(test: Path, dataset: str, spec: dict, evaluation: dict, manifest: Manifest) -> list[dict]:
    """The baselines of one dataset on the rows its evaluations score."""
    rank = scoring(spec["task_type"]) == RANK
    rows_of = argparse.Namespace(test=test, dataset=dataset, fields=spec["test_fields"], labels=spec.get("labels"))
    _, rows, row_ids = select_rows(rows_of, evaluation, manifest)
    bootstrap = evaluation["bootstrap"]
    if rank:
        classes = sorted(set(spec["labels"]["map"].values()))
        return rank_baselines(gold_labels(rows, spec["labels"], str(test), row_ids), classes, dataset, bootstrap)
    fields = [spec["passage"]] if isinstance(spec["passage"], str) else spec["passage"]
    passages = [" ".join(passage_texts(row, fields, f"{test}: row {i}")) for i, row in zip(row_ids, rows)]
    return [span_baseline(passages, [row["answers"]["text"][0] for row in rows], dataset, bootstrap)]


def markdown(table: pd.DataFrame, titles: dict[str, str], data: str, decimals: int) -> str:
    """Baselines as rows, datasets as columns: ``F1 [low, high]``; a dash where a baseline does not apply."""
    cells = table.assign(cell=[f"{f:.{decimals}f} [{lo:.{decimals}f}, {hi:.{decimals}f}]"
                               for f, lo, hi in zip(table.f1, table.ci_low, table.ci_high)])
    wide = cells.pivot(index="baseline", columns="dataset", values="cell")
    wide = wide.reindex(columns=list(table.dataset.unique())).fillna("--")
    wide = wide.rename(columns=titles).reset_index()
    confidence = f"{100 * table.confidence.iloc[0]:g}%"
    return (f"F1 in percent of answers that need no model, on the evaluated test rows, with the {confidence} "
            "bootstrap interval over those rows; random label and random span: the expected F1 of a random "
            f"answer (no single draw).\n\n**{data}**\n\n" + wide.to_markdown(index=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bonito-repro baselines", description=__doc__)
    parser.add_argument("--tests", nargs="+", required=True, type=Path,
                        help="test splits, each named DATASET.parquet")
    parser.add_argument("--params", required=True,
                        help="JSON: data (the caption line naming the data), tables, evaluation, and datasets (task_type, labels, passage, title, test_fields)")
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
    write_text(markdown(table, titles, params["data"], params["tables"]["decimals"]), args.md)
    manifest.counts = {"datasets": len(args.tests), "rows": len(table)}
    manifest.write(args.manifest)
    return 0
