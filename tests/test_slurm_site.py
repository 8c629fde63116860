"""Where the workflow's jobs and the preflight's GPU job land on Slurm: the sbatch call that the
Slurm executor plugin (2.8) builds from a job's resources, as the rules ask for them
(``Dag.resources``) under the config's site settings (`resources.slurm`), without a Slurm.
The one-node Slurm runs the same resources in tests/test_slurm.py."""
from __future__ import annotations

import copy
import json
import logging
import re
import shlex
from types import SimpleNamespace

import pytest
import snakemake_executor_plugin_slurm as plugin
import yaml
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string

from bonito_repro.cluster import preflight
from bonito_repro.core import slurm
from bonito_repro.core.config import ConfigError, load_scale, merge, read_yaml, validate
from bonito_repro.workflow.dag import GPU_STAGES, Dag
from conftest import REPO, dry_run_jobs, snakemake

# a site whose GPUs are a gres (no --gpus), in its own partitions, with an account, a QOS and a
# GPU type: the example of docs/cluster.md, "Site settings"
GRES_SITE = {"cpu_partition": "cpu", "gpu_partition": "gpu-a100", "account": "mylab", "qos": "normal",
             "gpu_constraint": "a100|h100", "gpu_request": "gres", "downloads_as_jobs": False}


class Resources(dict):
    """A job's resources as the plugin reads them: ``resources.get(key)`` and ``resources.key``."""

    __getattr__ = dict.__getitem__


def sbatch_call(resources: dict, threads: int = 1, monkeypatch=None) -> list[str]:
    """The sbatch call the plugin submits for a job with these resources (its command aside),
    split into words. Account and partition go through the plugin's own checks, with sacctmgr's
    answer (the given account exists) and no default partition or account to guess."""
    monkeypatch.setattr(plugin, "validate_account", lambda account, logger: account)
    monkeypatch.setattr(plugin, "get_account", lambda logger: None)
    monkeypatch.setattr(plugin, "get_default_partition", lambda job, logger: "")
    job = SimpleNamespace(resources=Resources(resources), threads=threads, name="rule")
    executor = SimpleNamespace(_partitions=None, _fallback_partition=None, _fallback_account_arg=None,
                               logger=logging.getLogger("plugin"))
    params = {"run_uuid": "run", "slurm_logfile": "job.log", "comment_str": "rule_x", "workdir": "/work",
              "account": next(plugin.Executor.get_account_arg(executor, job)),
              "partition": plugin.Executor.get_partition_arg(executor, job)}
    return shlex.split(get_submit_command(job, params) + set_gres_string(job))


@pytest.fixture(scope="module")
def paper() -> dict:
    return load_scale("paper", REPO)


def with_site(config: dict, site: dict) -> Dag:
    config = copy.deepcopy(config)
    config["resources"]["slurm"] = site
    return Dag(config)


def test_every_gpu_job_asks_for_one_node(paper, monkeypatch):
    """torchrun --standalone needs every GPU of a job on one node: Bonito training's 4 GPUs come
    with --nodes=1 (without it sbatch may spread them over nodes), and so does every GPU job."""
    dag = Dag(paper)
    for stage in GPU_STAGES:
        call = sbatch_call(dag.resources(stage), dag.threads(stage), monkeypatch)
        gpus = paper["resources"][stage]["gpus"]
        assert "--nodes=1" in call and f"--gpus={gpus}" in call, (stage, call)
    assert "--gpus=4" in sbatch_call(dag.resources("train_bonito"), monkeypatch=monkeypatch)
    assert not any(word.startswith("--nodes") for word in sbatch_call(dag.resources("ctga"), monkeypatch=monkeypatch))


def test_site_settings_reach_every_jobs_sbatch_call(paper, monkeypatch):
    dag = with_site(paper, GRES_SITE)
    train = sbatch_call(dag.resources("train_bonito"), 16, monkeypatch)
    for words in (["-p", "gpu-a100"], ["-A", "mylab"], ["--qos=normal"], ["-C", "a100|h100"], ["--gres=gpu:4"],
                  ["--nodes=1"]):
        assert " ".join(words) in " ".join(train), (words, train)
    assert not any(word.startswith("--gpus") for word in train), train
    ctga = " ".join(sbatch_call(dag.resources("ctga"), 16, monkeypatch))
    assert "-p cpu -A mylab" not in ctga and "-A mylab -p cpu" in ctga and "--qos=normal" in ctga, ctga
    assert "gres" not in ctga and "-C" not in ctga.split(), ctga
    # nothing set: sbatch's defaults (the plugin guesses the account), no option of the site's
    default = sbatch_call(Dag(paper).resources("evaluate"), monkeypatch=monkeypatch)
    assert not {"-p", "-A", "-C"} & set(default) and not any(w.startswith("--qos") for w in default), default


@pytest.mark.parametrize("site", [GRES_SITE, {**GRES_SITE, "gpu_request": "gpus", "account": None, "qos": None}])
def test_the_preflights_gpu_job_asks_for_its_gpu_as_the_workflows_jobs_do(paper, site, monkeypatch):
    config = copy.deepcopy(paper)
    config["resources"]["slurm"] = site
    config["environments"]["main"] = None
    command = preflight.gpu_job_command(config, REPO)
    options = slurm.slurm_options(slurm.job_resources(site, 1))
    assert command[:len(options) + 1] == ["srun", *options]
    # each option (and its value) as the plugin submits it for a workflow job with one GPU
    submitted = " ".join(sbatch_call(slurm.job_resources(site, 1), monkeypatch=monkeypatch))
    pairs = [" ".join(options[i:i + 2]) if "=" not in option else option
             for i, option in enumerate(options) if option.startswith("-")]
    assert all(f" {pair} " in f" {submitted} " for pair in pairs), (pairs, submitted)
    request = "--gres=gpu:1" if site["gpu_request"] == "gres" else "--gpus=1"
    assert request in command and "-C" in command and "--nodes=1" in command, command
    # the engine check starts vLLM with the config's engine settings, as the generation jobs do
    assert command[command.index("--vllm-settings") + 1] == json.dumps(config["generation"]["vllm"])


def test_the_site_settings_are_validated_config_values():
    base = read_yaml(REPO / "config.yaml")
    site = {"resources": {"slurm": {**GRES_SITE, "cpu_partition": "cpu", "gpu_request": "gres"}}}
    assert validate(merge(base, site))["resources"]["slurm"] == GRES_SITE
    with pytest.raises(ConfigError, match="gpus-per-node"):
        validate(merge(base, {"resources": {"slurm": {"gpu_request": "gpus-per-node"}}}))
    with pytest.raises(ConfigError, match="partition"):
        validate(merge(base, {"resources": {"slurm": {"gpu_partition": ""}}}))


DOWNLOAD_RULES = {"prepare_model", "unannotated", "test_set", "ctga_download", "published_tasks", "backtranslation_seed"}


def test_downloads_are_local_rules_unless_the_site_runs_them_as_jobs(paper):
    """Every rule that downloads or converts says `localrule: dag.downloads_local`, which holds
    unless resources.slurm.downloads_as_jobs (the dry run below shows those jobs' partition)."""
    from test_rules import RULE_FILES, parse

    rules = {rule.name: rule for path in RULE_FILES for rule in parse(path).rules}
    for name in DOWNLOAD_RULES:
        text = (REPO / "rules" / rules[name].file).read_text()
        assert re.search(rf"^rule {name}:\n    localrule: dag.downloads_local\n", text, re.M), name
    assert Dag(paper).downloads_local
    assert not with_site(paper, {**GRES_SITE, "downloads_as_jobs": True}).downloads_local


@pytest.mark.dag
def test_the_paper_dry_run_places_every_job_by_the_site_settings(tmp_path):
    """Under a `--gres` site with downloads_as_jobs, the paper DAG's downloads are jobs on the CPU
    partition and its GPU jobs ask for a gres of GPUs on one node of the GPU partition."""
    overlay = tmp_path / "site.yaml"
    overlay.write_text(yaml.safe_dump({"resources": {"slurm": {**GRES_SITE, "downloads_as_jobs": True}}}))
    result = snakemake("-n", "--profile", "slurm", "--configfile", str(overlay))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = dry_run_jobs(result.stdout + result.stderr)
    assert {"prepare_model", "unannotated", "test_set", "ctga_download"} <= {job.rule for job in jobs}
    for job in jobs:
        if job.rule in DOWNLOAD_RULES or job.rule == "ctga":
            assert job.resources["slurm_partition"] == "cpu" and "gres" not in job.resources, job
        elif "gres" in job.resources:
            assert (job.resources["slurm_partition"], job.resources["constraint"], job.resources["nodes"]) == (
                "gpu-a100", "a100|h100", "1"), job
        assert job.resources.get("slurm_account", "mylab") == "mylab" and "gpu" not in job.resources, job
    assert any(j.resources.get("gres") == "gpu:4" for j in jobs if j.rule == "train_bonito")
