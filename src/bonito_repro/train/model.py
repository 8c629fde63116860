"""A base model ready for (Q-)LoRA training: 4-bit NF4 with double quantization (bitsandbytes;
also on CPU) or full precision, then a fresh LoRA on every linear layer but the head, or a given
adapter (e.g. a P3 adapter) loaded trainable."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..runtime.models import ModelError


def compute_dtype(params: dict) -> torch.dtype:
    return torch.bfloat16 if params["bf16"] else torch.float32


def quantization_config(params: dict):
    """QLoRA's 4-bit NormalFloat with double quantization, or None for `quantization: none`."""
    if params["quantization"] == "none":
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype(params))


def lora_config(params: dict):
    """LoRA on the layers ``lora.target_modules`` names, or on all linear layers except the output
    head (peft's "all-linear", the paper's recipes) where it names none."""
    from peft import LoraConfig

    lora = params["lora"]
    return LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                      target_modules=lora.get("target_modules") or "all-linear", bias="none", task_type="CAUSAL_LM",
                      modules_to_save=lora.get("modules_to_save") or None)


def load_trainable_model(base_dir: str | Path, params: dict, init_adapter: str | Path | None = None, *,
                         device: str):
    """The PEFT model to train on ``device`` (cuda or cpu). Under torchrun each process holds its
    own copy on its own GPU."""
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    device_map = {"": int(os.environ.get("LOCAL_RANK", 0))} if device == "cuda" else None
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=compute_dtype(params), use_safetensors=True,
                                                 quantization_config=quantization_config(params),
                                                 device_map=device_map)
    model.config.use_cache = False
    _keep_cpu_4bit_layout(model)
    checkpointing = {"use_reentrant": False}
    if params["quantization"] != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=params["gradient_checkpointing"],
                                                gradient_checkpointing_kwargs=checkpointing)
    elif params["gradient_checkpointing"]:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=checkpointing)
    if init_adapter is None:
        return get_peft_model(model, lora_config(params))
    if not (Path(init_adapter) / "adapter_config.json").exists():
        raise ModelError(f"{init_adapter}: not a PEFT adapter directory (no adapter_config.json)")
    return PeftModel.from_pretrained(model, init_adapter, is_trainable=True)


def _keep_cpu_4bit_layout(model) -> None:
    """bitsandbytes repacks 4-bit weights for its fast CPU kernel on the first no-grad forward
    (evaluation, generation) and unpacks them lossily whenever state_dict() runs (every checkpoint
    save), so the frozen base would drift with each save and a resumed run would not match an
    uninterrupted one. Keep the plain layout (CPU only; GPUs never repack)."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def trainable_parameters(model) -> int:
    """Parameters the optimizer updates (a 4-bit base's packed weights would miscount a total)."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
