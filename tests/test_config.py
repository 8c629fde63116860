"""The three configs validate; every kind of mistake stops with the key path named."""
from __future__ import annotations

import copy

import pytest
import yaml

from bonito_repro.config import ConfigError, load_config, validate
from conftest import REPO

CONFIGS = ["config.yaml", "config/local.yaml", "config/smoke.yaml"]


@pytest.fixture(scope="module")
def paper() -> dict:
    return load_config(REPO / "config.yaml")


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_are_valid(name):
    config = load_config(REPO / name)
    assert config["scale"] in name or (name == "config.yaml" and config["scale"] == "paper")


def test_configs_share_the_same_sections():
    sections = [set(yaml.safe_load((REPO / n).read_text())) - {"p3_training"} for n in CONFIGS]
    assert sections[0] == sections[1] == sections[2]


def test_local_covers_all_seven_datasets_and_smoke_one_of_each_task_type():
    local = load_config(REPO / "config/local.yaml")
    smoke = load_config(REPO / "config/smoke.yaml")
    assert len(local["datasets"]) == 7
    assert sorted(d["task_type"] for d in smoke["datasets"].values()) == ["exqa", "nli", "ynqa"]


def _error(config: dict) -> str:
    with pytest.raises(ConfigError) as info:
        validate(config)
    return str(info.value)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c["adaptation"].update(learning_rate="high"), "adaptation.learning_rate"),
        (lambda c: c["generation"].update(temperature=-1), "generation.temperature"),
        (lambda c: c["bonito_training"]["lora"].update(r=0), "bonito_training.lora.r"),
        (lambda c: c["evaluation"].update(surprise=1), "evaluation: Additional properties"),
        (lambda c: c.update(unknown_section={}), "<root>: Additional properties"),
        (lambda c: c["targets"]["mistral_7b"].update(wrapper={"zero_shot": "chat", "adapted": "io"}),
         "targets.mistral_7b.wrapper.zero_shot"),
        (lambda c: c["datasets"]["vitaminc"]["labels"]["map"].update(SUPPORTS="true"),
         "datasets.vitaminc.labels.map.SUPPORTS"),
        (lambda c: c["resources"]["adapt"].pop("gpus"), "resources.adapt: 'gpus' is a required property"),
        (lambda c: c["models"]["mistral_7b"].update(tiny={}), "models.mistral_7b"),
    ],
)
def test_schema_errors_name_the_key(paper, edit, expected):
    config = copy.deepcopy(paper)
    edit(config)
    assert expected in _error(config)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c["targets"]["mistral_7b"].update(model="gpt5"), "targets.mistral_7b.model: model 'gpt5'"),
        (lambda c: c["targets"]["llama2_7b_p3"].update(init_adapter={"model": "llama2_7b"}),
         "targets.llama2_7b_p3.init_adapter.model: 'llama2_7b' is not an adapter"),
        (lambda c: c["targets"]["llama2_7b"].update(init_adapter={"train_on": "p3"}),
         "targets.llama2_7b.init_adapter.train_on: p3 needs a p3_training section"),
        (lambda c: c["generators"]["bonito"].update(base="nope"), "generators.bonito.base: model 'nope'"),
        (lambda c: c["datasets"]["pubmed_qa"].update(task_type="poetry"), "datasets.pubmed_qa.task_type"),
        (lambda c: c.update(sources=["tapt", "zephyr"]), "sources[1]: 'zephyr'"),
        (lambda c: c["models"]["mistral_7b_p3"].pop("base"), "models.mistral_7b_p3.base"),
        (lambda c: c["bonito_training"].update(processes=2),
         "bonito_training.processes: 2 training processes on resources.train_bonito.gpus = 4 GPUs"),
    ],
)
def test_reference_errors_name_the_key(paper, edit, expected):
    config = copy.deepcopy(paper)
    edit(config)
    assert expected in _error(config)


def test_task_types_accept_codes_and_full_names(paper):
    config = copy.deepcopy(paper)
    config["datasets"]["pubmed_qa"]["task_type"] = "yes-no question answering"
    validate(config)
