"""The two registries of the core, held to the rest of the project: the generator kinds
(core.generators) to the config schema, the rules and generate.kinds; the task types
(core.tasks) to the shipped dataset files, the corpus command and evaluation."""
from __future__ import annotations

import re

import pytest

from bonito_repro.core.config import load_schema
from bonito_repro.core.generators import GENERATOR_KINDS, kind_written_by
from bonito_repro.generate.kinds import KINDS
from conftest import REPO


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
