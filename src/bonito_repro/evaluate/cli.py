"""Evaluation of one (target, source, dataset): F1 over the dataset's five prompt templates (its
dataset file's ``templates``, passed as ``--templates``) with the paper's protocol
(docs/protocol.md, section 8, D14).

- Yes-no QA and NLI: rank classification (``rank_classification``), macro F1 and accuracy per
  template.
- Extractive QA: greedy decoding (``greedy_generation``), SQuAD v1.1 token F1 and exact match
  against the first gold answer.
Every prompt is wrapped (``plain``, ``inst``, ``io`` or ``chat``, chosen per target by the config)
and starts with BOS; prompt and answer are tokenized separately and concatenated, the answer
followed by EOS except under ``inst`` and ``chat``. A prompt longer than ``max_length`` tokens is
fitted as ``truncation`` says (docs/protocol.md, section 8.5): ``right`` keeps its first
``max_length`` tokens, as the paper's collator does; ``passage`` shortens the passage
(``--passage``, the dataset file's ``passage`` fields) so that the question and instruction after
it survive; ``fail`` stops; the manifest counts each. The table number is the mean over templates;
the median, a bootstrap interval (examples resampled, the mean over templates recomputed) and the
example count go beside it. Scores are in percent. An adapter that is a skipped adaptation's
marker (an alternative generator kept no task: bonito_repro.core.empty_sets) is not evaluated: the
result says "no tasks (0 of N kept)" in place of scores.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..core import config
from ..core.config import EVAL_DECODING_KEYS
from ..runtime.device import add_device_flag, stage_device
from ..core.empty_sets import skipped_adapter
from ..core.io import (Manifest, check_writable, parse_params, set_threads, setup_logging, write_json, write_parquet)
from ..core.prompts import ALL_WRAPPERS
from ..core.tasks import GENERATION_TASK_TYPES, GREEDY, RANK_TASK_TYPES, scoring
from .errors import EvaluationError
from .job import run

log = logging.getLogger(__name__)


def check_params(params: dict, task_type: str) -> dict:
    """Every key the job reads is there (decoding keys only for extractive QA)."""
    try:
        generation = scoring(task_type) == GREEDY
    except ValueError:  # run() names the bad task type
        generation = False
    try:
        return config.check_params(params, "evaluation", omit=() if generation else EVAL_DECODING_KEYS)
    except config.ConfigError as error:
        raise EvaluationError(str(error)) from None


def check_section(spec: dict, section: str, flag: str) -> dict:
    """A section of the dataset file (``templates``, ``test_fields``) against its schema
    (config/schema.yaml)."""
    try:
        return config.check_params(spec, section, flag=flag)
    except config.ConfigError as error:
        raise EvaluationError(str(error)) from None


def parse_passage(text: str) -> list[str]:
    """``--passage``: the dataset file's passage fields as a JSON list (null: none)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise EvaluationError(f"--passage is not valid JSON: {error}") from None
    if value is not None and not (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
        raise EvaluationError(f"--passage must be a JSON list of field paths or null, not {text}")
    return value or []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bonito-repro evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="base model directory")
    parser.add_argument("--adapter", type=Path, help="PEFT adapter directory (merged in)")
    parser.add_argument("--wrapper", required=True, choices=sorted(ALL_WRAPPERS))
    parser.add_argument("--dataset", required=True, help="dataset key (names it in the report)")
    parser.add_argument("--task-type", required=True,
                        help=f"the dataset's task type ({', '.join(RANK_TASK_TYPES + GENERATION_TASK_TYPES)})")
    parser.add_argument("--test", required=True, type=Path, help="test split parquet")
    parser.add_argument("--templates", required=True, help="the dataset file's `templates` as JSON")
    parser.add_argument("--labels", default=None, help="the dataset file's `labels` as JSON")
    parser.add_argument("--fields", required=True,
                        help="the dataset file's `test_fields` as JSON (the label field's type)")
    parser.add_argument("--passage", default="null",
                        help="the dataset file's `passage` fields as a JSON list (evaluation.truncation: passage)")
    parser.add_argument("--params", required=True, help="config `evaluation` + `seed` as JSON")
    parser.add_argument("--out", required=True, type=Path, help="scores JSON")
    parser.add_argument("--predictions", type=Path, help="per-template, per-example predictions parquet")
    parser.add_argument("--manifest", type=Path, help="manifest JSON (default: beside --out)")
    parser.add_argument("--target", help="target name for the report (default: model dir name)")
    parser.add_argument("--source", help="source name for the report (default: zero_shot without adapter)")
    parser.add_argument("--threads", type=int, default=None)
    add_device_flag(parser)
    return parser


def write_skipped(args: argparse.Namespace, skipped: dict, manifest: Manifest) -> None:
    """The result of a cell whose adaptation was skipped: no scores, the reason instead."""
    import pandas as pd

    log.warning("%s / %s / %s: %s, not evaluated", args.target, args.source, args.dataset, skipped["note"])
    write_json({"target": args.target, "source": args.source, "dataset": args.dataset,
                "task_type": args.task_type, "wrapper": args.wrapper, "no_tasks": skipped["note"],
                "generated": skipped["generated"]}, args.out)
    if args.predictions:
        write_parquet(pd.DataFrame(), args.predictions)
    manifest.counts = {"evaluated": 0}
    manifest.extra = {"no_tasks": skipped["note"]}
    manifest.write(args.manifest or args.out.with_suffix(".manifest.json"))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    stage_device(args.device, f"evaluate {args.target or args.model}/{args.source or 'zero_shot'}/{args.dataset}")
    set_threads(args.threads)
    params = check_params(parse_params(args.params), args.task_type)
    args.labels = parse_params(args.labels, "--labels") if args.labels and args.labels != "null" else None
    args.templates = check_section(parse_params(args.templates, "--templates"), "templates", "--templates")
    args.fields = check_section(parse_params(args.fields, "--fields"), "test_fields", "--fields")
    args.passage = parse_passage(args.passage)
    args.manifest = args.manifest or args.out.with_suffix(".manifest.json")
    check_writable(args.out, args.predictions, args.manifest)
    manifest = Manifest("evaluate", params=params, seed=params["seed"])
    skipped = skipped_adapter(args.adapter)
    if skipped is not None:
        write_skipped(args, skipped, manifest)
        return 0
    scores, predictions = run(args, params, manifest)
    log.info("%s / %s / %s: F1 mean %.2f (median %.2f) over %d templates, %d examples; prompts over %d "
             "tokens: %s", scores["target"], scores["source"], args.dataset, scores["mean"], scores["median"],
             len(scores["templates"]), scores["n_examples"], params["max_length"], scores["truncation"])
    write_json(scores, args.out)
    if args.predictions:
        write_parquet(predictions, args.predictions)
    manifest.write(args.manifest)
    return 0
