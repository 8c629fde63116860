"""`bonito-repro run`: the workflow, from any directory.

    bonito-repro run [--scale local|smoke|paper] [--configfile FILE ...] [SNAKEMAKE ARGUMENTS]

Runs Snakemake on the workflow the package ships (in an editable install, the checkout's) with
the scale's profile (local and smoke: this machine's cores; paper: Slurm) and its config overlay,
with your --configfile files on top. It works in the current directory: results/ is written
there (Snakemake's -d DIR: in DIR). Every other argument goes to Snakemake as it is: a target
(all, ablations, a file), -n for a dry run, --cores 8, --profile of your own, ...

    bonito-repro run -n                       what the CPU demo would run
    bonito-repro run --scale smoke --cores 2  the smallest grid, in minutes
    bonito-repro run ablations                the paper's three ablations at the local scale
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from ..core.config import scale_files, workflow_root
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
    return [sys.executable, "-m", "snakemake", "--snakefile", str(root / "Snakefile"), "--profile", profile,
            "--configfile", *configfiles, *snakemake_args]


def main(argv: list[str] | None = None) -> int:
    args, snakemake_args = split_arguments(sys.argv[1:] if argv is None else argv)
    command = snakemake_command(args, snakemake_args)
    print(f"bonito-repro run: {shlex.join(command)}", file=sys.stderr)
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
