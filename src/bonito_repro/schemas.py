"""The row schemas of the target data, in one table, and the check that enforces them.

Unannotated text (``BatsResearch/bonito-experiment``, configs ``unannotated_<key>``, split
``train``): one column, ``input``, one passage a row (the dataset card, PR #2 on the Hub: "each
context of dataset x"; the generated configs' ``dataset_info.json``, e.g.
``zephyr_beta_vitaminc/``, lists ``input`` and ``output``).

Test splits (``BatsResearch/bonito-experiment-eval``, config ``<key>``, split ``test``). The Hub
files themselves could not be read here (no network); each field below was confirmed in public
source that reads those rows, as noted per dataset:

- ``pubmed_qa``: ``question``, ``context.contexts`` (list joined with spaces) and
  ``final_decision`` are what the five templates read (BatsResearch/nayak-aclfindings24-code,
  ``templates/templates/pubmed_qa.py``, which names ``BatsResearch/bonito-experiment-eval`` /
  ``pubmed_qa``). ``pubid``, ``long_answer`` and ``context.labels`` / ``context.meshes`` are the
  other fields of PubMedQA's ``pqa_labeled`` (promptsource ``pubmed_qa/pqa_labeled`` templates read
  them); that the eval config keeps them is NOT confirmed, so ``pubid`` and ``long_answer`` are
  optional and the other ``context`` fields are not checked.
- ``privacy_qa``: ``question``, ``text`` (the policy sentence) and ``answer`` (``Relevant`` /
  ``Irrelevant``) are what the five templates read (same repository,
  ``templates/templates/privacy_policy_qa.py``). Other columns of the config: not confirmed.
- ``squadshifts_*``: ``id``, ``title``, ``context``, ``question``, ``answers`` {``text``: list,
  ``answer_start``: list of int}, the schema of the Hub ``squadshifts`` dataset that the released
  evaluation script actually loads (same repository, ``evaluation/merge_and_evaluate_squad.py``:
  reads ``context``, ``question`` through promptsource and ``answers["text"][0]`` as the
  reference; promptsource ``squadshifts/{nyt,amazon}`` templates read ``context``, ``question``,
  ``answers.text``). That the ``squadshifts_*`` eval configs (added 26 Feb 2024) keep exactly this
  schema is NOT confirmed, so ``id`` and ``title``, which no evaluation template reads, are
  optional.
- ``contract_nli``: ``premise``, ``hypothesis`` and an integer ``label`` indexing the answer
  choices ``No ||| Yes ||| Maybe`` (same repository, ``templates/templates/contract_nli.py``:
  ``answer_choices[label]``), i.e. 0 contradiction, 1 entailment, 2 neutral, the label order
  ``["contradiction", "entailment", "neutral"]`` of the Hub loader ``kiddothe2b/contract-nli``.
- ``vitaminc``: ``claim``, ``evidence`` and a string ``label`` (``SUPPORTS``, ``REFUTES``, any
  other value read as not enough info) (same repository, ``templates/templates/vitaminc.py``).
  ``unique_id``, ``case_id``, ``page`` and ``revision`` are the other string fields of
  ``tals/vitaminc``; that the eval config keeps them is NOT confirmed, so they are optional.

Required fields are the ones the evaluation templates read; they must be present and non-null in
every row. Optional fields are other known fields of the source, checked only where present.
Types: ``str``, ``int``, ``list[str]``, ``list[int]``, or a dict for a struct (its fields
required).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Union

FieldType = Union[str, Mapping[str, "FieldType"]]

UNANNOTATED_FIELDS: dict[str, FieldType] = {"input": "str"}

_SQUAD = {
    "required": {"context": "str", "question": "str",
                 "answers": {"text": "list[str]", "answer_start": "list[int]"}},
    "optional": {"id": "str", "title": "str"},
    "source": "HF squadshifts schema read by evaluation/merge_and_evaluate_squad.py",
}


@dataclass(frozen=True)
class SplitSchema:
    """Fields of one dataset's test split: required ones, optional known ones, and the field
    that holds the gold label (None for extractive QA, whose gold is ``answers``)."""

    required: dict[str, FieldType]
    source: str
    optional: dict[str, FieldType] = field(default_factory=dict)
    label: str | None = None


TEST_SCHEMAS: dict[str, SplitSchema] = {
    "pubmed_qa": SplitSchema(
        required={"question": "str", "context": {"contexts": "list[str]"},
                  "final_decision": "str"},
        optional={"pubid": "int", "long_answer": "str"},
        label="final_decision",
        source="templates/templates/pubmed_qa.py (BatsResearch/nayak-aclfindings24-code)"),
    "privacy_qa": SplitSchema(
        required={"question": "str", "text": "str", "answer": "str"},
        label="answer",
        source="templates/templates/privacy_policy_qa.py (BatsResearch/nayak-aclfindings24-code)"),
    "squadshifts_nyt": SplitSchema(**_SQUAD),
    "squadshifts_amazon": SplitSchema(**_SQUAD),
    "squadshifts_reddit": SplitSchema(**_SQUAD),
    "contract_nli": SplitSchema(
        required={"premise": "str", "hypothesis": "str", "label": "int"},
        label="label",
        source="templates/templates/contract_nli.py (BatsResearch/nayak-aclfindings24-code)"),
    "vitaminc": SplitSchema(
        required={"claim": "str", "evidence": "str", "label": "str"},
        optional={"unique_id": "str", "case_id": "str", "page": "str", "revision": "str"},
        label="label",
        source="templates/templates/vitaminc.py (BatsResearch/nayak-aclfindings24-code)"),
}


class SchemaError(ValueError):
    """A row does not match the schema of its dataset; the message names file, row and field."""


def type_problem(value: Any, expected: FieldType, name: str) -> str | None:
    """Why ``value`` is not of type ``expected`` (naming the nested field), or None if it is."""
    if isinstance(expected, Mapping):
        if not isinstance(value, Mapping):
            return f"field {name!r}: expected a struct with {sorted(expected)}, got {_show(value)}"
        for sub, sub_type in expected.items():
            if value.get(sub) is None:
                return f"field {name + '.' + sub!r}: missing"
            problem = type_problem(value[sub], sub_type, f"{name}.{sub}")
            if problem:
                return problem
        return None
    if expected.startswith("list["):
        if not isinstance(value, list):
            return f"field {name!r}: expected {expected}, got {_show(value)}"
        for i, item in enumerate(value):
            problem = type_problem(item, expected[5:-1], f"{name}[{i}]")
            if problem:
                return problem
        return None
    # bool is an int subclass in Python, but never a valid label or offset
    ok = isinstance(value, str) if expected == "str" else (
        isinstance(value, int) and not isinstance(value, bool))
    return None if ok else f"field {name!r}: expected {expected}, got {_show(value)}"


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _answers_problem(answers: Mapping) -> str | None:
    texts, starts = answers["text"], answers["answer_start"]
    if not texts:
        return "field 'answers.text': no gold answer (evaluation reads the first)"
    if len(texts) != len(starts):
        return (f"field 'answers': {len(texts)} texts but {len(starts)} answer_start values")
    return None


def fields_for(dataset: str, kind: str) -> tuple[dict[str, FieldType], dict[str, FieldType]]:
    """(required, optional) fields of ``kind`` rows ("unannotated" or "test") of ``dataset``."""
    if kind == "unannotated":
        return UNANNOTATED_FIELDS, {}
    if kind != "test":
        raise ValueError(f"unknown kind {kind!r}; use 'unannotated' or 'test'")
    if dataset not in TEST_SCHEMAS:
        raise SchemaError(f"no test schema for dataset {dataset!r}; the schema table "
                          f"(bonito_repro.schemas.TEST_SCHEMAS) knows {sorted(TEST_SCHEMAS)}")
    schema = TEST_SCHEMAS[dataset]
    return schema.required, schema.optional


def label_key(value: Any) -> str:
    """Config label maps are keyed by strings; integer labels (ContractNLI) match by their text."""
    return str(value)


def canonical_label(value: Any, labels: Mapping) -> str | None:
    """The canonical choice (yes | no | maybe) of a raw label, or None if the map has none."""
    return labels["map"].get(label_key(value), labels.get("default"))


def validate_rows(rows: Iterable[Mapping], dataset: str, kind: str, path: str,
                  labels: Mapping | None = None, columns: Iterable[str] | None = None) -> int:
    """Check every row of ``kind`` for ``dataset`` against the schema table; return the row count.

    ``path`` names the file (or Hub config) in errors, with the 0-based row index and the field.
    ``labels`` is the dataset's config ``labels`` section: each row's ``labels.field`` value must
    be a key of ``labels.map`` unless ``labels.default`` is set. ``columns`` (the source's column
    names) lets a missing column be reported once, with the columns found.
    Unannotated rows may hold a null or blank ``input``: the data stage drops and counts those.
    """
    required, optional = fields_for(dataset, kind)
    label_field = None
    if kind == "test" and TEST_SCHEMAS[dataset].label:
        expected = TEST_SCHEMAS[dataset].label
        if not labels or labels["field"] != expected:
            raise SchemaError(f"config datasets.{dataset}.labels: the test rows hold their label "
                              f"in {expected!r}; set labels.field to it and map its values")
        label_field = expected
    if columns is not None:
        columns = list(columns)
        missing = [f for f in [*required, *([label_field] if label_field else [])]
                   if f not in columns]
        if missing:
            raise SchemaError(f"{path}: {kind} rows of {dataset!r} need column(s) {missing}; "
                              f"columns found: {columns}")
    n = 0
    for i, row in enumerate(rows):
        problem = _row_problem(row, kind, required, optional, label_field, labels)
        if problem:
            raise SchemaError(f"{path}: row {i} (0-based): {problem}")
        n += 1
    return n


def _row_problem(row: Mapping, kind: str, required: Mapping, optional: Mapping,
                 label_field: str | None, labels: Mapping | None) -> str | None:
    for name, expected in required.items():
        value = row.get(name)
        if value is None:
            if kind == "unannotated":
                continue
            return f"field {name!r}: missing"
        problem = type_problem(value, expected, name)
        if problem:
            return problem
    for name, expected in optional.items():
        if row.get(name) is not None:
            problem = type_problem(row[name], expected, name)
            if problem:
                return problem
    if "answers" in required:
        problem = _answers_problem(row["answers"])
        if problem:
            return problem
    if label_field:
        value = row.get(label_field)
        if value is None:
            return f"field {label_field!r}: missing label"
        if canonical_label(value, labels) is None:
            return (f"field {label_field!r}: label {value!r} is not in the config's label map "
                    f"{sorted(labels['map'])} and the map has no default")
    return None
