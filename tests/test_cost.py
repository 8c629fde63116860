"""The cost model: stages of rules, projections from the config and the row counts the preflight
read, the retries that chain a long job (Bonito training, a large dataset's TAPT) across jobs of at
most resources.max_runtime, as the paper's dry run shows them, and a warning for every job that
needs more than one attempt of its runtime."""
from __future__ import annotations

import copy

import pytest

from bonito_repro.cluster import cost, row_counts
from bonito_repro.cluster.row_counts import RowCount
from bonito_repro.core.config import load_scale
from conftest import REPO, Job, dry_run_jobs, snakemake


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
    assert cost.rule_retries(paper, "train_bonito", [{"generator": "bonito"}]) == 4


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
    """A job of a stage that resumes (evaluation: its finished templates) with the attempts that
    chain it; one that starts over (ctga's build) with the runtime it lacks."""
    config = copy.deepcopy(paper)
    config["resources"]["evaluate"]["runtime"] = 20
    config["cost"]["test_rows"] = 100_000
    config["ctga"]["use_published"] = False
    config["resources"]["ctga"]["runtime"] = 1
    stages = {s.stage: s for s in cost.stage_costs(config, _jobs(config))}
    assert stages["evaluate"].warning.startswith("WARNING: evaluate dataset=")
    assert "needs 24 attempts of 20 min, each resuming where the last stopped (rule retries 25)" in stages["evaluate"].warning
    assert stages["ctga"].warning.startswith("WARNING: ctga ")
    assert "more than its runtime of 1 min (resources.ctga.runtime)" in stages["ctga"].warning


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
    assert (cost.adapt_seconds(one_epoch, "bonito", "vitaminc", cost.Rows())
            == pytest.approx(cost.adapt_seconds(paper, "bonito", "vitaminc", cost.Rows()) / 12.5))


def test_dry_run_blocks_become_jobs():
    output = """Job stats: ...
[Wed Dec  2 08:25:52 2026]
rule adapt:
    output: results/adapters/mistral_7b/tapt/pubmed_qa, results/adapters/mistral_7b/tapt/pubmed_qa.manifest.json
    log: results/logs/adapt/mistral_7b/tapt/pubmed_qa.log
    benchmark: results/benchmarks/adapt/mistral_7b/tapt/pubmed_qa.tsv
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
    assert adapt.output == ("results/adapters/mistral_7b/tapt/pubmed_qa",
                            "results/adapters/mistral_7b/tapt/pubmed_qa.manifest.json")
    assert adapt.log == ("results/logs/adapt/mistral_7b/tapt/pubmed_qa.log",)
    assert adapt.benchmark == "results/benchmarks/adapt/mistral_7b/tapt/pubmed_qa.tsv"
    assert table == Job("main_table", output=("results/paper/main_table.csv",))
    assert adapt.writes == (*adapt.output, *adapt.log, adapt.benchmark) and adapt.command == ""


# ---------------------------------------------------------------- real row counts


def counts(**rows: int) -> cost.Rows:
    """Footer counts by config key (``datasets__pubmed_qa__unannotated`` spells
    datasets.pubmed_qa.unannotated)."""
    found = {}
    for key, n in rows.items():
        where = key.replace("__", ".")
        found[where] = RowCount(where, "org/set", None, "train", n, row_counts.FOOTER, "read in a test")
    return cost.Rows(found)


def test_real_row_counts_name_every_job_that_cannot_finish_in_its_runtime(paper):
    """PubMedQA's unannotated set at the top of its public estimate (270,000 passages, from file
    sizes): its TAPT job, for every target, needs more than the 24 h of resources.adapt.runtime
    (79,102 blocks of 1,024 tokens, under 160,000 examples: one epoch), its generation job more
    than generate's 12 h; a 20,000-passage dataset's jobs fit."""
    rows = counts(datasets__pubmed_qa__unannotated=270_000, datasets__vitaminc__unannotated=20_000)
    report = cost.project(paper, _jobs(paper), rows)
    over = {(c.job.rule, c.job.wildcards.get("source", c.job.wildcards.get("generator")), c.job.wildcards["dataset"])
            for c in report.overruns}
    assert over == {("adapt", "tapt", "pubmed_qa"), ("generate", "bonito", "pubmed_qa")}
    assert len(report.overruns) == len(paper["targets"]) + 1
    tapt = next(c for c in report.overruns if c.job.wildcards.get("source") == "tapt")
    assert 28 < tapt.hours < 30 and tapt.runtime_minutes == 1440
    assert cost.overrun_text(tapt).endswith("more than its runtime of 1440 min (resources.adapt.runtime)")
    text = cost.format_report(report, paper)
    assert f"{len(paper['targets']) + 1} jobs need more than one attempt of their runtime" in text
    assert "cannot finish" not in text  # both stages resume where an attempt stopped
    stages = {s.stage: s for s in report.stages}
    assert "needs 2 attempts of 1440 min, each resuming where the last stopped (rule retries 3)" in stages["adapt"].warning
    assert cost.rule_retries(paper, "adapt", [c.job.wildcards for c in report.jobs if c.job.rule == "adapt"], rows) == 3
    for target in paper["targets"]:
        assert f"adapt dataset=pubmed_qa,source=tapt,target={target}: needs" in text
    assert "generate dataset=pubmed_qa,generator=bonito: needs" in text
    # the per-dataset table says which numbers were read and which assumed
    pubmed = next(line for line in text.splitlines() if line.startswith("pubmed_qa "))
    assert "270,000 footer" in pubmed and "10,000 assumed" in pubmed
    assert "row counts used: 2 footer, " in text and " assumed" in text


def test_the_step_rule_reads_the_real_rows(paper):
    """Adaptation on synthetic tasks: one epoch below 160,000 examples, 10,000 steps from there on
    (docs/protocol.md, D8); a size point trains on at most its size."""
    def hours(n: int, source: str = "bonito") -> float:
        return cost.adapt_seconds(paper, source, "pubmed_qa", counts(datasets__pubmed_qa__unannotated=n)) / 3600

    assert hours(80_000) == pytest.approx(hours(40_000) * 2)      # 5,000 and 2,500 steps at batch 16
    assert hours(159_984) == pytest.approx(hours(320_000) * 9_999 / 10_000)
    assert hours(320_000) == pytest.approx(hours(1_000_000))     # 10,000 steps
    assert hours(320_000, "bonito.n1000") == pytest.approx(hours(1_000))


def test_a_released_set_is_costed_by_its_own_rows(paper):
    config = copy.deepcopy(paper)
    config["generators"]["released"] = {"kind": "published", "origin": {"hub": {
        "id": "BatsResearch/bonito-experiment", "config": "bonito_{dataset}", "split": "train", "revision": "main"}}}
    rows = counts(datasets__pubmed_qa__unannotated=270_000)
    rows.counts[row_counts.released_key("released", "pubmed_qa")] = RowCount(
        "generators.released.origin (pubmed_qa)", "BatsResearch/bonito-experiment", "bonito_pubmed_qa", "train",
        16_000, row_counts.FOOTER, "read in a test")
    released = cost.adapt_seconds(config, "released", "pubmed_qa", rows)
    assert released == pytest.approx(cost.adapt_seconds(config, "bonito", "pubmed_qa", counts(
        datasets__pubmed_qa__unannotated=16_000)))


def test_rank_evaluation_costs_one_sequence_per_example(paper):
    """The scoring packs an example's prompt and all its answer choices into one sequence
    (evaluate.scoring), so a three-choice dataset costs what a two-choice one does."""
    rows = counts(datasets__pubmed_qa__test=1_000, datasets__privacy_qa__test=1_000)
    assert len(set(paper["datasets"]["pubmed_qa"]["labels"]["map"].values())) == 3
    assert len(set(paper["datasets"]["privacy_qa"]["labels"]["map"].values())) == 2
    per_example = {d: cost.evaluate_seconds(paper, d, rows) / 1_000 / cost.template_count(paper["datasets"][d]["templates"])
                   for d in ("pubmed_qa", "privacy_qa")}
    one_sequence = (paper["cost"]["passage_tokens"] / paper["cost"]["prompt_tokens_per_second"]
                    * paper["cost"]["model_parameters"] / paper["cost"]["reference_parameters"])
    assert per_example == pytest.approx({"pubmed_qa": one_sequence, "privacy_qa": one_sequence})


def test_ctga_rows_are_what_the_build_samples_of_each_source(paper):
    cap = paper["ctga"]["max_examples_per_dataset"]
    rows = counts(ctga__p3_datasets__anli=100_459, ctga__p3_datasets__squad=87_599)
    # dots in a P3 dataset's name are its own: ctga.p3_datasets.super_glue/wsc.fixed
    rows.counts[row_counts.p3_key("super_glue/wsc.fixed")] = RowCount(
        "ctga.p3_datasets.super_glue/wsc.fixed", "aps/super_glue", "wsc.fixed", "train", 554, row_counts.FOOTER, "test")
    others = len(paper["ctga"]["p3_datasets"]) - 3
    assert cost.ctga_rows(paper, rows) == cap + 87_599 + 554 + others * cap
    assert rows.summary() == f"3 footer, {others} assumed"
    published = copy.deepcopy(paper)
    published["ctga"]["use_published"] = True
    rows.counts[row_counts.CTGA_PUBLISHED_KEY] = RowCount("ctga.published", "BatsResearch/ctga-v1", None, "train",
                                                          1_650_000, row_counts.ESTIMATE, "test")
    assert cost.ctga_rows(published, rows) == 1_650_000


def test_row_counts_round_trip_through_the_preflights_file(tmp_path):
    found = [RowCount("datasets.pubmed_qa.unannotated", "BatsResearch/bonito-experiment", "unannotated_pubmed_qa",
                      "train", 270_000, row_counts.FOOTER, "refs/convert/parquet@0123456789, 1 file"),
             RowCount("ctga.p3_datasets.samsum", "knkarthick/samsum", None, "train", 7, row_counts.ESTIMATE,
                      "1 file at 0123456789, 0.0 MB as Arrow / cost.bytes_per_row 2000"),
             RowCount("ctga.p3_datasets.xsum", "EdinburghNLP/xsum", None, "train", 5_000, row_counts.FOOTER,
                      "refs/convert/parquet@0123456789, 2 files (a partial conversion: at least this many)", True)]
    path = tmp_path / "preflight" / "row_counts.json"
    row_counts.write_counts(path, found)
    rows = cost.load_rows(path)
    assert list(rows.counts.values()) == found
    assert rows.shown("ctga.p3_datasets.xsum", 1) == ">=5,000 footer"
    table = row_counts.format_counts(found).splitlines()
    assert table[0].split() == ["origin", "repository", "(config)", "split", "rows", "source"]
    assert table[1].split()[-2:] == ["270,000", "footer"] and table[2].split()[-2:] == ["7", "estimate"]
    assert table[3].split()[-2:] == [">=5,000", "footer"]
    path.write_text("{}")
    with pytest.raises(ValueError, match="not a row counts file of the preflight"):
        cost.load_rows(path)
    assert cost.load_rows(None).counts == {}


def test_max_passages_cuts_generation_and_its_tasks_not_tapt(paper):
    """generation.max_passages is a seeded sample of the passages a generation job reads; TAPT
    trains on every passage of the dataset."""
    config = copy.deepcopy(paper)
    config["generation"]["max_passages"] = 1_000
    rows = counts(datasets__pubmed_qa__unannotated=270_000)
    assert cost.adapt_seconds(config, "tapt", "pubmed_qa", rows) == cost.adapt_seconds(paper, "tapt", "pubmed_qa", rows)
    assert cost.generate_seconds(config, "pubmed_qa", rows) == pytest.approx(cost.generate_seconds(paper, "pubmed_qa", rows) / 270)
    assert (cost.adapt_seconds(config, "bonito", "pubmed_qa", rows)
            == pytest.approx(cost.adapt_seconds(paper, "bonito", "pubmed_qa", counts(datasets__pubmed_qa__unannotated=1_000))))


@pytest.mark.dag  # a dry run of the paper DAG
def test_the_cost_command_reads_the_preflights_row_counts(tmp_path, capsys):
    path = tmp_path / "row_counts.json"
    row_counts.write_counts(path, [RowCount("datasets.pubmed_qa.unannotated", "BatsResearch/bonito-experiment",
                                            "unannotated_pubmed_qa", "train", 270_000, row_counts.FOOTER, "test")])
    assert cost.main(["--directory", str(REPO), "--row-counts", str(path)]) == 0
    out = capsys.readouterr().out
    assert "6 jobs need more than one attempt of their runtime: each attempt resumes" in out
    assert "adapt dataset=pubmed_qa,source=tapt,target=mistral_7b: needs" in out
    assert "row counts used: 1 footer, " in out


@pytest.mark.dag  # a dry run of the paper DAG
def test_the_paper_dry_run_shows_each_long_gpu_rule_with_the_retries_the_cost_model_projects(tmp_path, paper):
    """With the preflight's row counts beside the run (PubMedQA's unannotated set at 270,000
    passages), the dry run shows each long GPU rule's retries: the attempts the cost model projects
    for its longest job, plus one, computed here from the dry run's own jobs and row counts. Its
    TAPT and generation jobs need a second attempt, so adapt and generate get 3 retries, not the
    profile's 2; every GPU job asks Slurm for SIGTERM resources.signal_lead_seconds before its
    time limit."""
    path = tmp_path / "results" / "preflight" / "row_counts.json"
    row_counts.write_counts(path, [RowCount(row_counts.dataset_key("pubmed_qa", "unannotated"), "org/set", None,
                                            "train", 270_000, row_counts.FOOTER, "read in a test")])
    result = snakemake("-n", "--profile", "slurm", "-d", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    line = next(line for line in output.splitlines() if line.startswith("retries of the long GPU rules"))
    shown = {rule: int(n) for rule, n in (item.split() for item in line.split(": ", 1)[1].split(", "))}
    jobs = dry_run_jobs(output)
    projected: dict[str, int] = {}
    for c in cost.project(paper, jobs, cost.load_rows(path)).jobs:
        if c.stage in cost.RESUMING_STAGES:
            projected[c.job.rule] = max(projected.get(c.job.rule, 0), cost.chain_retries(c.hours, c.runtime_minutes))
    # rules the config declares but this target runs no job of (backtranslation) are shown too
    assert {rule: shown[rule] for rule in projected} == projected
    assert set(projected) == {"train_bonito", "generate", "adapt", "evaluate", "evaluate_generation"}
    assert (shown["train_bonito"], shown["adapt"], shown["generate"], shown["evaluate"]) == (4, 3, 3, 2)
    signal = f"--signal=TERM@{paper['resources']['signal_lead_seconds']}"
    assert all(job.resources.get("slurm_extra") == signal for job in jobs if int(job.resources.get("gpu", 0)))


def test_the_disk_a_run_writes_is_projected_per_kind(paper):
    """What the preflight checks results/'s free space against, beyond the downloads: each
    training job's adapter (its LoRA rank times cost.lora_parameters_per_rank, float32) and
    checkpoints (two of adapter and Adam's two moments, of the largest job), each generation's files and each
    evaluation's predictions."""
    adapter = 64 * paper["cost"]["lora_parameters_per_rank"] * 4  # rank 64 (`training.lora.r`)
    assert cost.adapter_bytes(paper, "adaptation") == adapter == 665_600_000
    assert cost.adapter_bytes(paper, "backtranslation_training") == adapter / 8  # its own rank, 8
    jobs = [Job("adapt", {"target": "mistral_7b", "source": "bonito", "dataset": "pubmed_qa"}),
            Job("train_bonito"),
            Job("generate", {"generator": "bonito", "dataset": "pubmed_qa"}),
            Job("evaluate", {"target": "mistral_7b", "source": "bonito", "dataset": "pubmed_qa"}),
            Job("main_table")]
    need = cost.disk_bytes(paper, jobs)
    assert need["adapters"] == 2 * adapter and need["checkpoints"] == 6 * adapter
    made = cost.tasks(paper, "bonito", "pubmed_qa", cost.Rows())
    examples = min(paper["cost"]["test_rows"], paper["evaluation"]["max_examples"] or paper["cost"]["test_rows"])
    predictions = examples * cost.template_count(paper["datasets"]["pubmed_qa"]["templates"])
    assert need["outputs"] == (3 * made + predictions) * paper["cost"]["bytes_per_row"]
