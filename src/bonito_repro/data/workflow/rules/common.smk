# What the rule files share, and all they read beside the config. The validated, resolved config;
# the Hub lock of the working directory, if any; `dag`, the DAG's glue (bonito_repro.workflow.dag:
# what runs, the input and params functions, the final outputs); `layout`, every path under
# results/ (bonito_repro.core.layout); the interpreters and environments the commands run in; the
# wildcard constraints. Rule files define nothing that another rule file reads (tests/test_rules.py).
import os
import shlex
import sys

from snakemake.settings.types import DeploymentMethod

from bonito_repro.core import PACKAGE_DATA, layout
from bonito_repro.core.config import ConfigError, merged_config, validate
from bonito_repro.core.hub_lock import LOCK_FILE, HubLockError, read_lock
from bonito_repro.core.prompts import BACKTRANSLATION_WRAPPER
from bonito_repro.core.sources import TAPT, ZERO_SHOT, parse_size_source
from bonito_repro.workflow.dag import Dag, as_json, choice, local_files, loss_curve_section, test_flag

try:  # Snakemake's merge again, with the shared layers the files name (config/cpu.yaml) beneath them
    # (read_yaml stops at a key written twice: Snakemake keeps the last without a word)
    resolved = validate(merged_config([BASE_CONFIG, *workflow.config_settings.configfiles], workflow.config_settings.config))
except ConfigError as error:
    raise WorkflowError(str(error)) from None
# The rules read the resolved config: training sections merged over `training`, the dataset
# files loaded, and only what `run` selects (bonito_repro.core.config.resolve).
config.clear()
config.update(resolved)
# The Hub lock of this working directory, if the preflight wrote one: every download reads the
# commit it holds (bonito_repro.core.hub_lock; docs/cluster.md, "The Hub lock").
try:
    hub_lock = read_lock(os.path.abspath(LOCK_FILE))
except HubLockError as error:
    raise WorkflowError(str(error)) from None
dag = Dag(config, hub_lock)


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


if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    # the prefix is formatted like a command: its shell braces doubled twice (f-string, then format)
    shell.prefix(f'set -euo pipefail; export PYTHONPATH="{workflow.basedir}/src${{{{PYTHONPATH:+:$PYTHONPATH}}}}"; ')
    MAIN_PY = VLLM_PY = "python"
else:
    shell.prefix(f'set -euo pipefail; export PATH="{os.path.dirname(sys.executable)}:$PATH"; ')
    MAIN_PY = interpreter(config["environments"]["main"]) if config["environments"]["main"] else "python"
    VLLM_PY = interpreter(config["environments"]["vllm"])
MAIN_ENV = "../envs/main.yaml"


def python_for(backend):
    """The interpreter of a backend's environment (vLLM has its own)."""
    return VLLM_PY if backend == "vllm" else MAIN_PY


def env_for(backend):
    """The conda environment of a backend (for clusters that run with --sdm conda)."""
    return "../envs/vllm.yaml" if backend == "vllm" else MAIN_ENV


# generation (generate.smk, backtranslation.smk) runs on `generation.backend`
GENERATION_PY = python_for(config["generation"]["backend"])
GENERATION_ENV = env_for(config["generation"]["backend"])

# Offline first: every job runs without the Hub except the download rules, whose commands start
# with ONLINE. Tokens (HF_TOKEN) stay in the environment, never in a command line or log.
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
ONLINE = "HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0"


def online(origin):
    """Only a Hub origin lifts the offline setting, and only for this command."""
    return ONLINE if "hub" in origin else ""


wildcard_constraints:
    model=choice(dag.models),
    target=choice(dag.targets),
    dataset=choice(dag.datasets),
    generator=choice(dag.generators),
    source=choice([ZERO_SHOT, TAPT, *dag.generators, *dag.ablation_sources]),
    train_dataset=choice(dag.datasets),
    size="[1-9][0-9]*",


def synthetic_outputs():
    """Everything a generation job writes for one (generator, dataset), whatever its kind."""
    outputs = dag.synthetic_outputs()
    return {**outputs, "formats": directory(outputs["formats"])}
