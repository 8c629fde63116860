"""How often a generator's output parses (exactly one <|pipe|>), trained vs its untrained base:
a cheap check, on a few validation contexts, that Bonito training taught the output format. Its
own job (rule parse_check), so that changing it never reruns the training.

    python -m bonito_repro parse-check --base MODEL_DIR --adapter ADAPTER_DIR \\
        --validation V.parquet --params JSON --out parse_check.json [--threads N]

It reads the saved adapter the way the generation stage does (full-precision base, adapter
merged), so it checks what generation will get; that is also several times faster on CPU than
generating through the 4-bit training model."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from ..io import Manifest, parse_params, read_parquet, set_threads, setup_logging
from ..prompts import parse_bonito_output

log = logging.getLogger(__name__)


@torch.no_grad()
def greedy_outputs(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy continuations of BOS + prompt (the training layout), one batch, left-padded."""
    bos = tokenizer.bos_token or ""
    batch = tokenizer([bos + p for p in prompts], add_special_tokens=False, padding=True,
                      return_tensors="pt").to(model.device)
    out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                         pad_token_id=tokenizer.pad_token_id)
    return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def parsed(texts: list[str]) -> int:
    return sum(parse_bonito_output(t, "") is not None for t in texts)


def parse_shares(base_dir: str | Path, adapter_dir: str | Path, validation: str | Path, contexts: int,
                 max_new_tokens: int, bf16: bool = False) -> dict:
    """Parsable greedy generations for the first validation contexts, untrained base and base +
    trained adapter: counts, shares and one example of each."""
    from peft import PeftModel

    from ..models import load_for_inference, load_tokenizer

    prompts = [str(p) for p in read_parquet(validation, ["input"]).to_pandas()["input"].head(contexts)]
    tokenizer = load_tokenizer(base_dir, padding_side="left")
    model = load_for_inference(base_dir, bf16=bf16)
    if torch.cuda.is_available():
        model = model.to("cuda")
    base = greedy_outputs(model, tokenizer, prompts, max_new_tokens)
    model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload().eval()
    trained = greedy_outputs(model, tokenizer, prompts, max_new_tokens)
    counts = {"contexts": len(prompts), "trained_parsed": parsed(trained), "base_parsed": parsed(base)}
    return {"counts": counts, "decoding": "greedy", "trained": counts["trained_parsed"] / len(prompts),
            "base": counts["base_parsed"] / len(prompts), "trained_example": trained[0], "base_example": base[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bonito_repro parse-check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="the generator's base model directory")
    parser.add_argument("--adapter", type=Path, required=True, help="the trained generator adapter")
    parser.add_argument("--validation", type=Path, required=True, help="validation rows (parquet; column input)")
    parser.add_argument("--params", required=True,
                        help="JSON: the config's parse_check section (contexts, max_new_tokens) and bf16")
    parser.add_argument("--out", type=Path, required=True, help="shares and counts, with the manifest's fields (JSON)")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    params = parse_params(args.params)
    manifest = Manifest("parse_check", params=params)
    result = parse_shares(args.base, args.adapter, args.validation, params["contexts"], params["max_new_tokens"],
                          bf16=params["bf16"])
    manifest.counts = result.pop("counts")
    manifest.extra = {"model": str(args.base), "adapter": str(args.adapter), "validation": str(args.validation),
                      **result}
    manifest.write(args.out)
    log.info("%s parses on %d of %d validation contexts, its untrained base on %d", args.adapter,
             manifest.counts["trained_parsed"], manifest.counts["contexts"], manifest.counts["base_parsed"])
    return 0
