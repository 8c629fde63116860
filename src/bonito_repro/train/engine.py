"""The one training path: Bonito generator, P3 stand-in adapter, adaptation on synthetic tasks and
TAPT all run through ``run``. transformers' Trainer does the loop; on resume it restores the
adapter weights, optimizer, scheduler, RNG states and the position in the data order."""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..core.config import ConfigError, check_params as check_section
from ..runtime.device import require_device
from ..core.io import (ColumnsError, Manifest, atomic_dir, check_writable, naming_a_full_disk, read_parquet,
                       set_threads)
from ..core.steps import effective_batch, training_steps
from . import checkpoints
from .data import Collator, Encoded, TrainDataError, encode_pair_rows, encode_tapt

log = logging.getLogger(__name__)

MODES = ("pairs", "tapt")


class TrainError(RuntimeError):
    """Training cannot start or did not finish."""


@dataclass
class TrainJob:
    """Everything one training run needs; the CLI builds it from flags."""

    mode: str
    base: Path
    data: Path
    out: Path
    checkpoints: Path
    manifest: Path
    params: dict
    device: str               # the config's `device`: cuda or cpu (bonito_repro.runtime.device)
    wrapper: str = "none"
    init_adapter: Path | None = None
    validation: Path | None = None
    name: str = ""
    threads: int | None = None


def check_params(params: dict, mode: str) -> None:
    if mode not in MODES:
        raise TrainError(f"unknown mode {mode!r}; use one of {MODES}")
    # TAPT packs blocks of tapt_block_size instead of cutting input and output lengths
    tapt = mode == "tapt"
    try:
        check_section(params, "training", omit=("max_input_length", "max_output_length") if tapt else (),
                      require=("tapt_block_size",) if tapt else ())
    except ConfigError as error:
        raise TrainError(str(error)) from None


def encode(job: TrainJob, tokenizer) -> Encoded:
    """The training sequences of the job's data file; an empty set stops the run."""
    origin = f"{job.name or 'training'} ({job.data})"
    try:
        rows = read_parquet(job.data, ["input"] if job.mode == "tapt" else ["input", "output"]).to_pandas()
        if job.mode == "tapt":
            return encode_tapt(rows, tokenizer, job.params["tapt_block_size"], origin)
        return encode_pair_rows(rows, tokenizer, job.wrapper, job.params["max_input_length"],
                                job.params["max_output_length"], origin)
    except (ColumnsError, TrainDataError) as error:
        raise TrainError(str(error)) from None


def validation_set(job: TrainJob, tokenizer):
    """The first max_eval_examples validation rows, encoded like the training rows."""
    p = job.params
    if job.validation is None or not p["eval_steps"] or not p["max_eval_examples"]:
        return None
    rows = read_parquet(job.validation, ["input", "output"]).to_pandas().head(p["max_eval_examples"])
    return encode_pair_rows(rows, tokenizer, job.wrapper, p["max_input_length"], p["max_output_length"],
                            f"validation ({job.validation})").dataset


def training_arguments(params: dict, output_dir: Path, steps: int, evaluate: bool, device: str):
    """Every training value of the config, mapped onto transformers' TrainingArguments, on
    ``device`` (cuda or cpu)."""
    from transformers import TrainingArguments

    cpu = device == "cpu"
    distributed = int(os.environ.get("WORLD_SIZE", 1)) > 1
    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=params["per_device_batch_size"],
        per_device_eval_batch_size=params["per_device_batch_size"],
        gradient_accumulation_steps=params["grad_accumulation"],
        learning_rate=params["learning_rate"],
        lr_scheduler_type=params["lr_scheduler"],
        warmup_steps=math.ceil(params["warmup_ratio"] * steps),
        weight_decay=params["weight_decay"],
        max_grad_norm=params["max_grad_norm"],
        optim=params["optimizer"],
        bf16=params["bf16"],
        activation_checkpointing=params["gradient_checkpointing"],
        activation_checkpointing_kwargs={"use_reentrant": False},
        train_sampling_strategy="group_by_length" if params["group_by_length"] else "random",
        seed=params["seed"],
        data_seed=params["seed"],
        logging_steps=params["logging_steps"],
        save_strategy="steps",
        save_steps=params["save_steps"],
        save_total_limit=1,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=params["eval_steps"] if evaluate else None,
        prediction_loss_only=True,
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        use_cpu=cpu,
        ddp_backend="gloo" if cpu and distributed else None,
        report_to="none",
    )


def save_every(minutes: float):
    """A callback that asks for a checkpoint once ``minutes`` have passed since the last one, so a
    kill or a scheduler's time limit loses minutes of work, not ``save_steps`` of it (10,000
    Bonito steps are hours). Process 0's clock decides for every process: the save is collective."""
    from transformers import TrainerCallback

    class SaveEvery(TrainerCallback):
        def __init__(self) -> None:
            self.last = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            due = [time.monotonic() - self.last >= minutes * 60]
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.broadcast_object_list(due, src=0)
            if due[0]:
                control.should_save = True
            return control

        def on_save(self, args, state, control, **kwargs):
            self.last = time.monotonic()

    return SaveEvery()


def _progress(checkpoint: Path | None) -> tuple[int, int]:
    """Optimizer steps and tokens done when a checkpoint was written ((0, 0) for none)."""
    if checkpoint is None:
        return 0, 0
    state = json.loads((checkpoint / checkpoints.COMPLETE_MARKER).read_text())
    return int(state["global_step"]), int(state.get("num_input_tokens_seen", 0))


def trainable_bytes(model) -> int:
    """The bytes of the trained parameters: an adapter's size on disk, near enough."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def _save_adapter(model, out: Path) -> None:
    """Write the final adapter beside ``out`` and move it into place in one rename."""
    with atomic_dir(out, trainable_bytes(model)) as tmp:
        model.save_pretrained(tmp)


def world_size(params: dict) -> int:
    """The processes of this run (torchrun's WORLD_SIZE), with a warning when the config counts
    another number: the effective batch follows the processes that run."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world != params["processes"]:
        log.warning("running %d process(es) but the config says processes=%d: the effective batch is %d",
                    world, params["processes"], params["per_device_batch_size"] * params["grad_accumulation"] * world)
    return world


def resume_checkpoint(job: TrainJob, args, world: int) -> Path | None:
    """The latest complete checkpoint of this very run (settings and inputs fingerprinted), or None
    for a fresh start; process 0 first clears the checkpoints of any other run."""
    # how often checkpoints are written never changes the weights: a new cadence keeps them
    settings = {"mode": job.mode, "wrapper": job.wrapper, "world": world,
                "params": {k: v for k, v in job.params.items() if k != "save_minutes"}}
    run_fingerprint = checkpoints.fingerprint(settings, [job.base, job.data, job.init_adapter, job.validation])
    with args.main_process_first(local=False, desc="checkpoints"):
        if args.process_index == 0:
            checkpoints.prepare(job.checkpoints, run_fingerprint)
    resume = checkpoints.latest_complete(job.checkpoints)
    if resume:
        log.info("resuming from %s", resume)
    return resume


def train(job: TrainJob, args, train_set, eval_set, tokenizer, resume: Path | None, callbacks: Sequence):
    """(model, trainer, train output) after Trainer's loop from ``resume`` (or from the start)."""
    from transformers import Trainer, set_seed

    from .model import load_trainable_model

    set_seed(job.params["seed"])
    model = load_trainable_model(job.base, job.params, job.init_adapter, device=job.device)
    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                      data_collator=Collator(tokenizer.pad_token_id),
                      callbacks=[save_every(job.params["save_minutes"]), *callbacks])
    # a checkpoint: the adapter and the optimizer's two moments of each trained parameter
    with naming_a_full_disk(args.output_dir, "a checkpoint", 3 * trainable_bytes(model)):
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return model, trainer, result


def data_counts(encoded: Encoded, eval_set) -> dict[str, int]:
    """Rows in and used, sequences, and what encoding counted (tokens, truncations, blocks)."""
    return {"rows_in": encoded.rows_in, "rows_used": encoded.rows_in - sum(encoded.drops.values()),
            "sequences": len(encoded.dataset), **encoded.counts,
            "validation_sequences": len(eval_set) if eval_set is not None else 0}


def run_record(job: TrainJob, state, runtime: float, model, world: int, resume: Path | None,
               start: tuple[int, int]) -> dict:
    """What the run did: its inputs, steps and epochs, throughput of this session (``start``: the
    steps and tokens done before it), trainable parameters and the loss histories."""
    from .model import trainable_parameters

    start_step, start_tokens = start
    session_tokens = state.num_input_tokens_seen - start_tokens
    return {
        "name": job.name, "mode": job.mode, "wrapper": job.wrapper, "base": str(job.base),
        "init_adapter": str(job.init_adapter) if job.init_adapter else None, "data": str(job.data),
        "steps": state.global_step, "epochs": state.epoch,
        "effective_batch": effective_batch({**job.params, "processes": world}),
        "processes": world, "resumed_from": str(resume) if resume else None,
        "steps_this_run": state.global_step - start_step,
        "train_runtime_seconds": runtime, "tokens_seen": state.num_input_tokens_seen,
        "tokens_per_second": session_tokens / runtime if runtime else None,
        "trainable_parameters": trainable_parameters(model),
        "train_loss": [{"step": e["step"], "loss": e["loss"], "learning_rate": e.get("learning_rate")}
                       for e in state.log_history if "loss" in e],
        "validation_loss": [{"step": e["step"], "loss": e["eval_loss"]} for e in state.log_history if "eval_loss" in e],
    }


def run(job: TrainJob, callbacks: Sequence = ()) -> dict | None:
    """Train (or resume from the latest complete checkpoint) to the configured step count, save
    the final adapter and the manifest (with the loss histories the loss curve is drawn from);
    return the manifest record (None on processes other than the first). ``callbacks`` are extra
    TrainerCallbacks."""
    from ..runtime.models import load_tokenizer

    require_device(job.device, f"train {job.name or job.out}")
    check_params(job.params, job.mode)
    check_writable(job.out, job.manifest, job.checkpoints)
    world = world_size(job.params)
    set_threads(max(1, (job.threads or os.cpu_count() or 1) // world))
    manifest = Manifest("train", params=job.params, seed=job.params["seed"])

    tokenizer = load_tokenizer(job.base, padding_side="right")
    encoded = encode(job, tokenizer)
    eval_set = validation_set(job, tokenizer)
    steps = training_steps(len(encoded.dataset), job.params)
    args = training_arguments(job.params, job.checkpoints, steps, evaluate=eval_set is not None, device=job.device)
    resume = resume_checkpoint(job, args, world)
    start = _progress(resume)  # read now: the checkpoint is rotated away once training saves another
    model, trainer, result = train(job, args, encoded.dataset, eval_set, tokenizer, resume, callbacks)
    if trainer.state.global_step != steps:
        raise TrainError(f"training stopped at step {trainer.state.global_step} of {steps}")
    if not trainer.is_world_process_zero():
        return None

    manifest.counts, manifest.drops = data_counts(encoded, eval_set), encoded.drops
    manifest.extra = run_record(job, trainer.state, result.metrics.get("train_runtime", 0.0), model, world,
                                resume, start)
    _save_adapter(model, job.out)
    record = manifest.write(job.manifest)
    shutil.rmtree(job.checkpoints, ignore_errors=True)
    return record
