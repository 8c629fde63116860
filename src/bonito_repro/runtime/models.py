"""Loading a prepared model directory (results/models/NAME, bonito_repro.prepare.models) for
inference and training: its tokenizer, prompts encoded with one BOS or the model's chat template,
and the model with an adapter merged in."""
from __future__ import annotations

from pathlib import Path


class ModelError(ValueError):
    """A model spec or model directory is unusable."""


def load_tokenizer(model_dir: str | Path, padding_side: str = "left"):
    """The model's tokenizer, with a pad token (EOS where the model has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side=padding_side)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def encode_with_bos(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids with exactly one BOS in front, whatever the tokenizer adds by itself
    (Mistral's adds one, SmolLM2's GGUF tokenizer adds none): the paper's prompts start with BOS."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    return [[bos, *row] if bos is not None else row for row in ids]


def encode_prompts(tokenizer, prompts: list[str], wrapper: str) -> list[list[int]]:
    """Token ids of prompts under a wrapper: BOS + the wrapped prompt (``none``: the prompt as it
    is), or, for ``chat``, the tokenizer's chat template with the prompt as the user's turn and the
    assistant's turn opened, which carries the model's own special tokens (so no second BOS)."""
    from ..core.prompts import CHAT, wrap

    if wrapper == CHAT:
        if not getattr(tokenizer, "chat_template", None):
            raise ModelError(f"wrapper {CHAT!r}: the tokenizer has no chat template")
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True) for p in prompts]
        return tokenizer(texts, add_special_tokens=False)["input_ids"]
    return encode_with_bos(tokenizer, prompts if wrapper == "none" else [wrap(p, wrapper) for p in prompts])


def load_for_inference(model_dir: str | Path, adapter_dir: str | Path | None = None, bf16: bool = False):
    """A model in eval mode, with a PEFT adapter merged in where given."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if bf16 else torch.float32,
                                                 use_safetensors=True)
    if adapter_dir is not None:
        from peft import PeftModel

        if not (Path(adapter_dir) / "adapter_config.json").exists():
            raise ModelError(f"{adapter_dir}: not a PEFT adapter directory (no adapter_config.json)")
        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    return model.eval()
