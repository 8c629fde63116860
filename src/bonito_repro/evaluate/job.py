"""One evaluation job: the test rows it scores, the scores of every template, and the result
record with the table number (the mean over templates), the median and the bootstrap interval."""
from __future__ import annotations

import argparse
import logging
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
from ..core.stopping import Stopped, sigterm_deferred, stop_on_sigterm
from ..core.tasks import GENERATION_TASK_TYPES, RANK, RANK_TASK_TYPES, scoring, task_type_code
from .encoder import TRUNCATION_COUNTS, PromptEncoder
from .errors import EvaluationError
from .greedy_generation import answer_template, generation_report, greedy_backend
from .progress import TemplateProgress
from .rank_classification import gold_labels, rank_report, score_template, template_gold
from ..core.templates import EvalTemplate, load_templates

log = logging.getLogger(__name__)

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


def progress_of(args: argparse.Namespace, params: dict) -> TemplateProgress:
    """Where this job keeps its finished templates (``--progress``), keyed by all that shapes them."""
    values = {"params": params, "device": args.device,
              **{k: getattr(args, k) for k in ("wrapper", "dataset", "task_type", "templates", "labels", "fields",
                                               "passage")}}
    return TemplateProgress(args.progress, values, [args.model, args.adapter, args.test])


def template_scorer(args: argparse.Namespace, params: dict, encoder: PromptEncoder, rows: list[dict],
                    row_ids: list[int], rank: bool) -> tuple[Callable[[EvalTemplate], dict], Callable[[], None]]:
    """The model loaded once (for rank classification, or as the greedy-decoding backend), as a
    function from a template to its outcome, and what closes it."""
    if rank:
        model = load_for_inference(args.model, args.adapter, bf16=params["bf16"]).to(args.device)
        return (lambda template: score_template(model, encoder, template, rows, row_ids, params)), (lambda: None)
    backend = greedy_backend(args.model, args.adapter, params, device=args.device)
    return ((lambda template: answer_template(backend, encoder, template, rows, row_ids, params)),
            getattr(backend, "close", lambda: None))


def score(args: argparse.Namespace, params: dict, templates: list[EvalTemplate], rows: list[dict],
          row_ids: list[int], rank: bool, progress: TemplateProgress) -> tuple[Report, dict[str, int], dict]:
    """Every template's scores with the statistic and per-example records, the counts of prompts
    over max_length and of the tokens cut from them (``PromptEncoder.counts``), and the timings:
    seconds spent loading (the model, if any template is left to score) and on inference. Each
    template is scored on its own and kept in ``progress`` as soon as it is done; a SIGTERM stops
    the job, losing at most the template being scored."""
    timings: dict[str, float] = {}
    started = time.time()
    encoder = PromptEncoder(load_tokenizer(args.model), args.wrapper, params["max_length"], params["truncation"],
                            dataset=args.dataset, passage=args.passage)
    gold = gold_labels(rows, args.labels, str(args.test), row_ids) if rank else []
    for template in templates if rank else ():  # a template that cannot answer a row stops before any model loads
        template_gold(template, gold, row_ids, str(args.test))
    outcomes = {i: progress.load(i, t.name) for i, t in enumerate(templates)}
    pending = [i for i, outcome in outcomes.items() if outcome is None]
    if len(pending) < len(templates):
        log.info("%d of %d templates were finished by an earlier attempt (%s)", len(templates) - len(pending),
                 len(templates), args.progress)
    if pending:
        scorer, close = template_scorer(args, params, encoder, rows, row_ids, rank)
        timings["load_seconds"] = time.time() - started
        started = time.time()
        try:
            with stop_on_sigterm():
                for i in pending:
                    before = dict(encoder.counts)
                    outcome = scorer(templates[i])
                    outcome["truncation"] = {k: encoder.counts[k] - before[k] for k in TRUNCATION_COUNTS}
                    with sigterm_deferred():  # kept and counted, or neither
                        progress.save(i, templates[i].name, outcome)
                        outcomes[i] = outcome
        except Stopped as stop:
            done = sum(outcome is not None for outcome in outcomes.values())
            kept = f"kept in {args.progress}; a rerun scores the rest" if args.progress else "not kept (no --progress)"
            raise Stopped(f"{stop}: {done} of {len(templates)} templates are finished, {kept}") from None
        finally:
            close()
    timings["inference_seconds"] = time.time() - started
    truncation = {k: sum(outcome["truncation"][k] for outcome in outcomes.values()) for k in TRUNCATION_COUNTS}
    results = [(template, outcomes[i]) for i, template in enumerate(templates)]
    if rank:
        report = rank_report(results, gold, row_ids, str(args.test))
    else:
        report = generation_report(results, [row["answers"]["text"][0] for row in rows], row_ids)
    return report, truncation, timings


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
    progress = progress_of(args, params)
    (per_template, statistic, records), truncation, timings = score(args, params, templates, rows, row_ids, rank,
                                                                    progress)
    summary = summarise(per_template, statistic, len(rows), params["bootstrap"])
    manifest.counts = {"test_rows": n_rows, "evaluated": len(rows), "templates": len(templates),
                       "prompts": len(rows) * len(templates), **truncation}
    manifest.extra = {"timings": {k: round(v, 3) for k, v in timings.items()},
                      "templates_from_an_earlier_attempt": progress.reused}
    record = result_record(args, params, task_type, len(rows), truncation, per_template, summary)
    return record, pd.DataFrame.from_records(records)
