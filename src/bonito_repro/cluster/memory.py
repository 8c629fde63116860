"""Estimates of the GPU memory each GPU job of a run needs, and of the host memory a download
needs to convert pickled weights: what the preflight sets against a GPU's memory (``python -m
bonito_repro preflight --gpu-memory-gb N``, or the GPU it finds with ``--local-gpu``) to name,
before anything runs, each job that will not fit and the setting to lower.

Every number is an estimate from the config's ``memory`` section (each model's shape: parameters,
layers, widths, KV heads, vocabulary, positions; the overhead of every job) and the job's own
settings; none is measured here (docs/tiers.md). A job's memory is the sum of

- weights: bf16 (2 bytes a parameter), or NF4 for Q-LoRA (about 0.53 bytes a parameter with its
  double-quantized scales; the embeddings and the output head stay bf16), plus a LoRA adapter's
  float32 weights, gradients and Adam's two moments (16 bytes a LoRA parameter) when it trains;
- KV cache: 2 (keys and values) x layers x KV heads x head width x 2 bytes a token. vLLM needs room
  for one sequence of its max_model_len; the transformers backend for a batch of token_budget;
- activations: ``activation_widths`` hidden-size vectors (bf16) a token at the peak of a layer
  (vLLM: for one engine step of ``step_tokens``; training: every layer's without gradient
  checkpointing, else one layer's and each layer's input), plus the logits (10 bytes a token and
  vocabulary entry: bf16, the float32 copy and its log-softmax or gradient) where a job computes
  them for every token;
- overhead: the CUDA context, kernels and allocator slack (``overhead_gib``; more with CUDA graphs).

vLLM takes ``gpu_memory_utilization`` of the GPU and must hold its weights, activations and that
one sequence's KV cache in it; every other job may use the whole GPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

from ..core.generators import trains
from ..core.sources import TAPT, generator_of
from ..core.tasks import GREEDY, RANK, scoring

GIB = 2 ** 30
LOGIT_BYTES = 10   # bf16 logits, their float32 copy, and its log-softmax (or gradient)
LORA_STATE_BYTES = 16  # float32 LoRA weight, its gradient and Adam's two moments
NF4_BYTES = 0.53   # 4 bits a parameter and the double-quantized scales of its blocks
BF16_BYTES = 2


@dataclass(frozen=True)
class Shape:
    """What a model's memory depends on (config ``memory.shape``, overridden per model)."""
    parameters: float
    layers: int
    hidden_size: int
    intermediate_size: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    positions: int

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * BF16_BYTES

    @property
    def embedding_parameters(self) -> float:
        """The input embeddings and the output head (not quantized)."""
        return 2 * self.vocab_size * self.hidden_size

    def lora_parameters(self, rank: int) -> float:
        """A LoRA of ``rank`` on every linear layer of every block: q, k, v, o, gate, up, down."""
        h, kv, i = self.hidden_size, self.kv_heads * self.head_dim, self.intermediate_size
        return rank * self.layers * (9 * h + 2 * kv + 3 * i)


@dataclass
class Estimate:
    """One GPU job's memory in GiB, by part, against what it may use of a GPU."""
    job: str                     # the rule and what picks its jobs (e.g. "generate (bonito_v1)")
    parts: dict[str, float]      # weights, kv_cache, activations, overhead (GiB)
    share: float = 1.0           # of the GPU the job may use (vLLM's gpu_memory_utilization)
    remedy: str = ""             # the config settings that lower it

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def needs(self) -> float:
        """The GPU memory (GiB) on which this job fits: its total over the share it may use."""
        return self.total / self.share

    def fits(self, gpu_gib: float) -> bool:
        return self.total <= self.share * gpu_gib

    def describe(self) -> str:
        parts = ", ".join(f"{name} {gib:.1f}" for name, gib in self.parts.items())
        taken = f" in the {self.share:g} of the GPU it takes" if self.share < 1 else ""
        return f"about {self.total:.1f} GiB ({parts}){taken}: fits a GPU of {self.needs():.1f} GiB or more"


def shape_of(config: dict, model: str) -> Shape:
    """A model's shape: ``memory.shape`` with the model's entry of ``memory.models`` over it."""
    memory = config["memory"]
    return Shape(**{**memory["shape"], **memory["models"].get(model, {})})


def _gib(nbytes: float) -> float:
    return nbytes / GIB


def _overhead(config: dict, engine: dict | None = None) -> float:
    memory = config["memory"]
    graphs = memory["cuda_graphs_gib"] if engine is not None and not engine["enforce_eager"] else 0.0
    return memory["overhead_gib"] + graphs


def vllm_estimate(config: dict, job: str, shape: Shape, engine: dict, max_model_len: int,
                  remedy: str) -> Estimate:
    """A vLLM engine: bf16 weights, one sequence of max_model_len in its KV cache and one step's
    activations, in gpu_memory_utilization of the GPU."""
    memory = config["memory"]
    step = memory["step_tokens"]
    activations = step * shape.hidden_size * BF16_BYTES * memory["activation_widths"]
    return Estimate(job, {"weights": _gib(shape.parameters * BF16_BYTES),
                          "kv_cache": _gib(shape.kv_bytes_per_token * max_model_len),
                          "activations": _gib(activations), "overhead": _overhead(config, engine)},
                    share=engine["gpu_memory_utilization"], remedy=remedy)


def transformers_estimate(config: dict, job: str, shape: Shape, tokens: int, bf16: bool, decodes: bool,
                          remedy: str) -> Estimate:
    """Inference with transformers on a batch of ``tokens``: weights and the batch's activations,
    then the batch's KV cache where it decodes (transformers computes the logits of the last
    position only), or the logits of every token where it scores them (rank classification)."""
    memory = config["memory"]
    weight_bytes = BF16_BYTES if bf16 else 4
    activations = tokens * shape.hidden_size * weight_bytes * memory["activation_widths"]
    if not decodes:
        activations += tokens * shape.vocab_size * LOGIT_BYTES
    return Estimate(job, {"weights": _gib(shape.parameters * weight_bytes),
                          "kv_cache": _gib(shape.kv_bytes_per_token * tokens) if decodes else 0.0,
                          "activations": _gib(activations), "overhead": _overhead(config)},
                    remedy=remedy)


def training_estimate(config: dict, job: str, shape: Shape, section: str, sequence: int, lengths: str) -> Estimate:
    """A LoRA training job of the config's ``section`` on sequences of ``sequence`` tokens (set by
    the config keys ``lengths``)."""
    memory, params = config["memory"], config[section]
    if params["quantization"] == "nf4":
        weights = (shape.parameters - shape.embedding_parameters) * NF4_BYTES + shape.embedding_parameters * BF16_BYTES
    else:
        weights = shape.parameters * (BF16_BYTES if params["bf16"] else 4)
    weights += shape.lora_parameters(params["lora"]["r"]) * LORA_STATE_BYTES
    tokens = params["per_device_batch_size"] * sequence
    width = tokens * shape.hidden_size * BF16_BYTES
    if params["gradient_checkpointing"]:  # each layer's input kept, one layer's activations at a time
        activations = width * (shape.layers + memory["activation_widths"])
    else:
        activations = width * shape.layers * memory["activation_widths"]
    activations += tokens * shape.vocab_size * LOGIT_BYTES
    remedy = [f"lower {lengths} or {section}.per_device_batch_size (raise grad_accumulation to keep the batch)"]
    if not params["gradient_checkpointing"]:
        remedy.append(f"set {section}.gradient_checkpointing: true")
    if params["quantization"] != "nf4":
        remedy.append(f"set {section}.quantization: nf4")
    return Estimate(job, {"weights": _gib(weights), "kv_cache": 0.0, "activations": _gib(activations),
                          "overhead": _overhead(config)}, remedy="; ".join(remedy))


def _generators(config: dict) -> list[str]:
    """The generators the run's sources adapt on (a size point's and a chain's too)."""
    names = {generator_of(s) for s in config["run"]["sources"]} - {None}
    return sorted(n for n in names if n in config["generators"])


def _target_models(config: dict) -> list[str]:
    return sorted({config["targets"][t]["model"] for t in config["run"]["targets"]})


def generation_estimates(config: dict) -> Iterator[Estimate]:
    """The generate (and backtranslate) job of each generator that runs a model here."""
    generation = config["generation"]
    for name in _generators(config):
        spec = config["generators"][name]
        if spec["kind"] not in ("bonito", "prompted", "backtranslation"):
            continue
        model = spec.get("model") or spec["base"]
        shape = shape_of(config, model)
        rule = "backtranslate" if spec["kind"] == "backtranslation" else "generate"
        job = f"{rule} ({name}, model {model})"
        if generation["backend"] == "vllm":
            length = min(filter(None, (generation["max_model_len"], shape.positions)))
            yield vllm_estimate(config, job, shape, generation["vllm"], length,
                                f"lower generation.max_model_len (now {length} positions: its KV cache), "
                                "or raise generation.vllm.gpu_memory_utilization")
        else:
            yield transformers_estimate(config, job, shape, generation["token_budget"], generation["bf16"],
                                        decodes=True, remedy="lower generation.token_budget")


def evaluation_estimates(config: dict) -> Iterator[Estimate]:
    """Each target model's rank-classification and extractive-QA evaluation jobs."""
    evaluation = config["evaluation"]
    kinds = {scoring(d["task_type"]) for d in config["datasets"].values()}
    for model in _target_models(config):
        shape = shape_of(config, model)
        if RANK in kinds:
            yield transformers_estimate(config, f"evaluate (model {model})", shape, evaluation["batch_tokens"],
                                        evaluation["bf16"], decodes=False, remedy="lower evaluation.batch_tokens")
        if GREEDY not in kinds:
            continue
        job = f"evaluate_generation (model {model})"
        if evaluation["generation_backend"] == "vllm":
            length = evaluation["max_length"] + evaluation["max_new_tokens"]
            yield vllm_estimate(config, job, shape, evaluation["vllm"], length,
                                "raise evaluation.vllm.gpu_memory_utilization (or lower evaluation.max_length, "
                                "which cuts prompts)")
        else:
            yield transformers_estimate(config, job, shape, evaluation["batch_tokens"], evaluation["bf16"],
                                        decodes=True, remedy="lower evaluation.batch_tokens")


def _pair_length(config: dict, section: str) -> tuple[int, str]:
    """The longest training example of a section, and the keys that set it."""
    params = config[section]
    return (params["max_input_length"] + params["max_output_length"],
            f"{section}.max_input_length, {section}.max_output_length")


def training_estimates(config: dict) -> Iterator[Estimate]:
    """Adaptation of each target model (on synthetic tasks, and TAPT's blocks), the P3-style
    adapter trained here, and what the run trains for its generators: Bonito (and its parse
    check) and the two adapters of backtranslation."""
    adaptation = config["adaptation"]
    sources = config["run"]["sources"]
    for model in _target_models(config):
        shape = shape_of(config, model)
        if any(s != TAPT for s in sources):
            yield training_estimate(config, f"adapt (model {model}, synthetic tasks)", shape, "adaptation",
                                    adaptation["max_input_length"] + adaptation["max_output_length"],
                                    "adaptation.max_input_length, adaptation.max_output_length")
        if TAPT in sources:
            yield training_estimate(config, f"adapt (model {model}, TAPT)", shape, "adaptation",
                                    adaptation["tapt_block_size"], "adaptation.tapt_block_size")
    p3 = sorted({config["targets"][t]["model"] for t in config["run"]["targets"]
                 if config["targets"][t].get("init_adapter", {}).get("train_on") == "p3"})
    for model in p3:
        yield training_estimate(config, f"train_p3 (model {model})", shape_of(config, model), "p3_training",
                                *_pair_length(config, "p3_training"))
    for name in _generators(config):
        spec = config["generators"][name]
        if not trains(spec):
            continue
        shape = shape_of(config, spec["base"])
        if spec["kind"] == "bonito":
            yield training_estimate(config, f"train_bonito ({name}, base {spec['base']})", shape, "bonito_training",
                                    *_pair_length(config, "bonito_training"))
            check = config["parse_check"]
            tokens = check["contexts"] * (config["bonito_training"]["max_input_length"] + check["max_new_tokens"])
            yield transformers_estimate(config, f"parse_check ({name}, base {spec['base']})", shape, tokens,
                                        config["bonito_training"]["bf16"], decodes=True,
                                        remedy="lower parse_check.contexts")
        elif spec["kind"] == "backtranslation":
            yield training_estimate(config, f"train_backtranslation ({name}, base {spec['base']})", shape,
                                    "backtranslation_training", *_pair_length(config, "backtranslation_training"))


def job_estimates(config: dict) -> list[Estimate]:
    """The estimate of every kind of GPU job the resolved config runs."""
    return [*generation_estimates(config), *evaluation_estimates(config), *training_estimates(config)]


def misfits(estimates: list[Estimate], gpu_gib: float) -> list[Estimate]:
    return [e for e in estimates if not e.fits(gpu_gib)]


def misfit_text(estimate: Estimate, gpu_gib: float) -> str:
    """Why a job does not fit, and what to change."""
    fixed = estimate.parts["weights"] + estimate.parts["overhead"]
    remedy = ("its weights alone do not fit: a GPU with more memory" if fixed > gpu_gib
              else estimate.remedy)
    return f"does not fit {gpu_gib:g} GiB: {estimate.describe()}; {remedy}"


# --- host memory: converting pickled weights at download


def pickled_models(config: dict) -> list[str]:
    """Models the run downloads as pickled weights (``weights: bin``), converted to safetensors."""
    used = set(_target_models(config)) | {config["generators"][g].get("model") or config["generators"][g].get("base")
                                           for g in _generators(config)}
    return sorted(m for m in used if m in config["models"]
                  and config["models"][m].get("hub", {}).get("weights") == "bin")


def conversion_gib(config: dict, model: str) -> float:
    """Host memory to convert a model's pickles: at most all of its bf16 weights at once (one
    shard is read and written at a time, so this bounds it; bonito-v1's pickles are about 15 GB)."""
    return _gib(shape_of(config, model).parameters * BF16_BYTES)


def host_memory_findings(config: dict, host_gib: float | None) -> list[tuple[str, str, str]]:
    """(status, item, detail) for each pickled model: against the machine's memory and the
    download job's mem_mb request. Status ok, warn or FAIL."""
    request = config["resources"]["download_model"]["mem_mb"] / 1024
    findings = []
    for model in pickled_models(config):
        need = conversion_gib(config, model)
        item = f"convert {model}'s pickled weights"
        if host_gib is not None and host_gib < need:
            findings.append(("FAIL", item, f"needs up to {need:.1f} GiB of host memory, this machine has {host_gib:.1f} GiB"))
        elif request < need:
            findings.append(("warn", item, f"needs up to {need:.1f} GiB of host memory, more than the "
                             f"{request:.1f} GiB resources.download_model.mem_mb requests (a cluster job may be killed)"))
        else:
            findings.append(("ok", item, f"needs up to {need:.1f} GiB of host memory"
                             + (f", this machine has {host_gib:.1f} GiB" if host_gib is not None else "")))
    return findings


def host_memory_gib() -> float | None:
    """This machine's physical memory (GiB), where the OS says."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    except (ValueError, OSError, AttributeError):
        return None


def fit_table(config: dict, gpus_gib: tuple[float, ...] = (24, 40, 80)) -> str:
    """Markdown: each job's estimate and whether it fits GPUs of these sizes (estimates, not
    measured)."""
    head = ["job", "weights", "KV cache", "activations", "overhead", "share", "needs GiB",
            *(f"{g:.0f} GiB" for g in gpus_gib)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in job_estimates(config):
        cells = [e.job, *(f"{e.parts[p]:.1f}" for p in ("weights", "kv_cache", "activations", "overhead")),
                 f"{e.share:g}", f"{e.needs():.1f}", *("fits" if e.fits(g) else "no" for g in gpus_gib)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
