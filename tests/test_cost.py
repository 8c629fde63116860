"""The cost model: stages of rules, projections from the config, the retries that chain Bonito
training across jobs of at most resources.max_runtime, and the warning for a job that cannot
finish in its runtime."""
from __future__ import annotations

import copy

import pytest

from bonito_repro.cluster import cost
from bonito_repro.core.config import load_scale
from conftest import REPO, Job, dry_run_jobs


@pytest.fixture(scope="module")
def paper() -> dict:
    return load_scale("paper", REPO)


@pytest.mark.parametrize("rule, stage", [
    ("train_bonito", "train_bonito"), ("train_p3", "train_p3"), ("adapt", "adapt"), ("generate", "generate"),
    ("evaluate", "evaluate"), ("evaluate_generation", "evaluate"), ("ctga", "ctga"),
    ("adapt_size", "adapt"),  # a rule added later is costed as the stage its name starts with
    ("ctga_download", None), ("prepare_model", None), ("parse_check", None), ("eval_table", None),
    ("published_tasks", None), ("funnel_plot", None),
    ("backtranslate", "generate"), ("train_backtranslation", "train_p3"),  # the nearest stage in work
])
def test_a_rule_is_costed_as_its_stage(rule, stage):
    assert cost.stage_of(rule) == stage


def test_retries_cover_the_attempts_of_a_chained_job_plus_one():
    assert cost.chain_retries(99.6, 2880) == 3 + 1
    assert cost.chain_retries(0.1, 60) == 1 + 1
    assert cost.chain_retries(2.0, 60) == 2 + 1


def test_bonito_training_projects_the_papers_four_days_on_four_gpus(paper):
    """The training throughput assumption reproduces the paper's own figure (about 4 days on 4
    GPUs for 100,000 steps), so the retries it gives the 48-hour jobs are 3 attempts plus one."""
    hours = cost.train_bonito_seconds(paper) / 4 / 3600
    assert 85 < hours < 110
    assert paper["resources"]["train_bonito"]["runtime"] <= paper["resources"]["max_runtime"] == 2880
    assert cost.bonito_retries(paper) == 4


def _jobs(config: dict) -> list[Job]:
    """The paper grid's compute jobs, as a dry run lists them."""
    jobs = [Job("ctga"), Job("train_bonito", {"generator": "bonito"}, {"gpu": "4", "runtime": "2880"})]
    for dataset in config["datasets"]:
        jobs.append(Job("generate", {"generator": "bonito", "dataset": dataset}))
        for target in config["targets"]:
            for source in ["tapt", "bonito"]:
                jobs.append(Job("adapt", {"target": target, "source": source, "dataset": dataset}))
            for source in ["zero_shot", "tapt", "bonito"]:
                jobs.append(Job("evaluate", {"target": target, "source": source, "dataset": dataset}))
    return jobs + [Job("main_table")]


def test_stage_costs_count_every_job_by_stage_and_chain_only_bonito_training(paper):
    stages = {s.stage: s for s in cost.stage_costs(paper, _jobs(paper))}
    assert list(stages) == ["ctga", "train_bonito", "generate", "adapt", "evaluate"]
    assert (stages["adapt"].jobs, stages["evaluate"].jobs, stages["generate"].jobs) == (70, 105, 7)
    assert stages["train_bonito"].gpus == 4
    assert stages["train_bonito"].gpu_hours == pytest.approx(4 * stages["train_bonito"].hours_per_job)
    assert "chained: 3 attempts of 2880 min" in stages["train_bonito"].warning
    assert "rule retries 4" in stages["train_bonito"].warning
    assert not any(s.warning for name, s in stages.items() if name != "train_bonito")
    table = cost.format_table(list(stages.values()), paper)
    assert "train_tokens_per_second 800" in table and "resources.max_runtime 2880" in table


def test_a_job_that_cannot_finish_in_its_runtime_is_named(paper):
    config = copy.deepcopy(paper)
    config["resources"]["evaluate"]["runtime"] = 20
    config["cost"]["test_rows"] = 100_000
    stages = {s.stage: s for s in cost.stage_costs(config, _jobs(config))}
    assert stages["evaluate"].warning.startswith("WARNING: evaluate dataset=")
    assert "more than its runtime of 20 min" in stages["evaluate"].warning


def test_projections_follow_the_config(paper):
    """More steps, bigger batches or a bigger model cost more; a smaller grid fewer jobs."""
    base = cost.train_bonito_seconds(paper)
    for edit in (lambda c: c["bonito_training"].update(max_steps=200_000),
                 lambda c: c["bonito_training"].update(grad_accumulation=8),
                 lambda c: c["cost"].update(model_parameters=14.4e9)):
        config = copy.deepcopy(paper)
        edit(config)
        assert cost.train_bonito_seconds(config) == pytest.approx(2 * base)
    one_epoch = copy.deepcopy(paper)
    one_epoch["cost"]["unannotated_rows"] = 1600  # one epoch of 100 steps at batch 16
    assert cost.adapt_seconds(one_epoch, "bonito") == pytest.approx(cost.adapt_seconds(paper, "bonito") / 12.5)


def test_dry_run_blocks_become_jobs():
    output = """Job stats: ...
[Wed Dec  2 08:25:52 2026]
rule adapt:
    output: results/adapters/mistral_7b/tapt/pubmed_qa
    wildcards: target=mistral_7b, source=tapt, dataset=pubmed_qa
    threads: 8
    resources: tmpdir=/tmp, gpu=1, mem_mb=64000, mem=64 GB, runtime=1440
[Wed Dec  2 08:25:52 2026]
localrule main_table:
    output: results/paper/main_table.csv
"""
    adapt, table = dry_run_jobs(output)
    assert adapt.rule == "adapt" and adapt.wildcards == {"target": "mistral_7b", "source": "tapt", "dataset": "pubmed_qa"}
    assert (adapt.resources["gpu"], adapt.resources["runtime"], adapt.resources["threads"]) == ("1", "1440", "8")
    assert table == Job("main_table")
