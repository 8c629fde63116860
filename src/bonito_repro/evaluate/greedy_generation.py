"""Extractive QA by greedy generation (docs/protocol.md, section 8.3): one greedy answer per
prompt, SQuAD v1.1 token F1 and exact match against the first gold answer."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core import metrics
from .encoder import PromptEncoder
from ..core.templates import EvalTemplate


def evaluate_generation(model_dir, adapter_dir, encoder: PromptEncoder, templates: Sequence[EvalTemplate],
                        rows: Sequence[dict], row_ids: Sequence[int], params: dict, *, device: str):
    """Per-template greedy answers, stripped, computed on ``device``; ``row_ids`` name the rows
    in errors."""
    from ..runtime.backends import greedy_texts

    prompts: list[list[int]] = []
    for template in templates:
        prompts += encoder.prompts(template, rows, row_ids, params["seed"])
    texts = greedy_texts(params["generation_backend"], model_dir, adapter_dir, prompts,
                         max_new_tokens=params["max_new_tokens"], token_budget=params["batch_tokens"],
                         max_model_len=params["max_length"] + params["max_new_tokens"],
                         bf16=params["bf16"], seed=params["seed"], device=device, engine=params["vllm"])
    texts = [text.strip() for text in texts]
    return [(template, texts[t * len(rows):(t + 1) * len(rows)]) for t, template in enumerate(templates)]


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
