"""`python -m bonito_repro STAGE`: every stage is named after the module that runs it."""
from __future__ import annotations

import importlib

import pytest

from bonito_repro.__main__ import STAGES, main


@pytest.mark.parametrize("stage, module", STAGES.items())
def test_a_stage_is_named_after_its_module(stage, module):
    *package, name = module.split(".")
    own = package[-1] if name == "cli" else name  # a stage package keeps its command in cli.py
    assert stage == own.replace("_", "-")
    assert callable(importlib.import_module(module).main)


def test_an_unknown_stage_lists_the_stages(capsys):
    assert main(["model"]) == 2
    assert "models,target-data,ctga" in capsys.readouterr().err


def _wrapper_choices(parser) -> set[str]:
    (action,) = [a for a in parser._actions if "--wrapper" in a.option_strings]
    return set(action.choices)


def test_every_wrapper_the_config_allows_is_accepted_by_the_commands_that_take_it():
    """A target's wrappers reach `evaluate --wrapper` (zero_shot, tapt, adapted) and `train --wrapper`
    (adapted): each value the schema allows must be a choice there (chat once was not)."""
    from bonito_repro.core.config import load_schema
    from bonito_repro.evaluate.cli import build_parser
    from bonito_repro.train.data import PAIR_WRAPPERS  # train --wrapper's choices

    schema = load_schema()
    wrapper = schema["properties"]["targets"]["additionalProperties"]["properties"]["wrapper"]["properties"]
    defined = {kind: schema["$defs"][spec["$ref"].removeprefix("#/$defs/")] if "$ref" in spec else spec
               for kind, spec in wrapper.items()}
    allowed = {kind: set(spec["enum"]) for kind, spec in defined.items()}
    assert set().union(*allowed.values()) <= _wrapper_choices(build_parser())
    assert allowed["adapted"] <= set(PAIR_WRAPPERS)
