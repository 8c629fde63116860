# Config validation, names, paths and resources shared by every rule file.
import json
import os
import re
import sys

from snakemake.settings.types import DeploymentMethod

import bonito_repro
from bonito_repro.config import ConfigError, TAPT, ZERO_SHOT, validate

try:
    validate(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None

R = "results"
# the package's data files, by absolute path so that a run in another working directory finds them
PACKAGE_DATA = os.path.join(os.path.dirname(bonito_repro.__file__), "data")
MODELS = sorted(config["models"])
TARGETS = sorted(config["targets"])
DATASETS = sorted(config["datasets"])
GENERATORS = sorted(config["generators"])
SOURCES = list(config["sources"])

# Under --sdm conda each rule's environment brings its own interpreter and finds this package
# through PYTHONPATH; otherwise the configured interpreters (default: the one running snakemake).
USE_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
CONDA_PY = f"PYTHONPATH={workflow.basedir}/src python"
PY = CONDA_PY if USE_CONDA else (config["environments"]["main"] or sys.executable)
VLLM_PY = CONDA_PY if USE_CONDA else config["environments"]["vllm"]
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


def res(stage):
    """Resources of a stage from config (profiles carry only executor and site settings)."""
    return config["resources"].get(stage, config["resources"]["default"])


def as_json(value):
    """Hyperparameters reach a command as one JSON string, so a changed value reruns its jobs."""
    return json.dumps(value, sort_keys=True)


def model_dir(name):
    return f"{R}/models/{name}"


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


def training_rows(source, dataset):
    """What an adaptation of `source` trains on: unannotated text (tapt) or synthetic tasks."""
    if source == TAPT:
        return f"{R}/unannotated/{dataset}.parquet"
    return f"{R}/synthetic/{source}/{dataset}.parquet"


def eval_result(target, source, dataset):
    return f"{R}/eval/{target}/{source}/{dataset}.json"


def all_eval_results():
    return [
        eval_result(t, s, d)
        for t in TARGETS
        for s in [ZERO_SHOT, *SOURCES]
        for d in DATASETS
    ]
