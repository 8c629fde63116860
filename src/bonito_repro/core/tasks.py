"""The 16 task types of ctga-v1 and the Bonito package (SHORTFORM_TO_FULL_TASK_TYPES)."""
from __future__ import annotations

TASK_TYPES: dict[str, str] = {
    "exqa": "extractive question answering",
    "mcqa": "multiple-choice question answering",
    "qg": "question generation",
    "qa": "question answering without choices",
    "ynqa": "yes-no question answering",
    "coref": "coreference resolution",
    "paraphrase": "paraphrase generation",
    "paraphrase_id": "paraphrase identification",
    "sent_comp": "sentence completion",
    "sentiment": "sentiment",
    "summarization": "summarization",
    "text_gen": "text generation",
    "topic_class": "topic classification",
    "wsd": "word sense disambiguation",
    "te": "textual entailment",
    "nli": "natural language inference",
}
_FULL_TO_CODE = {full: code for code, full in TASK_TYPES.items()}


def task_type_name(task_type: str) -> str:
    """Full task-type name for a short code or a full name; anything else raises ValueError."""
    if task_type in TASK_TYPES:
        return TASK_TYPES[task_type]
    if task_type in _FULL_TO_CODE:
        return task_type
    raise ValueError(f"unknown task type {task_type!r}; use one of the codes {sorted(TASK_TYPES)} "
                     f"or their full names")


def task_type_code(task_type: str) -> str:
    """Short code for a short code or a full name."""
    return _FULL_TO_CODE[task_type_name(task_type)]


# The task types a dataset can be evaluated as (docs/protocol.md, section 8): rank classification
# over its templates' answer choices, or greedy generation scored against the gold answer.
RANK_TASK_TYPES = ("ynqa", "nli")
GENERATION_TASK_TYPES = ("exqa",)
