"""One evaluation job: the test rows it scores, the scores of every template, and the result
record with the table number (the mean over templates), the median and the bootstrap interval."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..core import metrics
from ..core.sources import ZERO_SHOT
from ..core.io import Manifest, read_parquet, seeded_subset
from ..runtime.models import load_for_inference, load_tokenizer
from ..core.schemas import validate_rows
from ..core.tasks import GENERATION_TASK_TYPES, RANK, RANK_TASK_TYPES, scoring, task_type_code
from .encoder import PromptEncoder
from .errors import EvaluationError
from .greedy_generation import evaluate_generation, generation_report
from .rank_classification import evaluate_rank, gold_labels, rank_report
from ..core.templates import EvalTemplate, load_templates

# per-template scores, the bootstrap statistic over resampled examples, per-example records
Report = tuple[dict[str, dict], Callable[[np.ndarray], np.ndarray], list[dict]]


def summarise(per_template: dict[str, dict], statistic, n_examples: int, bootstrap: dict) -> dict:
    """Mean (the table number) and median over templates, and the bootstrap interval of the mean."""
    f1s = [scores["f1"] for scores in per_template.values()]
    low, high = metrics.bootstrap_interval(statistic, n_examples, bootstrap["samples"],
                                           bootstrap["confidence"], bootstrap["seed"])
    return {"mean": float(np.mean(f1s)), "median": float(np.median(f1s)), "ci": [low, high],
            "confidence": bootstrap["confidence"], "bootstrap_samples": bootstrap["samples"]}


def task_and_templates(args: argparse.Namespace) -> tuple[str, list[EvalTemplate]]:
    """The dataset's task type (its code) and its templates, which must fit it: answer choices for
    rank classification, none for generation."""
    try:
        task_type = task_type_code(args.task_type)
    except ValueError as error:
        raise EvaluationError(f"datasets.{args.dataset}.task_type: {error}") from None
    if scoring(task_type) is None:
        raise EvaluationError(f"datasets.{args.dataset}.task_type: cannot evaluate {task_type!r} "
                              f"(rank: {RANK_TASK_TYPES}, generation: {GENERATION_TASK_TYPES})")
    templates = load_templates(args.templates, args.labels, args.fields, f"--templates of {args.dataset}")
    rank = scoring(task_type) == RANK
    if rank != (templates[0].choices is not None):
        raise EvaluationError(f"--templates of {args.dataset}: the dataset is {task_type!r} but its "
                              f"templates {'lack' if rank else 'have'} answer choices")
    return task_type, templates


def select_rows(args: argparse.Namespace, params: dict, manifest: Manifest) -> tuple[int, list[dict], list[int]]:
    """(rows in the file, the rows evaluated, their indices in the file): a seeded sample of
    ``max_examples``, the drop counted. Every row is first checked against the dataset's test
    fields, as the data stage checks them (an extractive-QA row has a gold answer): a template
    would render a missing field as nothing and score prompts without it."""
    path = args.test
    table = read_parquet(path)
    all_rows = table.to_pylist()
    validate_rows(all_rows, args.dataset, "test", str(path), test_fields=args.fields, labels=args.labels,
                  columns=table.column_names)
    kept = seeded_subset(len(all_rows), params["max_examples"], params["seed"])
    manifest.drop("beyond_max_examples", len(all_rows) - len(kept))
    if not kept:
        raise EvaluationError(f"{path}: no test rows to evaluate")
    return len(all_rows), [all_rows[i] for i in kept], kept


def score(args: argparse.Namespace, params: dict, templates: list[EvalTemplate], rows: list[dict],
          row_ids: list[int], rank: bool) -> tuple[Report, dict[str, int], dict[str, float]]:
    """Every template's scores with the statistic and per-example records, the counts of prompts
    over max_length and of the tokens cut from them (``PromptEncoder.counts``), and the seconds
    spent loading (rank classification) and on inference."""
    timings: dict[str, float] = {}
    started = time.time()
    encoder = PromptEncoder(load_tokenizer(args.model), args.wrapper, params["max_length"], params["truncation"],
                            dataset=args.dataset, passage=args.passage)
    if rank:
        gold = gold_labels(rows, args.labels, str(args.test), row_ids)
        model = load_for_inference(args.model, args.adapter, bf16=params["bf16"]).to(args.device)
        timings["load_seconds"] = time.time() - started
        started = time.time()
        report = rank_report(evaluate_rank(model, encoder, templates, rows, gold, row_ids, params, str(args.test)),
                             row_ids)
    else:
        references = [row["answers"]["text"][0] for row in rows]
        results = evaluate_generation(args.model, args.adapter, encoder, templates, rows, row_ids, params,
                                      device=args.device)
        report = generation_report(results, references, row_ids)
    timings["inference_seconds"] = time.time() - started
    return report, encoder.counts, timings


def result_record(args: argparse.Namespace, params: dict, task_type: str, n_examples: int,
                  truncation: dict[str, int], per_template: dict[str, dict], summary: dict) -> dict:
    """The evaluation's result: what was evaluated and how (the truncation mode with its counts),
    per-template scores and the summary."""
    rank = scoring(task_type) == RANK
    return {
        "target": args.target or Path(args.model).name,
        "source": args.source or (ZERO_SHOT if args.adapter is None else Path(args.adapter).name),
        "dataset": args.dataset,
        "task_type": task_type,
        "method": "rank_classification" if rank else f"greedy_generation ({params['generation_backend']})",
        "wrapper": args.wrapper,
        "model": str(args.model),
        "adapter": None if args.adapter is None else str(args.adapter),
        "metric": "f1",
        "unit": "percent",
        "n_examples": n_examples,
        "truncation": {"mode": params["truncation"], **truncation},
        "templates": per_template,
        **summary,
    }


def run(args: argparse.Namespace, params: dict, manifest: Manifest) -> tuple[dict, pd.DataFrame]:
    """The scores and the per-example predictions of one evaluation job."""
    task_type, templates = task_and_templates(args)
    rank = scoring(task_type) == RANK
    n_rows, rows, row_ids = select_rows(args, params, manifest)
    (per_template, statistic, records), truncation, timings = score(args, params, templates, rows, row_ids, rank)
    summary = summarise(per_template, statistic, len(rows), params["bootstrap"])
    manifest.counts = {"test_rows": n_rows, "evaluated": len(rows), "templates": len(templates),
                       "prompts": len(rows) * len(templates), **truncation}
    manifest.extra = {"timings": {k: round(v, 3) for k, v in timings.items()}}
    record = result_record(args, params, task_type, len(rows), truncation, per_template, summary)
    return record, pd.DataFrame.from_records(records)
