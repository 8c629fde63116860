"""What `bonito-repro run` checks before Snakemake starts, where Snakemake's own failure would not
say which file, line or folder:

- the config files (the scale's, the layers they name, the user's ``--configfile``s): read as
  the workflow reads them (``core.config.merged_config``, in ``run`` itself), so an empty file or
  a YAML syntax error is named with its line (Snakemake says only "Config file is not valid JSON
  or YAML");
- the folders of the run: results/ and the folder of every output, log and benchmark of the jobs
  Snakemake plans (a dry run), and every folder of an existing output folder, must take a new
  file and give up an old one (Snakemake removes a job's old outputs before it runs, and a
  read-only folder ended that in its own traceback);
- the free space of results/ against what the planned jobs are projected to write (a warning:
  the sizes are estimates), as the preflight checks it (``cluster.preflight.written_warning``), at
  the scales whose cost section describes their models (the paper's, the rehearsal's, a
  workstation's).

The plan's jobs serve the run's summary too: at a scale whose cost section applies, the job-hours
they spent beside the cost model's projection (``cluster.spent``).
"""
from __future__ import annotations

import contextlib
import io
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..cluster import cost
from ..cluster.dry_run import Job, dry_run_jobs
from ..core import layout
from ..core.config import ConfigError, validate
from ..core.io import cannot_write_in


@dataclass
class Plan:
    """The jobs a run is about to run (its dry run), under its resolved config."""
    config: dict
    jobs: list[Job]


def plan(merged: dict, dry_run_command: list[str], workdir: Path) -> Plan | None:
    """The resolved config and the jobs of the dry run, or None where either fails: the run itself
    then stops with the workflow's own message (its config check names key and file)."""
    try:
        with contextlib.chdir(workdir if workdir.is_dir() else Path.cwd()):  # the jobs' relative paths
            config = validate(merged)
    except ConfigError:
        return None
    done = subprocess.run(dry_run_command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    return Plan(config, dry_run_jobs(done.stdout + done.stderr))


def _existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def folders_to_write(workdir: Path, jobs: Iterable[Job]) -> list[Path]:
    """results/ and every folder the jobs write into (the nearest existing one where it is not
    made yet), with every folder of an existing output folder (a job replaces it whole); none
    where there is no job (a finished run's results/ may be read-only)."""
    jobs = list(jobs)
    folders = {_existing(workdir / layout.RESULTS)} if jobs else set()
    for job in jobs:
        for name in (*job.output, *job.log, *([job.benchmark] if job.benchmark else [])):
            path = workdir / name
            folders.add(_existing(path.parent))
            if path.is_dir() and not path.is_symlink():
                folders.update(p for p in (path, *path.rglob("*")) if p.is_dir() and not p.is_symlink())
    return sorted(folders)


def unwritable_folders(folders: Iterable[Path]) -> list[tuple[Path, str]]:
    """Each folder in which no file can be created or removed, with why."""
    return [(folder, why) for folder in folders if (why := cannot_write_in(folder)) is not None]


def unwritable_text(found: list[tuple[Path, str]]) -> str:
    """One line naming the first folder that cannot be written, why, and how many more."""
    folder, why = found[0]
    more = f" (and {len(found) - 1} more folders)" if len(found) > 1 else ""
    return (f"{folder}: cannot write or replace the run's outputs there ({why}){more}; make it writable "
            "(chmod u+w, or chattr -i for an immutable folder) or run in another directory (-d DIR); "
            "checked before Snakemake started")


def disk_warning(run: Plan, workdir: Path) -> str | None:
    """The preflight's check of what the run writes against results/'s free space (and quota), at
    a scale whose cost section describes its models (``cost.COSTED_SCALES``): at a CPU scale it
    would project a 7B model's adapters and the paper's rows (about 25 GB for the CPU demo, which
    writes under 1 GB)."""
    from ..cluster.preflight import written_warning  # the preflight's imports: only for a run that writes

    if run.config["scale"] not in cost.COSTED_SCALES:
        return None
    return written_warning(workdir / layout.RESULTS, cost.disk_bytes(run.config, run.jobs, rows(workdir)))


def rows(workdir: Path) -> cost.Rows:
    """The preflight's row counts where it has run in ``workdir``, else the config's assumptions."""
    found = workdir / layout.preflight("row_counts.json")
    return cost.load_rows(found if found.exists() else None)


def spent_lines(run: Plan, workdir: Path, since: float) -> list[str]:
    """The job-hours spent beside the projection (``cluster.spent``), where the scale's cost
    section applies and a planned job wrote its benchmark; else no line."""
    from ..cluster.spent import format_spent, spent_by_stage

    if run.config["scale"] not in cost.COSTED_SCALES:
        return []
    counts = rows(workdir)
    stages = spent_by_stage(run.config, run.jobs, workdir, since, counts)
    if not stages:
        return []
    return ["Job-hours spent and projected (bonito_repro.cluster.cost):", format_spent(stages, counts), ""]


def dry_run_arguments(snakemake_args: list[str]) -> list[str] | None:
    """The arguments of the dry run that plans the user's run: its targets, ``--config``, forced
    reruns and ``--until`` / ``--omit-from`` (no other option, so that none acts: ``--unlock``,
    ``--report``, ...), or None where Snakemake cannot read them (it then says why itself)."""
    from snakemake.cli import get_argument_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            parsed = get_argument_parser().parse_args(snakemake_args)
    except SystemExit:
        return None
    args = ["-n", "--nolock", *sorted(parsed.targets)]
    if parsed.config:
        args += ["--config", *parsed.config]
    if parsed.forceall:
        args.append("--forceall")
    for option, values in (("--forcerun", parsed.forcerun), ("--until", parsed.until), ("--omit-from", parsed.omit_from)):
        if values:
            args += [option, *sorted(values)]
    return args


__all__ = ["Plan", "plan", "folders_to_write", "unwritable_folders", "unwritable_text",
           "disk_warning", "spent_lines", "dry_run_arguments"]
