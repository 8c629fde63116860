"""`bonito-repro run`: the workflow, from any directory.

    bonito-repro run [--scale local|smoke|workstation|paper] [--configfile FILE ...] [SNAKEMAKE ARGUMENTS]

Runs Snakemake on the workflow the package ships (in an editable install, the checkout's) with
the scale's profile (local and smoke: this machine's cores; workstation: its one GPU; paper:
Slurm) and its config overlay,
with your --configfile files on top. It works in the current directory: results/ is written
there (Snakemake's -d DIR: in DIR). Every other argument goes to Snakemake as it is: a target
(all, ablations, a file), -n for a dry run, --cores 8, --profile of your own, ...

Before Snakemake starts, run reads the config files (naming the file and line of one that is
empty or not YAML) and, unless it is a dry run, plans the jobs and checks that results/ and every
folder they write into can take their outputs (naming the folder), and at the paper, rehearsal
and workstation scales warns where results/ lacks the room they are projected to need
(bonito_repro.workflow.prerun); exit status 2 where a check fails. The terminal shows which job
starts and finishes, with each stage's count, and at the end the main table, where the outputs
are and, at the paper, rehearsal and workstation scales, the job-hours spent beside the cost
model's projection (bonito_repro.workflow.feedback); --verbose (and a dry run) shows Snakemake's
own output, shell commands included.

    bonito-repro run -n                       what the CPU demo would run
    bonito-repro run --scale smoke --cores 2  the smallest grid, in minutes
    bonito-repro run ablations                the paper's three ablations at the local scale
"""
from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from ..core.config import ConfigError, merged_config, scale_files, workflow_root
from . import prerun
from .feedback import run_condensed
from .scales import SCALE_PROFILES


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bonito-repro run", description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=sorted(SCALE_PROFILES), default="local",
                   help="the config the run overlays, and its profile (default: local, the CPU demo)")
    p.add_argument("--configfile", "--configfiles", nargs="+", action="extend", default=[], type=Path,
                   metavar="FILE", help="overlays of yours, merged on top of the scale's (a corpus run.yaml)")
    p.add_argument("--profile", help="a Snakemake profile instead of the scale's (local and slurm name the "
                   "shipped ones)")
    p.add_argument("-d", "--directory", type=Path, help="the directory to run in, where the outputs go (default: this one)")
    p.add_argument("--verbose", action="store_true", help="Snakemake's full output, each job's shell command included")
    return p


def split_arguments(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Run's own options, and the arguments it passes to Snakemake as they are."""
    return parser().parse_known_args(argv)


def snakemake_command(args: argparse.Namespace, snakemake_args: list[str]) -> list[str]:
    root = workflow_root()
    profile = args.profile or SCALE_PROFILES[args.scale]
    if (root / profile).is_dir():  # a shipped profile by its name, from any directory
        profile = str(root / profile)
    # Always a --configfile, so that a profile's own (local's config/local.yaml) never decides the
    # scale: the paper's is config.yaml itself, which the Snakefile reads first (merged twice, alike).
    files = scale_files(args.scale, root)
    configfiles = [str(p) for p in files[1:] or files] + [str(p.resolve()) for p in args.configfile]
    # Snakemake's arguments first: --configfile takes every word up to the next option, targets too
    # always by absolute path: the command it prints works from any directory
    directory = ["--directory", str(workdir_of(args))]
    if args.verbose:
        output = ["--printshellcmds"]
    elif condensed(args, snakemake_args) and not {"-q", "--quiet"} & set(snakemake_args):
        output = ["--quiet", "host"]  # Snakemake's header, with its own command line
    else:
        output = []
    return [sys.executable, "-m", "snakemake", *snakemake_args, *directory, *output, "--snakefile",
            str(root / "Snakefile"), "--profile", profile, "--configfile", *configfiles]


def is_dry_run(snakemake_args: list[str]) -> bool:
    return any(a in ("--dry-run", "--dryrun") or re.fullmatch(r"-[A-Za-z]*n[A-Za-z]*", a) for a in snakemake_args)


def workdir_of(args: argparse.Namespace) -> Path:
    """Where the run works and its results/ goes: -d DIR, else the current directory."""
    return (args.directory or Path.cwd()).resolve()


def condensed(args: argparse.Namespace, snakemake_args: list[str]) -> bool:
    """Whether the terminal gets the condensed output: not with --verbose, nor for a dry run."""
    return not (args.verbose or is_dry_run(snakemake_args))


def main(argv: list[str] | None = None) -> int:
    args, snakemake_args = split_arguments(sys.argv[1:] if argv is None else argv)
    command = snakemake_command(args, snakemake_args)
    workdir = workdir_of(args)
    root = workflow_root()
    try:  # Snakemake's own message names neither the file nor the line
        merged = merged_config([*scale_files(args.scale, root), *(p.resolve() for p in args.configfile)], root=root)
    except ConfigError as error:
        print(f"bonito-repro run: {error}", file=sys.stderr)
        return 2
    if condensed(args, snakemake_args):
        print(f"bonito-repro run: the {args.scale} scale in {workdir} (--verbose: Snakemake's full output)", flush=True)
    plan = None
    dry_run_args = None if is_dry_run(snakemake_args) else prerun.dry_run_arguments(snakemake_args)
    if dry_run_args is not None:
        plan = prerun.plan(merged, snakemake_command(args, dry_run_args), workdir)
    if plan is not None:
        unwritable = prerun.unwritable_folders(prerun.folders_to_write(workdir, plan.jobs))
        if unwritable:
            print(f"bonito-repro run: {prerun.unwritable_text(unwritable)}", file=sys.stderr)
            return 2
        warning = prerun.disk_warning(plan, workdir)
        if warning:
            print(f"bonito-repro run: warning: {warning}", file=sys.stderr, flush=True)
    if not condensed(args, snakemake_args):
        print(f"bonito-repro run: {shlex.join(command)}", file=sys.stderr)
        return subprocess.run(command).returncode
    started = time.time()
    spent = (lambda: prerun.spent_lines(plan, workdir, started)) if plan is not None else None
    return run_condensed(command, workdir, started, spent, merged["run"]["name"])


if __name__ == "__main__":
    sys.exit(main())
