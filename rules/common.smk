# What the rule files share (the validated, resolved config, names, environments, wildcard
# constraints, resources and paths) and, last, the input and params functions of each.
import json
import os
import re
import shlex
import sys

from snakemake.settings.types import DeploymentMethod

from bonito_repro.core.config import EVAL_DECODING_KEYS, ConfigError, evaluated, merged_config, validate
from bonito_repro.core.sources import TAPT, ZERO_SHOT, chained_generator, parse_size_source
from bonito_repro.workflow.ablations import ablation_sources
from bonito_repro.core.origins import embedded_path
from bonito_repro.core.prompts import BACKTRANSLATION_WRAPPER

try:  # Snakemake's merge again, with the shared layers the files name (config/cpu.yaml) beneath them
    # (read_yaml stops at a key written twice: Snakemake keeps the last without a word)
    resolved = validate(merged_config([BASE_CONFIG, *workflow.config_settings.configfiles], workflow.config_settings.config))
except ConfigError as error:
    raise WorkflowError(str(error)) from None
# The rules read the resolved config: training sections merged over `training`, the dataset
# files loaded, and only what `run` selects (bonito_repro.core.config.resolve).
config.clear()
config.update(resolved)

R = "results"
MODELS = sorted(config["models"])
TARGETS = sorted(config["targets"])
DATASETS = sorted(config["datasets"])
# the datasets with a labelled test set: the others end at their adapted models
EVALUATED = [d for d in DATASETS if evaluated(config["datasets"][d])]
GENERATORS = sorted(config["generators"])
SOURCES = list(config["run"]["sources"])
# size points ({generator}.n{N}) and chains (tapt+{generator}) of the ablations (ablations.smk)
ABLATION_SOURCES = ablation_sources(config)

# The interpreter each command starts with: MAIN_PY, or VLLM_PY for vLLM. Under --sdm conda each
# rule's environment brings its own `python` and finds this package through PYTHONPATH. Otherwise
# an interpreter the config names (a path from the checkout) is written into the commands, so a
# dry run (-n -p) shows which one every job runs, and a job reruns when its environment changes
# (Snakemake's code trigger compares the commands); `environments.main: null` is `python` from
# the directory of the interpreter running snakemake, put first on PATH.
def interpreter(path):
    """A configured interpreter for a command: a relative path from the checkout (a run with `-d DIR`
    works in DIR, where `.venv-vllm/bin/python` is not), a bare name looked up on PATH."""
    if os.sep in path and not os.path.isabs(path):
        path = os.path.join(workflow.basedir, path)
    return shlex.quote(path)


USE_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
if USE_CONDA:  # the prefix is formatted like a command: its shell braces doubled twice (f-string, then format)
    shell.prefix(f'set -euo pipefail; export PYTHONPATH="{workflow.basedir}/src${{{{PYTHONPATH:+:$PYTHONPATH}}}}"; ')
    MAIN_PY = VLLM_PY = "python"
else:
    shell.prefix(f'set -euo pipefail; export PATH="{os.path.dirname(sys.executable)}:$PATH"; ')
    MAIN_PY = interpreter(config["environments"]["main"]) if config["environments"]["main"] else "python"
    VLLM_PY = interpreter(config["environments"]["vllm"])


def python_for(backend):
    """The interpreter of a backend's environment (vLLM has its own)."""
    return VLLM_PY if backend == "vllm" else MAIN_PY


# Offline first: every job runs without the Hub except the download rules, whose commands start
# with ONLINE. Tokens (HF_TOKEN) stay in the environment, never in a command line or log.
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
ONLINE = "HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0"


def _choice(names):
    return "|".join(map(re.escape, names)) if names else "(?!)"


wildcard_constraints:
    model=_choice(MODELS),
    target=_choice(TARGETS),
    dataset=_choice(DATASETS),
    generator=_choice(GENERATORS),
    source=_choice([ZERO_SHOT, TAPT, *GENERATORS, *ABLATION_SOURCES]),
    train_dataset=_choice(DATASETS),
    size="[1-9][0-9]*",


# Stages whose jobs may run on GPUs; downloads, the data rules and ctga request none.
GPU_STAGES = {"train_bonito", "generate", "adapt", "evaluate"}


def threads_of(stage):
    """A stage's threads, from config `resources` (profiles carry only executor and site settings)."""
    return config["resources"][stage]["threads"]


def resources_of(stage):
    """A stage's job resources from config `resources`, for `resources: **resources_of(stage)`:
    memory, runtime (minutes) and, for the GPU stages, `gpu`."""
    values = config["resources"][stage]
    gpu = {"gpu": values["gpus"]} if stage in GPU_STAGES else {}
    return {**gpu, "mem_mb": values["mem_mb"], "runtime": values["runtime"]}


def as_json(value):
    """Hyperparameters reach a command as one JSON string, so a changed value reruns its jobs."""
    return json.dumps(value, sort_keys=True)


# --- paths and commands several rule files share


def model_dir(name):
    return f"{R}/models/{name}"


def model_at(dpath):
    """Input function: the directory of the model that config names at `dpath`, a path with
    wildcards such as "targets/{target}/model". Only for schema-checked names: dpath reads `*?[`
    as a glob, and dataset names (file stems) may contain them."""
    name = lookup(dpath=dpath, within=config)
    return lambda w: model_dir(name(w))


def init_adapter_dir(target):
    """Adapter a target starts from (published P3 adapter, or the one trained here), or None."""
    spec = config["targets"][target].get("init_adapter", {})
    if "model" in spec:
        return model_dir(spec["model"])
    if spec.get("train_on") == "p3":
        return f"{R}/p3/{config['targets'][target]['model']}/adapter"
    return None


def adapter_dir(target, source, dataset):
    return f"{R}/adapters/{target}/{source}/{dataset}"


def synthetic(generator, dataset, suffix=".parquet"):
    return f"{R}/synthetic/{generator}/{dataset}{suffix}"


# Resume checkpoints of the training jobs (train.smk, adapt.smk), at the same relative path as the
# output: not a declared output, which Snakemake deletes before a retry.
CHECKPOINTS = f"{R}/checkpoints"


def train_command(section):
    """The training CLI's module arguments (train.smk, adapt.smk: `{MAIN_PY} {params.train}`),
    under torchrun when the config asks for more than one process."""
    processes = config[section]["processes"]
    if processes == 1:
        return "-m bonito_repro train"
    return f"-m torch.distributed.run --standalone --nproc_per_node {processes} -m bonito_repro train"


def local_files(kind, origin):
    """Local files an origin reads (embedded demo rows or the user's own), so that editing one
    reruns its job (data.smk, ctga.smk)."""
    if "embedded" in origin:
        return [str(embedded_path(kind, origin["embedded"]))]
    if "files" in origin:
        return [origin["files"]] if isinstance(origin["files"], str) else list(origin["files"])
    return []


# --- Input and params functions of one rule file each, in DAG order. Snakemake's linter wants no
# functions beside rules ("Mixed rules and functions in same snakefile"), so they live here; they
# read only config and the names above, never a rule file's.


# --- used by data.smk


def data_origin(dataset, kind):
    return config["datasets"][dataset][kind]


def data_online(dataset, kind):
    """Only a Hub origin lifts the offline setting (common.smk), and only for this command."""
    return ONLINE if "hub" in data_origin(dataset, kind) else ""


# --- used by generate.smk


def test_split(dataset):
    """The test split the funnel checks a dataset's tasks against for contamination, if any."""
    return f"{R}/test/{dataset}.parquet" if dataset in EVALUATED else []


def test_arg(w, input):
    return f"--test {input.test}" if input.test else ""


def generator_inputs(w):
    spec = config["generators"][w.generator]
    if "model" in spec:
        return {"model": model_dir(spec["model"])}
    return {"model": model_dir(spec["base"]), "adapter": f"{R}/generators/{w.generator}/adapter"}


def generation_params(generator):
    """The `generation` section with the generator's own `sampling` over it (prompted kinds)."""
    return {**config["generation"], **config["generators"][generator].get("sampling", {})}


def published_origin(generator, dataset):
    """The generator's origin with `{dataset}` filled in wherever it appears."""
    return json.loads(json.dumps(config["generators"][generator]["origin"]).replace("{dataset}", dataset))


# --- used by adapt.smk


def training_rows(source, dataset):
    """What an adaptation of `source` trains on: unannotated text (tapt), a size point's subset
    of synthetic tasks, or a generator's synthetic tasks (also after TAPT, for a chain)."""
    if source == TAPT:
        return f"{R}/unannotated/{dataset}.parquet"
    size = parse_size_source(source)
    if size:
        return synthetic(size[0], dataset, f".n{size[1]}.parquet")
    return synthetic(chained_generator(source) or source, dataset)


def start_adapter_dir(target, source, dataset):
    """The adapter an adaptation starts from: TAPT's for a chain, else the target's own, or None."""
    return adapter_dir(target, TAPT, dataset) if chained_generator(source) else init_adapter_dir(target)


def unless_alias(w, outputs):
    """Command prefix of a size point's job: if its subset is the whole set, copy the full-set
    job's outputs (`outputs`: paths with `{source}` and the job's other wildcards) instead of
    running (bonito_repro.workflow.ablations.unless_alias)."""
    size = parse_size_source(w.source)
    if not size:
        return ""
    fill = lambda path, source: path.format(**{**dict(w.items()), "source": source})  # noqa: E731
    pairs = " ".join(f"--copy {fill(path, size[0])} {fill(path, w.source)}" for path in outputs)
    return f"{MAIN_PY} -m bonito_repro ablations unless-alias --subset {subset_input(w)} {pairs} -- "


def subset_input(w):
    """A size point's subset manifest (whose `alias_of_full_set` the job reads), else nothing."""
    size = parse_size_source(w.source)
    dataset = w.get("train_dataset", w.dataset)
    return synthetic(size[0], dataset, f".n{size[1]}.manifest.json") if size else []


def adaptation_params(source):
    """The adaptation values a job uses: TAPT ignores the pair lengths, pairs the block size, so
    that changing one reruns only the jobs it affects."""
    unused = ("max_input_length", "max_output_length") if source == TAPT else ("tapt_block_size",)
    return {k: v for k, v in config["adaptation"].items() if k not in unused}


# --- used by evaluate.smk


def eval_stem(w):
    """An evaluation's outputs without their suffix: in-domain, or a transfer evaluation of the
    adapter trained on `train_dataset` (ablations.smk); `{source}` left to fill."""
    if "train_dataset" in w.keys():
        return f"{R}/eval/{w.target}/{{source}}/{w.train_dataset}/on_{w.dataset}"
    return f"{R}/eval/{w.target}/{{source}}/{w.dataset}"


def eval_inputs(w):
    """The target's base model, the test split and the adapter evaluated with them, if any: the
    target's starting adapter for zero_shot, else the one adapt trained on the source (with the
    train dataset's data, for a transfer evaluation). A size point also reads its subset manifest
    and the full set's evaluation, which it copies if the subset is the whole set."""
    if w.source == ZERO_SHOT:
        adapter = init_adapter_dir(w.target)
    else:
        adapter = adapter_dir(w.target, w.source, w.get("train_dataset", w.dataset))
    size = parse_size_source(w.source)
    alias = {"subset": subset_input(w), "full": eval_stem(w).format(source=size[0]) + ".json"} if size else {}
    return {"model": model_dir(config["targets"][w.target]["model"]), "test": f"{R}/test/{w.dataset}.parquet",
            **({"adapter": adapter} if adapter else {}), **alias}


def eval_params(generation):
    """Params of an evaluation rule: rank jobs get no decoding values (changing those reruns only
    the greedy-decoding jobs), and a job gets its dataset's passage fields only under
    `evaluation.truncation: passage` (changing them reruns that dataset's evaluations only)."""
    values = dict(config["evaluation"])
    if not generation:
        values = {k: v for k, v in values.items() if k not in EVAL_DECODING_KEYS}
    shortens = values["truncation"] == "passage"
    return dict(
        hp=as_json(values),
        device=config["device"],
        wrapper=lambda w: config["targets"][w.target]["wrapper"][{ZERO_SHOT: "zero_shot", TAPT: "tapt"}.get(w.source, "adapted")],
        task_type=lambda w: config["datasets"][w.dataset]["task_type"],
        labels=lambda w: as_json(config["datasets"][w.dataset].get("labels")),
        templates=lambda w: as_json(config["datasets"][w.dataset]["templates"]),
        fields=lambda w: as_json(config["datasets"][w.dataset]["test_fields"]),
        passage=lambda w: as_json(config["datasets"][w.dataset]["passage"] if shortens else None),
        adapter=lambda w, input: f"--adapter {input.adapter}" if "adapter" in input.keys() else "",
        alias=lambda w: unless_alias(w, [eval_stem(w) + s for s in (".json", ".predictions.parquet", ".manifest.json")]),
    )


# --- used by plots.smk


def loss_curve_section(adapter):
    """(report subcategory, job label) of a loss curve, from its adapter's path under results/."""
    kind, *names = adapter.split("/")
    if kind == "adapters":
        return "adaptation", " / ".join(names)
    # generators/G/adapter (Bonito) or generators/G/backward_adapter (backtranslation)
    label = names[0] if names[1:] == ["adapter"] else " / ".join(names)
    return {"generators": "generators", "p3": "P3 stand-in"}[kind], label


# --- used by cards.smk


def _dataset_info(dataset):
    spec = config["datasets"][dataset]
    origin = spec["unannotated"]
    where = {"hub": lambda: f"Hub dataset {origin['hub']['id']} ({origin['hub'].get('config')})",
             "embedded": lambda: f"the project's embedded demo rows `{origin['embedded']}`",
             "files": lambda: f"the files {origin['files']}"}[next(iter(origin))]()
    # a dataset file of the user's own names its license (the corpus command asks for it); the
    # embedded demo rows are the project's own text, under its license; the paper's datasets keep
    # their own terms
    license = spec.get("license") or ("apache-2.0" if "embedded" in origin else "other")
    return {"dataset": dataset, "title": spec["title"], "task_type": spec["task_type"], "origin": where,
            "license": license, "scale": config["scale"], "evaluated": dataset in EVALUATED}


def dataset_card_info(generator, dataset):
    return {**_dataset_info(dataset), "generator": generator, "generator_spec": config["generators"][generator],
            "generation": config["generation"]}


def model_card_info(target, source, dataset):
    spec = config["targets"][target]
    model = config["models"][spec["model"]]
    return {**_dataset_info(dataset), "target": target, "source": source,
            "base_model": model.get("hub", {}).get("id", spec["model"]), "base_model_on_hub": "hub" in model,
            "init_adapter": init_adapter_dir(target), "training": adaptation_params(source)}
