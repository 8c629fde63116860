"""The cost model: projected wall hours and GPU-hours of every job of a run, by stage, from the
resolved config, the run's job list, the row counts the preflight read on the Hub
(``results/preflight/row_counts.json``, bonito_repro.cluster.row_counts) and the stated
assumptions of the config's ``cost`` section (throughputs, tokens an example, and the rows of a
dataset with no count), whose throughputs the GPU calibration's replace where there is one
(``results/preflight/gpu_calibration.json``, ``make gpu-check``: bonito_repro.cluster.gpu_check).
Nothing else here is measured: it is there to show, before GPUs are booked,
what a run costs and every job that cannot finish in the runtime it requests, and to size the
retries that chain a long job (Bonito training, a large dataset's TAPT) across attempts of at
most ``resources.max_runtime`` minutes.

A job's stage comes from its rule's name (``stage_of``), so a rule added later (an ablation's
``adapt_size``) is costed as the stage its name starts with. An endpoint generator's jobs (GPT-4)
use no GPU of the run: they are costed in tokens and in the price its config entry states
(``endpoint_costs``). ``bonito-repro cost``
prints the tables for a config (the job list from Snakemake's dry run); the preflight prints them
too.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from ..core import layout
from ..core.config import load_config
from ..core.generators import GENERATOR_KINDS, passage_cap
from ..core.sources import TAPT, generator_of, parse_size_source
from ..core.steps import effective_batch, training_steps
from ..core.tasks import GREEDY, scoring
from . import row_counts
from .dry_run import Job, dry_run_jobs
from .gpu_check import CALIBRATION, THROUGHPUTS, read_calibration
from .row_counts import ASSUMED, RowCount

# stage -> the section of config `resources` its jobs request (train_p3 runs with adapt's)
STAGE_RESOURCES = {"ctga": "ctga", "train_bonito": "train_bonito", "train_p3": "adapt", "generate": "generate",
                   "adapt": "adapt", "evaluate": "evaluate"}
STAGES = tuple(STAGE_RESOURCES)
# rules costed as the stage nearest in work (an approximation, stated in the table's footer):
# backtranslation's generation job (instructions, then ratings) as a generation, its two seed
# adapters as P3-style LoRA trainings
RULE_STAGES = {"backtranslate": "generate", "train_backtranslation": "train_p3"}
# the stage planned as a chain of attempts that each end at the time limit
CHAINED_STAGES = ("train_bonito",)
# the stages whose jobs resume where an attempt stopped (training from its checkpoints, generation
# from its shards, evaluation from its finished templates): a job longer than its runtime runs as
# a chain of attempts too, over the retries its rule gets (rule_retries); ctga starts over
RESUMING_STAGES = ("train_bonito", "train_p3", "generate", "adapt", "evaluate")
# the scales whose config `cost` section describes the models and machine their jobs run on (the
# paper's 7B models on GPUs); at a CPU scale (local, smoke) its sizes and throughputs are not theirs
COSTED_SCALES = ("paper", "rehearsal", "workstation")


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


# --- row counts


class Rows:
    """Row counts by the config key of their origin (the preflight's, ``row_counts``), each
    standing in for the config's assumption where there is one; remembers which kind of number
    (footer, estimate, assumed) each projection used."""

    def __init__(self, counts: Mapping[str, RowCount] | None = None):
        self.counts = dict(counts or {})
        self.used: dict[str, str] = {}

    def get(self, key: str, assumed: int) -> int:
        count = self.counts.get(key)
        self.used[key] = count.source if count else ASSUMED
        return count.rows if count else assumed

    def shown(self, key: str, assumed: int) -> str:
        """The number and where it came from, for a table."""
        rows = self.get(key, assumed)
        partial = key in self.counts and self.counts[key].partial
        return f"{'>=' * partial}{rows:,} {self.used[key]}"

    def summary(self) -> str:
        used = Counter(self.used.values())
        return ", ".join(f"{used[kind]} {kind}" for kind in (row_counts.FOOTER, row_counts.ESTIMATE, ASSUMED)
                         if used[kind])


def load_rows(path: Path | None) -> Rows:
    """The preflight's row counts file, or no counts (every dataset at the config's assumption)."""
    return Rows(row_counts.read_counts(path) if path else None)


# --- throughputs: stated in config `cost`, or measured by the GPU calibration


def load_calibration(path: Path | None) -> dict | None:
    """The calibration file ``make gpu-check`` wrote (its path kept under ``path``), or None."""
    return {**read_calibration(path), "path": str(path)} if path else None


def find_calibration(workdir: Path) -> dict | None:
    """The checkout's calibration file (results/preflight/gpu_calibration.json) where it exists."""
    found = Path(workdir) / layout.preflight(CALIBRATION)
    return load_calibration(found) if found.exists() else None


def calibrated(config: dict, calibration: dict | None) -> dict:
    """``config`` with the calibration's throughputs in place of config `cost`'s stated ones, each
    converted to reference_parameters (a throughput measured on a model of P parameters is that
    many tokens a second x P / reference_parameters for the reference model)."""
    if not calibration:
        return config
    reference = config["cost"]["reference_parameters"]
    measured = {key: found["value"] * found["parameters"] / reference
                for key, found in calibration["throughputs"].items()}
    return {**config, "cost": {**config["cost"], **measured}}


def _rate(tokens_per_second: float) -> str:
    return f"{tokens_per_second:,.0f}" if tokens_per_second >= 10 else f"{tokens_per_second:.3g}"


def throughput_sources(config: dict, calibration: dict | None) -> str:
    """Which throughputs the projections used came from the calibration and which are stated."""
    measured = calibration["throughputs"] if calibration else {}
    stated = [key for key in THROUGHPUTS if key not in measured]
    parts = []
    if measured:
        reference = config["cost"]["reference_parameters"]
        elsewhere = (f"; WARNING: measured on {calibration['device']}, but the config's device is {config['device']}"
                     if calibration["device"] != config["device"] else "")
        parts.append(f"throughputs measured by `make gpu-check` ({calibration['path']}: {calibration['gpu']}, "
                     f"{calibration['date']}{elsewhere}): " + ", ".join(
                         f"{key} {_rate(found['value'])} on {found['shape']} "
                         f"({_rate(found['value'] * found['parameters'] / reference)} at reference_parameters)"
                         for key, found in measured.items()))
    if stated:
        parts.append(f"throughputs stated (config `cost`, not measured): {', '.join(stated)}")
    return "; ".join(parts)


# --- projections: seconds of work on one GPU (or the job's CPUs for ctga)


def _speed_factor(config: dict) -> float:
    """Throughputs are stated for a model of reference_parameters and scale inversely with size."""
    cost = config["cost"]
    return cost["model_parameters"] / cost["reference_parameters"]


def unannotated(config: dict, dataset: str, rows: Rows) -> int:
    """Unannotated passages of a dataset: the preflight's count, else cost.unannotated_rows."""
    return rows.get(row_counts.dataset_key(dataset, "unannotated"), config["cost"]["unannotated_rows"])


def passages(config: dict, dataset: str, rows: Rows) -> int:
    """The passages a generation job reads: the dataset's, cut to generation.max_passages."""
    cap = config["generation"]["max_passages"]
    count = unannotated(config, dataset, rows)
    return min(count, cap) if cap else count


def tasks(config: dict, generator: str, dataset: str, rows: Rows) -> int:
    """Synthetic tasks of a generator's set for a dataset: a released set's rows where it has a
    Hub origin (``{dataset}`` in it), else one task a passage and sample."""
    made = generator_passages(config, generator, dataset, rows) * config["generation"]["n"]
    if "hub" in config["generators"].get(generator, {}).get("origin", {}):
        return rows.get(row_counts.released_key(generator, dataset), made)
    return made


def ctga_rows(config: dict, rows: Rows | None = None) -> int:
    """Rows ctga-v1 holds: the published set's, or what the build samples (up to
    max_examples_per_dataset of each P3 dataset, all of a smaller one)."""
    rows = rows or Rows()
    ctga = config["ctga"]
    cap = ctga["max_examples_per_dataset"]
    if ctga["use_published"]:
        return rows.get(row_counts.CTGA_PUBLISHED_KEY, len(ctga["p3_datasets"]) * cap)
    return sum(min(rows.get(row_counts.p3_key(name), cap), cap) for name in ctga["p3_datasets"])


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


def train_bonito_seconds(config: dict, rows: Rows | None = None) -> float:
    return training_seconds(config, "bonito_training", ctga_rows(config, rows), pair_tokens(config, "bonito_training"))


def train_p3_seconds(config: dict, rows: Rows | None = None) -> float:
    return training_seconds(config, "p3_training", ctga_rows(config, rows), pair_tokens(config, "p3_training"))


def adapt_seconds(config: dict, source: str, dataset: str, rows: Rows) -> float:
    """TAPT trains on blocks of every passage's tokens; any other source on its generator's tasks
    (a size point's subset: at most its size), each under the step rule."""
    cost = config["cost"]
    if source == TAPT:
        block = config["adaptation"]["tapt_block_size"]
        blocks = max(1, math.ceil(unannotated(config, dataset, rows) * cost["passage_tokens"] / block))
        return training_seconds(config, "adaptation", blocks, block)
    examples = tasks(config, generator_of(source), dataset, rows)
    size = parse_size_source(source)
    if size:
        examples = min(examples, size[1])
    return training_seconds(config, "adaptation", examples, pair_tokens(config, "adaptation"))


def generate_seconds(config: dict, dataset: str, rows: Rows) -> float:
    """Every passage's prompt read once, and max_new_tokens sampled for each of its n samples."""
    cost, generation = config["cost"], config["generation"]
    per_passage = (cost["passage_tokens"] / cost["prompt_tokens_per_second"]
                   + generation["n"] * generation["max_new_tokens"] / cost["generate_tokens_per_second"])
    return passages(config, dataset, rows) * per_passage * _speed_factor(config)


def template_count(templates: dict) -> int:
    """Templates a dataset file declares (each test example is prompted with each)."""
    if "promptsource" in templates:
        return len(templates["promptsource"]["names"])
    return len(templates.get("inline") or templates["verbatim"])


def evaluate_seconds(config: dict, dataset: str, rows: Rows) -> float:
    """Each test example under each template: one sequence read (rank classification packs the
    prompt and every answer choice into one, evaluate.scoring; the choices add a few tokens), or
    a prompt read and max_new_tokens decoded (extractive QA)."""
    cost, evaluation = config["cost"], config["evaluation"]
    spec = config["datasets"][dataset]
    test_rows = rows.get(row_counts.dataset_key(dataset, "test"), cost["test_rows"])
    examples = min(test_rows, evaluation["max_examples"] or test_rows)
    prompt = min(cost["passage_tokens"], evaluation["max_length"])
    per_prompt = prompt / cost["prompt_tokens_per_second"]
    if scoring(spec["task_type"]) == GREEDY:
        per_prompt += evaluation["max_new_tokens"] / cost["generate_tokens_per_second"]
    return examples * template_count(spec["templates"]) * per_prompt * _speed_factor(config)


def ctga_seconds(config: dict, threads: int, rows: Rows) -> float:
    if config["ctga"]["use_published"]:
        return 0.0
    return ctga_rows(config, rows) / (config["cost"]["ctga_rows_per_second"] * threads)


def job_cost(config: dict, job: Job, rows: Rows) -> JobCost | None:
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
        seconds = ctga_seconds(config, threads, rows)
    elif stage == "train_bonito":
        seconds = train_bonito_seconds(config, rows) / max(gpus, 1)
    elif stage == "train_p3":
        seconds = train_p3_seconds(config, rows) / max(gpus, 1)
    elif stage == "generate":
        seconds = generate_seconds(config, w.get("dataset", ""), rows) / max(gpus, 1)
    elif stage == "adapt":
        seconds = adapt_seconds(config, w.get("source", ""), w.get("dataset", ""), rows) / max(gpus, 1)
    else:
        seconds = evaluate_seconds(config, w["dataset"], rows) / max(gpus, 1)
    hours = seconds / 3600 + config["cost"]["job_overhead_minutes"] / 60
    return JobCost(job, stage, gpus, hours, runtime)


def rule_retries(config: dict, rule: str, wildcards: Sequence[dict], rows: Rows | None = None) -> int:
    """Retries of a rule whose jobs resume after a kill: those the longest of its jobs (one per
    ``wildcards``) needs to chain its projected work across attempts of the runtime it requests
    (``chain_retries``), with the row counts the preflight read where there are some; 0 for a rule
    with no job."""
    rows = rows or Rows()
    costs = [job_cost(config, Job(rule, dict(w)), rows) for w in wildcards]
    return max((chain_retries(c.hours, c.runtime_minutes) for c in costs if c is not None), default=0)


# the config section of each training stage (a rule named here: its own section)
TRAINING_SECTIONS = {"train_bonito": "bonito_training", "train_p3": "p3_training", "adapt": "adaptation",
                     "train_backtranslation": "backtranslation_training"}
# the files of a generation job, as rows of its set: the set, the record of every generation and
# bagel's formats
GENERATION_FILES = 3


def adapter_bytes(config: dict, section: str) -> int:
    """An adapter's projected size: its LoRA rank times cost.lora_parameters_per_rank, 4 bytes a
    parameter (float32, as PEFT saves a Q-LoRA adapter); an overestimate for a LoRA on fewer layers."""
    rank = {**config["training"]["lora"], **config[section].get("lora", {})}["r"]
    return int(rank * config["cost"]["lora_parameters_per_rank"] * 4)


def disk_bytes(config: dict, jobs: list[Job], rows: Rows | None = None) -> dict[str, int]:
    """Projected bytes a run writes under results/, beyond the downloads: the adapters it keeps,
    the checkpoints of its largest training job (one kept and the next being written, each the
    adapter and the optimizer's two moments; a job removes its own when it ends, so each training
    job running at once adds as much), and the synthetic sets and predictions (rows times
    cost.bytes_per_row)."""
    rows = rows or Rows()
    need = {"adapters": 0, "checkpoints": 0, "outputs": 0}
    for job in jobs:
        stage, w = stage_of(job.rule), job.wildcards
        section = TRAINING_SECTIONS.get(job.rule) or TRAINING_SECTIONS.get(stage or "")
        if section:
            adapter = adapter_bytes(config, section)
            need["adapters"] += adapter
            need["checkpoints"] = max(need["checkpoints"], 2 * 3 * adapter)
        elif stage == "generate" and "dataset" in w:
            made = tasks(config, w.get("generator", ""), w["dataset"], rows)
            need["outputs"] += GENERATION_FILES * made * config["cost"]["bytes_per_row"]
        elif stage == "evaluate" and "dataset" in w:
            test_rows = rows.get(row_counts.dataset_key(w["dataset"], "test"), config["cost"]["test_rows"])
            examples = min(test_rows, config["evaluation"]["max_examples"] or test_rows)
            templates = template_count(config["datasets"][w["dataset"]]["templates"])
            need["outputs"] += examples * templates * config["cost"]["bytes_per_row"]
    return need


# --- endpoint generators: tokens billed and their price, not GPU time

ENDPOINT_RULE = GENERATOR_KINDS["endpoint"].rule
CHARS_PER_TOKEN = 4  # of the request's own English words (a rule of thumb for GPT tokenizers; assumed)


def generator_passages(config: dict, generator: str, dataset: str, rows: Rows) -> int:
    """The passages a generator reads of a dataset: cut to generation.max_passages and to its own
    cap (an endpoint's ``max_passages``), the smaller of the two."""
    cap = passage_cap(config["generation"]["max_passages"], config["generators"].get(generator, {}))
    count = unannotated(config, dataset, rows)
    return min(count, cap) if cap else count


@dataclass
class EndpointCost:
    """What an endpoint generator's jobs are projected to bill: a request a passage (the prompt
    file's request around a passage of cost.passage_tokens) and ``n`` replies of at most
    max_new_tokens each."""
    generator: str
    datasets: int
    passages: int
    prompt_tokens: int
    completion_tokens: int  # at most: every reply max_new_tokens long
    price: float | None     # None: the entry states no price_per_1000_tokens
    currency: str = ""
    passage_cap: int | None = None


def endpoint_tokens(config: dict, generator: str, dataset: str, rows: Rows) -> tuple[int, int, int]:
    """(passages, prompt tokens, completion tokens at most) of one endpoint job."""
    from ..generate.prompted import prompted_request

    spec = config["generators"][generator]
    sampling = {**config["generation"], **spec.get("sampling", {})}
    count = generator_passages(config, generator, dataset, rows)
    request = math.ceil(len(prompted_request("", config["datasets"][dataset]["task_type"])) / CHARS_PER_TOKEN)
    prompt = count * (config["cost"]["passage_tokens"] + request)
    return count, prompt, count * sampling["n"] * sampling["max_new_tokens"]


def endpoint_price(spec: dict, prompt_tokens: int, completion_tokens: int) -> float | None:
    """The price of these tokens at the entry's ``price_per_1000_tokens``; None where it states none."""
    price = spec.get("price_per_1000_tokens")
    if price is None:
        return None
    return prompt_tokens / 1000 * price["prompt"] + completion_tokens / 1000 * price["completion"]


def endpoint_costs(config: dict, jobs: list[Job], rows: Rows) -> list[EndpointCost]:
    """Per endpoint generator, its jobs' passages, tokens and price, summed over its datasets."""
    by_generator: dict[str, list[str]] = {}
    for job in jobs:
        if job.rule == ENDPOINT_RULE:
            by_generator.setdefault(job.wildcards["generator"], []).append(job.wildcards["dataset"])
    costs = []
    for generator, datasets in sorted(by_generator.items()):
        spec = config["generators"][generator]
        counted = [endpoint_tokens(config, generator, dataset, rows) for dataset in datasets]
        read, prompt, completion = (sum(c[i] for c in counted) for i in range(3))
        costs.append(EndpointCost(generator, len(datasets), read, prompt, completion,
                                  endpoint_price(spec, prompt, completion),
                                  spec.get("price_per_1000_tokens", {}).get("currency", ""),
                                  passage_cap(config["generation"]["max_passages"], spec)))
    return costs


def format_endpoints(costs: list[EndpointCost], config: dict) -> str:
    """The endpoint generators' table: passages, tokens and projected price, with its assumptions."""
    head = ["endpoint generator", "datasets", "passage cap", "passages", "prompt tokens", "completion tokens (at most)",
            "projected price"]
    lines = [[c.generator, str(c.datasets), f"{c.passage_cap:,}" if c.passage_cap else "none", f"{c.passages:,}",
              f"{c.prompt_tokens:,}", f"{c.completion_tokens:,}",
              f"{c.currency} {c.price:,.0f}" if c.price is not None else "no price stated"] for c in costs]
    widths = [max(len(row[i]) for row in [head, *lines]) for i in range(len(head))]
    table = "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                      for row in [head, *lines])
    return (f"{table}\nassumptions (not measured): a request a passage, of cost.passage_tokens "
            f"({config['cost']['passage_tokens']}) and the prompt file's request at {CHARS_PER_TOKEN} characters a "
            "token; every reply max_new_tokens long (the most it can bill); retries not counted; the price is the "
            "generator's price_per_1000_tokens")


@dataclass
class CostReport:
    """A run's projection: every costed job, the stages they sum to, and the jobs that cannot
    finish in the runtime they request (a chained stage's jobs resume instead); an endpoint
    generator's tokens and price apart (``endpoints``)."""
    jobs: list[JobCost]
    stages: list[StageCost]
    rows: Rows
    overruns: list[JobCost] = field(default_factory=list)
    endpoints: list[EndpointCost] = field(default_factory=list)
    calibration: dict | None = None


def project(config: dict, jobs: list[Job], rows: Rows | None = None, calibration: dict | None = None) -> CostReport:
    """Per job and per stage (in DAG order): jobs, GPUs, the longest job, GPU-hours, and a note
    where a job cannot finish in the runtime it requests: how many attempts chain it where its
    stage resumes (RESUMING_STAGES), a warning to raise the runtime where it does not; at the
    calibration's throughputs where one is given."""
    rows = rows or Rows()
    config = calibrated(config, calibration)
    costs = [c for c in (job_cost(config, job, rows) for job in jobs) if c is not None]
    overruns = [c for c in costs if c.attempts > 1 and c.stage not in CHAINED_STAGES]
    stages = []
    for stage in STAGES:
        mine = [c for c in costs if c.stage == stage]
        if not mine:
            continue
        longest = max(mine, key=lambda c: c.hours)
        over = [c for c in overruns if c.stage == stage]
        note = ""
        if longest.attempts > 1 and stage in CHAINED_STAGES:
            retries = chain_retries(longest.hours, longest.runtime_minutes)
            note = (f"chained: {longest.attempts} attempts of {longest.runtime_minutes} min "
                    f"resume from checkpoints (rule retries {retries})")
        elif over:
            worst = max(over, key=lambda c: c.hours)
            others = f" (and {len(over) - 1} more jobs)" if len(over) > 1 else ""
            if stage in RESUMING_STAGES:
                note = (f"WARNING: {worst.job.rule} {wildcards_text(worst.job)} needs {worst.attempts} attempts of "
                        f"{worst.runtime_minutes} min, each resuming where the last stopped (rule retries "
                        f"{chain_retries(worst.hours, worst.runtime_minutes)}){others}")
            else:
                note = f"WARNING: {worst.job.rule} {wildcards_text(worst.job)} {overrun_text(worst)}{others}"
        stages.append(StageCost(stage, len(mine), max(c.gpus for c in mine), longest.hours,
                                sum(c.gpu_hours for c in mine), max(c.runtime_minutes for c in mine), note))
    return CostReport(costs, stages, rows, overruns, endpoint_costs(config, jobs, rows), calibration)


def one_gpu_hours(report: CostReport) -> float:
    """Wall hours of the run on one GPU, its GPU jobs one at a time (the workstation profile's
    gpu=1; CPU jobs run beside them): every GPU job's work on one GPU, summed."""
    return sum(c.gpu_hours for c in report.jobs if c.gpus > 0)


def format_one_gpu(report: CostReport, config: dict) -> str:
    return (f"on one GPU, GPU jobs one at a time (`snakemake --profile workstation`): {one_gpu_hours(report):.1f} h, "
            + (f"a projection from the throughputs measured on {report.calibration['gpu']} (`make gpu-check`) where the "
               "cost table says so, else stated" if report.calibration else
               f"a projection from the stated throughputs (config `cost`: a {config['cost']['reference_parameters']:.3g}-"
               "parameter model's tokens per second on one GPU), not measured")
            + "; a slower GPU takes longer in proportion")


def stage_costs(config: dict, jobs: list[Job], rows: Rows | None = None) -> list[StageCost]:
    return project(config, jobs, rows).stages


def wildcards_text(job: Job) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(job.wildcards.items()))


def overrun_text(c: JobCost) -> str:
    return (f"needs {c.hours:.1f} h, more than its runtime of {c.runtime_minutes} min "
            f"(resources.{STAGE_RESOURCES[c.stage]}.runtime)")


def format_table(costs: list[StageCost], config: dict, calibration: dict | None = None) -> str:
    """The cost table, its total and the assumptions it rests on (the throughputs: measured by the
    calibration, where given, or stated)."""
    lines = [f"{'stage':<14}{'jobs':>6}{'GPUs':>6}{'h/job':>9}{'GPU-h':>10}{'runtime h':>11}  note"]
    for c in costs:
        lines.append(f"{c.stage:<14}{c.jobs:>6}{c.gpus:>6}{c.hours_per_job:>9.1f}{c.gpu_hours:>10.1f}"
                     f"{c.runtime_minutes / 60:>11.1f}  {c.warning}")
    lines.append(f"{'total':<14}{sum(c.jobs for c in costs):>6}{'':>6}{'':>9}"
                 f"{sum(c.gpu_hours for c in costs):>10.1f}")
    measured = calibration["throughputs"] if calibration else {}
    assumptions = ", ".join(f"{k} {v:g}" for k, v in config["cost"].items() if k not in measured)
    lines.append(f"assumptions (config `cost`, not measured): {assumptions}; "
                 f"per-job limit resources.max_runtime {config['resources']['max_runtime']} min; "
                 f"costed as a nearer stage: {', '.join(f'{r} as {s}' for r, s in RULE_STAGES.items())}")
    lines.append(throughput_sources(config, calibration))
    return "\n".join(lines)


# the per-dataset table's columns: (heading, stage, which of its jobs)
DATASET_COLUMNS = (("generate h", "generate", lambda source: True),
                   ("TAPT h", "adapt", lambda source: source == TAPT),
                   ("tasks h", "adapt", lambda source: source != TAPT),
                   ("evaluate h", "evaluate", lambda source: True))


def format_datasets(report: CostReport, config: dict) -> str:
    """Per dataset: the passages and test rows the projections used (and where each number came
    from), and the longest job of each kind on it, in hours."""
    by_dataset: dict[str, list[JobCost]] = {}
    for c in report.jobs:
        if "dataset" in c.job.wildcards:
            by_dataset.setdefault(c.job.wildcards["dataset"], []).append(c)
    head = ["dataset", "passages", "test rows", *(h for h, _, _ in DATASET_COLUMNS)]
    lines = []
    for dataset in sorted(by_dataset):
        mine = by_dataset[dataset]
        cells = [dataset, report.rows.shown(row_counts.dataset_key(dataset, "unannotated"), config["cost"]["unannotated_rows"]),
                 report.rows.shown(row_counts.dataset_key(dataset, "test"), config["cost"]["test_rows"])]
        for _, stage, keep in DATASET_COLUMNS:
            hours = [c.hours for c in mine if c.stage == stage and keep(c.job.wildcards.get("source", ""))]
            cells.append(f"{max(hours):.1f}" if hours else "-")
        lines.append(cells)
    widths = [max(len(row[i]) for row in [head, *lines]) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                     for row in [head, *lines])


def format_report(report: CostReport, config: dict) -> str:
    """The stage table, the per-dataset table, the endpoint generators' table, every job that
    needs more than one attempt of its runtime (chained where its stage resumes), where the row
    counts came from, and last the run on one GPU."""
    parts = [format_table(report.stages, config, report.calibration), format_datasets(report, config)]
    if report.endpoints:
        parts.append(format_endpoints(report.endpoints, config))
    stuck = [c for c in report.overruns if c.stage not in RESUMING_STAGES]
    chained = [c for c in report.overruns if c.stage in RESUMING_STAGES]
    for jobs, heading in ((stuck, "cannot finish in their runtime (raise resources.STAGE.runtime up to "
                                  "resources.max_runtime, or cut the work: docs/cluster.md)"),
                          (chained, "need more than one attempt of their runtime: each attempt resumes where the "
                                    "last stopped, over the retries the cost model gives its rule (a longer runtime, "
                                    "or less work, saves the restarts: docs/cluster.md)")):
        if jobs:
            parts.append(f"{len(jobs)} jobs {heading}:\n" + "\n".join(
                f"  {c.job.rule} {wildcards_text(c.job)}: {overrun_text(c)}" for c in sorted(jobs, key=lambda c: -c.hours)))
    parts.append(f"row counts used: {report.rows.summary() or 'none'} (footer: read from the Hub's Parquet "
                 "footers by the preflight; estimate: from file sizes; assumed: config `cost`)")
    parts.append(format_one_gpu(report, config))
    return "\n\n".join(parts)


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
    parser = argparse.ArgumentParser(prog="bonito-repro cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", nargs="*", default=[], help="overlays of config.yaml, as given to snakemake")
    parser.add_argument("--directory", type=Path, default=Path("."), help="the checkout (holds the Snakefile)")
    parser.add_argument("--row-counts", type=Path,
                        help="the preflight's row counts (default: DIRECTORY/%s where it exists, a named "
                             "run's DIRECTORY/%s; without one, every dataset has config `cost`'s rows)"
                             % (layout.preflight("row_counts.json"), layout.preflight("row_counts.json", "NAME")))
    parser.add_argument("--calibration", type=Path,
                        help="the GPU calibration, whose throughputs replace config `cost`'s (default: "
                             "DIRECTORY/%s where it exists; `make gpu-check` writes it)" % layout.preflight(CALIBRATION))
    parser.add_argument("targets", nargs="*",
                        help="Snakemake targets to cost (default: the default target), e.g. all ablations")
    args = parser.parse_args(argv)
    config = load_config(*config_paths(args.directory, args.configfile))
    found = args.directory / layout.preflight("row_counts.json", config["run"]["name"])
    rows = load_rows(args.row_counts or (found if found.exists() else None))
    calibration = load_calibration(args.calibration) if args.calibration else find_calibration(args.directory)
    jobs = workflow_jobs(args.configfile, args.directory, args.targets)
    print(format_report(project(config, jobs, rows, calibration), config))
    return 0
