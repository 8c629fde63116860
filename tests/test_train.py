"""The training engine: label mask, TAPT packing, the step rule, config values reaching the
trainer, empty sets, and a killed run resuming to the same weights as an uninterrupted one."""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import bitsandbytes as bnb
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from bonito_repro.__main__ import main as bonito_repro
from bonito_repro.core.config import load_scale
from bonito_repro.runtime.models import load_tokenizer
from bonito_repro.core.prompts import bonito_input, bonito_output, wrap
from bonito_repro.train import TrainError, TrainJob, run
from bonito_repro.train import checkpoints
from bonito_repro.core.steps import training_steps
from bonito_repro.train.data import IGNORE_INDEX, Collator, encode_pairs, format_pairs, pack_blocks
from bonito_repro.train.engine import training_arguments
from bonito_repro.train.model import load_trainable_model, lora_config

REPO = Path(__file__).resolve().parents[1]
# tiny-model values: a few quick steps, everything else as the config schema wants it
PARAMS = {"quantization": "nf4", "lora": {"r": 8, "alpha": 16, "dropout": 0.0}, "learning_rate": 1e-3,
          "lr_scheduler": "linear", "warmup_ratio": 0.0, "weight_decay": 0.0, "max_grad_norm": 0.3,
          "optimizer": "adamw_torch", "per_device_batch_size": 4, "grad_accumulation": 1, "processes": 1,
          "max_input_length": 128, "max_output_length": 64, "max_steps": 7, "one_epoch_below": None,
          "save_steps": 2, "save_minutes": 30, "eval_steps": 3, "max_eval_examples": 8, "logging_steps": 1, "bf16": False,
          "gradient_checkpointing": False, "group_by_length": True, "seed": 42, "tapt_block_size": 32}


@pytest.fixture(scope="module")
def paper() -> dict:
    """The paper's resolved config, read by the tests that check its values, not at import."""
    return load_scale("paper", REPO)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir, padding_side="right")


@pytest.fixture(scope="module")
def ctga_files(tmp_path_factory) -> tuple[Path, Path]:
    """Small train and validation sets in ctga's shape (Bonito input, instruction <|pipe|> answer)."""
    rows = []
    for i in range(28):
        context = f"Passage {i}: the river runs past the old mill and {'many ' * (i % 5)}people walk there."
        rows.append({"input": bonito_input(context, ["ynqa", "exqa", "nli"][i % 3]),
                     "output": bonito_output(f"{{{{context}}}}\nQuestion {i}: is there a mill?", "yes")})
    folder = tmp_path_factory.mktemp("ctga")
    pd.DataFrame(rows[:20]).to_parquet(folder / "train.parquet")
    pd.DataFrame(rows[20:]).to_parquet(folder / "validation.parquet")
    return folder / "train.parquet", folder / "validation.parquet"


def job(base: Path, data: Path, out: Path, **kwargs) -> TrainJob:
    return TrainJob(mode=kwargs.pop("mode", "pairs"), base=base, data=data, out=out / "adapter",
                    checkpoints=out / "checkpoints", manifest=out / "manifest.json",
                    params=kwargs.pop("params", PARAMS), device="cpu", threads=1, **kwargs)


def test_label_mask_covers_exactly_the_input_tokens(tokenizer):
    prompts = [wrap("Is the sky blue?", "io"), wrap("A much longer question about rivers and mills?", "io")]
    targets = ["yes", "no, it is not"]
    encoded, counts = encode_pairs(prompts, targets, tokenizer, max_input_length=128, max_output_length=64)
    batch = Collator(tokenizer.pad_token_id)([encoded[0], encoded[1]])
    for row, (prompt, target) in enumerate(zip(prompts, targets)):
        prompt_ids = [tokenizer.bos_token_id] + tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        n = len(prompt_ids) + len(answer)
        assert encoded[row]["prompt_length"] == len(prompt_ids)
        assert batch["input_ids"][row, :n].tolist() == prompt_ids + answer  # BOS first, EOS last
        labels = batch["labels"][row]
        assert labels[:len(prompt_ids)].eq(IGNORE_INDEX).all()
        assert labels[len(prompt_ids):n].tolist() == answer
        assert labels[n:].eq(IGNORE_INDEX).all() and batch["attention_mask"][row, n:].eq(0).all()
    assert counts["truncated_input"] == counts["truncated_output"] == 0


def test_truncation_is_counted_and_keeps_the_limits(tokenizer):
    encoded, counts = encode_pairs(["word " * 50, "short"], ["answer " * 30, "ok"], tokenizer,
                                   max_input_length=10, max_output_length=5)
    assert counts["truncated_input"] == 1 and counts["truncated_output"] == 1
    assert encoded[0]["prompt_length"] == 10 and len(encoded[0]["input_ids"]) == 15


def test_wrappers_and_blank_rows(tokenizer):
    df = pd.DataFrame({"input": [" Is it? ", "", "Q", None], "output": [" yes ", "a", "  ", "b"]})
    prompts, targets, drops = format_pairs(df, "inst", "x.parquet")
    assert prompts == ["Is it?"] and targets == ["yes"]
    assert drops == {"empty_input": 2, "empty_output": 1}
    encoded, _ = encode_pairs(prompts, targets, tokenizer, 128, 64, wrapper="inst")  # wrapped when encoded
    prompt_ids = encoded[0]["input_ids"][:encoded[0]["prompt_length"]]
    assert prompt_ids == [tokenizer.bos_token_id] + tokenizer("[INST] Is it? [/INST]", add_special_tokens=False)["input_ids"]
    raw, _, _ = format_pairs(df.head(1), "none", "x.parquet")
    assert raw == [" Is it? "]  # the Bonito input is used exactly as built


def test_step_rule_on_both_sides_of_one_epoch_below(paper):
    adaptation = dict(paper["adaptation"], max_steps=1234)  # a value no epoch count matches by chance
    below = adaptation["one_epoch_below"]
    batch = adaptation["per_device_batch_size"] * adaptation["grad_accumulation"] * adaptation["processes"]
    assert below == 160000 and batch == 16
    assert training_steps(below - 1, adaptation) == 10000  # one epoch: ceil(159,999 / 16)
    assert training_steps(33, adaptation) == 3
    assert training_steps(below, adaptation) == 1234
    assert training_steps(10 * below, adaptation) == 1234
    assert training_steps(5, dict(adaptation, one_epoch_below=None)) == 1234
    with pytest.raises(ValueError):
        training_steps(0, adaptation)


def test_tapt_blocks_join_passages_with_eos(tokenizer):
    passages = ["first passage here", "second one", "and a third passage that is a bit longer"]
    dataset, counts = pack_blocks(passages, tokenizer, block_size=8)
    pieces = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in passages]
    stream = pieces[0] + [tokenizer.eos_token_id] + pieces[1] + [tokenizer.eos_token_id] + pieces[2]
    blocks = [row["input_ids"] for row in dataset]
    assert sum(blocks, []) == stream
    assert all(len(b) == 8 for b in blocks[:-1]) and 0 < len(blocks[-1]) <= 8
    assert counts == {"tokens": len(stream), "blocks": len(blocks), "short_last_block": int(len(stream) % 8 > 0)}
    batch = Collator(tokenizer.pad_token_id)([dataset[0]])
    assert batch["labels"][0].tolist() == blocks[0]  # loss on every token


def test_config_values_reach_the_trainer(tmp_path, tiny_model_dir, paper):
    params = copy.deepcopy(paper["bonito_training"])
    args = training_arguments(params, tmp_path, steps=100, evaluate=True, device="cpu")
    assert args.learning_rate == 1e-4 and args.max_grad_norm == 0.3 and args.weight_decay == 0.0
    assert args.lr_scheduler_type == "linear" and args.warmup_steps == 0
    assert args.optim == "paged_adamw_32bit"
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps * params["processes"] == 16
    assert args.max_steps == 100 and args.save_steps == 10000 and args.eval_steps == 10000
    assert args.train_sampling_strategy == "group_by_length" and args.seed == 42
    lora = lora_config(params)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (64, 4, 0.0)
    model = load_trainable_model(tiny_model_dir, dict(PARAMS, lora={"r": 4, "alpha": 4, "dropout": 0.0}), device="cpu")
    wrapped = {name.split(".lora_A")[0] for name, _ in model.named_parameters() if ".lora_A" in name}
    linear = {name for name, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert linear and {f"{w}.base_layer" for w in wrapped} == linear
    assert not any("lm_head" in w for w in wrapped)
    assert model.peft_config["default"].r == 4


def test_backtranslation_adapters_get_the_cards_lora_on_attention_only(tiny_model_dir, paper):
    params = paper["backtranslation_training"]
    lora = lora_config(params)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (8, 32, 0.05) and params["quantization"] == "none"
    model = load_trainable_model(tiny_model_dir, dict(PARAMS, lora=params["lora"], quantization="none"), device="cpu")
    wrapped = {name.split(".lora_A")[0].rsplit(".", 1)[-1] for name, _ in model.named_parameters() if ".lora_A" in name}
    assert wrapped == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_empty_synthetic_set_is_an_error_naming_the_dataset(tmp_path, tiny_model_dir):
    data = tmp_path / "pubmed_qa.parquet"
    pd.DataFrame({"input": pd.Series([], dtype=str), "output": pd.Series([], dtype=str)}).to_parquet(data)
    with pytest.raises(TrainError, match="pubmed_qa"):
        run(job(tiny_model_dir, data, tmp_path / "out", wrapper="io", name="adapt/mistral/bonito/pubmed_qa"))
    assert not (tmp_path / "out" / "adapter").exists()


class Kill(TrainerCallback):
    """Stops the process's training abruptly after a step that is not a checkpoint step."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"killed after step {self.step}")


def test_killed_run_resumes_to_the_same_weights(tmp_path, tiny_model_dir, ctga_files):
    train, validation = ctga_files
    whole = run(job(tiny_model_dir, train, tmp_path / "whole", validation=validation))
    killed = job(tiny_model_dir, train, tmp_path / "killed", validation=validation)
    with pytest.raises(KeyboardInterrupt):
        run(killed, callbacks=[Kill(5)])
    assert checkpoints.latest_complete(killed.checkpoints).name == "checkpoint-4"
    assert not killed.out.exists()
    resumed = run(killed)
    assert resumed["resumed_from"].endswith("checkpoint-4") and resumed["steps_this_run"] == 3
    assert whole["steps"] == resumed["steps"] == PARAMS["max_steps"]
    a = load_file(tmp_path / "whole" / "adapter" / "adapter_model.safetensors")
    b = load_file(killed.out / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7)
    assert [e["loss"] for e in whole["train_loss"]] == pytest.approx([e["loss"] for e in resumed["train_loss"]])
    assert [e["step"] for e in resumed["validation_loss"]] == [3, 6, 7]  # every eval_steps and the end
    assert not killed.checkpoints.exists()  # cleaned up once the adapter is in place
    manifest = json.loads(killed.manifest.read_text())
    assert manifest["counts"]["rows_in"] == manifest["counts"]["sequences"] == 20
    assert manifest["tokens_per_second"] > 0


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_save_costs_the_steps_since_the_previous_checkpoint(
        tmp_path, tiny_model_dir, ctga_files, monkeypatch):
    """Killed while the trainer state of checkpoint 4 is half written (the file Trainer writes
    last, after the weights and optimizer; checkpoint 2 is still there, rotated out only after
    it): the rerun ignores the torn checkpoint, resumes from checkpoint 2 and so redoes steps 3
    and 4, at most save_steps (or save_minutes) of work, and ends at the same weights."""
    from transformers import TrainerState

    train, validation = ctga_files
    whole = run(job(tiny_model_dir, train, tmp_path / "whole", validation=validation))
    real = TrainerState.save_to_json

    def killed_in_the_save_of_step_4(self, json_path):
        if self.global_step == 4:
            text = json.dumps({"global_step": 4, "log_history": self.log_history}, indent=2)
            Path(json_path).write_text(text[:len(text) // 2])
            raise KeyboardInterrupt("killed while saving checkpoint 4")
        real(self, json_path)

    killed = job(tiny_model_dir, train, tmp_path / "killed", validation=validation)
    with monkeypatch.context() as patch:
        patch.setattr(TrainerState, "save_to_json", killed_in_the_save_of_step_4)
        with pytest.raises(KeyboardInterrupt):
            run(killed)
    assert sorted(p.name for p in killed.checkpoints.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    resumed = run(killed)
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["steps_this_run"] == PARAMS["max_steps"] - 2
    a = load_file(tmp_path / "whole" / "adapter" / "adapter_model.safetensors")
    b = load_file(killed.out / "adapter_model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7)
    assert whole["steps"] == resumed["steps"]


class Saves(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_save(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_checkpoints_come_by_time_as_well_as_by_steps(tmp_path, tiny_model_dir, ctga_files):
    train, _ = ctga_files
    by_steps, by_time = Saves(), Saves()
    run(job(tiny_model_dir, train, tmp_path / "steps", params={**PARAMS, "save_steps": 1000}), callbacks=[by_steps])
    run(job(tiny_model_dir, train, tmp_path / "time", params={**PARAMS, "save_steps": 1000, "save_minutes": 1e-9}),
        callbacks=[by_time])
    assert by_steps.steps == [PARAMS["max_steps"]]  # the final save only: 1,000 steps never came
    assert by_time.steps == list(range(1, PARAMS["max_steps"] + 1))  # every step once the minutes passed


def test_a_new_checkpoint_cadence_keeps_the_checkpoints(tmp_path, tiny_model_dir, ctga_files):
    train, _ = ctga_files
    killed = job(tiny_model_dir, train, tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        run(killed, callbacks=[Kill(5)])
    resumed = run(job(tiny_model_dir, train, tmp_path / "killed", params={**PARAMS, "save_minutes": 5}))
    assert resumed["resumed_from"].endswith("checkpoint-4")


def test_an_initial_adapter_keeps_training_in_tapt_mode(tmp_path, tiny_model_dir, ctga_files):
    """The P3 path: start from a given adapter (its own r), loaded trainable; here on TAPT blocks."""
    train, _ = ctga_files
    first = job(tiny_model_dir, train, tmp_path / "p3", params=dict(PARAMS, max_steps=2, eval_steps=None))
    run(first)
    passages = tmp_path / "unannotated.parquet"
    pd.DataFrame({"input": ["The old mill stands by the river. " * 6, "  ", "People walk there daily. " * 4]}
                 ).to_parquet(passages)
    # the paper's optimizer: bitsandbytes' paged AdamW runs on CPU too
    params = dict(PARAMS, lora={"r": 16, "alpha": 16, "dropout": 0.0}, one_epoch_below=1000, eval_steps=None,
                  optimizer="paged_adamw_32bit")
    record = run(job(tiny_model_dir, passages, tmp_path / "tapt", mode="tapt", init_adapter=first.out, params=params))
    assert record["drops"] == {"empty_input": 1} and record["counts"]["passages"] == 2
    assert record["steps"] == -(-record["counts"]["blocks"] // 4)  # one epoch of blocks
    config = json.loads((tmp_path / "tapt" / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == PARAMS["lora"]["r"]  # the initial adapter's, not the params'
    before = load_file(first.out / "adapter_model.safetensors")
    after = load_file(tmp_path / "tapt" / "adapter" / "adapter_model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_checkpoints_of_another_configuration_or_half_written_are_removed(tmp_path):
    directory = tmp_path / "ck"
    (directory / "checkpoint-2").mkdir(parents=True)
    (directory / "checkpoint-2" / checkpoints.COMPLETE_MARKER).write_text("{}")
    (directory / "checkpoint-4").mkdir()  # killed while being written
    assert checkpoints.prepare(directory, "run-a").name == "checkpoint-2"
    assert not (directory / "checkpoint-4").exists()
    assert checkpoints.prepare(directory, "run-a").name == "checkpoint-2"
    assert checkpoints.prepare(directory, "run-b") is None
    assert checkpoints.checkpoints(directory) == []


def test_a_torn_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    directory = tmp_path / "ck"
    for step, state in ((2, '{"global_step": 2}'), (4, '{"global_st')):  # the save of step 4 was killed
        (directory / f"checkpoint-{step}").mkdir(parents=True)
        (directory / f"checkpoint-{step}" / checkpoints.COMPLETE_MARKER).write_text(state)
    assert checkpoints.prepare(directory, "run-a").name == "checkpoint-2"
    assert "checkpoint-4 is unreadable (trainer_state.json" in caplog.text
    (directory / checkpoints.FINGERPRINT).write_text('{"fingerp')  # torn: whose checkpoints are these?
    assert checkpoints.prepare(directory, "run-a") is None
    assert "run.json is unreadable" in caplog.text and checkpoints.checkpoints(directory) == []


def _cli(data: Path, validation: Path, base: Path, out: Path, params: dict, processes: int = 1) -> list[str]:
    launch = [sys.executable, "-m", "bonito_repro", "train"]
    if processes > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                  str(processes), "-m", "bonito_repro", "train"]
    return launch + ["--mode", "pairs", "--base", str(base), "--data", str(data), "--validation", str(validation),
                     "--out", str(out / "adapter"), "--checkpoints", str(out / "checkpoints"),
                     "--manifest", str(out / "manifest.json"), "--params", json.dumps(params), "--threads", "2",
                     "--device", "cpu"]


@pytest.mark.slow
def test_sigkill_then_rerun_of_the_cli_ends_at_the_same_weights(tmp_path, tiny_model_dir, ctga_files):
    train, validation = ctga_files
    params = dict(PARAMS, max_steps=40, save_steps=5, eval_steps=10)
    whole = run(job(tiny_model_dir, train, tmp_path / "whole", validation=validation, params=params))
    out = tmp_path / "killed"
    process = subprocess.Popen(_cli(train, validation, tiny_model_dir, out, params), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while checkpoints.latest_complete(out / "checkpoints") is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "adapter").exists()
    subprocess.run(_cli(train, validation, tiny_model_dir, out, params), check=True, capture_output=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed_from"] is not None and manifest["steps"] == 40
    # the loss curve is drawn from the resumed run's manifest (rule loss_curve)
    assert bonito_repro(["plot", "loss", "--manifest", str(out / "manifest.json"), "--params", json.dumps({"dpi": 100}),
                         "--out", str(out / "loss.png")]) == 0
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    a = load_file(tmp_path / "whole" / "adapter" / "adapter_model.safetensors")
    b = load_file(out / "adapter" / "adapter_model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7)
    assert whole["steps"] == 40


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_rerun_ends_at_the_same_weights(tmp_path, tiny_model_dir, ctga_files):
    """The signal Slurm sends before a time limit (sbatch --signal), here as the model loads: the
    train command saves a checkpoint at the end of the step it is in, though none is due by steps
    or minutes, and exits 143; the rerun resumes from that checkpoint and ends at the weights of an uninterrupted run."""
    train, validation = ctga_files
    params = dict(PARAMS, max_steps=40, save_steps=1000, eval_steps=10)  # no checkpoint falls due
    whole = run(job(tiny_model_dir, train, tmp_path / "whole", validation=validation, params=params))
    out = tmp_path / "stopped"
    process = subprocess.Popen(_cli(train, validation, tiny_model_dir, out, params), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoints" / checkpoints.FINGERPRINT).exists() and time.time() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGTERM)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 143, stderr[-3000:]
    saved = checkpoints.latest_complete(out / "checkpoints")
    assert saved is not None and 0 < int(saved.name.split("-")[1]) < 40, stderr[-3000:]
    assert "a rerun resumes from it" in stderr and not (out / "adapter").exists()
    subprocess.run(_cli(train, validation, tiny_model_dir, out, params), check=True, capture_output=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed_from"] is not None and manifest["steps"] == whole["steps"] == 40
    a = load_file(tmp_path / "whole" / "adapter" / "adapter_model.safetensors")
    b = load_file(out / "adapter" / "adapter_model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_two_process_gloo_launch(tmp_path, tiny_model_dir, ctga_files):
    """The multi-process path on CPU: torchrun, two processes, gloo; the effective batch counts both."""
    train, validation = ctga_files
    params = dict(PARAMS, processes=2, per_device_batch_size=2, max_steps=4, save_steps=2)
    result = subprocess.run(_cli(train, validation, tiny_model_dir, tmp_path, params, processes=2),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["processes"] == 2 and manifest["effective_batch"] == 4 and manifest["steps"] == 4
    assert manifest["epochs"] == pytest.approx(4 * 4 / 20)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
