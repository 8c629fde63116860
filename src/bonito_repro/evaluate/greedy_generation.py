"""Extractive QA by greedy generation (docs/protocol.md, section 8.3): one greedy answer per
prompt, SQuAD v1.1 token F1 and exact match against the first gold answer."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core import metrics
from .encoder import PromptEncoder
from ..core.templates import EvalTemplate


def greedy_backend(model_dir, adapter_dir, params: dict, *, device: str):
    """The backend (``evaluation.generation_backend``, vLLM with the config's ``vllm`` settings)
    that decodes every template's prompts of a job, greedily, on ``device``."""
    from ..runtime.backends import Sampling, make_backend

    return make_backend(params["generation_backend"], model_dir, adapter_dir,
                        Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=params["max_new_tokens"]),
                        token_budget=params["batch_tokens"], max_model_len=params["max_length"] + params["max_new_tokens"],
                        seed=params["seed"], bf16=params["bf16"], device=device, progress="greedy decoding",
                        engine=params["vllm"])


def answer_template(backend, encoder: PromptEncoder, template: EvalTemplate, rows: Sequence[dict],
                    row_ids: Sequence[int], params: dict) -> dict:
    """One template's outcome: every row's greedy answer, stripped; ``row_ids`` name the rows in
    errors."""
    prompts = encoder.prompts(template, rows, row_ids, params["seed"])
    completions = backend.generate_ids(prompts, [params["seed"]] * len(prompts))
    return {"answers": [texts[0].strip() for texts in completions]}


def generation_report(results, references: Sequence[str], row_ids: Sequence[int]):
    """Per-template scores, the bootstrap statistic and per-example records from each template's
    outcome (``results``: (template, outcome) pairs)."""
    per_template, records, f1_rows = {}, [], []
    for template, outcome in results:
        texts = outcome["answers"]
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
