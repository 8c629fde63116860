"""The 16 task types of ctga-v1 and the Bonito package (SHORTFORM_TO_FULL_TASK_TYPES), and the
registry of what the workflow does with each (``TASK_TYPE_SPECS``): how evaluation scores it, if at
all, and which of the paper's datasets lends a user's labelled set of that type its schema and
templates. Code looks a task type up here; it never matches codes as strings.

Giving a type F1: its entry here, its template dataset's file (data/datasets) and, for a template
dataset of a new schema, how a user's test row is written in it (workflow.corpus.TEST_ROW);
tests/test_registries.py holds each to the others and to evaluation."""
from __future__ import annotations

from dataclasses import dataclass

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


RANK = "rank"        # rank classification over the templates' answer choices (yes-no QA, NLI)
GREEDY = "greedy"    # greedy generation scored against the gold answer (extractive QA)


@dataclass(frozen=True)
class TaskType:
    """What the workflow does with one task type (docs/protocol.md, section 8)."""

    code: str
    name: str
    scoring: str | None = None             # RANK or GREEDY: evaluated with F1; None: never evaluated
    template_dataset: str | None = None    # the paper's dataset whose schema, label map and templates a
                                           # user's labelled set of this type takes (corpus)
    test_roles: tuple[str, ...] = ()       # the test-row fields a user names in their own rows
    labelled: bool = False                 # tasks answer with a label word (yes / no / maybe)
    extractive: bool = False               # a task's response should be a span of its passage


TASK_TYPE_SPECS: dict[str, TaskType] = {code: TaskType(code, name) for code, name in TASK_TYPES.items()}
TASK_TYPE_SPECS.update(
    ynqa=TaskType("ynqa", TASK_TYPES["ynqa"], scoring=RANK, template_dataset="pubmed_qa",
                  test_roles=("passage", "question", "label"), labelled=True),
    nli=TaskType("nli", TASK_TYPES["nli"], scoring=RANK, template_dataset="contract_nli",
                 test_roles=("premise", "hypothesis", "label"), labelled=True),
    exqa=TaskType("exqa", TASK_TYPES["exqa"], scoring=GREEDY, template_dataset="squadshifts_nyt",
                  test_roles=("context", "question", "answer"), extractive=True),
)


def task_type_spec(task_type: str) -> TaskType:
    """The registry entry of a task type given by code or full name (ValueError if unknown)."""
    return TASK_TYPE_SPECS[task_type_code(task_type)]


def scoring(task_type: str) -> str | None:
    """How a dataset of this task type is scored: RANK, GREEDY, or None (no F1)."""
    return task_type_spec(task_type).scoring


# The task types a dataset can be evaluated as, by how
RANK_TASK_TYPES = tuple(code for code, spec in TASK_TYPE_SPECS.items() if spec.scoring == RANK)
GENERATION_TASK_TYPES = tuple(code for code, spec in TASK_TYPE_SPECS.items() if spec.scoring == GREEDY)
