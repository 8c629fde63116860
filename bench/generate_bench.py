"""Passages per second of task generation: the batched transformers backend against a
one-passage-at-a-time loop over the same backend, model and passages, in one run (target: at
least 4x on 2 cores), and the vLLM backend's rate where its environment is installed.

    python bench/generate_bench.py [--model DIR] [--passages 40] [--max-new-tokens 64] [--threads 2]

The model defaults to results/models/smollm2 (the local scale's SmolLM2-135M-Instruct), converted
from its GGUF package into a temporary directory when that does not exist yet. Passages are the
embedded pubmed_qa text. An untrained generator rarely stops early, so every passage costs about
max_new_tokens decoding steps in both arms: the ratio measures batching, not early stopping.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from common import local_config, smollm2_dir

# as the generate stage does (bonito_repro.generate.cli.main): before torch loads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
VLLM_PY = REPO / ".venv-vllm" / "bin" / "python"
MARKER = "vllm passages/s: "


def passages(count: int) -> list[str]:
    from bonito_repro.core.origins import embedded_path

    path = embedded_path("unannotated", "pubmed_qa")
    texts = [json.loads(line)["input"] for line in path.read_text().splitlines() if line.strip()] \
        if path.exists() else []
    while len(texts) < count:  # the embedded text may be shorter than asked: repeat it
        texts += texts or [f"Passage {len(texts)}: the trial enrolled patients and measured outcomes."]
    return texts[:count]



def sampling(args):
    """The local scale's sampling, with the benchmark's token count."""
    from bonito_repro.runtime.backends import Sampling

    generation = local_config()["generation"]
    return Sampling(n=generation["n"], temperature=generation["temperature"], top_p=generation["top_p"],
                    max_new_tokens=args.max_new_tokens)


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def bench_transformers(model: Path, texts: list[str], args) -> dict:
    import torch

    from bonito_repro.runtime.backends import TransformersBackend
    from bonito_repro.core.prompts import bonito_input

    torch.set_num_threads(args.threads)
    prompts = [bonito_input(t, "ynqa") for t in texts]
    backend = TransformersBackend(model, None, sampling(args), token_budget=args.token_budget, bf16=args.bf16,
                                  device="cpu")  # the benchmarks measure this machine's CPU
    backend.generate(prompts[:1], [0])  # warm-up outside the clock
    batched = timed(lambda: backend.generate(prompts, [0] * len(prompts)))
    loop = timed(lambda: [backend.generate([p], [0]) for p in prompts])
    return {"batched": len(prompts) / batched, "loop": len(prompts) / loop}


def bench_vllm(model: Path, texts: list[str], args) -> float:
    """Runs inside the vLLM environment: passages per second after start-up."""
    from bonito_repro.runtime.backends import VLLMBackend
    from bonito_repro.core.prompts import bonito_input

    prompts = [bonito_input(t, "ynqa") for t in texts]
    backend = VLLMBackend(model, None, sampling(args), max_model_len=2048, seed=42, device="cpu")
    backend.generate(prompts[:1], [0])
    try:
        return len(prompts) / timed(lambda: backend.generate(prompts, list(range(len(prompts)))))
    finally:
        backend.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--passages", type=int, default=40)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--token-budget", type=int, default=16384)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="transformers in bf16 (fast where the CPU has AMX)")
    parser.add_argument("--vllm-only", action="store_true", help=argparse.SUPPRESS)  # the vLLM child
    args = parser.parse_args()
    texts = passages(args.passages)
    with tempfile.TemporaryDirectory() as scratch:
        model = smollm2_dir(args.model, Path(scratch))
        if args.vllm_only:
            print(f"{MARKER}{bench_vllm(model, texts, args)}", flush=True)  # vLLM logs to stdout too
            return 0
        rates = bench_transformers(model, texts, args)
        print(f"model {model.name}, {len(texts)} passages, {args.max_new_tokens} new tokens, "
              f"{args.threads} threads, {'bf16' if args.bf16 else 'float32'}")
        print(f"transformers one passage at a time: {rates['loop']:.3f} passages/s")
        print(f"transformers batched:               {rates['batched']:.3f} passages/s")
        print(f"speed-up: {rates['batched'] / rates['loop']:.1f}x (target >= 4x)")
        if not VLLM_PY.exists():
            print(f"vllm: not measured ({VLLM_PY} is missing)")
            return 0
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}
        child = subprocess.run([str(VLLM_PY), __file__, "--vllm-only", "--model", str(model),
                                "--passages", str(args.passages), "--max-new-tokens", str(args.max_new_tokens)],
                               capture_output=True, text=True, env=env)
        if child.returncode != 0:
            print(f"vllm: failed\n{child.stderr[-2000:]}", file=sys.stderr)
            return 1
        rate = float(next(line for line in child.stdout.splitlines() if line.startswith(MARKER))[len(MARKER):])
        print(f"vllm batched (after start-up):      {rate:.3f} passages/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
