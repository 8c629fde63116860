"""The wheel carries the workflow: installed outside the checkout, `bonito-repro` answers --help,
--version and list from the installed package, run and corpus plan a run with the workflow
the wheel ships, and the API's ten lines (docs/api.md) generate tasks from the published generator
on a local Hub (fixture `installed_wheel` in conftest.py)."""
from __future__ import annotations

import ast
import re
import subprocess
import zipfile

import pytest

from bonito_repro.localhub import server as hubserver
from conftest import REPO, dry_run_jobs

pytestmark = pytest.mark.wheel

EXAMPLE = REPO / "examples" / "library_policies"


def test_the_wheel_ships_the_workflow(installed_wheel):
    names = set(zipfile.ZipFile(installed_wheel.wheel).namelist())
    workflow = "bonito_repro/data/workflow/"
    for path in ("Snakefile", "config.yaml", "config/local.yaml", "config/cpu.yaml", "config/schema.yaml",
                 "rules/common.smk", "local/config.yaml", "slurm/config.yaml", "report/workflow.rst",
                 "envs/main.yaml"):
        assert workflow + path in names, path
    assert "bonito_repro/data/datasets/pubmed_qa.yaml" in names


def test_bonito_repro_comes_from_the_wheels_environment_not_the_checkout(installed_wheel):
    result = installed_wheel.run("--version")
    assert result.returncode == 0 and result.stdout.startswith("bonito-repro 0.1.0"), result.stderr
    where = subprocess.run(
        [str(installed_wheel.python), "-c", "import bonito_repro; from bonito_repro.core.config import "
         "workflow_root; print(bonito_repro.__file__); print(workflow_root())"],
        cwd=installed_wheel.workdir, capture_output=True, text=True, check=True).stdout.split()
    env = str(installed_wheel.python.parent.parent)
    assert all(line.startswith(env) for line in where), where  # the package and the workflow it runs
    assert not any(line.startswith(str(REPO)) for line in where)


def test_the_installed_commands_answer(installed_wheel):
    help_ = installed_wheel.run("--help")
    assert help_.returncode == 0 and "bonito-repro run --scale smoke" in help_.stdout
    generators = installed_wheel.run("list", "generators")
    assert generators.returncode == 0 and "*  bonito " in generators.stdout, generators.stderr
    datasets = installed_wheel.run("list", "datasets")
    assert datasets.returncode == 0 and "pubmed_qa" in datasets.stdout and "vitaminc" in datasets.stdout


def test_corpus_and_run_plan_a_run_from_the_installed_wheel(installed_wheel):
    """A wheel once lacked config.yaml: `corpus` stopped with "config.yaml: cannot read"."""
    corpus = installed_wheel.run(
        "corpus", "--text", str(EXAMPLE / "policies.txt"), "--task-type", "ynqa", "--name", "library",
        "--license", "cc0-1.0", "--out-dir", "library", "--test", str(EXAMPLE / "questions.csv"),
        "--test-fields", "passage=clause,label=answer", "--label-map", "Y=yes,N=no")
    assert corpus.returncode == 0, corpus.stderr[-2000:]
    work = installed_wheel.workdir.resolve()
    assert corpus.stdout.strip() == f"bonito-repro run --scale local --configfile {work}/library/run.yaml -d {work}"
    plan = installed_wheel.run("run", "--scale", "local", "--configfile", "library/run.yaml", "-n")
    assert plan.returncode == 0, plan.stderr[-3000:]
    rules = {job.rule for job in dry_run_jobs(plan.stdout + plan.stderr)}
    assert {"train_bonito", "generate", "adapt", "evaluate", "main_table"} <= rules
    assert "results/runs/library/main_table.md" in plan.stdout  # the corpus run's own folder
    assert f"Snakefile: {installed_wheel.python.parent.parent}" in plan.stdout + plan.stderr


# the docs' ten lines on a CPU: their only change (the backend and device are the caller's)
DOCS_DEVICE, CPU_DEVICE = 'backend="vllm", device="cuda"', 'backend="transformers", device="cpu"'


@pytest.mark.slow  # the local Hub's build, a download and a generation on CPU
def test_the_apis_ten_lines_run_from_the_installed_wheel(installed_wheel, local_hub, tmp_path):
    """docs/api.md's first block, as a user copies it, run by the wheel's environment outside the
    checkout against the local Hub (BatsResearch/bonito-v1 as the Hub has it: pickled weights on
    main, converted on download): it prints tasks, the funnel's counts and the commit it read,
    with `bonito_repro` imported from that environment."""
    [block] = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "api.md").read_text(), re.S)[:1]
    assert DOCS_DEVICE in block and "generator=\"BatsResearch/bonito-v1\"" in block
    script = block.replace(DOCS_DEVICE, CPU_DEVICE) + "import bonito_repro\nprint('imported from', bonito_repro.__file__)\n"
    env = {k: v for k, v in local_hub.env(tmp_path / "hf").items() if k != "PYTHONPATH"}
    env["BONITO_REPRO_CACHE"] = str(tmp_path / "cache")
    done = subprocess.run([str(installed_wheel.python), "-c", script], cwd=installed_wheel.workdir, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    kept = next(re.fullmatch(r"(\d+) kept of (\d+) generated", line) for line in lines if " kept of " in line)
    assert int(kept.group(1)) > 0 and sum(" -> " in line for line in lines) == int(kept.group(1)), done.stdout
    sha = hubserver.load_repos(local_hub.root)[("model", "BatsResearch/bonito-v1")].find("main").sha
    generator = ast.literal_eval(next(line for line in lines if line.startswith("{")))
    assert generator == {"id": "BatsResearch/bonito-v1", "revision": "main", "sha": sha}
    where = lines[-1].removeprefix("imported from ")
    assert where.startswith(str(installed_wheel.python.parent.parent)) and not where.startswith(str(REPO)), where
    assert list((tmp_path / "cache").rglob("*.safetensors")) and not list((tmp_path / "cache").rglob("*.bin"))
