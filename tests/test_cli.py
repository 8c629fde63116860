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
