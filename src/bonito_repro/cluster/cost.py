"""The cost model: projected wall hours and GPU-hours of every job of a run, by stage, from the
resolved config, the run's job list and the stated assumptions of the config's ``cost`` section
(throughputs, tokens an example, rows of datasets not yet downloaded). Nothing here is measured:
it is there to show, before GPUs are booked, what a run costs and which job cannot finish in the
runtime it requests, and to size the retries that chain Bonito training across jobs of at most
``resources.max_runtime`` minutes.

A job's stage comes from its rule's name (``stage_of``), so a rule added later (an ablation's
``adapt_size``) is costed as the stage its name starts with. ``python -m bonito_repro cost``
prints the table for a config (the job list from Snakemake's dry run); the preflight prints it too.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..core.config import load_config
from ..core.sources import TAPT
from ..core.steps import effective_batch, training_steps
from ..core.tasks import GREEDY, scoring
from .dry_run import Job, dry_run_jobs

# stage -> the section of config `resources` its jobs request (train_p3 runs with adapt's)
STAGE_RESOURCES = {"ctga": "ctga", "train_bonito": "train_bonito", "train_p3": "adapt", "generate": "generate",
                   "adapt": "adapt", "evaluate": "evaluate"}
STAGES = tuple(STAGE_RESOURCES)
# rules costed as the stage nearest in work (an approximation, stated in the table's footer):
# backtranslation's generation job (instructions, then ratings) as a generation, its two seed
# adapters as P3-style LoRA trainings
RULE_STAGES = {"backtranslate": "generate", "train_backtranslation": "train_p3"}
# the rules whose retries chain one long job across attempts that each end at the time limit
CHAINED_STAGES = ("train_bonito",)


@dataclass
class JobCost:
    job: Job
    stage: str
    gpus: int
    hours: float          # projected wall time of the whole job, all attempts together
    runtime_minutes: int  # the limit of one attempt (what the job requests)

    @property
    def gpu_hours(self) -> float:
        return self.hours * max(self.gpus, 0)

    @property
    def attempts(self) -> int:
        """Attempts of at most the requested runtime the projected work needs."""
        return max(1, math.ceil(self.hours * 60 / self.runtime_minutes))


@dataclass
class StageCost:
    stage: str
    jobs: int
    gpus: int             # per job (the most any job of the stage asks for)
    hours_per_job: float  # the longest job
    gpu_hours: float      # all jobs together
    runtime_minutes: int  # the longest requested runtime
    warning: str = ""


def stage_of(rule: str) -> str | None:
    """The stage a rule's jobs are costed as: the stage it is named after or whose name it
    starts with (``evaluate_generation``: evaluate); None for rules that use no accelerator
    time worth counting (downloads, data, tables, plots, the parse check)."""
    if rule.endswith("_download"):
        return None
    if rule in RULE_STAGES:
        return RULE_STAGES[rule]
    matches = [s for s in STAGES if rule == s or rule.startswith(f"{s}_")]
    return max(matches, key=len) if matches else None


def chain_retries(hours: float, runtime_minutes: int) -> int:
    """Retries of a job that resumes from its checkpoints: the attempts its projected work
    needs at this runtime, rounded up, plus one (a crash, or the minutes each restart loses to
    loading and to the work since the last checkpoint)."""
    return math.ceil(hours * 60 / runtime_minutes) + 1


# --- projections: seconds of work on one GPU (or the job's CPUs for ctga)


def _speed_factor(config: dict) -> float:
    """Throughputs are stated for a model of reference_parameters and scale inversely with size."""
    cost = config["cost"]
    return cost["model_parameters"] / cost["reference_parameters"]


def passages(config: dict) -> int:
    """Unannotated passages of a dataset (an assumption: the Hub's row counts are not read
    before the download), cut to generation.max_passages."""
    cap = config["generation"]["max_passages"]
    rows = config["cost"]["unannotated_rows"]
    return min(rows, cap) if cap else rows


def ctga_rows(config: dict) -> int:
    """Rows ctga-v1's build samples at most: max_examples_per_dataset of every P3 dataset."""
    return len(config["ctga"]["p3_datasets"]) * config["ctga"]["max_examples_per_dataset"]


def training_seconds(config: dict, section: str, rows: int, tokens_per_example: float) -> float:
    """GPU-seconds of a training job: steps x effective batch x tokens an example, at the stated
    training throughput."""
    params = config[section]
    tokens = training_steps(rows, params) * effective_batch(params) * tokens_per_example
    return tokens * _speed_factor(config) / config["cost"]["train_tokens_per_second"]


def pair_tokens(config: dict, section: str) -> float:
    """Tokens of one (input, output) training example: the stated share of the length limits."""
    params = config[section]
    return config["cost"]["example_fill"] * (params["max_input_length"] + params["max_output_length"])


def train_bonito_seconds(config: dict) -> float:
    return training_seconds(config, "bonito_training", ctga_rows(config), pair_tokens(config, "bonito_training"))


def train_p3_seconds(config: dict) -> float:
    return training_seconds(config, "p3_training", ctga_rows(config), pair_tokens(config, "p3_training"))


def adapt_seconds(config: dict, source: str) -> float:
    """TAPT trains on blocks of the passages' tokens; any other source on one task a passage
    and sample."""
    cost = config["cost"]
    if source == TAPT:
        block = config["adaptation"]["tapt_block_size"]
        blocks = max(1, math.ceil(passages(config) * cost["passage_tokens"] / block))
        return training_seconds(config, "adaptation", blocks, block)
    tasks = passages(config) * config["generation"]["n"]
    return training_seconds(config, "adaptation", tasks, pair_tokens(config, "adaptation"))


def generate_seconds(config: dict) -> float:
    """Every passage's prompt read once, and max_new_tokens sampled for each of its n samples."""
    cost, generation = config["cost"], config["generation"]
    per_passage = (cost["passage_tokens"] / cost["prompt_tokens_per_second"]
                   + generation["n"] * generation["max_new_tokens"] / cost["generate_tokens_per_second"])
    return passages(config) * per_passage * _speed_factor(config)


def template_count(templates: dict) -> int:
    """Templates a dataset file declares (each test example is prompted with each)."""
    if "promptsource" in templates:
        return len(templates["promptsource"]["names"])
    return len(templates.get("inline") or templates["verbatim"])


def evaluate_seconds(config: dict, dataset: str) -> float:
    """Each test example under each template: a prompt per answer choice scored (rank
    classification), or a prompt read and max_new_tokens decoded (extractive QA)."""
    cost, evaluation = config["cost"], config["evaluation"]
    spec = config["datasets"][dataset]
    examples = min(cost["test_rows"], evaluation["max_examples"] or cost["test_rows"])
    prompt = min(cost["passage_tokens"], evaluation["max_length"])
    if scoring(spec["task_type"]) == GREEDY:
        per_prompt = (prompt / cost["prompt_tokens_per_second"]
                      + evaluation["max_new_tokens"] / cost["generate_tokens_per_second"])
    else:
        choices = len(set(spec["labels"]["map"].values()))
        per_prompt = choices * prompt / cost["prompt_tokens_per_second"]
    return examples * template_count(spec["templates"]) * per_prompt * _speed_factor(config)


def ctga_seconds(config: dict, threads: int) -> float:
    if config["ctga"]["use_published"]:
        return 0.0
    return ctga_rows(config) / (config["cost"]["ctga_rows_per_second"] * threads)


def job_cost(config: dict, job: Job) -> JobCost | None:
    """The projection of one job, or None where its rule is not a costed stage."""
    stage = stage_of(job.rule)
    if stage is None:
        return None
    section = config["resources"][STAGE_RESOURCES[stage]]
    gpus = int(job.resources.get("gpu", section["gpus"]))
    runtime = int(job.resources.get("runtime", section["runtime"]))
    threads = int(job.resources.get("threads", section["threads"]))
    w = job.wildcards
    if stage == "ctga":
        seconds = ctga_seconds(config, threads)
    elif stage == "train_bonito":
        seconds = train_bonito_seconds(config) / max(gpus, 1)
    elif stage == "train_p3":
        seconds = train_p3_seconds(config) / max(gpus, 1)
    elif stage == "generate":
        seconds = generate_seconds(config) / max(gpus, 1)
    elif stage == "adapt":
        seconds = adapt_seconds(config, w.get("source", "")) / max(gpus, 1)
    else:
        seconds = evaluate_seconds(config, w["dataset"]) / max(gpus, 1)
    hours = seconds / 3600 + config["cost"]["job_overhead_minutes"] / 60
    return JobCost(job, stage, gpus, hours, runtime)


def bonito_retries(config: dict) -> int:
    """Retries of the Bonito training rule: its projected run chained across jobs of its
    requested runtime (at most resources.max_runtime)."""
    section = config["resources"]["train_bonito"]
    hours = train_bonito_seconds(config) / max(section["gpus"], 1) / 3600 + config["cost"]["job_overhead_minutes"] / 60
    return chain_retries(hours, section["runtime"])


def stage_costs(config: dict, jobs: list[Job]) -> list[StageCost]:
    """Per stage, in DAG order: jobs, GPUs, the longest job, GPU-hours and a warning where a job
    cannot finish in the runtime it requests (or, for a chained stage, in its retries)."""
    costs = [c for c in (job_cost(config, job) for job in jobs) if c is not None]
    out = []
    for stage in STAGES:
        mine = [c for c in costs if c.stage == stage]
        if not mine:
            continue
        longest = max(mine, key=lambda c: c.attempts)
        warning = ""
        if longest.attempts > 1 and stage in CHAINED_STAGES:
            retries = chain_retries(longest.hours, longest.runtime_minutes)
            warning = (f"chained: {longest.attempts} attempts of {longest.runtime_minutes} min "
                       f"resume from checkpoints (rule retries {retries})")
        elif longest.attempts > 1:
            warning = (f"WARNING: {longest.job.rule} {_wildcards(longest.job)} needs {longest.hours:.1f} h, "
                       f"more than its runtime of {longest.runtime_minutes} min")
        out.append(StageCost(stage, len(mine), max(c.gpus for c in mine), max(c.hours for c in mine),
                             sum(c.gpu_hours for c in mine), max(c.runtime_minutes for c in mine), warning))
    return out


def _wildcards(job: Job) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(job.wildcards.items()))


def format_table(costs: list[StageCost], config: dict) -> str:
    """The cost table, its total and the assumptions it rests on."""
    lines = [f"{'stage':<14}{'jobs':>6}{'GPUs':>6}{'h/job':>9}{'GPU-h':>10}{'runtime h':>11}  note"]
    for c in costs:
        lines.append(f"{c.stage:<14}{c.jobs:>6}{c.gpus:>6}{c.hours_per_job:>9.1f}{c.gpu_hours:>10.1f}"
                     f"{c.runtime_minutes / 60:>11.1f}  {c.warning}")
    lines.append(f"{'total':<14}{sum(c.jobs for c in costs):>6}{'':>6}{'':>9}"
                 f"{sum(c.gpu_hours for c in costs):>10.1f}")
    assumptions = ", ".join(f"{k} {v:g}" for k, v in config["cost"].items())
    lines.append(f"assumptions (config `cost`, not measured): {assumptions}; "
                 f"per-job limit resources.max_runtime {config['resources']['max_runtime']} min; "
                 f"costed as a nearer stage: {', '.join(f'{r} as {s}' for r, s in RULE_STAGES.items())}")
    return "\n".join(lines)


# --- the job list, from Snakemake's dry run

def workflow_jobs(configfiles: list[str], workdir: Path, targets: Sequence[str] = ()) -> list[Job]:
    """Every job of the workflow in ``workdir`` under these config files that ``targets`` need
    (none: the default target), done or not (``snakemake -n --forceall``; the Snakefile reads
    config.yaml itself)."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--forceall", "--nolock", *targets]
    if configfiles:
        cmd += ["--configfile", *(str(Path(p).resolve()) for p in configfiles)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"snakemake dry run failed in {workdir}:\n{(done.stdout + done.stderr)[-3000:]}")
    return dry_run_jobs(done.stdout + done.stderr)


def config_paths(workdir: Path, configfiles: list[str]) -> list[Path]:
    """config.yaml of the checkout, then the given overlays (as the Snakefile merges them)."""
    return [workdir / "config.yaml", *(Path(p) for p in configfiles)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bonito_repro cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", nargs="*", default=[], help="overlays of config.yaml, as given to snakemake")
    parser.add_argument("--directory", type=Path, default=Path("."), help="the checkout (holds the Snakefile)")
    parser.add_argument("targets", nargs="*",
                        help="Snakemake targets to cost (default: the default target), e.g. all ablations")
    args = parser.parse_args(argv)
    config = load_config(*config_paths(args.directory, args.configfile))
    jobs = workflow_jobs(args.configfile, args.directory, args.targets)
    print(format_table(stage_costs(config, jobs), config))
    return 0
