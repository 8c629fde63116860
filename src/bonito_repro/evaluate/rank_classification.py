"""Rank classification of yes-no QA and NLI (docs/protocol.md, section 8.2): every answer choice
of a template scored (``scoring``), the best one predicted, macro F1 and accuracy per template."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core import metrics
from ..core.schemas import canonical_label
from .encoder import PromptEncoder
from .errors import EvaluationError
from ..runtime.scoring import score_choices
from ..core.templates import EvalTemplate, TemplateError


def gold_labels(rows: Sequence[dict], labels: dict | None, path: str,
                row_ids: Sequence[int] | None = None) -> list[str]:
    """The canonical label (yes | no | maybe) of every row, through the dataset's label map;
    errors name the row by its index in the file (``row_ids``)."""
    if not labels:
        raise EvaluationError(f"{path}: rank classification needs the dataset file's `labels` "
                              "(field, map)")
    gold = []
    for i, row in zip(row_ids or range(len(rows)), rows):
        if labels["field"] not in row:
            raise EvaluationError(f"{path}: row {i} has no label field {labels['field']!r} "
                                  f"(fields: {sorted(row)})")
        label = canonical_label(row[labels["field"]], labels)
        if label is None:
            raise EvaluationError(f"{path}: row {i}: label {row[labels['field']]!r} is not in the "
                                  f"dataset's labels.map {sorted(labels['map'])}")
        gold.append(label)
    return gold


def template_gold(template: EvalTemplate, gold: Sequence[str], row_ids: Sequence[int], path: str) -> np.ndarray:
    """The index of every row's gold label among ``template``'s choices."""
    for i, label in zip(row_ids, gold):
        if label not in template.choices:
            raise TemplateError(f"{path}: row {i} has gold label {label!r}, which template "
                                f"{template.name!r} cannot answer (choices {template.choices})")
    return np.array([template.labels.index(label) for label in gold])


def score_template(model, encoder: PromptEncoder, template: EvalTemplate, rows: Sequence[dict],
                   row_ids: Sequence[int], params: dict) -> dict:
    """One template's outcome: the predicted choice index of every row and the scores of all its
    choices (plain lists, as the job keeps them between attempts)."""
    from tqdm.auto import tqdm

    answers = [encoder.answer(text) for text in template.answer_texts]
    prompts = encoder.prompts(template, rows, row_ids, params["seed"])
    with tqdm(total=len(prompts), desc=f"rank classification ({template.name})", unit="prompt") as progress:
        scores = score_choices(model, prompts, [answers] * len(rows), params["batch_tokens"],
                               pad_id=encoder.tokenizer.pad_token_id, progress=progress)
    return {"predictions": [int(np.argmax(s)) for s in scores], "scores": scores}


def rank_report(results, gold: Sequence[str], row_ids: Sequence[int], path: str):
    """Per-template scores, the bootstrap statistic and per-example records from each template's
    outcome (``results``: (template, outcome) pairs)."""
    per_template, records, arrays = {}, [], []
    for template, outcome in results:
        gold_index = template_gold(template, gold, row_ids, path)
        predictions = np.array(outcome["predictions"])
        per_template[template.name] = {
            "f1": 100 * metrics.macro_f1(predictions, gold_index),
            "accuracy": 100 * metrics.accuracy(predictions, gold_index),
            "n": len(gold_index),
        }
        arrays.append((predictions, gold_index, len(template.choices)))
        records += [{"template": template.name, "row": row, "gold": template.labels[g],
                     "prediction": template.labels[p], "correct": bool(p == g), "choice_scores": s}
                    for row, p, g, s in zip(row_ids, predictions, gold_index, outcome["scores"])]

    def statistic(index: np.ndarray) -> np.ndarray:
        return 100 * np.mean([metrics.macro_f1_rows(p[index], g[index], k) for p, g, k in arrays], axis=0)

    return per_template, statistic, records
