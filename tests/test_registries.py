"""The two registries of the core, held to the rest of the project: the generator kinds
(core.generators) to the config schema, the rules and generate.kinds; the task types
(core.tasks) to the shipped dataset files, the corpus command and evaluation."""
from __future__ import annotations

import argparse
import re

import pytest

from bonito_repro.core.config import (DATASETS_DIR, EVAL_DECODING_KEYS, ConfigError, load_dataset_file, load_schema,
                                      read_yaml, shipped_datasets)
from bonito_repro.core.generators import GENERATOR_KINDS, kind_written_by
from bonito_repro.core.schemas import validate_rows
from bonito_repro.core.tasks import GREEDY, RANK, TASK_TYPE_SPECS, task_type_code
from bonito_repro.evaluate.cli import check_params
from bonito_repro.evaluate.errors import EvaluationError
from bonito_repro.evaluate.job import result_record, task_and_templates
from bonito_repro.generate.kinds import KINDS
from bonito_repro.workflow.corpus import TEST_ROW
from conftest import REPO

SCORED = [code for code, spec in TASK_TYPE_SPECS.items() if spec.scoring]
UNSCORED = [code for code, spec in TASK_TYPE_SPECS.items() if not spec.scoring]
EVALUATION = {"generation_backend": "transformers", "max_new_tokens": 5, "max_examples": 6, "max_length": 512,
              "truncation": "right", "batch_tokens": 2048, "bf16": False,
              "vllm": {"gpu_memory_utilization": 0.9, "enforce_eager": True},
              "bootstrap": {"samples": 50, "confidence": 0.95, "seed": 1}, "seed": 42}


def rules_defined() -> set[str]:
    """The names of the rules the workflow's rule files define (`rule NAME:`, nested or not)."""
    return {name for path in (REPO / "rules").glob("*.smk")
            for name in re.findall(r"^\s*rule (\w+):", path.read_text(), re.MULTILINE)}


def test_the_schemas_generator_kinds_are_the_registrys_in_its_order():
    generator = load_schema()["properties"]["generators"]["additionalProperties"]
    assert generator["properties"]["kind"]["enum"] == list(GENERATOR_KINDS)
    blocks = [block["if"]["properties"]["kind"]["const"] for block in generator["allOf"]]
    assert blocks == list(GENERATOR_KINDS)  # each kind's own entry: one block of the schema


def test_every_rule_a_kind_names_is_a_rule_of_the_workflow():
    named = {rule for kind in GENERATOR_KINDS.values() for rule in (kind.rule, kind.training_rule) if rule}
    assert named - rules_defined() == set()


def test_every_kind_the_generate_rule_runs_prompts_through_generate_kinds():
    generated = {name for name, kind in GENERATOR_KINDS.items() if kind.rule == "generate"}
    assert generated <= set(KINDS)
    assert set(KINDS) <= set(GENERATOR_KINDS)


def test_a_rule_that_writes_one_kinds_sets_names_it():
    assert kind_written_by("published_tasks") == "published"
    assert kind_written_by("backtranslate") == "backtranslation"
    with pytest.raises(ValueError, match="rule 'generate' writes the sets of the generator kinds "
                                         r"\['bonito', 'prompted'\], not of one"):
        kind_written_by("generate")


# ---------------------------------------------------------------- task types


def evaluation_args(code: str, spec: dict) -> argparse.Namespace:
    """An evaluate job's arguments for a dataset entry of task type ``code``."""
    return argparse.Namespace(task_type=code, dataset="mine", templates=spec["templates"], labels=spec.get("labels"),
                              fields=spec["test_fields"], target="t", source="s", model="m", adapter=None,
                              wrapper="io")


def test_every_template_dataset_is_a_shipped_file_of_its_task_type():
    for code, spec in TASK_TYPE_SPECS.items():
        if spec.template_dataset:
            assert spec.template_dataset in shipped_datasets(), code
            assert task_type_code(read_yaml(DATASETS_DIR / f"{spec.template_dataset}.yaml")["task_type"]) == code


def test_a_scored_task_type_lends_its_template_dataset_and_roles_and_only_it():
    """The corpus command takes a user's test set of a type with F1 into its template dataset's schema."""
    for spec in TASK_TYPE_SPECS.values():
        assert bool(spec.scoring) == bool(spec.template_dataset) == bool(spec.test_roles), spec.code
        assert spec.scoring in (RANK, GREEDY, None)
        assert ("label" in spec.test_roles) == spec.labelled, spec.code


@pytest.mark.parametrize("code", SCORED)
def test_evaluation_scores_a_task_type_as_the_registry_says(code):
    """The template dataset passes the config's checks of its scoring, evaluate takes its
    templates (answer choices for rank classification, none for greedy generation) and records
    that method, and only greedy generation needs the decoding values."""
    scoring = TASK_TYPE_SPECS[code].scoring
    _, spec = load_dataset_file(TASK_TYPE_SPECS[code].template_dataset, "embedded")
    args = evaluation_args(code, spec)
    assert task_and_templates(args)[0] == code
    method = result_record(args, EVALUATION, code, 6, {}, {}, {})["method"]
    assert method == ("rank_classification" if scoring == RANK else "greedy_generation (transformers)")
    rank_params = {k: v for k, v in EVALUATION.items() if k not in EVAL_DECODING_KEYS}
    if scoring == GREEDY:
        with pytest.raises(EvaluationError, match="max_new_tokens"):
            check_params(rank_params, code)
    else:
        assert check_params(rank_params, code) == rank_params


@pytest.mark.parametrize("code", UNSCORED)
def test_a_task_type_without_scoring_is_not_evaluated(code, tmp_path):
    _, spec = load_dataset_file("pubmed_qa", "embedded")
    with pytest.raises(EvaluationError, match=f"cannot evaluate '{code}'"):
        task_and_templates(evaluation_args(code, spec))
    dataset_file = tmp_path / "mine.yaml"
    dataset_file.write_text((DATASETS_DIR / "pubmed_qa.yaml").read_text().replace("task_type: ynqa", f"task_type: {code}"))
    with pytest.raises(ConfigError, match=f"task_type: '{code}' cannot be evaluated"):
        load_dataset_file(str(dataset_file), "embedded")


def test_labelled_and_extractive_types_have_template_datasets_of_labels_and_of_spans():
    """The quality profile's label balance counts yes / no / maybe; the funnel's and the profile's
    span check reads a response against its passage, as the gold answers are spans of theirs."""
    for spec in TASK_TYPE_SPECS.values():
        if spec.labelled or spec.extractive:
            paper = read_yaml(DATASETS_DIR / f"{spec.template_dataset}.yaml")
        if spec.labelled:
            assert set(paper["labels"]["map"].values()) <= {"yes", "no", "maybe"}, spec.code
        if spec.extractive:
            assert paper["test_fields"]["required"]["answers"] == {"text": "list[str]", "answer_start": "list[int]"}


@pytest.mark.parametrize("code", SCORED)
def test_corpus_writes_a_users_rows_in_the_schema_of_the_template_dataset(code):
    spec = TASK_TYPE_SPECS[code]
    value = {role: f"the {role}" for role in spec.test_roles}
    if spec.labelled:
        value["label"] = "yes"  # as mapped from the user's label
    else:
        value["answer"] = ["the"]  # a span of the passage
    paper = read_yaml(DATASETS_DIR / f"{spec.template_dataset}.yaml")
    row = TEST_ROW[spec.template_dataset](value)
    assert validate_rows([row], spec.template_dataset, "test", "corpus", test_fields=paper["test_fields"],
                         labels=paper.get("labels"), columns=list(row)) == 1
