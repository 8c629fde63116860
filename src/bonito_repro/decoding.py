"""Greedy decoding for extractive QA (PAPER_FACTS section 3b): at most ``max_new_tokens`` new
tokens, special tokens dropped, the text stripped. Both backends (config
``evaluation.generation_backend``) take the same prompt token ids:
- ``vllm``: as the paper's script, the adapter merged into the base model and saved to a scratch
  directory that vLLM loads (runs in the vLLM environment; vLLM is imported only here);
- ``transformers``: left-padded batches bounded by a token budget.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Sequence

from .scoring import TokenIds, to_accelerator, token_batches

log = logging.getLogger(__name__)
BACKENDS = ("vllm", "transformers")


def generate_transformers(model, tokenizer, prompts: Sequence[TokenIds], max_new_tokens: int,
                          batch_tokens: int, progress=None) -> list[str]:
    import torch
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    config = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens,
                              eos_token_id=model.generation_config.eos_token_id or tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id)
    lengths = [len(p) + max_new_tokens for p in prompts]
    texts = [""] * len(prompts)
    for batch in token_batches(lengths, batch_tokens):
        width = max(len(prompts[i]) for i in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for b, i in enumerate(batch):  # left padding: every prompt ends where generation starts
            ids[b, width - len(prompts[i]):] = torch.tensor(prompts[i])
            attention[b, width - len(prompts[i]):] = 1
        with torch.inference_mode():
            out = model.generate(input_ids=ids.to(device), attention_mask=attention.to(device),
                                 generation_config=config)
        for i, text in zip(batch, tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)):
            texts[i] = text.strip()
        if progress is not None:
            progress.update(len(batch))
    return texts


def generate_vllm(model_dir: str | Path, adapter_dir: str | Path | None, prompts: Sequence[TokenIds],
                  max_new_tokens: int, bf16: bool, seed: int, max_model_len: int) -> list[str]:
    # vLLM's CPU build otherwise reserves most of the machine's memory for its KV cache (a GPU
    # ignores this variable)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    from vllm import LLM, SamplingParams

    from .models import load_for_inference, load_tokenizer

    with tempfile.TemporaryDirectory(prefix="bonito-eval-merged-") as scratch:
        path = Path(model_dir)
        if adapter_dir is not None:
            log.info("merging %s into %s for vLLM (scratch %s)", adapter_dir, model_dir, scratch)
            load_for_inference(model_dir, adapter_dir, bf16=bf16).save_pretrained(scratch)
            load_tokenizer(model_dir).save_pretrained(scratch)
            path = Path(scratch)
        llm = LLM(model=str(path), dtype="bfloat16" if bf16 else "auto", seed=seed,
                  max_model_len=max_model_len, trust_remote_code=False)
        outputs = llm.generate([{"prompt_token_ids": list(p)} for p in prompts],
                               SamplingParams(temperature=0, max_tokens=max_new_tokens))
    return [o.outputs[0].text.strip() for o in outputs]


def generate_greedy(backend: str, model_dir: str | Path, adapter_dir: str | Path | None,
                    tokenizer, prompts: Sequence[TokenIds], *, max_new_tokens: int, batch_tokens: int,
                    max_model_len: int, bf16: bool, seed: int) -> list[str]:
    """One stripped greedy completion per prompt (token ids, BOS included), in prompt order."""
    if backend == "vllm":
        return generate_vllm(model_dir, adapter_dir, prompts, max_new_tokens, bf16, seed, max_model_len)
    if backend != "transformers":
        raise ValueError(f"evaluation.generation_backend: unknown backend {backend!r}; use one of {BACKENDS}")
    from tqdm.auto import tqdm

    from .models import load_for_inference

    model = to_accelerator(load_for_inference(model_dir, adapter_dir, bf16=bf16))
    with tqdm(total=len(prompts), desc="greedy decoding", unit="prompt") as progress:
        return generate_transformers(model, tokenizer, prompts, max_new_tokens, batch_tokens, progress)
