"""`bonito-repro COMMAND` (or `python -m bonito_repro COMMAND`): the user's commands, and the
stages the workflow's rules run, one small CLI each."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib.metadata import PackageNotFoundError, version

from .core.errors import InputError

# Threads that spin while waiting cost more than they save on a shared CPU (measured: a
# one-passage generation step 1.94 s -> 0.12 s on 2 busy cores).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PROGRAM = "bonito-repro"  # pyproject.toml's console script; every parser's prog starts with it

# The user's commands: name -> (module whose main(argv) runs it, what it does, an example)
COMMANDS = {
    "run": ("bonito_repro.workflow.run", "run the workflow (Snakemake) from any directory",
            "bonito-repro run --scale smoke --cores 2"),
    "list": ("bonito_repro.workflow.catalog", "list the datasets, generators, targets or task types",
             "bonito-repro list targets --scale paper"),
    "corpus": ("bonito_repro.workflow.corpus", "your own text to synthetic tasks, an adapted model and F1",
               "bonito-repro corpus --text my.txt --task-type ynqa --name mine --license cc0-1.0 --out-dir mine"),
    "push": ("bonito_repro.reporting.push", "upload a synthetic set's or an adapter's card folder to the Hub",
             "bonito-repro push path/to/set.hub you/my-tasks"),
    "ablations": ("bonito_repro.workflow.ablations", "the jobs each of the paper's ablations adds",
                  "bonito-repro ablations jobs --scale paper"),
    "cost": ("bonito_repro.cluster.cost", "the GPU-hours a paper-scale run projects, per stage",
             "bonito-repro cost all"),
    "preflight": ("bonito_repro.cluster.preflight", "before a cluster run: the Hub, disk, environments, cost",
                  "bonito-repro preflight --configfile my_run.yaml"),
    "gpu-check": ("bonito_repro.cluster.gpu_check", "the cost model's throughputs measured on one GPU",
                  "bonito-repro gpu-check --device cuda"),
}

# The stages the rules run (`python -m bonito_repro STAGE`), with arguments a rule writes: stage ->
# module whose main(argv) runs it, named after its module, hyphens for underscores; a stage
# package (ctga, train, generate, evaluate) keeps its command in cli.py
STAGES = {
    "models": "bonito_repro.prepare.models",
    "target-data": "bonito_repro.prepare.target_data",
    "ctga": "bonito_repro.ctga.cli",
    "train": "bonito_repro.train.cli",
    "parse-check": "bonito_repro.train.parse_check",
    "generate": "bonito_repro.generate.cli",
    "backtranslation": "bonito_repro.generate.backtranslation",
    "quality-profile": "bonito_repro.reporting.quality_profile",
    "evaluate": "bonito_repro.evaluate.cli",
    "table": "bonito_repro.reporting.table",
    "baselines": "bonito_repro.reporting.baselines",
    "main-table": "bonito_repro.reporting.main_table",
    "plot": "bonito_repro.reporting.plot",
    "cards": "bonito_repro.reporting.cards",
    "ablation-figures": "bonito_repro.reporting.ablation_figures",
}
MODULES = {**{name: module for name, (module, _, _) in COMMANDS.items()}, **STAGES}


def package_version() -> str:
    try:
        return version("bonito-repro")
    except PackageNotFoundError:  # the source tree on PYTHONPATH, not installed
        return "unknown (not installed)"


def top_parser() -> argparse.ArgumentParser:
    commands = "\n".join(f"  {name:<10} {what}\n  {'':<10} e.g. {example}" for name, (_, what, example) in COMMANDS.items())
    stages = ", ".join(STAGES)
    parser = argparse.ArgumentParser(
        prog=PROGRAM, usage=f"{PROGRAM} [--help] [--version] COMMAND [ARGUMENTS]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A reproduction of Bonito (Nayak et al., 2024) as one Snakemake workflow, and the same "
                    "method on your own text.\n\ncommands (`bonito-repro COMMAND --help` for each):\n" + commands,
        epilog="the workflow's stages, which its rules run with the arguments a rule writes "
               f"(`bonito-repro STAGE --help`):\n  {stages}")
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {package_version()}")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in MODULES:
        module = importlib.import_module(MODULES[argv[0]])
        try:
            return module.main(argv[1:]) or 0
        except InputError as error:  # a bad file, row or key: its message, not a library traceback
            print(f"{PROGRAM} {argv[0]}: {error}", file=sys.stderr)
            return 1
    if argv and not argv[0].startswith("-"):
        print(f"{PROGRAM}: no command {argv[0]!r}; `{PROGRAM} --help` lists them", file=sys.stderr)
        return 2
    top_parser().parse_args(argv)  # --help or --version print and exit; anything else is an error
    top_parser().print_help(sys.stderr)  # no command given
    return 2


if __name__ == "__main__":
    sys.exit(main())
