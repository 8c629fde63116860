"""Training throughput at local scale, and the projected GPU hours of the paper's training runs.

    .venv/bin/python bench/train_bench.py [--model DIR] [--data results/ctga/train.parquet]
        [--steps 10] [--threads 2] [--gpu-tflops 312] [--mfu 0.3] [--paper-tokens-per-example 512]

Measures, in one run and through the project's training engine (bonito_repro.train.run), the
local Bonito training (config/local.yaml `bonito_training`: SmolLM2-135M-Instruct, 4-bit NF4
Q-LoRA) for --steps optimizer steps, and the same steps with `quantization: none` (plain LoRA) as
the baseline; prints tokens per second of both and their ratio.

The projection is arithmetic with stated assumptions, not a measurement (no GPU here):
- cost per trained token of a LoRA run: 6 x N FLOPs (forward 2N, backward through the frozen
  weights 2N, recomputation under gradient checkpointing 2N), N = 7.24e9 (Mistral-7B);
- a GPU reaches --mfu of its bf16 peak (--gpu-tflops; A100 312, H100 SXM 989) on 4-bit Q-LoRA,
  where dequantizing the frozen weights costs time;
- tokens of the paper's runs: steps x effective batch x --paper-tokens-per-example (non-padding
  tokens of one example; ctga-v1's passages are longer than the local demo rows, and packing is
  not used, so padding is left out);
- Bonito: config.yaml `bonito_training` (100,000 steps, effective batch 16); adaptation: up to
  `adaptation.max_steps` x effective batch per job, for every target x source x dataset of
  config.yaml (an upper bound: sets under one_epoch_below train one epoch).
The model defaults to results/models/smollm2, converted from its GGUF package into a temporary
directory when that does not exist yet.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does: no spinning on shared cores

from bonito_repro.core import layout
from bonito_repro.core.config import load_scale
from common import local_config, smollm2_dir

REPO = Path(__file__).resolve().parents[1]
MISTRAL_7B_PARAMETERS = 7.24e9



def measure(base: Path, data: Path, params: dict, out: Path, threads: int) -> dict:
    from bonito_repro.train import TrainJob, run

    job = TrainJob(mode="pairs", base=base, data=data, out=out / "adapter", checkpoints=out / "checkpoints",
                   manifest=out / "manifest.json", params=params, device="cpu", threads=threads,
                   name=out.name)  # the benchmarks measure this machine's CPU
    return run(job)


def projection(args: argparse.Namespace) -> list[str]:
    paper = load_scale("paper", REPO)
    tokens_per_second = args.gpu_tflops * 1e12 * args.mfu / (6 * MISTRAL_7B_PARAMETERS)
    lines = [f"assumed GPU throughput for a 7B Q-LoRA: {tokens_per_second:,.0f} tokens/s "
             f"({args.gpu_tflops:g} TFLOP/s peak x MFU {args.mfu:g} / (6 x {MISTRAL_7B_PARAMETERS:.3g} FLOPs a token))"]
    runs = {"bonito_training": 1,
            "adaptation": len(paper["targets"]) * len(paper["run"]["sources"]) * len(paper["datasets"])}
    for section, jobs in runs.items():
        p = paper[section]
        batch = p["per_device_batch_size"] * p["grad_accumulation"] * p["processes"]
        tokens = p["max_steps"] * batch * args.paper_tokens_per_example * jobs
        hours = tokens / tokens_per_second / 3600
        lines.append(f"paper {section}: {jobs} job(s) x {p['max_steps']:,} steps x batch {batch} x "
                     f"{args.paper_tokens_per_example} tokens = {tokens:.3g} tokens -> {hours:,.0f} GPU hours"
                     + (f" ({hours / p['processes']:,.0f} h wall on {p['processes']} GPUs)" if p["processes"] > 1 else ""))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--data", default=str(REPO / layout.ctga("train.parquet")))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gpu-tflops", type=float, default=312.0, help="bf16 peak of one GPU (A100: 312)")
    parser.add_argument("--mfu", type=float, default=0.3, help="share of the peak a 4-bit Q-LoRA reaches")
    parser.add_argument("--paper-tokens-per-example", type=int, default=512)
    args = parser.parse_args()
    data = Path(args.data)
    if not data.exists():
        raise SystemExit(f"{data} does not exist: build it first (snakemake --profile local {data})")
    logging.disable(logging.WARNING)

    local = local_config()["bonito_training"]
    params = dict(local, max_steps=args.steps, save_steps=args.steps, eval_steps=None, logging_steps=args.steps)
    with tempfile.TemporaryDirectory() as scratch:
        base = smollm2_dir(args.model, Path(scratch))
        records = {name: measure(base, data, dict(params, quantization=quantization), Path(scratch) / name,
                                 args.threads)
                   for name, quantization in (("lora", "none"), ("qlora", "nf4"))}

    print(f"model {base.name}, data {data}: {args.steps} steps of effective batch "
          f"{params['per_device_batch_size'] * params['grad_accumulation']}, {args.threads} threads")
    for name, record in records.items():
        print(f"{name:>6} ({record['params']['quantization']}): {record['tokens_per_second']:8.1f} tokens/s "
              f"({record['train_runtime_seconds']:.1f} s for {record['steps_this_run']} steps)")
    ratio = records["qlora"]["tokens_per_second"] / records["lora"]["tokens_per_second"]
    print(f"ratio Q-LoRA / LoRA tokens/s: {ratio:.2f}x")
    local_steps = local["max_steps"]
    seconds = local_steps / args.steps * records["qlora"]["train_runtime_seconds"]
    print(f"local Bonito training ({local_steps} steps): about {seconds / 60:.1f} min of training at this rate")
    for line in projection(args):
        print(line)
    print(json.dumps({name: r["tokens_per_second"] for name, r in records.items()}))


if __name__ == "__main__":
    main()
