"""This project's ``generate_tasks`` beside the Bonito authors' package (``bonito-llm``,
``Bonito.generate_tasks``) on the same passages, model and backend (vLLM), in one run: tasks per
second of each as a ratio (target: at least 1), and whether the parsed tasks are equal under
greedy decoding (this project's funnel aside: its checks are off in the paper's config).

    .venv-vllm/bin/python bench/api_bench.py [--model DIR] [--passages 64] [--max-new-tokens 96]

Runs in the vLLM environment (``make setup-vllm`` installs bonito-llm there). The model is a full
model folder laid out as bonito-v1 is: by default the local scale's trained Bonito (its adapter
merged into SmolLM2-135M-Instruct, in a temporary folder), which `make bench` builds first. Each
arm is timed from its call to its tasks, engine start-up included (both start one vLLM engine);
the arms run in turn, each engine closed before the next starts.
"""
from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, local_config
from generate_bench import passages

from bonito_repro.core import layout


def with_bos(folder: Path) -> None:
    """Make the folder's tokenizer put BOS in front by itself, as bonito-v1's (Mistral's) does:
    this project always prompts with BOS, the authors' package with what the tokenizer adds, so
    on SmolLM2's tokenizer (no BOS of its own) the two would read different tokens."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    bos = tokenizer.bos_token
    tokenizer._tokenizer.post_processor = TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                                             special_tokens=[(bos, tokenizer.bos_token_id)])
    tokenizer.save_pretrained(folder)


def merged_bonito(scratch: Path) -> Path:
    """The local Bonito adapter merged into its base: one model folder, as bonito-v1 is."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, adapter = REPO / layout.model_dir("smollm2"), REPO / layout.generator("bonito", "adapter")
    if not (adapter / "adapter_config.json").exists():
        sys.exit(f"{adapter} is missing: run `snakemake --profile local {layout.generator('bonito', 'adapter')}` "
                 "first (`make bench` does), or pass --model")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).merge_and_unload()
    model.save_pretrained(scratch / "bonito")
    AutoTokenizer.from_pretrained(base).save_pretrained(scratch / "bonito")
    with_bos(scratch / "bonito")
    return scratch / "bonito"


def ours(model: Path, texts: list[str], args) -> list[tuple[str, str]]:
    from bonito_repro.generate import generate_tasks

    params = {**local_config()["generation"], "temperature": 0.0, "n": 1, "max_new_tokens": args.max_new_tokens,
              "bf16": False}
    tasks = generate_tasks(texts, args.task_type, params, model_dir=model, backend="vllm", device="cpu")
    return [(t["input"], t["output"]) for t in tasks]


def theirs(model: Path, texts: list[str], args) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The authors' package's tasks, and the same generations read by this project's rules: the
    ``{{context}}`` placeholder replaced in outputs too (the package's fix of February 2025, PR
    #48, which 0.1.0 on PyPI predates) and tasks with an empty side dropped (the funnel's check)."""
    from bonito import Bonito
    from datasets import Dataset
    from vllm import SamplingParams

    from bonito_repro.core.prompts import bonito_input, parse_bonito_output
    from bonito_repro.generate.synthetic_tasks import check_lengths

    class Recorded(Bonito):
        def _postprocess_dataset(self, synthetic_dataset, context_col, **kwargs):
            self.generations = [(row[context_col], row["prediction"]) for row in synthetic_dataset]
            return super()._postprocess_dataset(synthetic_dataset, context_col, **kwargs)

    # the engine as this project's backend starts it on a CPU (dtype auto, the longest prompt's
    # length, whole prefills), so that greedy decoding meets the same numbers
    max_len = check_lengths(model, [bonito_input(t, args.task_type) for t in texts], range(len(texts)),
                            args.max_new_tokens)
    bonito = Recorded(str(model), dtype="auto", seed=42, enforce_eager=True, max_model_len=max_len,
                      enable_chunked_prefill=False, max_num_batched_tokens=max(max_len, 4096))
    try:
        tasks = bonito.generate_tasks(Dataset.from_dict({"context": texts}), context_col="context",
                                      task_type=args.task_type,
                                      sampling_params=SamplingParams(temperature=0.0, max_tokens=args.max_new_tokens))
        generations = bonito.generations
    finally:
        del bonito
        gc.collect()
    parsed = [parse_bonito_output(prediction, context) for context, prediction in generations]
    return [(t["input"], t["output"]) for t in tasks], [p for p in parsed if p and all(p)]


def timed(arm, *call_args) -> tuple[list, float]:
    started = time.perf_counter()
    tasks = arm(*call_args)
    return tasks, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a full model folder (default: the local Bonito, merged)")
    parser.add_argument("--passages", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--task-type", default="ynqa")
    args = parser.parse_args()
    texts = passages(args.passages)
    import bonito, vllm  # noqa: F401, E401  (imported before either clock starts)
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(args.model) if args.model else merged_bonito(Path(scratch))
        mine, mine_s = timed(ours, model, texts, args)
        (authors, authors_read), authors_s = timed(theirs, model, texts, args)
    print(f"model {model.name}, {len(texts)} passages, task type {args.task_type}, greedy, "
          f"{args.max_new_tokens} new tokens, vLLM on the CPU")
    print(f"bonito-llm Bonito.generate_tasks: {len(authors)} tasks in {authors_s:.1f} s "
          f"({len(authors) / authors_s:.3f} tasks/s)")
    print(f"bonito_repro generate_tasks:      {len(mine)} tasks in {mine_s:.1f} s ({len(mine) / mine_s:.3f} tasks/s)")
    print(f"ratio (ours / theirs, passages per second): {authors_s / mine_s:.2f} (target >= 1)")
    print(f"  their tasks read by this project's rules (placeholder replaced in outputs, empty sides "
          f"dropped): {len(authors_read)}")
    equal = mine == authors_read
    print(f"parsed tasks equal: {equal}" + ("" if equal else
          f" ({len(set(mine) & set(authors_read))} shared; only ours {len(set(mine) - set(authors_read))}, "
          f"only theirs {len(set(authors_read) - set(mine))})"))
    for label, only in (("only ours", set(mine) - set(authors_read)), ("only theirs", set(authors_read) - set(mine))):
        for instruction, response in sorted(only)[:3]:
            print(f"  {label}: {instruction[-80:]!r} -> {response[:40]!r}")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
