"""The row schemas of the target data and the check that enforces them.

Unannotated text (``BatsResearch/bonito-experiment``, configs ``unannotated_<key>``, split
``train``): one column, ``input``, one passage a row (the dataset card, PR #2 on the Hub: "each
context of dataset x"; the generated configs' ``dataset_info.json``, e.g.
``zephyr_beta_vitaminc/``, lists ``input`` and ``output``).

Test splits: each dataset file's ``test_fields`` (``data/datasets/<key>.yaml``, with a note there
on the provenance of each field; the Hub files themselves could not be read here). Required
fields are the ones the evaluation templates read and the gold; they must be present and
non-null in every row. Optional fields are other known fields of the dataset, checked only
where present. ``label`` names the field that holds the gold label (none for extractive QA, whose
gold is ``answers``). Types: ``str``, ``int``, ``list[str]``, ``list[int]``, or a mapping for a
struct (its fields required).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Union

from .errors import InputError

FieldType = Union[str, Mapping[str, "FieldType"]]

UNANNOTATED_FIELDS: dict[str, FieldType] = {"input": "str"}


class SchemaError(InputError):
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


def fields_for(kind: str, test_fields: Mapping | None, dataset: str) -> tuple[Mapping, Mapping, str | None]:
    """(required, optional, label field) of ``kind`` rows ("unannotated" or "test"); test rows'
    come from the dataset file's ``test_fields``."""
    if kind == "unannotated":
        return UNANNOTATED_FIELDS, {}, None
    if kind != "test":
        raise ValueError(f"unknown kind {kind!r}; use 'unannotated' or 'test'")
    if not test_fields:
        raise SchemaError(f"no test_fields for dataset {dataset!r}: its dataset file must say which "
                          "fields its test rows hold")
    return test_fields["required"], test_fields.get("optional", {}), test_fields.get("label")


def label_key(value: Any) -> str:
    """Config label maps are keyed by strings; integer labels (ContractNLI) match by their text."""
    return str(value)


def raw_label(key: str, field_type: FieldType | None) -> str | int:
    """The row value a labels.map key stands for: the key itself, or its integer for an int field."""
    return int(key) if field_type == "int" else key


def canonical_label(value: Any, labels: Mapping) -> str | None:
    """The canonical choice (yes | no | maybe) of a raw label, or None if the map lacks it: every
    label is mapped explicitly, so a misspelt one is never read as some answer."""
    return labels["map"].get(label_key(value))


def validate_rows(rows: Iterable[Mapping], dataset: str, kind: str, path: str,
                  test_fields: Mapping | None = None, labels: Mapping | None = None,
                  columns: Iterable[str] | None = None) -> int:
    """Check every row of ``kind`` for ``dataset``; return the row count.

    ``path`` names the file (or Hub config) in errors, with the 0-based row index and the field.
    ``test_fields`` is the dataset file's ``test_fields`` (needed for test rows). ``labels`` is its
    ``labels`` section: each row's ``labels.field`` value must be a key of ``labels.map``.
    ``columns`` (the column names of the rows) lets a missing column be
    reported once, with the columns found.
    Unannotated rows may hold a null or blank ``input``: the data stage drops and counts those.
    """
    required, optional, label_field = fields_for(kind, test_fields, dataset)
    if label_field and (not labels or labels["field"] != label_field):
        raise SchemaError(f"datasets.{dataset}.labels: the test rows hold their label in {label_field!r} "
                          f"(test_fields.label); set labels.field to it and map its values")
    if columns is not None:
        columns = list(columns)
        needed = dict.fromkeys([*required, *([label_field] if label_field else [])])
        missing = [f for f in needed if f not in columns]
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
            return (f"field {label_field!r}: label {value!r} is not in the dataset's labels.map "
                    f"{sorted(labels['map'])}")
    return None
