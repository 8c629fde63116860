"""The `slurm/` profile against a real Slurm: jobs, GPUs, a killed and a preempted training job,
a failing job.

The first test runs a part of the smoke DAG (model building and ctga-v1 as CPU jobs, P3-adapter
training and an evaluation as GPU jobs) through `snakemake --profile slurm`, with the test
cluster's settings layered over the profile, a config overlay that gives the GPU stages one
(fake) GPU each, and partition and account given in a site overlay (config `resources.slurm`).
The others run tests/slurm_workflow (a two-GPU training job that checkpoints, one that outlasts its
time limit, a failing rule),
where a job's timing can be controlled. Checks come from Slurm's accounting records (sacct) and
each job's Slurm log. Skipped where no Slurm is reachable; `.ci/run` starts one and sets
BONITO_REQUIRE_SLURM=1, which turns the skip into a failure.
"""

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from bonito_repro.cluster.cost import chain_retries
from slurm_cluster import (
    ACCOUNT,
    PARTITION,
    REPO,
    InterruptAfterCheckpoint,
    run_snakemake_on_slurm,
    slurm_jobs,
    snakemake_jobs,
    submitted_slurm_ids,
    unavailable_reason,
    write_test_profile,
)

pytestmark = pytest.mark.slurm

WORKFLOW = Path(__file__).parent / "slurm_workflow"
CONFIG = yaml.safe_load((WORKFLOW / "config.yaml").read_text())
PROFILE = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
CHECKPOINTS = "results/checkpoints/train/step-*.json"


@pytest.fixture(scope="module")
def slurm():
    reason = unavailable_reason()
    if reason and os.environ.get("BONITO_REQUIRE_SLURM") == "1":
        pytest.fail(f"BONITO_REQUIRE_SLURM=1 but {reason}")
    if reason:
        pytest.skip(reason)


def run_workflow(tmp_path, targets, timeout, while_running=None, snakefile=WORKFLOW / "Snakefile",
                 configfiles=(WORKFLOW / "config.yaml",), **settings):
    profile = write_test_profile(tmp_path / "profile", list(configfiles), **settings)
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    result = run_snakemake_on_slurm(workdir, targets, snakefile=snakefile, profile=profile,
                                    timeout=timeout, while_running=while_running)
    print(f"snakemake took {result.seconds:.0f} s")
    return workdir, result


def last_step(checkpoints):
    return max(int(re.search(r"(?:step|checkpoint)-(\d+)", path).group(1)) for path in checkpoints)


def assert_resumed(workdir, interrupted):
    """The training job's last run resumed from the last checkpoint of the interrupted one."""
    step = last_step(interrupted.checkpoints)
    assert 0 < step < CONFIG["train"]["steps"], interrupted.checkpoints
    assert f"resumed from step {step}" in (workdir / "results/logs/train.log").read_text()
    model = json.loads((workdir / "results/train/model.json").read_text())
    assert model == {"steps": CONFIG["train"]["steps"], "resumed_from": step}


def assert_jobs_ran_on_slurm(result, jobs):
    """Every job that Snakemake did not run locally is a Slurm job, retries included, on the
    partition and account of the site overlay."""
    remote_rules = sorted(rule for rule, local in snakemake_jobs(result.output) if not local)
    assert remote_rules == sorted(j.rule for j in jobs)
    assert sorted(submitted_slurm_ids(result.output)) == sorted(j.job_id for j in jobs)
    assert {(j.partition, j.account) for j in jobs} == {(PARTITION, ACCOUNT)}


def assert_gpus_as_configured(jobs, gpus_of_rule):
    """GPUs as the config asks, on one node (sbatch --nodes=1), seen by the job's tasks; none for
    CPU rules."""
    for job in jobs:
        gpus = gpus_of_rule(job.rule)
        assert (job.gpus_requested, job.gpus_allocated) == (gpus, gpus), job
        assert ("--nodes=1" in job.submit_line.split()) == bool(gpus), job
        seen = job.cuda_visible_devices()
        assert seen, f"no task prolog line in the Slurm log {job.log}"
        if gpus:
            assert all(len(devices.split(",")) == gpus for devices in seen), (job, seen)
        else:
            assert set(seen) == {"unset"}, (job, seen)


# The smoke DAG on the test cluster (2 CPUs, 4 fake GPUs): one GPU for training and evaluation
# as at paper scale, one thread a job, and a P3 adapter that trains long enough to be cancelled
# after its first checkpoint. rule -> its resources section, as in rules/*.smk.
SMOKE_TARGET = "results/eval/llama_p3/zero_shot/pubmed_qa.json"
SMOKE_STAGES = {"ctga": "ctga", "train_p3": "adapt", "evaluate": "evaluate"}  # prepare_model is local
SMOKE_OVERLAY = {
    "resources": {
        "ctga": {"gpus": 0, "threads": 1, "mem_mb": 2000, "runtime": 10},
        "adapt": {"gpus": 1, "threads": 1, "mem_mb": 3000, "runtime": 10},
        "evaluate": {"gpus": 1, "threads": 1, "mem_mb": 3000, "runtime": 10},
    },
    "p3_training": {"max_steps": 400, "save_steps": 40},
}
P3_CHECKPOINTS = "results/checkpoints/p3/tiny_llama/adapter/checkpoint-*/trainer_state.json"


def test_smoke_dag_runs_as_slurm_jobs_and_cancelled_training_resumes(slurm, tmp_path):
    overlay = tmp_path / "cluster.yaml"
    overlay.write_text(yaml.safe_dump(SMOKE_OVERLAY))
    kill = InterruptAfterCheckpoint(tmp_path / "work", "train_p3", P3_CHECKPOINTS, how="cancel")
    # squeue, not the profile's sacct: plugin 2.8.0 reads sacct's "CANCELLED by <uid>" as still
    # running and would wait for ever on a cancelled job (squeue says "CANCELLED")
    workdir, result = run_workflow(tmp_path, [SMOKE_TARGET], timeout=300, while_running=kill,
                                   snakefile=REPO / "Snakefile",
                                   configfiles=(REPO / "config" / "smoke.yaml", overlay),
                                   **{"slurm-status-command": "squeue"})
    assert result.returncode == 0, result.output[-4000:]
    jobs = slurm_jobs(workdir)
    assert_jobs_ran_on_slurm(result, jobs)
    assert set(SMOKE_STAGES) == {j.rule for j in jobs}, jobs
    assert_gpus_as_configured(jobs, lambda rule: SMOKE_OVERLAY["resources"][SMOKE_STAGES[rule]]["gpus"])

    # the cancelled training job was retried by Snakemake and resumed from its last checkpoint
    train = [j for j in jobs if j.rule == "train_p3"]
    assert kill.job_id == train[0].job_id, (kill.job_id, train)
    assert [(j.state, j.attempt) for j in train] == [("CANCELLED", 1), ("COMPLETED", 2)]
    step = last_step(kill.checkpoints)
    assert 0 < step < SMOKE_OVERLAY["p3_training"]["max_steps"], kill.checkpoints
    log = (workdir / "results/logs/train_p3/tiny_llama.log").read_text()
    assert re.search(rf"resuming from \S*/checkpoint-{step}\b", log), log[-2000:]
    manifest = json.loads((workdir / "results/p3/tiny_llama/adapter.manifest.json").read_text())
    assert manifest["resumed_from"].endswith(f"checkpoint-{step}")
    assert manifest["steps"] == SMOKE_OVERLAY["p3_training"]["max_steps"]
    assert (workdir / SMOKE_TARGET).exists()


def test_preempted_training_is_requeued_and_resumes(slurm, tmp_path):
    preempt = InterruptAfterCheckpoint(tmp_path / "work", "train", CHECKPOINTS, how="preempt")
    # a requeue and the plugin's status polls: 142 s in CI, 220 s here on idle cores
    workdir, result = run_workflow(tmp_path, [], timeout=480, while_running=preempt)
    assert result.returncode == 0, result.output[-4000:]
    jobs = slurm_jobs(workdir)
    assert_jobs_ran_on_slurm(result, jobs)
    assert_gpus_as_configured(jobs, lambda rule: CONFIG["resources"][rule]["gpus"])  # 2 for training
    # one device, whichever of the four is free: the training job may hold 0 and 1 at the time
    probe = (workdir / "results/logs/gpu_probe.log").read_text().strip()
    assert re.fullmatch(r"CUDA_VISIBLE_DEVICES=[0-3]", probe), probe
    assert (workdir / "results/logs/cpu_step.log").read_text().strip() == "CUDA_VISIBLE_DEVICES=unset"
    # Slurm requeued the same job (sbatch --requeue from the profile); no Snakemake retry needed
    runs = [j for j in slurm_jobs(workdir, requeued=True) if j.rule == "train"]
    assert [(j.job_id, j.state, j.attempt) for j in runs] == [
        (preempt.job_id, "PREEMPTED", 1), (preempt.job_id, "COMPLETED", 1)], runs
    assert_resumed(workdir, preempt)


def test_timed_out_training_is_retried_by_snakemake_and_resumes(slurm, tmp_path):
    """--requeue puts a preempted job back, not one Slurm ended at its time limit (TIMEOUT): that
    comes back through Snakemake's retries, which the rule takes from the cost model (as
    train_bonito does), and each attempt resumes from the last checkpoint of the one before. The
    profile's own retries are off here, so only the rule's can bring it back."""
    chain = CONFIG["train_chained"]
    limit = CONFIG["resources"]["train_chained"]["runtime"]
    retries = chain_retries(chain["steps"] * chain["seconds_per_step"] / 3600, limit)
    workdir, result = run_workflow(tmp_path, ["results/train_chained/model.json"], timeout=540, retries=0)
    assert result.returncode == 0, result.output[-4000:]
    runs = [j for j in slurm_jobs(workdir) if j.rule == "train_chained"]
    print("attempts:", [(j.job_id, j.state, j.attempt) for j in runs])
    assert [j.attempt for j in runs] == list(range(1, len(runs) + 1)), runs
    assert [j.state for j in runs] == ["TIMEOUT"] * (len(runs) - 1) + ["COMPLETED"], runs
    assert 2 <= len(runs) <= retries + 1, runs
    # the last attempt started from a checkpoint (at the last step, where the attempt before
    # finished its steps but not the job in time)
    model = json.loads((workdir / "results/train_chained/model.json").read_text())
    assert model["steps"] == chain["steps"] and 0 < model["resumed_from"] <= chain["steps"], model
    assert model["resumed_from"] % chain["save_every"] == 0, model
    log = (workdir / "results/logs/train_chained.log").read_text()
    assert f"resumed from step {model['resumed_from']}" in log


def test_failing_job_fails_the_run_and_shows_its_log(slurm, tmp_path):
    workdir, result = run_workflow(tmp_path, ["results/fail.txt"], timeout=180)
    assert result.returncode != 0
    assert "deliberate failure: rule fail exits 3" in result.output  # the rule's log, shown
    jobs = slurm_jobs(workdir)
    attempts = 1 + PROFILE["retries"]
    assert [(j.rule, j.state, j.attempt) for j in jobs] == [
        ("fail", "FAILED", n) for n in range(1, attempts + 1)], jobs
    assert all(j.exit_code != "0:0" for j in jobs), jobs
    assert not (workdir / "results/fail.txt").exists()
