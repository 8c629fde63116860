"""Evaluation of one (target, source, dataset): F1 over the dataset's five prompt templates (its
dataset file's ``templates``, passed as ``--templates``) with the paper's protocol
(docs/protocol.md, section 8, D10, D11, D14).

- Yes-no QA and NLI: rank classification (``scoring``), macro F1 and accuracy per template.
- Extractive QA: greedy decoding (``decoding``), SQuAD v1.1 token F1 and exact match against the
  first gold answer.
Every prompt is wrapped (``plain``, ``inst`` or ``io``, chosen per target by the config) and
starts with BOS; prompt and answer are tokenized separately and concatenated, the answer followed
by EOS except under ``inst``; prompts longer than ``max_length`` tokens lose their end, as the
paper's collator does (counted). The table number is the mean over templates; the median, a
bootstrap interval (examples resampled, the mean over templates recomputed) and the example count
go beside it. Scores are in percent.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import metrics
from . import config
from .config import EVAL_DECODING_KEYS, ZERO_SHOT
from .eval_templates import EvalTemplate, TemplateError, load_templates, render_all
from .io import Manifest, parse_params, seeded_subset, set_threads, setup_logging, write_json, write_parquet
from .models import encode_with_bos, load_for_inference, load_tokenizer
from .prompts import WRAPPERS, wrap
from .schemas import canonical_label
from .scoring import score_choices, to_accelerator
from .tasks import GENERATION_TASK_TYPES, RANK_TASK_TYPES, task_type_code

log = logging.getLogger(__name__)


class EvaluationError(ValueError):
    """Bad input to an evaluation: the message names the file, row or key."""


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def gold_labels(rows: Sequence[dict], labels: dict | None, path: str,
                row_ids: Sequence[int] | None = None) -> list[str]:
    """The canonical label (yes | no | maybe) of every row, through the dataset's label map;
    errors name the row by its index in the file (``row_ids``)."""
    if not labels:
        raise EvaluationError(f"{path}: rank classification needs the dataset file's `labels` "
                              "(field, map, default)")
    gold = []
    for i, row in zip(row_ids or range(len(rows)), rows):
        if labels["field"] not in row:
            raise EvaluationError(f"{path}: row {i} has no label field {labels['field']!r} "
                                  f"(fields: {sorted(row)})")
        label = canonical_label(row[labels["field"]], labels)
        if label is None:
            raise EvaluationError(f"{path}: row {i}: label {row[labels['field']]!r} is not in the "
                                  f"dataset's labels.map {sorted(labels['map'])} and there is no default")
        gold.append(label)
    return gold


class PromptEncoder:
    """Token ids as the paper builds them: BOS + wrapped prompt (cut to ``max_length``), and each
    answer tokenized on its own, followed by EOS except under the ``inst`` wrapper."""

    def __init__(self, tokenizer, wrapper: str, max_length: int):
        if wrapper not in WRAPPERS:
            raise EvaluationError(f"unknown wrapper {wrapper!r}; use one of {sorted(WRAPPERS)}")
        self.tokenizer, self.wrapper, self.max_length = tokenizer, wrapper, max_length
        if tokenizer.bos_token_id is None:
            log.warning("the tokenizer has no BOS token: prompts start without one")
        self.eos = [] if wrapper == "inst" else [tokenizer.eos_token_id]
        self.truncated = 0

    def prompts(self, texts: Sequence[str]) -> list[list[int]]:
        ids = encode_with_bos(self.tokenizer, [wrap(text.strip(), self.wrapper) for text in texts])
        self.truncated += sum(len(i) > self.max_length for i in ids)
        return [i[:self.max_length] for i in ids]

    def answer(self, text: str) -> list[int]:
        return self.tokenizer(text.strip(), add_special_tokens=False)["input_ids"] + self.eos


def _template_gold(template: EvalTemplate, gold: Sequence[str], row_ids: Sequence[int], path: str) -> np.ndarray:
    for i, label in zip(row_ids, gold):
        if label not in template.choices:
            raise TemplateError(f"{path}: row {i} has gold label {label!r}, which template "
                                f"{template.name!r} cannot answer (choices {template.choices})")
    return np.array([template.labels.index(label) for label in gold])


def evaluate_rank(model, encoder: PromptEncoder, templates: Sequence[EvalTemplate], rows: Sequence[dict],
                  gold: Sequence[str], row_ids: Sequence[int], params: dict, path: str):
    """Per-template predictions (choice indices), gold indices and choice scores."""
    from tqdm.auto import tqdm

    gold_index = [_template_gold(template, gold, row_ids, path) for template in templates]
    prompts: list[list[int]] = []
    choices: list[list[list[int]]] = []
    for template in templates:
        answers = [encoder.answer(text) for text in template.answer_texts]
        prompts += encoder.prompts(render_all(template, list(rows), params["seed"]))
        choices += [answers] * len(rows)
    with tqdm(total=len(prompts), desc="rank classification", unit="prompt") as progress:
        scores = score_choices(model, prompts, choices, params["batch_tokens"],
                               pad_id=encoder.tokenizer.pad_token_id, progress=progress)
    results = []
    for t, template in enumerate(templates):
        block = scores[t * len(rows):(t + 1) * len(rows)]
        predictions = np.array([int(np.argmax(s)) for s in block])
        results.append((template, predictions, gold_index[t], block))
    return results


def evaluate_generation(model_dir, adapter_dir, encoder: PromptEncoder,
                        templates: Sequence[EvalTemplate], rows: Sequence[dict], params: dict):
    """Per-template greedy answers."""
    from .backends import greedy_texts

    prompts: list[list[int]] = []
    for template in templates:
        prompts += encoder.prompts(render_all(template, list(rows), params["seed"]))
    texts = greedy_texts(params["generation_backend"], model_dir, adapter_dir, prompts,
                         max_new_tokens=params["max_new_tokens"], token_budget=params["batch_tokens"],
                         max_model_len=params["max_length"] + params["max_new_tokens"],
                         bf16=params["bf16"], seed=params["seed"])
    return [(template, texts[t * len(rows):(t + 1) * len(rows)]) for t, template in enumerate(templates)]


def summarise(per_template: dict[str, dict], statistic, n_examples: int, bootstrap: dict) -> dict:
    """Mean (the table number) and median over templates, and the bootstrap interval of the mean."""
    f1s = [scores["f1"] for scores in per_template.values()]
    low, high = metrics.bootstrap_interval(statistic, n_examples, bootstrap["samples"],
                                           bootstrap["confidence"], bootstrap["seed"])
    return {"mean": float(np.mean(f1s)), "median": float(np.median(f1s)), "ci": [low, high],
            "confidence": bootstrap["confidence"], "bootstrap_samples": bootstrap["samples"]}


def rank_report(results, row_ids: Sequence[int]):
    per_template, records, arrays = {}, [], []
    for template, predictions, gold, scores in results:
        per_template[template.name] = {
            "f1": 100 * metrics.macro_f1(predictions, gold),
            "accuracy": 100 * metrics.accuracy(predictions, gold),
            "n": len(gold),
        }
        arrays.append((predictions, gold, len(template.choices)))
        records += [{"template": template.name, "row": row, "gold": template.labels[g],
                     "prediction": template.labels[p], "correct": bool(p == g), "choice_scores": s}
                    for row, p, g, s in zip(row_ids, predictions, gold, scores)]

    def statistic(index: np.ndarray) -> np.ndarray:
        return 100 * np.mean([metrics.macro_f1_rows(p[index], g[index], k) for p, g, k in arrays], axis=0)

    return per_template, statistic, records


def generation_report(results, references: Sequence[str], row_ids: Sequence[int]):
    per_template, records, f1_rows = {}, [], []
    for template, texts in results:
        f1 = np.array([metrics.squad_f1(t, [r]) for t, r in zip(texts, references)])
        em = np.array([metrics.squad_exact_match(t, [r]) for t, r in zip(texts, references)])
        per_template[template.name] = {"f1": 100 * float(f1.mean()), "exact_match": 100 * float(em.mean()),
                                       "n": len(texts)}
        f1_rows.append(f1)
        records += [{"template": template.name, "row": row, "gold": ref, "prediction": text,
                     "f1": float(f), "exact_match": bool(e)}
                    for row, ref, text, f, e in zip(row_ids, references, texts, f1, em)]

    def statistic(index: np.ndarray) -> np.ndarray:
        return 100 * np.mean([f[index].mean(axis=1) for f in f1_rows], axis=0)

    return per_template, statistic, records


def check_params(params: dict, task_type: str) -> dict:
    """Every key the job reads is there (decoding keys only for extractive QA)."""
    try:
        generation = task_type_code(task_type) in GENERATION_TASK_TYPES
    except ValueError:  # run() names the bad task type
        generation = False
    try:
        return config.check_params(params, "evaluation", omit=() if generation else EVAL_DECODING_KEYS)
    except config.ConfigError as error:
        raise EvaluationError(str(error)) from None


def check_templates(spec: dict) -> dict:
    """The dataset file's ``templates`` entry against its schema (config/schema.yaml)."""
    try:
        return config.check_params(spec, "templates", flag="--templates")
    except config.ConfigError as error:
        raise EvaluationError(str(error)) from None


def run(args: argparse.Namespace, params: dict, manifest: Manifest) -> tuple[dict, pd.DataFrame]:
    """The scores and the per-example predictions of one evaluation job."""
    try:
        task_type = task_type_code(args.task_type)
    except ValueError as error:
        raise EvaluationError(f"datasets.{args.dataset}.task_type: {error}") from None
    if task_type not in RANK_TASK_TYPES + GENERATION_TASK_TYPES:
        raise EvaluationError(f"datasets.{args.dataset}.task_type: cannot evaluate {task_type!r} "
                              f"(rank: {RANK_TASK_TYPES}, generation: {GENERATION_TASK_TYPES})")
    templates = load_templates(args.templates, f"--templates of {args.dataset}")
    rank = task_type in RANK_TASK_TYPES
    if rank != (templates[0].choices is not None):
        raise EvaluationError(f"--templates of {args.dataset}: the dataset is {task_type!r} but its "
                              f"templates {'lack' if rank else 'have'} answer choices")
    path = str(args.test)
    all_rows = read_rows(args.test)
    kept = seeded_subset(len(all_rows), params["max_examples"], params["seed"])
    manifest.drop("beyond_max_examples", len(all_rows) - len(kept))
    rows = [all_rows[i] for i in kept]
    if not rank:  # the paper scores against the first gold answer only
        answered = [i for i, row in zip(kept, rows) if (row.get("answers") or {}).get("text")]
        manifest.drop("no_gold_answer", len(kept) - len(answered))
        kept, rows = answered, [all_rows[i] for i in answered]
    if not rows:
        raise EvaluationError(f"{path}: no test rows left to evaluate")

    timings: dict[str, float] = {}
    started = time.time()
    tokenizer = load_tokenizer(args.model)
    encoder = PromptEncoder(tokenizer, args.wrapper, params["max_length"])
    if rank:
        gold = gold_labels(rows, args.labels, path, kept)
        model = to_accelerator(load_for_inference(args.model, args.adapter, bf16=params["bf16"]))
        timings["load_seconds"] = time.time() - started
        started = time.time()
        results = evaluate_rank(model, encoder, templates, rows, gold, kept, params, path)
        per_template, statistic, records = rank_report(results, kept)
    else:
        references = [row["answers"]["text"][0] for row in rows]
        results = evaluate_generation(args.model, args.adapter, encoder, templates, rows, params)
        per_template, statistic, records = generation_report(results, references, kept)
    timings["inference_seconds"] = time.time() - started
    summary = summarise(per_template, statistic, len(rows), params["bootstrap"])
    manifest.counts = {"test_rows": len(all_rows), "evaluated": len(rows), "templates": len(templates),
                       "prompts": len(rows) * len(templates), "truncated_prompts": encoder.truncated}
    manifest.extra = {"timings": {k: round(v, 3) for k, v in timings.items()}}
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
        "n_examples": len(rows),
        "truncated_prompts": encoder.truncated,
        "templates": per_template,
        "mean": summary["mean"],
        "median": summary["median"],
        "ci": summary["ci"],
        "confidence": summary["confidence"],
        "bootstrap_samples": summary["bootstrap_samples"],
    }, pd.DataFrame.from_records(records)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bonito_repro evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="base model directory")
    parser.add_argument("--adapter", type=Path, help="PEFT adapter directory (merged in)")
    parser.add_argument("--wrapper", required=True, choices=sorted(WRAPPERS))
    parser.add_argument("--dataset", required=True, help="dataset key (names it in the report)")
    parser.add_argument("--task-type", required=True, help="the dataset's task type (ynqa, nli, exqa)")
    parser.add_argument("--test", required=True, type=Path, help="test split parquet")
    parser.add_argument("--templates", required=True, help="the dataset file's `templates` as JSON")
    parser.add_argument("--labels", default=None, help="the dataset file's `labels` as JSON")
    parser.add_argument("--params", required=True, help="config `evaluation` + `seed` as JSON")
    parser.add_argument("--out", required=True, type=Path, help="scores JSON")
    parser.add_argument("--predictions", type=Path, help="per-template, per-example predictions parquet")
    parser.add_argument("--manifest", type=Path, help="manifest JSON (default: beside --out)")
    parser.add_argument("--target", help="target name for the report (default: model dir name)")
    parser.add_argument("--source", help="source name for the report (default: zero_shot without adapter)")
    parser.add_argument("--threads", type=int, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    params = check_params(parse_params(args.params), args.task_type)
    args.labels = parse_params(args.labels, "--labels") if args.labels and args.labels != "null" else None
    args.templates = check_templates(parse_params(args.templates, "--templates"))
    manifest = Manifest("evaluate", params=params, seed=params["seed"])
    scores, predictions = run(args, params, manifest)
    log.info("%s / %s / %s: F1 mean %.2f (median %.2f) over %d templates, %d examples",
             scores["target"], scores["source"], args.dataset, scores["mean"], scores["median"],
             len(scores["templates"]), scores["n_examples"])
    write_json(scores, args.out)
    if args.predictions:
        write_parquet(predictions, args.predictions)
    manifest.write(args.manifest or args.out.with_suffix(".manifest.json"))
    return 0
