"""Examples per second of rank classification: batched choice scoring (all choices of an example
packed after one copy of its prompt, many examples a forward pass, vocabulary projection only
where a choice token is predicted) against per-choice scoring (one sequence per choice, the
paper's way), same model, same prompts, one run. Prints both rates and their ratio.

    python bench/eval_bench.py [--model DIR] [--dataset contract_nli] [--examples 16]
                               [--templates 2] [--batch-tokens 8192] [--threads 2]

The model defaults to results/models/smollm2 (the local scale's SmolLM2-135M-Instruct), converted
from its GGUF package into a temporary directory when that does not exist yet. Rows are the
embedded test split of the dataset; the prompts are its evaluation templates under the io wrapper.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from common import smollm2_dir




def inputs(tokenizer, dataset: str, examples: int, templates: int):
    import pandas as pd

    from bonito_repro.core.config import load_dataset_file
    from bonito_repro.evaluate.encoder import PromptEncoder
    from bonito_repro.core.templates import load_templates
    from bonito_repro.core.origins import embedded_path

    rows = pd.read_json(embedded_path("test", dataset), lines=True).to_dict("records")[:examples]
    encoder = PromptEncoder(tokenizer, "io", max_length=1024, truncation="right", dataset=dataset)
    prompts, choices = [], []
    _, spec = load_dataset_file(dataset, "embedded")
    for template in load_templates(spec["templates"], spec.get("labels"), spec["test_fields"],
                                   spec["file"])[:templates]:
        answers = [encoder.answer(text) for text in template.answer_texts]
        prompts += encoder.prompts(template, rows, list(range(len(rows))), seed=0)
        choices += [answers] * len(rows)
    return prompts, choices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--dataset", default="contract_nli")
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--templates", type=int, default=2)
    parser.add_argument("--batch-tokens", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from bonito_repro.runtime.models import load_for_inference, load_tokenizer
    from bonito_repro.runtime.scoring import score_choices, score_choices_separately

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        path = smollm2_dir(args.model, Path(scratch))
        tokenizer, model = load_tokenizer(path), load_for_inference(path)
        prompts, choices = inputs(tokenizer, args.dataset, args.examples, args.templates)
        pad = tokenizer.pad_token_id
        score_choices(model, prompts[:2], choices[:2], args.batch_tokens, pad_id=pad)  # warm-up

        results = {}
        for name, scorer in (("per-choice", score_choices_separately), ("batched", score_choices)):
            started, cpu = time.perf_counter(), time.process_time()
            scores = scorer(model, prompts, choices, args.batch_tokens, pad_id=pad)
            results[name] = (time.perf_counter() - started, time.process_time() - cpu, scores)

    flat = {name: torch.tensor(sum(r[2], [])) for name, r in results.items()}
    difference = float((flat["batched"] - flat["per-choice"]).abs().max())
    tokens = sum(len(p) for p in prompts)
    print(f"model {path.name}, {args.dataset}: {len(prompts)} examples ({args.examples} rows x "
          f"{args.templates} templates), {sum(len(c) for c in choices)} choices, "
          f"{tokens / len(prompts):.0f} prompt tokens on average, {args.threads} threads")
    for name, (wall, cpu, _) in results.items():
        print(f"{name:>10}: {len(prompts) / wall:7.2f} examples/s  ({wall:.2f} s wall, {cpu:.2f} s CPU)")
    speedup = results["per-choice"][0] / results["batched"][0]
    cpu_ratio = results["per-choice"][1] / results["batched"][1]
    print(f"ratio batched / per-choice: {speedup:.2f}x examples/s ({cpu_ratio:.2f}x by CPU time); "
          f"largest score difference {difference:.2e}")


if __name__ == "__main__":
    main()
