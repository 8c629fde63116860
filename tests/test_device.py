"""The device is a config value: a job configured for cuda that sees no GPU (this machine has
none) stops at once, before loading anything, naming itself and CUDA_VISIBLE_DEVICES."""
from __future__ import annotations

import json
import subprocess

import pytest

from bonito_repro.__main__ import main as bonito_repro
from bonito_repro.core.config import ConfigError, load_scale, merge, read_yaml, validate
from bonito_repro.runtime.device import DeviceError, require_device
from conftest import REPO

NO_GPU = "this job sees no GPU"


def test_cuda_without_a_gpu_fails_naming_the_job_and_the_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(DeviceError, match=r"adapt/mistral/tapt/pubmed_qa: the config says `device: cuda`, "
                                          r"but this job sees no GPU \(CUDA_VISIBLE_DEVICES=''"):
        require_device("cuda", "adapt/mistral/tapt/pubmed_qa")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(DeviceError, match="CUDA_VISIBLE_DEVICES=unset"):
        require_device("cuda", "job")
    assert require_device("cpu", "job") == "cpu"


# each stage command that loads a model, with paths that do not exist: had it loaded anything
# first, it would have failed on the missing file instead
MISSING = "/nonexistent"
STAGE_COMMANDS = {
    "train": ["train", "--mode", "pairs", "--base", MISSING, "--data", MISSING, "--out", MISSING,
              "--checkpoints", MISSING, "--manifest", MISSING, "--params", "{}", "--name", "adapt/m/tapt/d"],
    "parse-check": ["parse-check", "--base", MISSING, "--adapter", f"{MISSING}/adapter", "--validation", MISSING,
                    "--params", "{}", "--out", MISSING],
    "generate": ["generate", "--dataset", "pubmed_qa", "--task-type", "ynqa", "--passages", MISSING,
                 "--test", MISSING, "--model", MISSING, "--params", "{}", "--out", MISSING, "--manifest", MISSING],
    "evaluate": ["evaluate", "--model", MISSING, "--wrapper", "io", "--dataset", "pubmed_qa", "--task-type", "ynqa",
                 "--test", MISSING, "--templates", "{}", "--fields", "{}", "--params", "{}", "--out", MISSING,
                 "--target", "mistral", "--source", "tapt"],
}
JOB_NAMES = {"train": "train adapt/m/tapt/d", "parse-check": f"parse-check {MISSING}/adapter",
             "generate": f"generate pubmed_qa ({MISSING})", "evaluate": "evaluate mistral/tapt/pubmed_qa"}


@pytest.mark.parametrize("stage", sorted(STAGE_COMMANDS))
def test_every_model_stage_stops_at_once_under_cuda_without_a_gpu(stage, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(SystemExit) as stopped:
        bonito_repro([*STAGE_COMMANDS[stage], "--device", "cuda"])
    message = str(stopped.value.code)
    assert f"{JOB_NAMES[stage]}: the config says `device: cuda`" in message and NO_GPU in message
    assert "CUDA_VISIBLE_DEVICES=''" in message


@pytest.mark.parametrize("stage", sorted(STAGE_COMMANDS))
def test_the_device_is_required_not_guessed(stage, capsys):
    with pytest.raises(SystemExit) as stopped:
        bonito_repro(STAGE_COMMANDS[stage])
    assert stopped.value.code == 2 and "--device" in capsys.readouterr().err


def test_the_training_api_checks_the_device_too(tmp_path):
    from bonito_repro.train import TrainJob, run

    job = TrainJob(mode="pairs", base=tmp_path / "missing", data=tmp_path / "missing.parquet", out=tmp_path / "a",
                   checkpoints=tmp_path / "c", manifest=tmp_path / "m.json", params={}, device="cuda")
    with pytest.raises(DeviceError, match=NO_GPU):
        run(job)


def test_device_is_a_validated_config_value():
    assert load_scale("paper", REPO)["device"] == "cuda"
    assert load_scale("local", REPO)["device"] == load_scale("smoke", REPO)["device"] == "cpu"
    base = read_yaml(REPO / "config.yaml")
    with pytest.raises(ConfigError, match="device: 'gpu' is not one of"):
        validate(merge(base, {"device": "gpu"}))
    with pytest.raises(ConfigError, match="'device' is a required property"):
        validate({k: v for k, v in base.items() if k != "device"})


@pytest.mark.vllm
def test_a_vllm_build_for_another_device_is_refused():
    """The CPU build of vLLM (.venv-vllm) run by a job configured for cuda: the mistake of a
    cluster pointed at the wrong vLLM environment."""
    vllm_python = REPO / ".venv-vllm" / "bin" / "python"
    if not vllm_python.exists():
        pytest.skip(f"{vllm_python} is missing (make setup-vllm)")
    script = ("from bonito_repro.runtime.backends import require_vllm_platform\n"
              "require_vllm_platform('cpu')\n"
              "require_vllm_platform('cuda')\n")
    result = subprocess.run([str(vllm_python), "-c", script], capture_output=True, text=True, timeout=300,
                            env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    assert "the config says `device: cuda`, but this vLLM (0.32.0) runs on 'cpu'" in result.stderr, \
        json.dumps(result.stderr[-2000:])
