"""The command line a user explores: `bonito-repro --help` lists the user's commands, each with a
line and an example, the rules' stages apart; `--version`; `list`; `run` from any directory; one
program name in every parser; the workflow shipped once, in the package."""
from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from bonito_repro.__main__ import COMMANDS, MODULES, STAGES, main
from bonito_repro.core.config import WORKFLOW_DIR, workflow_root
from bonito_repro.workflow import catalog, run
from conftest import REPO, dry_run_jobs

# the checkout's paths that are the package's workflow, shipped once
WORKFLOW_PATHS = ("Snakefile", "config.yaml", "config", "rules", "local", "slurm", "report", "envs")


def test_help_lists_the_users_commands_each_with_a_line_and_an_example(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    commands, stages = text.split("the workflow's stages")
    for name, (_, what, example) in COMMANDS.items():
        assert f"  {name:<10} {what}\n" in commands and f"e.g. {example}\n" in commands
        assert example.startswith(f"bonito-repro {name} ")
    for name in STAGES:  # the rules' plumbing only after the user's commands, on one line
        assert f" {name}," in stages or stages.rstrip().endswith(name)
        assert f"  {name} " not in commands


def test_version_is_the_installed_distributions(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"bonito-repro {version('bonito-repro')}"


def test_no_command_or_an_unknown_one_exits_2_saying_where_to_look(capsys):
    assert main([]) == 2 and "commands (`bonito-repro COMMAND --help`" in capsys.readouterr().err
    assert main(["no-such"]) == 2 and "no command 'no-such'; `bonito-repro --help` lists them" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_command_and_stage_is_called_bonito_repro(name, capsys):
    """One program name: each parser's usage starts with `bonito-repro NAME` (list and run parse
    a kind and Snakemake's arguments, so their --help comes first as well)."""
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(MODULES[name]).main(["--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: bonito-repro {name}")


def test_the_rules_stage_commands_keep_working():
    """The rules call `python -m bonito_repro STAGE`; the module form still dispatches."""
    result = subprocess.run([sys.executable, "-m", "bonito_repro", "table", "--help"], capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode == 0 and result.stdout.startswith("usage: bonito-repro table")
    rules = "\n".join(p.read_text() for p in (REPO / "rules").glob("*.smk"))
    called = set(re.findall(r"-m bonito_repro ([a-z-]+)", rules))
    assert called and called <= set(MODULES), called - set(MODULES)


def test_list_reads_the_config_and_the_registries(capsys):
    lines = catalog.listing("targets", "local")
    assert any(line.startswith("*  smollm2 ") for line in lines)
    assert not any("mistral_7b" in line for line in lines)  # the paper's, which only the paper scale runs
    assert any(line.startswith("*  mistral_7b ") for line in catalog.listing("targets", "paper"))
    generators = "\n".join(catalog.listing("generators", "paper"))
    assert "bonito_v1" in generators and "released sets (BatsResearch/bonito-experiment)" in generators
    datasets = catalog.listing("datasets", "smoke")
    assert sum(line.startswith("*") for line in datasets) == 3 and sum(" yes " in line for line in datasets) == 7
    task_types = catalog.listing("task-types", "local")
    assert len(task_types) == 17 and any(line.startswith("ynqa ") and "rank classification" in line for line in task_types)
    assert main(["list", "task-types"]) == 0 and "natural language inference" in capsys.readouterr().out


def command_of(*argv: str) -> list[str]:
    return run.snakemake_command(*run.split_arguments(list(argv)))


def test_run_names_the_shipped_workflow_its_profile_and_config_by_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text("{}\n")
    root = workflow_root()
    assert command_of("--scale", "smoke", "-n", "all", "--configfile", "mine.yaml", "--cores", "2") == [
        sys.executable, "-m", "snakemake", "-n", "all", "--cores", "2", "--directory", str(tmp_path), "--snakefile", str(root / "Snakefile"),
        "--profile", str(root / "local"), "--configfile", str(root / "config" / "smoke.yaml"), str(tmp_path / "mine.yaml")]
    paper = command_of("--scale", "paper")
    assert paper[paper.index("--profile") + 1] == str(root / "slurm")
    assert paper[paper.index("--configfile") + 1:] == [str(root / "config.yaml")]  # never the profile's own
    own = command_of("--profile", "my_profile", "--config", "seed=1")  # not --configfile: no abbreviation
    assert own[own.index("--profile") + 1] == "my_profile" and own[3:5] == ["--config", "seed=1"]


def test_run_passes_targets_that_snakemake_reads_as_targets(tmp_path):
    """A target after run's options once followed --configfile, which read it as a config file."""
    from snakemake.cli import get_argument_parser

    command = command_of("--scale", "smoke", "results/unannotated/pubmed_qa.parquet", "--quiet", "reason")
    parsed = get_argument_parser().parse_args(command[3:])
    assert parsed.targets == ["results/unannotated/pubmed_qa.parquet"] and len(parsed.configfile) == 1


def test_in_a_checkout_the_workflow_is_read_through_its_root_paths():
    """The config names interpreters by paths from the checkout (.venv-vllm/bin/python), resolved
    from the Snakefile's folder: in an editable install run starts the checkout's Snakefile."""
    assert workflow_root() == REPO
    for name in WORKFLOW_PATHS:
        path = REPO / name
        assert path.is_symlink() and path.resolve() == (WORKFLOW_DIR / name).resolve(), name


@pytest.mark.dag
def test_run_plans_the_workflow_from_an_empty_directory(tmp_path):
    """`bonito-repro run --scale smoke -n` from a directory holding nothing of the checkout: the
    whole smoke DAG, planned with its results/ there."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run([sys.executable, "-m", "bonito_repro", "run", "--scale", "smoke", "-n"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = dry_run_jobs(result.stdout + result.stderr)
    assert {job.rule for job in jobs} >= {"train_bonito", "generate", "adapt", "evaluate", "main_table"}
    assert f"Working directory: {tmp_path}" in result.stdout + result.stderr


def test_run_stops_at_a_broken_overlay_naming_its_file(tmp_path, monkeypatch, capsys):
    """run reads the overlays for the run's name (run.name: where its summary looks) before
    Snakemake starts: a broken one is an error naming the file, not a traceback."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text("run: [\n")
    assert run.main(["--configfile", "mine.yaml"]) == 2
    assert "mine.yaml" in capsys.readouterr().err
