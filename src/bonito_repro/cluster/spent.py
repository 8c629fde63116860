"""Job-hours a run spent beside the cost model's projection for the same jobs, by stage: what
`bonito-repro run` prints at the end of a run at a scale whose cost section applies (the paper's,
the rehearsal's, a workstation's). A job's hours spent are the wall seconds of its benchmark file
(``results/benchmarks/``, Snakemake's column ``s``); its projection is ``cost.job_cost``'s. Only
jobs whose benchmark file this run wrote are counted, so a job finished by an earlier run is in
neither column."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from . import cost
from .dry_run import Job


def benchmark_seconds(path: Path) -> float | None:
    """The wall seconds a Snakemake benchmark file records (the sum of its rows: one a repeat),
    or None where it has no such column or number."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        return sum(float(row["s"]) for row in rows) if rows else None
    except (OSError, KeyError, ValueError, TypeError):
        return None


@dataclass
class StageSpent:
    stage: str
    jobs: int
    spent_hours: float
    projected_hours: float
    spent_gpu_hours: float
    projected_gpu_hours: float


def spent_by_stage(config: dict, jobs: list[Job], workdir: Path, since: float,
                   rows: cost.Rows | None = None) -> list[StageSpent]:
    """Per costed stage (in DAG order), the jobs of ``jobs`` whose benchmark file was written at
    or after ``since`` (``time.time()``): their hours and GPU-hours spent and projected."""
    rows = rows or cost.Rows()
    by_stage: dict[str, list[tuple[float, cost.JobCost]]] = {}
    for job in jobs:
        projected = cost.job_cost(config, job, rows)
        path = workdir / job.benchmark
        if projected is None or not job.benchmark or not path.exists() or path.stat().st_mtime < since:
            continue
        seconds = benchmark_seconds(path)
        if seconds is not None:
            by_stage.setdefault(projected.stage, []).append((seconds / 3600, projected))
    return [StageSpent(stage, len(found), sum(h for h, _ in found), sum(c.hours for _, c in found),
                       sum(h * max(c.gpus, 0) for h, c in found), sum(c.gpu_hours for _, c in found))
            for stage in cost.STAGES if (found := by_stage.get(stage))]


def format_spent(stages: list[StageSpent], rows: cost.Rows) -> str:
    """The table: per stage, jobs, hours and GPU-hours spent and projected, and their ratio."""
    head = ["stage", "jobs", "h spent", "h projected", "GPU-h spent", "GPU-h projected", "spent/projected"]
    total = StageSpent("total", *(sum(getattr(s, name) for s in stages) for name in
                                  ("jobs", "spent_hours", "projected_hours", "spent_gpu_hours", "projected_gpu_hours")))
    lines = [[s.stage, str(s.jobs), f"{s.spent_hours:.2f}", f"{s.projected_hours:.2f}", f"{s.spent_gpu_hours:.2f}",
              f"{s.projected_gpu_hours:.2f}", f"{s.spent_hours / s.projected_hours:.2f}" if s.projected_hours else "-"]
             for s in [*stages, total]]
    widths = [max(len(row[i]) for row in [head, *lines]) for i in range(len(head))]
    table = "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                      for row in [head, *lines])
    return (f"{table}\nspent: each job's wall time in its benchmark file (a job Snakemake retried: its last attempt "
            "only), times the GPUs it requested; projected: the cost model (config `cost`, not measured; row counts "
            f"used: {rows.summary() or 'none'})")
