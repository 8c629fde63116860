"""Load, validate and resolve a workflow config.

config.yaml is the paper's experiment and the base of every scale; an overlay (config/local.yaml,
config/smoke.yaml, a user's file) holds only what differs and is merged on top key by key, as
Snakemake merges ``--configfile`` files. A file may name shared layers (``layers:
[config/cpu.yaml]``), merged beneath it (``merged_config``). Then:

1. ``validate_schema``: the merged config against config/schema.yaml;
2. ``resolve``: the config the rules read: each training section merged over ``training``, the
   selected dataset files loaded (each checked against $defs/dataset_file and across its keys:
   labels, test fields and templates must agree with its task type) with the origins ``data``
   picks, ctga's P3 datasets likewise, and the collections cut down to what ``run`` selects;
3. ``check_references``: names one section uses must be declared in another.

Every error names the file or the key path (``targets.smollm2_p3.init_adapter.model``), so a bad
config stops the run before any job starts. Stage CLIs check their ``--params`` against the same
schema (``check_params``): no hyperparameter has a default in code.
"""
from __future__ import annotations

import copy
import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import jsonschema
import yaml

from . import PACKAGE_DATA
from .errors import InputError
from .sources import TAPT, ZERO_SHOT, generator_name_problems
from .templates import TemplateError, load_templates
from .tasks import GENERATION_TASK_TYPES, GREEDY, RANK_TASK_TYPES, TASK_TYPES, scoring, task_type_code

SCHEMA_PATH = PACKAGE_DATA / "config_schema.yaml"   # config/schema.yaml links here
DATASETS_DIR = PACKAGE_DATA / "datasets"
# The workflow as the package ships it: Snakefile, rules, config.yaml, config/, the profiles (local/,
# slurm/), the report's captions and envs/. A checkout's root paths of the same names link here.
WORKFLOW_DIR = PACKAGE_DATA / "workflow"
TRAINING_SECTIONS = ("bonito_training", "p3_training", "backtranslation_training", "adaptation")
# the key of a config file that names the shared layers merged beneath it (config/cpu.yaml)
LAYERS_KEY = "layers"
# the scales whose tables compare with the paper's: its real datasets and 7B models (a workstation
# runs a part of the paper's grid by the same protocol); the others label theirs as demo data
COMPARABLE_SCALES = ("paper", "workstation")
# evaluation keys that only greedy decoding (extractive QA) reads: rank jobs do not get them, so
# changing them reruns no rank classification
EVAL_DECODING_KEYS = ("generation_backend", "max_new_tokens", "vllm")
# training section -> the resources section its jobs request (train_p3 runs with the adapt stage's)
TRAINING_RESOURCES = {"bonito_training": "train_bonito", "p3_training": "adapt", "backtranslation_training": "adapt",
                      "adaptation": "adapt"}


# JSON Schema counts 4.0 as an integer; torch, pandas and range() do not, so neither does the config
Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)))


class ConfigError(InputError):
    """A config value is missing, of the wrong type or refers to something undeclared."""


def _path(parts) -> str:
    return ".".join(str(p) for p in parts) or "<root>"


@functools.cache
def load_schema(path: Path = SCHEMA_PATH) -> dict:
    """The schema, parsed once a process (one config load checks it against about ten of its
    definitions); read it, never change it."""
    with open(path) as f:
        return yaml.safe_load(f)


def _schema_errors(instance: Any, schema: dict, prefix: str = "") -> list[str]:
    """Every violation as "<prefix><key path>: <message>" (the prefix alone at the root)."""
    validator = Validator(schema)
    lines = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        best = jsonschema.exceptions.best_match([error])  # a oneOf failure hides the useful message
        parts = list(best.absolute_path)
        where = prefix + _path(parts) if parts else prefix.rstrip(".: ") or "<root>"
        lines.append(f"{where}: {best.message}")
    return lines


def _raise(problems: list[str], what: str = "invalid config") -> None:
    if problems:
        raise ConfigError(f"{what}:\n  " + "\n  ".join(problems))


def validate_schema(config: dict, schema: dict | None = None) -> None:
    """Raise ConfigError listing every schema violation, each with its key path."""
    _raise(_schema_errors(config, schema or load_schema()))


def _definition(name: str, schema: dict | None = None) -> dict:
    """A sub-schema of config/schema.yaml, resolvable on its own (it keeps the shared $defs)."""
    schema = schema or load_schema()
    return {**schema["$defs"][name], "$defs": schema["$defs"]} if name in schema["$defs"] else \
        {**schema["properties"][name], "$defs": schema["$defs"]}


def merge(base: dict, overlay: dict) -> dict:
    """``overlay`` over ``base``, key by key (Snakemake's rule for config files): mappings merge,
    any other value replaces."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


_KINDS = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


def _repeated_key(node: yaml.Node, where: str = "") -> str | None:
    """"line N: key 'a.b' is written twice ..." for the first mapping key a YAML document repeats
    (YAML keeps the last one without a word, so one of the two values would be ignored), or None."""
    if isinstance(node, yaml.MappingNode):
        seen: dict = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            path = f"{where}.{key}" if where else str(key)
            if key is not None and key != "<<":
                if key in seen:
                    return (f"line {key_node.start_mark.line + 1}: key {path!r} is written twice (first on line "
                            f"{seen[key] + 1}); one of the two values would be ignored")
                seen[key] = key_node.start_mark.line
            found = _repeated_key(value_node, path)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _repeated_key(item, f"{where}.{i}")
            if found:
                return found
    return None


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping, or a ConfigError naming the file and, where there is one, the line: an
    unreadable or empty file, bytes that are not UTF-8, a syntax error, a top level that is not a
    mapping, a key written twice in one mapping."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ConfigError(f"{path}: line {line}: byte {data[error.start]:#04x} is not UTF-8 text") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        value = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = "; ".join(str(part) for part in (error.context, error.problem) if part)
        raise ConfigError(f"{path}: {where}not valid YAML ({what})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    if value is None:
        raise ConfigError(f"{path}: empty file; expected a mapping of config keys")
    if not isinstance(value, dict):
        kind = _KINDS.get(type(value), type(value).__name__)
        raise ConfigError(f"{path}: expected a mapping at the top level, got {kind}")
    repeated = _repeated_key(node)
    if repeated:
        raise ConfigError(f"{path}: {repeated}")
    return value


def dataset_file(entry: str) -> tuple[str, Path]:
    """The name and file of a ``run.datasets`` entry: a name shipped in the package, or a path."""
    if entry.endswith((".yaml", ".yml")):
        return Path(entry).stem, Path(entry)
    return entry, DATASETS_DIR / f"{entry}.yaml"


def shipped_datasets() -> list[str]:
    return sorted(p.stem for p in DATASETS_DIR.glob("*.yaml"))


def _pick_origin(origins: dict, data: str, where: str, base_dir: Path) -> dict:
    """One origin of a dataset file's two or three: the user's `files` wins, else `data`'s."""
    if "files" in origins:
        files = origins["files"]
        rebase = lambda p: str(p if Path(p).is_absolute() else Path(base_dir, p))  # noqa: E731
        return {"files": rebase(files) if isinstance(files, str) else [rebase(p) for p in files]}
    if data not in origins:
        raise ConfigError(f"{where}: no {data!r} origin (config `data: {data}`); it has {sorted(origins)}")
    return {data: origins[data]}


def _template_choices(templates: dict, given: set[str]) -> list[tuple[str, list[str], list[str] | None]]:
    """(key path, template names, canonical labels of their answer choices or None) of the
    templates a ``templates`` entry declares, read from the entry alone (promptsource is not
    loaded): one group for a promptsource entry, one per template written inline or verbatim. A
    verbatim template's choices are derived from the labels ``given`` (checked by deriving them)."""
    if "promptsource" in templates:
        spec = templates["promptsource"]
        return [("templates.promptsource.labels", spec["names"], spec.get("labels"))]
    if "verbatim" in templates:
        return [(f"templates.verbatim.{i}.answer_choices", [t["name"]],
                 sorted(given) if "answer_choices" in t else None) for i, t in enumerate(templates["verbatim"])]
    return [(f"templates.inline.{i}.choices", [t["name"]], list(t["choices"]) if "choices" in t else None)
            for i, t in enumerate(templates["inline"])]


def passage_fields(spec: dict) -> list[str]:
    """A dataset file's ``passage`` as a list of field paths (none where it names none)."""
    passage = spec.get("passage", [])
    return [passage] if isinstance(passage, str) else list(passage)


def _field_type(fields: dict, path: str) -> Any:
    """The declared type of a dotted field path (``context.contexts``) in ``fields``, or None."""
    value: Any = fields
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _passage_problems(spec: dict, path: Path) -> list[str]:
    """Each ``passage`` field must be a required test field holding text (str or list[str])."""
    required = spec["test_fields"]["required"]
    declared = {field: _field_type(required, field) for field in passage_fields(spec)}
    return [f"{path}: passage: {field!r} is not a required test field of type str or list[str] "
            f"(test_fields.required: {'no such field' if kind is None else kind})"
            for field, kind in declared.items() if kind not in ("str", "list[str]")]


def _dataset_problems(spec: dict, path: Path) -> list[str]:
    """What a schema-valid dataset file gets wrong across its keys, each "<file>: <key>: ...":
    the task type must be one evaluation knows; the passage must be required text fields; rank
    classification needs a label map whose field is ``test_fields.label`` and templates whose
    choices are exactly the labels the map gives (a verbatim template's derived by rendering its
    target for each label); extractive QA needs templates without choices and gold
    ``answers.text`` in the test rows."""
    try:
        task_type = task_type_code(spec["task_type"])
    except ValueError as error:
        return [f"{path}: task_type: {error}"]
    if not evaluated(spec):  # generated for and adapted on only: any task type
        return []
    if scoring(task_type) is None:
        return [f"{path}: task_type: {task_type!r} cannot be evaluated (rank classification: "
                f"{list(RANK_TASK_TYPES)}, generation: {list(GENERATION_TASK_TYPES)})"]
    problems = _passage_problems(spec, path)
    fields, labels = spec["test_fields"], spec.get("labels")
    label = fields.get("label")
    if label is not None and label not in fields["required"]:
        problems.append(f"{path}: test_fields.label: {label!r} is not one of test_fields.required "
                        f"{sorted(fields['required'])}")
    row_id = fields.get("id")
    if row_id is not None and row_id not in fields["required"] and row_id not in fields.get("optional", {}):
        problems.append(f"{path}: test_fields.id: {row_id!r} is not a field of test_fields.required or "
                        f"optional {sorted([*fields['required'], *fields.get('optional', {})])}")
    if labels and labels["field"] != label:
        problems.append(f"{path}: labels.field: {labels['field']!r}, but test_fields.label is "
                        f"{'missing' if label is None else repr(label)}; both name the field of the test "
                        "rows that holds the label")
    if label is not None and not labels:
        problems.append(f"{path}: labels: missing; test_fields.label {label!r} needs a map to yes / no / maybe")
    if labels and fields["required"].get(label) == "int":  # the rows' values are matched by their text
        problems += [f"{path}: labels.map: key {key!r} is not an integer, but the label field {label!r} is int"
                     for key in labels["map"] if not re.fullmatch(r"-?[0-9]+", key)]
    given = set(labels["map"].values()) if labels else set()
    templates = _template_choices(spec["templates"], given)
    all_names = [name for _, names, _ in templates for name in names]
    if len(set(all_names)) != len(all_names):
        problems.append(f"{path}: templates: duplicate template names {all_names}")
    if scoring(task_type) == GREEDY:  # greedy answers scored against answers.text[0]
        problems += [f"{path}: {key}: templates {names} have answer choices, but {task_type} datasets are "
                     "evaluated by generation" for key, names, choices in templates if choices is not None]
        answers = fields["required"].get("answers")
        if not isinstance(answers, dict) or answers.get("text") != "list[str]":
            problems.append(f"{path}: test_fields.required.answers: the gold answers of {task_type} datasets "
                            "are read from answers.text, a list[str]")
    elif not labels:
        if label is None:  # else reported above
            problems.append(f"{path}: labels: missing; {task_type} datasets are scored by rank classification, "
                            "which needs a label map (and test_fields.label)")
    else:
        for key, names, choices in templates:
            if choices is None:
                problems.append(f"{path}: {key}: templates {names} have no answer choices, but {task_type} "
                                "datasets are scored by rank classification over them")
            elif set(choices) != given:
                problems.append(f"{path}: {key}: templates {names} answer {sorted(set(choices))}, but labels.map "
                                f"gives {sorted(given)}; each gold label needs a choice, each choice a gold label")
    if not problems and "verbatim" in spec["templates"]:  # render each label's target, once the keys agree
        try:
            load_templates(spec["templates"], labels, fields, str(path))
        except TemplateError as error:
            problems.append(str(error))
    return problems


def evaluated(spec: dict) -> bool:
    """Whether a dataset has a labelled test set, and so is evaluated (F1) after adaptation."""
    return "test" in spec


def load_dataset_file(entry: str, data: str) -> tuple[str, dict]:
    """A dataset's resolved entry: its file validated, with the origins ``data`` picks."""
    name, path = dataset_file(entry)
    if not path.exists():
        known = f"; shipped: {shipped_datasets()}" if path.parent == DATASETS_DIR else ""
        raise ConfigError(f"run.datasets: no dataset file {str(path)!r} for {entry!r}{known}")
    spec = read_yaml(path)
    _raise(_schema_errors(spec, _definition("dataset_file"), prefix=f"{path}: "), "invalid dataset file")
    _raise(_dataset_problems(spec, path), "invalid dataset file")
    resolved = dict(spec)
    for kind in ("unannotated", "test")[:2 if evaluated(spec) else 1]:
        resolved[kind] = _pick_origin(spec[kind], data, f"{path}: {kind}", path.parent)
    if "passage" in spec:
        resolved["passage"] = passage_fields(spec)
    resolved["file"] = str(path)
    return name, resolved


def resolve(config: dict) -> dict:
    """The config the rules read (see the module docstring); ``config`` is left as it is."""
    resolved = copy.deepcopy(config)
    training = _definition("training")
    for section in TRAINING_SECTIONS:
        resolved[section] = merge(config["training"], config[section])
        schema = training
        if section == "adaptation":
            schema = {**training, "required": [*training["required"], "tapt_block_size"]}
        _raise(_schema_errors(resolved[section], schema, prefix=f"{section}."))
    datasets = {}
    for entry in config["run"]["datasets"]:
        name, spec = load_dataset_file(entry, config["data"])
        if name in datasets:
            raise ConfigError(f"run.datasets: two entries are named {name!r}")
        datasets[name] = spec
    resolved["datasets"] = datasets
    resolved["run"]["datasets"] = list(datasets)  # names, where an entry was a file's path
    for name, generator in resolved["generators"].items():
        if "seed" in generator:  # backtranslation's seed conversations, picked as a dataset's rows are
            generator["seed"] = _pick_origin(generator["seed"], config["data"], f"generators.{name}.seed", Path.cwd())
    resolved["ctga"]["p3_datasets"] = {
        name: origin if "files" in origin else {"embedded": name} if config["data"] == "embedded" else origin
        for name, origin in config["ctga"]["p3_datasets"].items()}
    _select(resolved)
    return resolved


def _select(resolved: dict) -> None:
    """Keep the targets ``run`` selects, the generators its sources and the ablations name and
    the models these use, so that the DAG and its wildcards see nothing else."""
    run = resolved["run"]
    unknown = [t for t in run["targets"] if t not in resolved["targets"]]
    if unknown:
        raise ConfigError(f"run.targets: {unknown} not declared under targets "
                          f"(known: {sorted(resolved['targets'])})")
    unknown = [s for s in run["sources"] if s != TAPT and s not in resolved["generators"]]
    if unknown:
        raise ConfigError(f"run.sources: {unknown} are neither 'tapt' nor declared generators "
                          f"(known: {sorted(resolved['generators'])})")
    resolved["targets"] = {t: resolved["targets"][t] for t in run["targets"]}
    ablation = resolved["ablations"]
    listed = ablation["generators"]["generators"]
    kept = [*run["sources"], *(resolved["generators"] if listed is None else listed),
            ablation["size"]["generator"], ablation["domain"]["generator"]]
    unknown = [g for g in kept if g != TAPT and g not in resolved["generators"]]
    if unknown:
        raise ConfigError(f"ablations: generators {unknown} are not declared (known: {sorted(resolved['generators'])})")
    resolved["generators"] = {g: resolved["generators"][g] for g in dict.fromkeys(kept) if g != TAPT}
    used = set()
    for target in resolved["targets"].values():
        used.add(target["model"])
        used.add(target.get("init_adapter", {}).get("model"))
    for generator in resolved["generators"].values():
        used.update((generator.get("base"), generator.get("model")))
    for name in list(used):  # an adapter's base comes with it
        used.add(resolved["models"].get(name, {}).get("base"))
    resolved["models"] = {m: spec for m, spec in resolved["models"].items() if m in used}


def _missing_files(origin: dict, where: str) -> list[str]:
    """The paths of a ``files`` origin that are no file (a relative one: from the working
    directory, where the jobs read it), each "<where>.files: ..."."""
    files = origin.get("files", [])
    paths = [files] if isinstance(files, str) else files
    return [f"{where}.files: no file {path!r}" for path in paths if not Path(path).is_file()]


def _file_problems(config: dict) -> list[str]:
    """Files the selected datasets, ctga and published generators read, and folders the selected
    models are copied from, that are not there: found now, not when the job that reads them
    starts (after hours of others at paper scale)."""
    problems = []
    for spec in config["datasets"].values():
        for kind in ("unannotated", "test"):
            if kind in spec:  # a dataset of one's own may have no test set
                problems += _missing_files(spec[kind], f"{spec['file']}: {kind}")
    ctga = config["ctga"]
    if ctga["use_published"] or ctga.get("compare_published"):
        problems += _missing_files(ctga["published"], "ctga.published")
    if not ctga["use_published"]:
        for name, origin in ctga["p3_datasets"].items():
            problems += _missing_files(origin, f"ctga.p3_datasets.{name}")
    for name, generator in config["generators"].items():
        if "files" in generator.get("origin", {}):
            for dataset in config["datasets"]:  # `{dataset}` in a path is each dataset's key
                origin = json.loads(json.dumps(generator["origin"]).replace("{dataset}", dataset))
                problems += _missing_files(origin, f"generators.{name}.origin")
    for name, model in config["models"].items():
        if "path" in model and not Path(model["path"]).is_dir():
            problems.append(f"models.{name}.path: no folder {model['path']!r}")
    return problems


def check_references(config: dict) -> None:
    """Names used in one section must be declared in another; raise ConfigError naming the key.
    ``config`` is resolved (``resolve``), so only what runs is checked."""
    problems: list[str] = []
    models, targets, generators = config["models"], config["targets"], config["generators"]

    def need(kind: str, name: str, declared: dict, where: str) -> None:
        if name not in declared:
            problems.append(f"{where}: {kind} {name!r} is not declared (known: {sorted(declared)})")

    for name, model in models.items():
        tiny = model.get("tiny")
        if tiny and (tiny["hidden_size"] % tiny["heads"] or tiny["heads"] % tiny["kv_heads"]):
            problems.append(f"models.{name}.tiny: heads ({tiny['heads']}) must divide hidden_size "
                            f"({tiny['hidden_size']}), and kv_heads ({tiny['kv_heads']}) must divide heads")
        if model.get("adapter") and "base" not in model:
            problems.append(f"models.{name}.base: an adapter needs the model it adapts")
        if "base" in model:
            need("model", model["base"], models, f"models.{name}.base")
    for name, target in targets.items():
        need("model", target["model"], models, f"targets.{name}.model")
        init = target.get("init_adapter", {})
        if "model" in init:
            need("model", init["model"], models, f"targets.{name}.init_adapter.model")
            if init["model"] in models and not models[init["model"]].get("adapter"):
                problems.append(f"targets.{name}.init_adapter.model: {init['model']!r} is not an adapter")
    for name, generator in generators.items():
        for key in ("base", "model"):
            if key in generator:
                need("model", generator[key], models, f"generators.{name}.{key}")
    for section, stage in TRAINING_RESOURCES.items():
        gpus = config["resources"].get(stage, {}).get("gpus", 0)
        processes = config[section]["processes"]
        if gpus and processes != gpus:  # one process per GPU: fewer idles GPUs, more oversubscribes them
            problems.append(f"{section}.processes: {processes} training processes on resources.{stage}.gpus "
                            f"= {gpus} GPUs; use one process per GPU")
    limit = config["resources"]["max_runtime"]
    problems += [f"resources.{stage}.runtime: {values['runtime']} minutes, more than resources.max_runtime "
                 f"({limit}); a longer job is killed by the partition (Bonito training chains jobs instead)"
                 for stage, values in config["resources"].items() if stage != "max_runtime" and values["runtime"] > limit]
    generation = config["generation"]
    if generation["temperature"] == 0 and generation["n"] > 1:
        problems.append(f"generation.n: {generation['n']} samples at temperature 0 (greedy decoding) are "
                        "all the same; use n: 1 or a temperature above 0")
    for name, generator in generators.items():  # a prompted generator's own sampling, over generation's
        sampling = {**generation, **generator.get("sampling", {})}
        if "sampling" in generator and sampling["temperature"] == 0 and sampling["n"] > 1:
            problems.append(f"generators.{name}.sampling: {sampling['n']} samples at temperature 0 are all the "
                            "same; use n: 1 or a temperature above 0")
    if config["evaluation"]["truncation"] == "passage":
        problems += [f"{spec['file']}: passage: missing; evaluation.truncation is 'passage', which shortens "
                     "the test fields this key names" for spec in config["datasets"].values() if evaluated(spec) and "passage" not in spec]
    problems += generator_name_problems(config["generators"])
    problems += _file_problems(config)
    _raise(problems)


def validate(config: dict) -> dict:
    """The resolved config of a merged one, or a ConfigError naming every problem found."""
    validate_schema(config)
    resolved = resolve(config)
    check_references(resolved)
    return resolved


def _with_layers(path: Path, root: Path, applied: set[Path]) -> list[dict]:
    """What the file ``path`` merges, in order: the shared layers it names (each after the layers
    it names in turn), then the file without its ``layers`` key. A layer in ``applied`` is skipped
    (it is merged once, beneath the first file that names it); the others are added to it."""
    content = read_yaml(path)
    layers = content.pop(LAYERS_KEY, [])
    if not isinstance(layers, list) or not all(isinstance(layer, str) for layer in layers):
        raise ConfigError(f"{path}: {LAYERS_KEY}: expected a list of config files (paths from {root}), got {layers!r}")
    contents = []
    for layer in layers:
        layer_path = Path(os.path.abspath(root / layer))  # as named: a checkout's config/ links into the package
        if layer_path.resolve() in applied:
            continue
        if not layer_path.is_file():
            raise ConfigError(f"{path}: {LAYERS_KEY}: no file {str(layer_path)!r}")
        applied.add(layer_path.resolve())
        contents += _with_layers(layer_path, root, applied)
    return [*contents, content]


def merged_config(paths: Sequence[str | Path], overrides: Mapping[str, Any] | None = None,
                  root: str | Path | None = None) -> dict:
    """The config files ``paths`` (the base config.yaml first) merged in order, each over the shared
    layers it names under ``layers`` (paths from ``root``, by default the base's folder, so that a
    copy of an overlay elsewhere finds them), then ``overrides`` (Snakemake's ``--config``) on top;
    not validated. Snakemake merges the command line's files without their layers, so
    rules/common.smk merges them again with this."""
    root = Path(root) if root is not None else Path(paths[0]).parent
    applied: set[Path] = set()
    merged: dict = {}
    for path in paths:
        for content in _with_layers(Path(path), root, applied):
            merged = merge(merged, content)
    return merge(merged, dict(overrides or {}))


def load_config(*paths: str | Path) -> dict[str, Any]:
    """The resolved config of ``paths`` merged in order (the base config.yaml first), each over
    its shared layers (``merged_config``)."""
    return validate(merged_config(paths))


def workflow_root() -> Path:
    """Where the workflow is read from: the checkout this package is installed from (editable),
    whose root Snakefile links to the packaged one, else the packaged workflow (a wheel). The
    checkout first, because the config names interpreters by paths from it (.venv-vllm/bin/python)
    and the rules resolve those from the Snakefile's folder."""
    checkout = WORKFLOW_DIR.parents[3]  # src/bonito_repro/data/workflow
    snakefile = checkout / "Snakefile"
    if snakefile.is_symlink() and snakefile.resolve() == (WORKFLOW_DIR / "Snakefile").resolve():
        return checkout
    return WORKFLOW_DIR


def scale_files(scale: str, root: str | Path | None = None) -> list[Path]:
    """The config files of a shipped scale: config.yaml, with config/SCALE.yaml on top unless the
    scale is the paper's (from ``root``, by default ``workflow_root()``)."""
    root = Path(root) if root is not None else workflow_root()
    return [root / "config.yaml", *([] if scale == "paper" else [root / "config" / f"{scale}.yaml"])]


def load_scale(scale: str, root: str | Path | None = None) -> dict[str, Any]:
    """The resolved config of a shipped scale (``scale_files``)."""
    return load_config(*scale_files(scale, root))


def declared_config() -> dict[str, Any]:
    """The paper's config.yaml checked against the schema, not narrowed to a run: every generator
    and model it declares (the Python API's defaults)."""
    config = merged_config([workflow_root() / "config.yaml"])
    validate_schema(config)
    return config


def check_params(params: dict, section: str, omit: Iterable[str] = (), require: Iterable[str] = (),
                 flag: str = "--params") -> dict:
    """A stage's ``--params`` against the schema of the config section they come from: every key
    the stage reads is there and of its type (``omit``: required keys a job of this kind does not
    get; ``require``: optional ones it needs). Raises ConfigError naming the keys."""
    schema = _definition(section)
    required = [k for k in schema.get("required", []) if k not in set(omit)] + list(require)
    schema = {**schema, "required": required}
    _raise(_schema_errors(params, schema, prefix=f"{section}."), f"invalid {flag} (the config's {section} section)")
    return params


__all__ = ["ConfigError", "load_config", "validate", "validate_schema", "resolve", "check_references",
           "check_params", "merge", "merged_config", "load_scale", "scale_files", "workflow_root", "WORKFLOW_DIR", "TASK_TYPES", "ZERO_SHOT", "TAPT", "EVAL_DECODING_KEYS"]
