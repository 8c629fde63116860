"""The base config and its scale overlays: each resolves and validates, each overlay holds only
differences (and docs/differences.md's table lists them all), and every kind of mistake stops with the
file or key path named."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from bonito_repro.core.config import (LAYERS_KEY, SCHEMA_PATH, ConfigError, load_config, load_dataset_file, load_scale,
                                      merge, merged_config, read_yaml, validate)
from bonito_repro.core.templates import load_templates
from conftest import REPO

OVERLAYS = {"local": REPO / "config" / "local.yaml", "smoke": REPO / "config" / "smoke.yaml"}
CPU_LAYER = REPO / "config" / "cpu.yaml"  # beneath both overlays: what they share


@pytest.fixture(scope="module")
def base() -> dict:
    return read_yaml(REPO / "config.yaml")


@pytest.mark.parametrize("scale", ["paper", "local", "smoke"])
def test_every_scale_resolves(scale):
    config = load_scale(scale, REPO)
    assert config["scale"] == scale
    assert list(config["targets"]) == config["run"]["targets"]
    ablations = config["ablations"]
    used = {*config["run"]["sources"], *ablations["generators"]["generators"], ablations["size"]["generator"],
            ablations["domain"]["generator"]}
    assert set(config["generators"]) == used - {"tapt"}  # what runs, and nothing else
    for section in ("bonito_training", "p3_training", "adaptation"):  # merged over `training`
        assert config[section]["seed"] == config["training"]["seed"]
    origin = "hub" if scale == "paper" else "embedded"
    for dataset in config["datasets"].values():
        assert set(dataset["unannotated"]) == set(dataset["test"]) == {origin}
    assert {next(iter(p3_origin)) for p3_origin in config["ctga"]["p3_datasets"].values()} == {origin}


def test_local_covers_all_seven_datasets_and_smoke_one_of_each_task_type():
    local, smoke = load_scale("local", REPO), load_scale("smoke", REPO)
    assert list(local["datasets"]) == load_scale("paper", REPO)["run"]["datasets"]
    assert sorted(d["task_type"] for d in smoke["datasets"].values()) == ["exqa", "nli", "ynqa"]
    assert set(local["models"]) == {"smollm2"} and set(smoke["models"]) == {"tiny_mistral", "tiny_llama"}


def leaves(tree: dict, prefix: str = "", whole: tuple[str, ...] = ("models", "targets")) -> dict[str, object]:
    """Key path -> value of every leaf; an entry of a named collection in ``whole`` (models.x,
    targets.x) is a leaf."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path.split(".")[0] not in whole:
            out.update(leaves(value, f"{path}.", whole))
        else:
            out[path] = value
    return out


@pytest.mark.parametrize("path", [*OVERLAYS.values(), CPU_LAYER], ids=[*OVERLAYS, "cpu"])
def test_overlays_hold_only_differences(base, path):
    overlay = leaves(read_yaml(path))
    flat = leaves(base)
    same = [key for key, value in overlay.items() if key in flat and flat[key] == value]
    assert not same, f"{path.name} repeats the base's values of {same}"
    # short: the values, not their explanations (comments aside), fit on two screens
    values = [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(values) <= 100


def test_local_and_smoke_share_no_setting():
    """A setting both scales share is written once, in their shared layer (config/cpu.yaml): a
    key path in both overlays has a different value in each. ``layers`` is the loader's, no setting."""
    local, smoke = (leaves(read_yaml(path), whole=()) for path in OVERLAYS.values())
    shared = sorted(key for key, value in local.items() if key != LAYERS_KEY and key in smoke and smoke[key] == value)
    assert not shared, f"config/local.yaml and config/smoke.yaml both set {shared}; move them to config/cpu.yaml"


def test_shared_layers_merge_beneath_the_file_that_names_them(tmp_path):
    """Beneath the file and above the files before it, once (a second file naming it does not
    undo what came between), found from the base's folder (a copy of an overlay elsewhere finds
    it), with Snakemake's --config values on top of all."""
    (tmp_path / "config.yaml").write_text("a: 0\nb: 0\nc: 0\nd: 0\n")
    (tmp_path / "shared.yaml").write_text("a: 1\nb: 1\nc: 1\n")
    (tmp_path / "copies").mkdir()
    (tmp_path / "copies" / "first.yaml").write_text("layers: [shared.yaml]\nb: 2\n")
    (tmp_path / "second.yaml").write_text("layers: [shared.yaml]\nc: 3\n")
    paths = [tmp_path / "config.yaml", tmp_path / "copies" / "first.yaml", tmp_path / "second.yaml"]
    assert merged_config(paths) == {"a": 1, "b": 2, "c": 3, "d": 0}
    assert merged_config(paths, {"c": 4}) == {"a": 1, "b": 2, "c": 4, "d": 0}


@pytest.mark.parametrize("text, expected", [
    ("layers: config/cpu.yaml\n", "layers: expected a list of config files"),
    ("layers: [config/gpu.yaml]\n", "layers: no file '{repo}/config/gpu.yaml'"),
])
def test_a_bad_layers_entry_names_the_file_and_key(tmp_path, text, expected):
    overlay = tmp_path / "mine.yaml"
    overlay.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(f"{overlay}: {expected.format(repo=REPO)}")):
        load_config(REPO / "config.yaml", overlay)


def documented_difference_keys() -> list[str]:
    """The key paths in the first column of the table of scale differences (docs/differences.md)."""
    text = (REPO / "docs" / "differences.md").read_text()
    table = text[text.index("| config key |"):]
    table = table[:table.index("\n\n")]
    keys = []
    for row in table.splitlines()[2:]:
        keys += re.findall(r"`([^`]+)`", row.split("|")[1])
    return keys


def test_the_docs_list_exactly_the_keys_the_overlays_change():
    listed = documented_difference_keys()
    changed = {path for overlay in OVERLAYS.values() for path in leaves(merged_config([overlay], root=REPO))}
    covers = lambda key, path: path == key or path.startswith(key + ".")  # noqa: E731
    unlisted = sorted(p for p in changed if not any(covers(k, p) for k in listed))
    unused = sorted(k for k in listed if not any(covers(k, p) for p in changed))
    assert not unlisted, f"docs/differences.md's scale table misses {unlisted}"
    assert not unused, f"docs/differences.md's scale table lists keys no overlay changes: {unused}"


def test_merge_is_snakemakes_rule():
    merged = merge({"a": {"b": 1, "c": [1, 2]}, "d": 1}, {"a": {"c": [3]}, "e": 2})
    assert merged == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}


def schema_objects(node: object, where: str = "#") -> Iterator[tuple[str, dict]]:
    """(JSON pointer, object) of every schema object in ``node`` at any depth: all mappings but
    those of names (properties, $defs, dependentRequired)."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from schema_objects(item, f"{where}/{i}")
    elif isinstance(node, dict):
        if not where.endswith(("/properties", "/$defs", "/dependentRequired")):
            yield where, node
        for key, value in node.items():
            yield from schema_objects(value, f"{where}/{key}")


def without_descriptions(node: object) -> object:
    if isinstance(node, dict):
        return {key: without_descriptions(value) for key, value in node.items() if key != "description"}
    return [without_descriptions(item) for item in node] if isinstance(node, list) else node


def test_the_schema_defines_each_type_and_range_once():
    """A type with its range (or an enum, a list's or a mapping's shape) written twice can drift
    apart: each is written once, in $defs, and referenced. A bare reference and a bare type
    (``{type: boolean}``) define nothing of their own."""
    first: dict[str, str] = {}
    repeated = []
    for where, node in schema_objects(read_yaml(SCHEMA_PATH)):
        node = without_descriptions(node)
        if node.keys() == {"$ref"} or node.keys() == {"type"} and isinstance(node["type"], str):
            continue
        key = json.dumps(node, sort_keys=True)
        if key in first:
            repeated.append(f"{where} repeats {first[key]}: {key}")
        first.setdefault(key, where)
    assert not repeated, "\n".join(repeated)


# integers of the config or dataset-file schema that may go below zero, each with its reason
# (none today: every count, size, length, seed and step of the workflow has a floor)
UNBOUNDED_INTEGERS: dict[str, str] = {}


def _resolved(node: dict, schema: dict) -> dict:
    """``node`` with its $ref chain merged in (the node's own keys win)."""
    node = dict(node)
    while "$ref" in node:
        target = schema
        for part in node.pop("$ref").removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **node}
    return node


def test_every_integer_of_the_schemas_has_a_minimum():
    """An integer without a floor validates at -1 and dies late, in a job, with a traceback naming
    no key (the ablations' seed did, in numpy, after the adapters were trained). $defs holds the
    dataset file's schema as well as the shared types."""
    schema = read_yaml(SCHEMA_PATH)
    unbounded = []
    for where, node in schema_objects(schema):
        node = _resolved(node, schema)
        types = node.get("type", [])
        if "integer" in ([types] if isinstance(types, str) else types) and "enum" not in node \
                and "minimum" not in node and "exclusiveMinimum" not in node and where not in UNBOUNDED_INTEGERS:
            unbounded.append(where)
    assert not unbounded, f"integers without a minimum: {unbounded}"


def test_every_seed_fits_numpys_legacy_seeding():
    """transformers' set_seed hands the training seed to ``np.random.seed``, which refuses 2**32
    and above: a seed the schema let through would stop the training job, not the config check."""
    schema = read_yaml(SCHEMA_PATH)
    seeds = [(where, _resolved(node["seed"], schema)) for where, node in schema_objects(schema)
             if isinstance(node.get("properties"), dict) and isinstance(node["properties"].get("seed"), dict)
             for node in [node["properties"]]]
    assert seeds
    wrong = [where for where, seed in seeds
             if seed.get("type") == "integer" and not (seed.get("minimum") == 0 and seed.get("maximum") == 2**32 - 1)]
    assert not wrong, f"seeds outside 0..2**32-1: {wrong}"


def test_an_overlay_that_swaps_a_spec_kind_fails_naming_the_key(base):
    overlay = {"models": {"mistral_7b": {"tiny": {"architecture": "mistral"}}}}
    with pytest.raises(ConfigError, match=r"models\.mistral_7b"):
        validate(merge(base, overlay))


@pytest.mark.parametrize("name", ["../paper", "my run", ""])
def test_a_run_name_that_is_no_folder_name_fails_naming_the_key(base, name):
    """run.name names the run's own folder (results/runs/NAME): no path, space or empty name."""
    with pytest.raises(ConfigError, match=r"run\.name"):
        validate(merge(base, {"run": {"name": name}}))


def test_unknown_key_in_an_overlay_names_its_path(tmp_path):
    overlay = tmp_path / "mine.yaml"
    overlay.write_text("generation: {temprature: 0.7}\n")
    with pytest.raises(ConfigError, match=r"generation: Additional properties .*'temprature'"):
        load_config(REPO / "config.yaml", overlay)


@pytest.mark.parametrize("text, expected", [
    ("", "empty file; expected a mapping of config keys"),
    ("generation: {n: [}\n", "line 1, column 18: not valid YAML"),
])
def test_empty_or_broken_yaml_names_the_file(tmp_path, text, expected):
    overlay = tmp_path / "broken.yaml"
    overlay.write_text(text)
    with pytest.raises(ConfigError, match=rf"broken\.yaml: {expected}"):
        load_config(REPO / "config.yaml", overlay)


def _error(config: dict) -> str:
    with pytest.raises(ConfigError) as info:
        validate(config)
    return str(info.value)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c["adaptation"].update(learning_rate="high"), "adaptation.learning_rate"),
        (lambda c: c["training"].update(learning_rate="high"), "training.learning_rate"),
        (lambda c: c["generation"].update(temperature=-1), "generation.temperature"),
        (lambda c: c["bonito_training"]["lora"].update(r=0), "bonito_training.lora.r"),
        (lambda c: c["evaluation"].update(surprise=1), "evaluation: Additional properties"),
        (lambda c: c.update(unknown_section={}), "<root>: Additional properties"),
        (lambda c: c["targets"]["mistral_7b"].update(wrapper={"zero_shot": "chatml", "tapt": "plain", "adapted": "io"}),
         "targets.mistral_7b.wrapper.zero_shot"),
        (lambda c: c["resources"]["adapt"].pop("gpus"), "resources.adapt: 'gpus' is a required property"),
        (lambda c: c["models"]["mistral_7b"].update(tiny={}), "models.mistral_7b"),
        (lambda c: c.update(data="ftp"), "data: 'ftp' is not one of"),
        (lambda c: c["run"].update(datasets=[]), "run.datasets"),
        (lambda c: c["training"].pop("seed"), "training: 'seed' is a required property"),
        (lambda c: c["training"].update(per_device_batch_size=4.0), "training.per_device_batch_size: 4.0 is not of type"),
        (lambda c: c["generation"].update(shard_size=2.0), "generation.shard_size: 2.0 is not of type 'integer'"),
        (lambda c: c["tables"].update(decimals=1.0), "tables.decimals: 1.0 is not of type 'integer'"),
        (lambda c: c["evaluation"]["bootstrap"].update(seed=-1), "evaluation.bootstrap.seed: -1 is less than"),
        (lambda c: c["evaluation"].update(seed=-1), "evaluation.seed: -1 is less than the minimum of 0"),
        (lambda c: c["ablations"].update(seed=-1), "ablations.seed: -1 is less than the minimum of 0"),
        (lambda c: c["training"].update(seed=2**32), "training.seed: 4294967296 is greater than the maximum"),
        (lambda c: c["evaluation"].update(truncation="left"), "evaluation.truncation: 'left' is not one of"),
    ],
)
def test_schema_errors_name_the_key(base, edit, expected):
    config = copy.deepcopy(base)
    edit(config)
    assert expected in _error(config)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c["targets"]["mistral_7b"].update(model="gpt5"), "targets.mistral_7b.model: model 'gpt5'"),
        (lambda c: c["targets"]["llama2_7b_p3"].update(init_adapter={"model": "llama2_7b"}),
         "targets.llama2_7b_p3.init_adapter.model: 'llama2_7b' is not an adapter"),
        (lambda c: c["generators"]["bonito"].update(base="nope"), "generators.bonito.base: model 'nope'"),
        (lambda c: c["run"].update(sources=["tapt", "zephyr"]), "run.sources: ['zephyr']"),
        (lambda c: c["run"].update(targets=["mistral_7b", "gpt5"]), "run.targets: ['gpt5']"),
        (lambda c: c["run"].update(datasets=["pubmed_qa", "poetry_qa"]),
         "run.datasets: no dataset file"),
        (lambda c: c["models"]["mistral_7b_p3"].pop("base"), "models.mistral_7b_p3.base"),
        (lambda c: c["generation"].update(temperature=0, n=2), "generation.n: 2 samples at temperature 0"),
        (lambda c: c["bonito_training"].update(processes=2),
         "bonito_training.processes: 2 training processes on resources.train_bonito.gpus = 4 GPUs"),
        (lambda c: c["resources"]["train_bonito"].update(runtime=5760),
         "resources.train_bonito.runtime: 5760 minutes, more than resources.max_runtime (2880)"),
        (lambda c: c["resources"].update(max_runtime=600), "resources.ctga.runtime: 720 minutes"),
        # found when the config loads, not when the model job builds it
        (lambda c: c["models"].update(mistral_7b={"tiny": {"architecture": "mistral", "vocab_size": 2000,
                                                           "hidden_size": 64, "intermediate_size": 128,
                                                           "layers": 2, "heads": 3, "kv_heads": 1}}),
         "models.mistral_7b.tiny: heads (3) must divide hidden_size (64)"),
    ],
)
def test_reference_errors_name_the_key(base, edit, expected):
    config = copy.deepcopy(base)
    edit(config)
    assert expected in _error(config)


def test_unselected_entries_are_not_checked(base):
    config = copy.deepcopy(base)
    config["targets"]["unused"] = {"model": "gpt5", "wrapper": {"zero_shot": "plain", "tapt": "plain", "adapted": "io"}}
    assert "unused" not in validate(config)["targets"]


# a dataset file of one's own, as docs/configuration.md shows it
LEGAL_QA = {"title": "LegalQA", "task_type": "ynqa", "unannotated": {"files": "c.jsonl"},
            "test": {"files": "t.jsonl"}, "labels": {"field": "answer", "map": {"Y": "yes", "N": "no"}},
            "test_fields": {"required": {"clause": "str", "question": "str", "answer": "str"}, "label": "answer"},
            "templates": {"inline": [{"name": "clause", "jinja": "{{clause}} {{question}}",
                                      "choices": {"yes": "Yes", "no": "No"}}]}}
SQUAD_FIELDS = {"required": {"context": "str", "question": "str",
                             "answers": {"text": "list[str]", "answer_start": "list[int]"}}}
MISSING = object()  # a key the test removes


def legal_qa_files(folder: Path) -> None:
    """The corpus and test files LEGAL_QA names, beside it: the config check stops on a missing one."""
    for name in ("c.jsonl", "t.jsonl"):
        (folder / name).write_text('{"input": "A passage."}\n')


def test_a_dataset_file_of_ones_own(base, tmp_path):
    for name in ("corpus.jsonl", "test.jsonl"):
        (tmp_path / name).write_text('{"input": "A passage."}\n')
    own = tmp_path / "legal_qa.yaml"
    own.write_text(yaml.safe_dump({**LEGAL_QA, "task_type": "yes-no question answering",
                                   "unannotated": {"files": "corpus.jsonl"}, "test": {"files": ["test.jsonl"]}}))
    config = copy.deepcopy(base)
    config["run"]["datasets"] = ["pubmed_qa", str(own)]
    resolved = validate(config)["datasets"]
    assert list(resolved) == ["pubmed_qa", "legal_qa"]
    assert resolved["legal_qa"]["unannotated"] == {"files": str(tmp_path / "corpus.jsonl")}
    assert resolved["legal_qa"]["test"] == {"files": [str(tmp_path / "test.jsonl")]}
    assert resolved["legal_qa"]["templates"] == LEGAL_QA["templates"]
    assert resolved["pubmed_qa"]["unannotated"]["hub"]["config"] == "unannotated_pubmed_qa"


def test_a_dataset_without_a_test_set_may_be_of_any_task_type(base, tmp_path):
    """It is generated for and adapted on; evaluation and the tables leave it out."""
    own = tmp_path / "minutes.yaml"
    (tmp_path / "m.txt").write_text("The committee met on Monday.\n")
    own.write_text(yaml.safe_dump({"title": "Minutes", "task_type": "summarization", "unannotated": {"files": "m.txt"}}))
    config = copy.deepcopy(base)
    config["run"]["datasets"] = [str(own)]
    resolved = validate(config)["datasets"]["minutes"]
    assert resolved["unannotated"] == {"files": str(tmp_path / "m.txt")} and "test" not in resolved
    own.write_text(yaml.safe_dump({"title": "Minutes", "task_type": "poetry", "unannotated": {"files": "m.txt"}}))
    with pytest.raises(ConfigError, match="minutes.yaml: task_type: unknown task type 'poetry'"):
        validate(config)


@pytest.mark.parametrize("change, expected", [
    ({"task_type": "poetry"}, "legal_qa.yaml: task_type: unknown task type 'poetry'"),
    ({"task_type": "summarization"}, "legal_qa.yaml: task_type: 'summarization' cannot be evaluated"),
    ({"labels": {"field": "answer", "map": {"Y": "true"}}}, "legal_qa.yaml: labels.map"),
    ({"unannotated": {"hub": {"id": "me/corpus"}}}, "legal_qa.yaml: unannotated: no 'embedded' origin"),
    ({"title": None}, "legal_qa.yaml: title: None is not of type 'string'"),
    # the test fields and templates: a missing or malformed key
    ({"test_fields": MISSING}, "legal_qa.yaml: 'test_fields' is a dependency of 'test'"),
    ({"templates": MISSING}, "legal_qa.yaml: 'templates' is a dependency of 'test'"),
    # without a test set there is nothing to score: templates, fields and labels need one
    ({"test": MISSING}, "legal_qa.yaml: 'test' is a dependency of 'test_fields'"),
    ({"test_fields": {"required": {"answer": "float"}, "label": "answer"}}, "legal_qa.yaml: test_fields.required.answer"),
    ({"templates": {"inline": [{"name": "x", "jinja": "{{q}}", "choices": {"true": "T", "no": "N"}}]}},
     "legal_qa.yaml: templates.inline.0.choices"),
    ({"templates": {"promptsource": {"dataset": "anli"}}}, "legal_qa.yaml: templates.promptsource: 'names'"),
    # and across keys
    ({"labels": {"field": "verdict", "map": {"Y": "yes", "N": "no"}}},
     "legal_qa.yaml: labels.field: 'verdict', but test_fields.label is 'answer'"),
    ({"labels": MISSING}, "legal_qa.yaml: labels: missing; test_fields.label 'answer' needs a map"),
    ({"test_fields": {"required": {"clause": "str"}, "label": "answer"}},
     "legal_qa.yaml: test_fields.label: 'answer' is not one of test_fields.required ['clause']"),
    ({"test_fields": {"required": {"clause": "str", "answer": "str"}, "label": "answer", "id": "row"}},
     "legal_qa.yaml: test_fields.id: 'row' is not a field of test_fields.required or optional ['answer', 'clause']"),
    ({"test_fields": {"required": {"clause": "str", "answer": "str"}, "label": "answer", "duplicates": "twice"}},
     "legal_qa.yaml: test_fields.duplicates: 'twice' is not one of ['keep', 'drop']"),
    ({"templates": {"inline": [{"name": "x", "jinja": "{{clause}}"}]}},
     "legal_qa.yaml: templates.inline.0.choices: templates ['x'] have no answer choices, but ynqa datasets"),
    ({"labels": {"field": "answer", "map": {"Y": "yes", "N": "no", "?": "maybe"}}},
     "legal_qa.yaml: templates.inline.0.choices: templates ['clause'] answer ['no', 'yes'], but labels.map "
     "gives ['maybe', 'no', 'yes']"),
    # every label is mapped explicitly: there is no catch-all
    ({"labels": {"field": "answer", "map": {"Y": "yes", "N": "no"}, "default": "maybe"}},
     "legal_qa.yaml: labels: Additional properties are not allowed ('default' was unexpected)"),
    ({"templates": {"promptsource": {"dataset": "anli", "names": ["can we infer"], "labels": ["yes", "maybe", "no"]}}},
     "legal_qa.yaml: templates.promptsource.labels: templates ['can we infer'] answer ['maybe', 'no', 'yes']"),
    ({"templates": {"inline": [LEGAL_QA["templates"]["inline"][0]] * 2}},
     "legal_qa.yaml: templates: duplicate template names ['clause', 'clause']"),
    # promptsource-style templates kept whole: each label's target must render one of the choices
    ({"templates": {"verbatim": [{"name": "asked", "jinja": "{{clause}} {{question}}|||{{answer}}",
                                  "answer_choices": "Yes ||| No"}]}},
     "legal_qa.yaml: template 'asked': label 'N' (no) renders the target 'N', which is not one of its answer "
     "choices ['Yes', 'No']"),
    ({"templates": {"verbatim": [{"name": "asked", "jinja": "{{clause}} {{question}}", "answer_choices": "Y ||| N"}]}},
     "legal_qa.yaml: template 'asked': its jinja needs one '|||' between the prompt and the target, it has 0"),
    ({"test_fields": {"required": {"clause": "str", "question": "str", "answer": "int"}, "label": "answer"}},
     "legal_qa.yaml: labels.map: key 'Y' is not an integer, but the label field 'answer' is int"),
    # the passage: required text fields
    ({"passage": "clauses"}, "legal_qa.yaml: passage: 'clauses' is not a required test field of type str or "
                             "list[str] (test_fields.required: no such field)"),
    ({"passage": ["question", "clause.text"]}, "legal_qa.yaml: passage: 'clause.text' is not a required"),
    ({"passage": "clause", "test_fields": {"required": {"clause": "list[int]", "question": "str", "answer": "str"},
                                           "label": "answer"}},
     "legal_qa.yaml: passage: 'clause' is not a required test field of type str or list[str] "
     "(test_fields.required: list[int])"),
    ({"passage": []}, "legal_qa.yaml: passage: [] should be non-empty"),
    # the cards carry the license and languages: only what the Hub accepts
    ({"license": "CC BY 4.0"}, "legal_qa.yaml: license: license 'CC BY 4.0' is not an identifier the Hub knows"),
    ({"language": ["English"]}, "legal_qa.yaml: language.0: 'English' does not match"),
    ({"task_type": "exqa", "labels": MISSING, "test_fields": {**SQUAD_FIELDS, "label": "answers"}},
     "legal_qa.yaml: labels: missing; test_fields.label 'answers'"),
    ({"task_type": "exqa", "labels": MISSING, "test_fields": SQUAD_FIELDS},
     "legal_qa.yaml: templates.inline.0.choices: templates ['clause'] have answer choices, but exqa datasets "
     "are evaluated by generation"),
    ({"task_type": "exqa", "labels": MISSING, "test_fields": SQUAD_FIELDS,
      "templates": {"verbatim": [{"name": "x", "jinja": "{{context}}|||{{answers.text[0]}}",
                                  "answer_choices": "a ||| b"}]}},
     "legal_qa.yaml: templates.verbatim.0.answer_choices: templates ['x'] have answer choices, but exqa datasets "
     "are evaluated by generation"),
    ({"task_type": "exqa", "labels": MISSING, "test_fields": {"required": {"context": "str"}},
      "templates": {"inline": [{"name": "x", "jinja": "{{context}}"}]}},
     "legal_qa.yaml: test_fields.required.answers: the gold answers of exqa datasets are read from answers.text"),
])
def test_dataset_file_errors_name_the_file_and_key(base, tmp_path, change, expected):
    own = tmp_path / "legal_qa.yaml"
    own.write_text(yaml.safe_dump({k: v for k, v in {**LEGAL_QA, **change}.items() if v is not MISSING}))
    config = copy.deepcopy(base)
    config.update(data="embedded")
    config["run"]["datasets"] = [str(own)]
    assert expected in _error(config)


def test_passage_truncation_needs_every_dataset_to_name_its_passage(base, tmp_path):
    legal_qa_files(tmp_path)
    own = tmp_path / "legal_qa.yaml"
    own.write_text(yaml.safe_dump(LEGAL_QA))
    config = copy.deepcopy(base)
    config["run"]["datasets"] = ["pubmed_qa", "privacy_qa", str(own)]
    assert validate(config)["evaluation"]["truncation"] == "right"  # the authors' cut needs no passage
    config["evaluation"]["truncation"] = "passage"
    assert _error(config).endswith(f"{own}: passage: missing; evaluation.truncation is 'passage', which "
                                   "shortens the test fields this key names")
    own.write_text(yaml.safe_dump({**LEGAL_QA, "passage": "clause"}))
    datasets = validate(config)["datasets"]  # one field or a list of them: a list once resolved
    assert [datasets[d]["passage"] for d in datasets] == [["context.contexts"], ["text"], ["clause"]]


def test_task_types_accept_codes_and_full_names(base, tmp_path):
    legal_qa_files(tmp_path)
    own = tmp_path / "mine.yaml"
    own.write_text(yaml.safe_dump({**LEGAL_QA, "task_type": "yes-no question answering"}))
    config = copy.deepcopy(base)
    config["run"]["datasets"] = [str(own)]
    assert validate(config)["datasets"]["mine"]["task_type"] == "yes-no question answering"


def test_the_docs_dataset_file_example_loads(tmp_path):
    text = (REPO / "docs" / "configuration.md").read_text()
    example = re.search(r"```yaml\n(# my/legal_qa\.yaml.*?)```", text, re.S).group(1)
    (tmp_path / "legal_qa.yaml").write_text(example)
    name, spec = load_dataset_file(str(tmp_path / "legal_qa.yaml"), "hub")
    assert name == "legal_qa" and spec["test_fields"]["label"] == spec["labels"]["field"]
    assert [t["name"] for t in spec["templates"]["inline"]] == ["clause then question", "lawyer asks"]
    # the same file with the verbatim templates the page shows next
    kept_whole = re.search(r"```yaml\n# templates of my/legal_qa\.yaml, kept whole.*?\n(templates:.*?)```", text, re.S)
    (tmp_path / "legal_qa.yaml").write_text(example.split("templates:")[0] + kept_whole.group(1))
    _, spec = load_dataset_file(str(tmp_path / "legal_qa.yaml"), "hub")
    (template,) = load_templates(spec["templates"], spec["labels"], spec["test_fields"], spec["file"])
    assert template.choices == {"yes": "Yes", "no": "No"}
