"""The GPU calibration (``make gpu-check``, bonito_repro.cluster.gpu_check) at its tiny shape on
the CPU, and the cost model reading the file it writes in place of config `cost`'s stated
throughputs. The paper's shapes need a GPU: docs/measurements.md says how to run them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bonito_repro.cluster import cost, gpu_check
from bonito_repro.core import layout
from bonito_repro.core.config import load_scale
from bonito_repro.core.errors import InputError
from conftest import REPO, Job

VLLM_PY = REPO / ".venv-vllm" / "bin" / "python"


@pytest.fixture(scope="module")
def paper() -> dict:
    return load_scale("paper", REPO)


def paper_jobs() -> list[Job]:
    """One job of each costed stage that reads a throughput."""
    dataset, target = "pubmed_qa", "mistral_7b"
    return [Job("train_bonito", {"generator": "bonito"}, {"gpu": "4", "runtime": "2880"}),
            Job("generate", {"generator": "bonito", "dataset": dataset}),
            Job("adapt", {"target": target, "source": "bonito", "dataset": dataset}),
            Job("evaluate", {"target": target, "source": "zero_shot", "dataset": dataset})]


def calibration_file(path: Path, throughputs: dict) -> Path:
    path.write_text(json.dumps({"gpu": "NVIDIA H100 80GB HBM3", "device": "cuda", "date": "2026-12-07T20:00:00+00:00",
                                "throughputs": throughputs}))
    return path


def test_make_gpu_check_writes_the_calibration_the_cost_model_reads(tmp_path, paper):
    """`make gpu-check` at the tiny shape on the CPU (well under a minute): every throughput
    measured, how (LoRA on the smoke config's settings, the transformers backend), with the
    device's name, the date and the versions; the cost model then projects from those
    throughputs and its table says they are measured, not stated."""
    out = tmp_path / "gpu_calibration.json"
    args = f"--configfile config/smoke.yaml --seconds 0.5 --out {out} --scratch {tmp_path}"
    done = subprocess.run(["make", "-s", "gpu-check", f"GPU_CHECK_PYTHON={sys.executable}", "GPU_CHECK_DEVICE=cpu",
                           "GPU_CHECK_SHAPES=tiny", f"GPU_CHECK_ARGS={args}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    calibration = json.loads(out.read_text())
    assert calibration["device"] == "cpu" and calibration["gpu"].startswith("CPU: ")
    assert calibration["date"] and calibration["versions"]["torch"] and calibration["config"][-1] == "config/smoke.yaml"
    tiny = calibration["shapes"]["tiny"]
    assert tiny["train"]["optimizer"] == "adamw_torch" and tiny["train"]["method"].endswith("fp32)")
    assert tiny["scoring"]["method"] == "rank classification (score_choices)"
    assert tiny["generation"]["backend"] == "transformers" and tiny["generation"]["adapter"] == "LoRA"
    assert set(calibration["throughputs"]) == set(gpu_check.THROUGHPUTS)
    assert all(found["shape"] == "tiny" and found["value"] > 0 for found in calibration["throughputs"].values())

    loaded = cost.load_calibration(out)
    measured = cost.calibrated(paper, loaded)["cost"]
    for key, found in calibration["throughputs"].items():
        assert measured[key] == pytest.approx(found["value"] * found["parameters"] / paper["cost"]["reference_parameters"])
    stated = cost.project(paper, paper_jobs())
    report = cost.project(paper, paper_jobs(), calibration=loaded)
    assert all(a.hours != b.hours for a, b in zip(stated.jobs, report.jobs))
    table = cost.format_report(report, paper)
    assert f"throughputs measured by `make gpu-check` ({out}: {calibration['gpu']}" in table
    assert "WARNING: measured on cpu, but the config's device is cuda" in table
    assert "throughputs stated" not in table and "train_tokens_per_second 800" not in table


def test_a_partial_calibration_replaces_only_what_it_measured(tmp_path, paper):
    """A calibration without a throughput (a measurement left out) leaves that one stated, and
    the table says which is which; a throughput is converted to the reference model's size."""
    path = calibration_file(tmp_path / "calibration.json", {
        "train_tokens_per_second": {"value": 1000.0, "parameters": 14_000_000_000, "shape": "mistral_7b"}})
    calibration = cost.load_calibration(path)
    config = cost.calibrated(paper, calibration)
    assert config["cost"]["train_tokens_per_second"] == pytest.approx(2000.0)
    assert config["cost"]["generate_tokens_per_second"] == paper["cost"]["generate_tokens_per_second"]
    assert cost.train_bonito_seconds(config) == pytest.approx(cost.train_bonito_seconds(paper) * 800 / 2000)
    table = cost.format_table(cost.project(paper, paper_jobs(), calibration=calibration).stages, paper, calibration)
    assert "train_tokens_per_second 1,000 on mistral_7b (2,000 at reference_parameters)" in table
    assert ("throughputs stated (config `cost`, not measured): prompt_tokens_per_second, generate_tokens_per_second"
            in table)
    assert "WARNING" not in table
    assert "throughputs measured" not in cost.format_table(cost.project(paper, paper_jobs()).stages, paper)


def test_the_cost_model_finds_the_calibration_where_the_layout_puts_it(tmp_path):
    assert cost.find_calibration(tmp_path) is None
    path = tmp_path / layout.preflight("gpu_calibration.json")
    path.parent.mkdir(parents=True)
    calibration_file(path, {"prompt_tokens_per_second": {"value": 9000.0, "parameters": 7_000_000_000, "shape": "llama2_7b"}})
    assert cost.find_calibration(tmp_path)["throughputs"]["prompt_tokens_per_second"]["value"] == 9000.0


@pytest.mark.parametrize("content, said", [
    ("{", "JSONDecodeError"),
    ('{"gpu": "x", "device": "cuda", "date": "d"}', "no throughputs"),
    ('{"gpu": "x", "device": "cuda", "date": "d", "throughputs": {"train_tokens_per_second": {"value": 0, "parameters": 1}}}',
     "throughputs.train_tokens_per_second"),
    ('{"gpu": "x", "device": "cuda", "date": "d", "throughputs": {"tokens": {"value": 1, "parameters": 1}}}',
     "throughputs.tokens"),
])
def test_a_bad_calibration_file_is_named(tmp_path, content, said):
    path = tmp_path / "gpu_calibration.json"
    path.write_text(content)
    with pytest.raises(InputError, match=f"{path}: not a GPU calibration file .*{said}"):
        cost.load_calibration(path)


def test_the_device_is_passed_never_guessed(capsys, monkeypatch):
    with pytest.raises(SystemExit):
        gpu_check.main(["--shape", "tiny"])
    assert "--device is required" in capsys.readouterr().err
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(SystemExit, match="gpu-check: the config says `device: cuda`, but this job sees no GPU"):
        gpu_check.main(["--device", "cuda", "--shape", "tiny"])


def test_training_falls_back_to_unquantized_lora_and_says_why(tmp_path, paper, monkeypatch):
    """Where bitsandbytes' 4-bit layer does not run, training is measured unquantized, and the
    calibration says so and why."""
    model = tmp_path / "model"
    gpu_check.write_model("tiny", model, "cpu", bf16=False)
    monkeypatch.setattr(gpu_check, "bitsandbytes_4bit", lambda device, bf16: "RuntimeError: no CUDA")
    params = {**paper["adaptation"], "bf16": False, "optimizer": "adamw_torch", "grad_accumulation": 1}
    result = gpu_check.measure_training(model, params, 16, "cpu", 0.0, tmp_path)
    assert result["quantization"] == "none" and result["method"] == "LoRA (fp32, not quantized)"
    assert result["not_quantized_because"] == "RuntimeError: no CUDA" and result["tokens_per_second"] > 0


@pytest.mark.vllm
@pytest.mark.skipif(not VLLM_PY.exists(), reason=f"{VLLM_PY} is missing (make setup-vllm)")
def test_vllm_generation_is_measured_in_its_environment(tmp_path, paper):
    """The generation measurement in vLLM's environment, with the generate job's settings and a
    LoRA adapter of the Bonito generator's rank served as the job serves it."""
    model, adapter = tmp_path / "model", tmp_path / "adapter"
    gpu_check.write_model("tiny", model, "cpu", bf16=False)
    gpu_check.write_adapter(model, adapter, paper["bonito_training"])
    generation = {**paper["generation"], "vllm": {**paper["generation"]["vllm"], "enforce_eager": True}, "bf16": False,
                  "max_new_tokens": 8}
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    result = gpu_check.generation_in(str(VLLM_PY), model, adapter, generation, 32, "cpu", 0.0)
    assert result["backend"] == "vllm" and result["adapter"] == "LoRA" and result["engine"]["enforce_eager"] is True
    assert result["versions"]["vllm"] and result["tokens_per_second"] > 0 and result["prompts"] == 512


def test_the_preflights_cost_table_reads_the_checkouts_calibration(tmp_path, paper, monkeypatch):
    from bonito_repro.cluster import preflight

    monkeypatch.setattr(cost, "workflow_jobs", lambda configfiles, workdir: paper_jobs())
    _, table, _ = preflight.check_cost(paper, [], tmp_path, cost.Rows())
    assert "throughputs stated (config `cost`, not measured): train_tokens_per_second" in table
    path = tmp_path / layout.preflight("gpu_calibration.json")
    path.parent.mkdir(parents=True)
    calibration_file(path, {"generate_tokens_per_second": {"value": 3000.0, "parameters": 7_000_000_000,
                                                           "shape": "mistral_7b"}})
    _, table, _ = preflight.check_cost(paper, [], tmp_path, cost.Rows())
    assert f"throughputs measured by `make gpu-check` ({path}: NVIDIA H100 80GB HBM3" in table
    assert "generate_tokens_per_second 3,000 on mistral_7b" in table


def test_the_cost_command_takes_a_calibration(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cost, "workflow_jobs", lambda configfiles, workdir, targets: paper_jobs())
    path = calibration_file(tmp_path / "calibration.json", {
        "prompt_tokens_per_second": {"value": 12000.0, "parameters": 7_000_000_000, "shape": "llama2_7b"}})
    assert cost.main(["--directory", str(REPO), "--calibration", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"throughputs measured by `make gpu-check` ({path}: NVIDIA H100 80GB HBM3" in out
    assert "prompt_tokens_per_second 12,000 on llama2_7b (12,000 at reference_parameters)" in out
