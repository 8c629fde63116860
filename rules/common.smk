# What the rule files share (the validated, resolved config, names, environments, wildcard
# constraints, resources and paths) and, last, the input and params functions of each.
import json
import os
import re
import sys

from snakemake.settings.types import DeploymentMethod

from bonito_repro.config import EVAL_DECODING_KEYS, ConfigError, TAPT, ZERO_SHOT, validate
from bonito_repro.origins import embedded_path

try:
    resolved = validate(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None
# The rules read the resolved config: training sections merged over `training`, the dataset
# files loaded, and only what `run` selects (bonito_repro.config.resolve).
config.clear()
config.update(resolved)

R = "results"
MODELS = sorted(config["models"])
TARGETS = sorted(config["targets"])
DATASETS = sorted(config["datasets"])
GENERATORS = sorted(config["generators"])
SOURCES = list(config["run"]["sources"])


def interpreter(path):
    """A configured interpreter: a bare name is looked up on PATH, a relative path is relative to
    the repository (a run with `-d DIR` works in DIR, where `.venv-vllm/bin/python` is not)."""
    if os.sep in path and not os.path.isabs(path):
        return os.path.join(workflow.basedir, path)
    return path


# Under --sdm conda each rule's environment brings its own interpreter and finds this package
# through PYTHONPATH; otherwise the configured interpreters (default: the one running snakemake).
USE_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
if USE_CONDA:
    shell.prefix(f'set -euo pipefail; export PYTHONPATH="{workflow.basedir}/src${{PYTHONPATH:+:$PYTHONPATH}}"; ')
else:  # `python` in every command is the main environment's
    main_python = interpreter(config["environments"]["main"] or sys.executable)
    shell.prefix(f'set -euo pipefail; export PATH="{os.path.dirname(os.path.abspath(main_python))}:$PATH"; ')
VLLM_PY = "python" if USE_CONDA else interpreter(config["environments"]["vllm"])


def python_for(backend):
    """The interpreter of a backend's environment (vLLM has its own)."""
    return VLLM_PY if backend == "vllm" else "python"


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
    source=_choice([ZERO_SHOT, TAPT, *GENERATORS]),


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
    """The training CLI (train.smk, adapt.smk), under torchrun when the config asks for more than
    one process."""
    processes = config[section]["processes"]
    if processes == 1:
        return "python -m bonito_repro train"
    return f"python -m torch.distributed.run --standalone --nproc_per_node {processes} -m bonito_repro train"


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


def generator_inputs(w):
    spec = config["generators"][w.generator]
    if "model" in spec:
        return {"model": model_dir(spec["model"])}
    return {"model": model_dir(spec["base"]), "adapter": f"{R}/generators/{w.generator}/adapter"}


def published_origin(generator, dataset):
    """The generator's origin with `{dataset}` filled in wherever it appears."""
    return json.loads(json.dumps(config["generators"][generator]["origin"]).replace("{dataset}", dataset))


# --- used by adapt.smk


def training_rows(source, dataset):
    """What an adaptation of `source` trains on: unannotated text (tapt) or synthetic tasks."""
    if source == TAPT:
        return f"{R}/unannotated/{dataset}.parquet"
    return synthetic(source, dataset)


def adaptation_params(source):
    """The adaptation values a job uses: TAPT ignores the pair lengths, pairs the block size, so
    that changing one reruns only the jobs it affects."""
    unused = ("max_input_length", "max_output_length") if source == TAPT else ("tapt_block_size",)
    return {k: v for k, v in config["adaptation"].items() if k not in unused}


# --- used by evaluate.smk


def eval_inputs(w):
    """The target's base model, the test split and the adapter evaluated with them, if any: the
    target's starting adapter for zero_shot, else the one adapt trained on the source."""
    if w.source == ZERO_SHOT:
        adapter = init_adapter_dir(w.target)
    else:
        adapter = adapter_dir(w.target, w.source, w.dataset)
    return {"model": model_dir(config["targets"][w.target]["model"]), "test": f"{R}/test/{w.dataset}.parquet",
            **({"adapter": adapter} if adapter else {})}


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
        wrapper=lambda w: config["targets"][w.target]["wrapper"][{ZERO_SHOT: "zero_shot", TAPT: "tapt"}.get(w.source, "adapted")],
        task_type=lambda w: config["datasets"][w.dataset]["task_type"],
        labels=lambda w: as_json(config["datasets"][w.dataset].get("labels")),
        templates=lambda w: as_json(config["datasets"][w.dataset]["templates"]),
        fields=lambda w: as_json(config["datasets"][w.dataset]["test_fields"]),
        passage=lambda w: as_json(config["datasets"][w.dataset]["passage"] if shortens else None),
        adapter=lambda w, input: f"--adapter {input.adapter}" if "adapter" in input.keys() else "",
    )


# --- used by plots.smk


def loss_curve_section(adapter):
    """(report subcategory, job label) of a loss curve, from its adapter's path under results/."""
    kind, *names = adapter.split("/")
    if kind == "adapters":
        return "adaptation", " / ".join(names)
    return {"generators": "generators", "p3": "P3 stand-in"}[kind], names[0]
