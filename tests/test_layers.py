"""The package's layers (pyproject.toml, [tool.importlinter]) and its public API."""
from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess:
    """import-linter's contracts over the package found in `package_parent`."""
    return subprocess.run([LINT_IMPORTS, "--config", str(REPO / "pyproject.toml"), "--no-cache"],
                          cwd=REPO, env={"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)


def test_the_import_contract_holds():
    result = lint_imports(REPO / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def lint_with_planted_import(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess:
    """The contracts over a copy of the package in which `module` (a path under the package)
    gains `line`."""
    shutil.copytree(REPO / "src" / "bonito_repro", tmp_path / "bonito_repro",
                    ignore=shutil.ignore_patterns("data", "__pycache__"))
    planted = tmp_path / "bonito_repro" / module
    planted.write_text(planted.read_text() + f"\n{line}  # noqa: E402,F401\n")
    return lint_imports(tmp_path)


def test_an_upward_import_breaks_the_contract(tmp_path):
    """A core module that imports a stage (the circle config -> ablations -> config once was)."""
    result = lint_with_planted_import(tmp_path, "core/tasks.py", "from ..workflow import ablations")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "layers BROKEN" in result.stdout
    assert "bonito_repro.core.tasks -> bonito_repro.workflow.ablations" in result.stdout


def test_a_module_outside_the_tests_that_imports_the_local_hub_breaks_the_contract(tmp_path):
    result = lint_with_planted_import(tmp_path, "cluster/preflight.py", "from ..localhub import server")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the local Hub is test and rehearsal infrastructure BROKEN" in result.stdout


def test_the_public_api_imports_where_the_readme_promises():
    """docs/api.md: these names keep their import paths whatever the layout."""
    promised = {
        "bonito_repro.tasks": ["TASK_TYPES"],
        "bonito_repro.prompts": ["bonito_input", "parse_bonito_output"],
        "bonito_repro.metrics": ["squad_f1", "macro_f1"],
        "bonito_repro.generate": ["generate_tasks"],
        "bonito_repro.config": ["load_config"],
    }
    for module, names in promised.items():
        imported = importlib.import_module(module)
        for name in names:
            assert callable(getattr(imported, name)) or isinstance(getattr(imported, name), dict), (module, name)
    from bonito_repro.tasks import TASK_TYPES

    assert len(TASK_TYPES) == 16
