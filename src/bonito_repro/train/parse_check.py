"""How often a generator's output parses (exactly one <|pipe|>), trained vs its untrained base:
a cheap check, on a few validation contexts, that Bonito training taught the output format.

It reads the saved adapter the way the generation stage does (full-precision base, adapter
merged), so it checks what generation will get; that is also several times faster on CPU than
generating through the 4-bit training model."""
from __future__ import annotations

from pathlib import Path

import torch

from ..prompts import parse_bonito_output
from .data import read_rows


@torch.no_grad()
def greedy_outputs(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy continuations of BOS + prompt (the training layout), one batch, left-padded."""
    bos = tokenizer.bos_token or ""
    batch = tokenizer([bos + p for p in prompts], add_special_tokens=False, padding=True,
                      return_tensors="pt").to(model.device)
    out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                         pad_token_id=tokenizer.pad_token_id)
    return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def parse_share(texts: list[str]) -> float:
    return sum(parse_bonito_output(t, "") is not None for t in texts) / len(texts)


def parse_shares(base_dir: str | Path, adapter_dir: str | Path, validation: str | Path, contexts: int,
                 max_new_tokens: int, bf16: bool = False) -> dict:
    """Share of parsable greedy generations for the first validation contexts, untrained base
    and base + trained adapter."""
    from peft import PeftModel

    from ..models import load_for_inference, load_tokenizer

    prompts = [str(p) for p in read_rows(validation, ["input"])["input"].head(contexts)]
    tokenizer = load_tokenizer(base_dir, padding_side="left")
    model = load_for_inference(base_dir, bf16=bf16)
    if torch.cuda.is_available():
        model = model.to("cuda")
    base = greedy_outputs(model, tokenizer, prompts, max_new_tokens)
    model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload().eval()
    trained = greedy_outputs(model, tokenizer, prompts, max_new_tokens)
    return {"contexts": len(prompts), "max_new_tokens": max_new_tokens, "decoding": "greedy",
            "trained": parse_share(trained), "base": parse_share(base), "trained_example": trained[0],
            "base_example": base[0]}
