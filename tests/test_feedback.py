"""What `bonito-repro run` prints: Snakemake's output condensed to a line per job started and
finished with its stage's count, errors as they are, and a summary at the end."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Job

from bonito_repro.cluster import cost
from bonito_repro.cluster.spent import benchmark_seconds, format_spent, spent_by_stage
from bonito_repro.core import layout
from bonito_repro.core.config import load_scale
from bonito_repro.workflow import prerun
from bonito_repro.workflow.feedback import Condenser, summary
from bonito_repro.workflow.run import condensed, snakemake_command, split_arguments

# Snakemake 9.27's terminal output for two jobs, the second of which fails (its shape as printed)
OUTPUT = """Building DAG of jobs...
Job stats:
job            count
-----------  -------
unannotated        1
adapt              1
total              2

Select jobs to execute...
Execute 1 jobs...

[Mon Dec  7 21:31:52 2026]
localrule unannotated:
    input: src/bonito_repro/data/embedded/unannotated/pubmed_qa.jsonl
    output: results/unannotated/pubmed_qa.parquet, results/unannotated/pubmed_qa.manifest.json
    log: results/logs/unannotated/pubmed_qa.log
    jobid: 1
    reason: Missing output files: results/unannotated/pubmed_qa.parquet
    wildcards: dataset=pubmed_qa
    resources: tmpdir=/tmp, runtime=30, mem_mb=2000, mem=2 GB, mem_mib=1908
Shell command:  python -m bonito_repro target-data unannotated --dataset pubmed_qa --origin '{"embedded": "pubmed_qa"}'
[Mon Dec  7 21:32:02 2026]
Finished jobid: 1 (Rule: unannotated)
1 of 2 steps (50%) done

[Mon Dec  7 21:32:03 2026]
rule adapt:
    jobid: 0
    wildcards: target=mistral, source=bonito, dataset=pubmed_qa
Shell command:  python -m bonito_repro train adapt --params '{"max_steps": 20}'

[Mon Dec  7 21:32:09 2026]
Error in rule adapt:
    message: None
    jobid: 0
    log: results/logs/adapt/mistral/bonito/pubmed_qa.log (check log file(s) for error details)
Exiting because a job execution failed. Look below for error messages
"""


def condense(text: str) -> list[str]:
    condenser = Condenser()
    lines = [out for line in text.splitlines(keepends=True) for out in condenser.feed(line)]
    return lines + condenser.close()


def test_each_job_is_a_line_when_it_starts_and_finishes_with_its_stage_count_and_errors_pass():
    lines = condense(OUTPUT)
    assert "[21:31:52] start  unannotated dataset=pubmed_qa" in lines
    assert "[21:32:02] done   unannotated dataset=pubmed_qa  (unannotated 1 of 1)" in lines
    assert "1 of 2 steps (50%) done" in lines
    assert "[21:32:03] start  adapt target=mistral source=bonito dataset=pubmed_qa" in lines
    text = "\n".join(lines)
    for gone in ("Shell command", "bonito_repro train", "reason:", "resources:", "Execute 1 jobs"):
        assert gone not in text, gone
    error = lines.index("Error in rule adapt:")  # the error's block as Snakemake wrote it, timestamp first
    assert lines[error - 1] == "[Mon Dec  7 21:32:09 2026]" and lines[error + 2] == "    jobid: 0"
    assert lines[-1].startswith("Exiting because a job execution failed")
    assert "unannotated        1" in lines  # the job stats table stays


def test_the_summary_shows_the_main_table_only_when_this_run_wrote_it(tmp_path):
    table = tmp_path / layout.paper("main_table.md")
    table.parent.mkdir(parents=True)
    table.write_text("| target | PubMedQA |\n| --- | --- |\n| smollm2 | 61.0 |\n")
    fresh = "\n".join(summary(tmp_path, started=time.time() - 60))
    assert f"The main table ({layout.paper('main_table.md')}):" in fresh and "| smollm2 | 61.0 |" in fresh
    old = "\n".join(summary(tmp_path, started=time.time() + 60))
    assert "smollm2" not in old
    for text in (fresh, old):
        assert f"Outputs, under {tmp_path / layout.RESULTS}/" in text and "make report" in text


BENCHMARK = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n{s}\t0:00:00\t1\t1\t1\t1\t0\t0\t0\t1\n"


def test_the_summary_shows_the_job_hours_spent_beside_the_projection_at_a_costed_scale(tmp_path):
    """Three adaptations and an evaluation planned at the workstation scale: two adaptations and the
    evaluation wrote their benchmark files in this run, one adaptation's is from an earlier run."""
    config = load_scale("workstation")
    started = time.time()

    def job(rule: str, source: str, dataset: str, seconds: float | None, age: float = 0) -> Job:
        name = f"{rule}/mistral_7b/{source}/{dataset}"
        if seconds is not None:
            path = tmp_path / layout.benchmark(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(BENCHMARK.format(s=seconds))
            os.utime(path, (started + age, started + age))
        return Job(rule, {"target": "mistral_7b", "source": source, "dataset": dataset}, {"gpu": "1"},
                   benchmark=layout.benchmark(name))

    jobs = [job("adapt", "tapt", "pubmed_qa", 5400), job("adapt", "tapt", "vitaminc", 1800),
            job("adapt", "tapt", "contract_nli", 3600, age=-3600), job("evaluate", "tapt", "pubmed_qa", 720),
            job("evaluate", "tapt", "vitaminc", None), Job("main_table", benchmark=layout.benchmark("paper/main_table"))]
    assert benchmark_seconds(tmp_path / jobs[0].benchmark) == 5400
    rows = cost.Rows()
    stages = spent_by_stage(config, jobs, tmp_path, started, rows)
    projected = {d: cost.job_cost(config, j, rows).hours for d, j in (("adapt", jobs[0]), ("vitaminc", jobs[1]),
                                                                      ("evaluate", jobs[3]))}
    assert [(s.stage, s.jobs) for s in stages] == [("adapt", 2), ("evaluate", 1)]
    adapt, evaluate = stages
    assert adapt.spent_hours == pytest.approx(2.0) and evaluate.spent_hours == pytest.approx(0.2)
    assert adapt.projected_hours == pytest.approx(projected["adapt"] + projected["vitaminc"])
    assert evaluate.projected_gpu_hours == pytest.approx(projected["evaluate"])  # one GPU a job
    table = format_spent(stages, rows)
    cells = {line.split()[0]: line.split() for line in table.splitlines()[1:4]}
    assert cells["adapt"] == ["adapt", "2", "2.00", f"{adapt.projected_hours:.2f}", "2.00",
                              f"{adapt.projected_gpu_hours:.2f}", f"{2 / adapt.projected_hours:.2f}"]
    assert cells["total"][:3] == ["total", "3", "2.20"]
    assert "not measured" in table and "last attempt only" in table

    lines = prerun.spent_lines(prerun.Plan(config, jobs), tmp_path, started)
    text = "\n".join(summary(tmp_path, started, lines))
    assert "Job-hours spent and projected" in text and table in text
    smoke = prerun.Plan(load_scale("smoke"), jobs)  # a CPU demo: the cost section is a 7B GPU's
    assert prerun.spent_lines(smoke, tmp_path, started) == []


def test_a_named_runs_summary_shows_its_own_table_and_folder(tmp_path):
    """A corpus run (config run.name) writes its tables to results/runs/NAME/: the summary shows
    that table, not the demo's in results/paper/."""
    (tmp_path / layout.paper("main_table.md")).parent.mkdir(parents=True)
    (tmp_path / layout.paper("main_table.md")).write_text("| target | PubMedQA |\n| --- | --- |\n| demo | 1.0 |\n")
    own = tmp_path / "results" / "runs" / "library" / "main_table.md"
    own.parent.mkdir(parents=True)
    own.write_text("| target | library |\n| --- | --- |\n| smollm2 | 70.0 |\n")
    text = "\n".join(summary(tmp_path, started=time.time() - 60, run_name="library"))
    assert "The main table (results/runs/library/main_table.md):" in text and "| smollm2 | 70.0 |" in text
    assert "demo" not in text and "tables and figures in results/runs/library/" in text
    assert "make report" not in text and "--report results/runs/library/report.html with this run's" in text


def test_verbose_and_dry_runs_show_snakemakes_own_output():
    args, rest = split_arguments(["--verbose"])
    assert not condensed(args, rest) and "--printshellcmds" in snakemake_command(args, rest)
    for dry in (["-n"], ["--dry-run"], ["-np"]):
        assert not condensed(*split_arguments(dry)), dry
    args, rest = split_arguments(["all"])
    assert condensed(args, rest) and snakemake_command(args, rest)[3:9] == [
        "all", "--directory", str(Path.cwd()), "--quiet", "host", "--snakefile"]
    assert "host" not in snakemake_command(*split_arguments(["--quiet", "rules"]))


@pytest.mark.slow
def test_a_run_shows_no_shell_command_and_ends_with_where_the_outputs_are(tmp_path):
    """One small job through `bonito-repro run`, from a directory outside the checkout."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run([sys.executable, "-m", "bonito_repro", "run", "--scale", "smoke",
                             layout.unannotated("pubmed_qa")], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "start  unannotated dataset=pubmed_qa" in result.stdout
    assert "done   unannotated dataset=pubmed_qa  (unannotated 1 of 1)" in result.stdout
    assert "bonito_repro target-data" not in result.stdout + result.stderr
    assert f"Outputs, under {tmp_path / layout.RESULTS}/" in result.stdout
