"""Synthetic tasks from unannotated text: the Bonito package's ``generate_tasks`` at workflow
scale (docs/protocol.md, section 6, D5, D6, D7).

Each passage becomes the generator kind's prompt for the dataset's task type (``kinds.py``: the
Bonito input, or the prompted generators' request); a backend (transformers, vLLM or an
endpoint) samples ``n`` completions per passage, shard by shard (``shards.py``); the funnel
(``funnel.py``) parses, checks and counts every one.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..runtime.backends import Backend, Sampling, make_backend
from ..core.config import check_params
from ..core.io import fingerprint
from ..core.tasks import task_type_name
from .funnel import funnel_counts, probe_texts, run_funnel
from .kinds import KINDS, PAPER_KIND
from .shards import generate_raw
from .inputs import position_limit

log = logging.getLogger(__name__)


@dataclass
class Generation:
    rows: list[dict]          # kept tasks: input, output, context_id
    records: pd.DataFrame     # every generation: raw text, parsed sides, flags, reason, kept
    summary: dict             # funnel counts (funnel.funnel_counts)
    shards: dict | None       # total, reused, generated, seconds, passages_per_second (None: a published set)


def prompt_lengths(model_dir: str | Path, prompts: Sequence[str], wrapper: str = "none",
                   reply_prefix: str = "") -> list[int]:
    from ..runtime.backends import encode_for_generation
    from ..runtime.models import load_tokenizer

    return [len(ids) for ids in encode_for_generation(load_tokenizer(model_dir), list(prompts), wrapper, reply_prefix)]


def kind_positions(kind: str, task_type: str, tokenizer, max_new_tokens: int):
    """``positions(passages)`` for ``inputs.fit_passages``: what each passage needs of the
    model's context under the kind's prompt, as the backend encodes it, with the new tokens."""
    from ..runtime.backends import encode_for_generation

    spec = KINDS[kind]

    def positions(texts: list[str]) -> list[int]:
        prompts = [spec.prompt(text, task_type) for text in texts]
        return [len(ids) + max_new_tokens
                for ids in encode_for_generation(tokenizer, prompts, spec.wrapper, spec.reply_prefix())]
    return positions


def check_lengths(model_dir: str | Path, prompts: Sequence[str], context_ids: Sequence[int],
                  max_new_tokens: int, wrapper: str = "none", reply_prefix: str = "",
                  max_model_len: int | None = None) -> int:
    """The longest prompt (as the backend encodes it) plus the new tokens (vLLM's max_model_len);
    stops naming the passage when that does not fit the model's positions (cut to
    ``max_model_len``, the config's ``generation.max_model_len``)."""
    lengths = prompt_lengths(model_dir, prompts, wrapper, reply_prefix)
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    need = lengths[longest] + max_new_tokens
    limit = position_limit(model_dir, max_model_len)
    if limit and need > limit:
        raise ValueError(f"passage context_id={context_ids[longest]} needs {lengths[longest]} prompt tokens "
                         f"+ {max_new_tokens} new tokens > the {limit} positions a generation may take "
                         f"(the model's, cut to generation.max_model_len {max_model_len}; {model_dir})")
    return need


def run_generation(texts: Sequence[str], task_type: str, params: dict, *,
                   model_dir: str | Path | None = None, adapter_dir: str | Path | None = None,
                   backend: str | Backend | None = None, context_ids: Sequence[int] | None = None,
                   test_rows: Sequence[dict] = (), shards_dir: str | Path | None = None,
                   embed=None, kind: str = PAPER_KIND, device: str) -> Generation:
    """Generate, check and count tasks for ``texts`` (see ``generate_tasks``) on ``device``;
    ``params`` is the config's ``generation`` section, checked against its schema; ``kind`` the
    generator kind (``generate.kinds``), which says what is asked and how replies are parsed."""
    check_params(params, "generation")
    backend = backend or params["backend"]
    texts = list(texts)
    context_ids = list(range(len(texts))) if context_ids is None else [int(c) for c in context_ids]
    spec = KINDS[kind]
    prompts = [spec.prompt(text, task_type) for text in texts]
    sampling = Sampling(n=params["n"], temperature=params["temperature"], top_p=params["top_p"],
                        max_new_tokens=params["max_new_tokens"])
    if isinstance(backend, str):
        if model_dir is None:
            raise ValueError("generate_tasks: model_dir is required with a named backend")
        shaping = {k: params[k] for k in ("n", "temperature", "top_p", "max_new_tokens", "seed", "bf16")}
        shaping["backend"] = backend
        if backend == "transformers":  # its batches, hence its random stream, follow the budget
            shaping["token_budget"] = params["token_budget"]
        key = json.dumps({"task_type": task_type_name(task_type), "model": fingerprint(model_dir),
                          "adapter": fingerprint(adapter_dir), **_kind_key(kind), **shaping}, sort_keys=True)

        def factory() -> Backend:
            max_len = check_lengths(model_dir, prompts, context_ids, params["max_new_tokens"], spec.wrapper,
                                    spec.reply_prefix(), params["max_model_len"])
            return make_backend(backend, model_dir, adapter_dir, sampling, token_budget=params["token_budget"],
                                max_model_len=max_len, seed=params["seed"], bf16=params["bf16"],
                                wrapper=spec.wrapper, reply_prefix=spec.reply_prefix(), device=device,
                                engine=params["vllm"])
    else:
        given = backend
        # a backend may name what else shapes its answers (an endpoint: its URL and model)
        key = json.dumps({"task_type": task_type_name(task_type), "backend": type(given).__name__,
                          **getattr(given, "identity", {}), **_kind_key(kind),
                          **{k: params[k] for k in ("n", "temperature", "top_p", "max_new_tokens", "seed")}},
                         sort_keys=True)

        def factory() -> Backend:
            return given

    # a backend passed in belongs to the caller, who may use it again
    raw, shards = generate_raw(prompts, context_ids, params, factory, shards_dir, key,
                               close=isinstance(backend, str))
    # raw holds n generations of each prompt in prompt order; by position, since the pieces of a
    # split passage share its context_id
    raw["passage"] = [text for text in texts for _ in range(params["n"])]
    records = run_funnel(raw, params, probe_texts(test_rows), embed=embed, task_type=task_type,
                         device=device, parse=spec.parse)
    summary = funnel_counts(records, params)
    kept = records[records["kept"]]
    rows = [{"input": i, "output": o, "context_id": int(c)}
            for i, o, c in zip(kept["input"], kept["output"], kept["context_id"])]
    return Generation(rows=rows, records=records, summary=summary, shards=shards)


def _kind_key(kind: str) -> dict:
    """What a shard's name records of the kind: nothing for Bonito (so shards written before
    kinds existed stay valid), else the kind and its reply prefix (its prompts are hashed with
    each shard)."""
    return {} if kind == PAPER_KIND else {"kind": kind, "reply_prefix": KINDS[kind].reply_prefix()}


class SyntheticTasks(list):
    """The kept tasks (dicts with ``input``, ``output``, ``context_id``), a plain list, with
    ``counts``, the funnel's counts as a synthetic set's manifest has them (``funnel``: every
    generation by its first failed check; ``removed`` by reason; ``kept``), and ``generator``,
    what generated them (a folder, or a Hub id with its revision and commit)."""

    def __init__(self, rows: list[dict], counts: dict, generator: dict):
        super().__init__(rows)
        self.counts = counts
        self.generator = generator


def _passages(texts, column: str | None) -> list[str]:
    """A list of strings, or a ``datasets.Dataset`` and its ``column``, as a list of strings."""
    if hasattr(texts, "column_names"):
        if column not in texts.column_names:
            raise ValueError(f"generate_tasks: column={column!r} is not a column of the dataset "
                             f"({texts.column_names})")
        texts = texts[column]
    elif column is not None:
        raise ValueError("generate_tasks: column= goes with a datasets.Dataset, not a list of strings")
    texts = list(texts)
    bad = next((i for i, text in enumerate(texts) if not isinstance(text, str) or not text.strip()), None)
    if bad is not None:
        raise ValueError(f"generate_tasks: passage {bad} is not a non-empty string: {texts[bad]!r}")
    return texts


def generate_tasks(texts, task_type: str, params: dict | None = None, *, generator: str | Path | None = None,
                   column: str | None = None, revision: str = "main", cache_dir: str | Path | None = None,
                   model_dir: str | Path | None = None, adapter_dir: str | Path | None = None,
                   backend: str | Backend | None = None, shards_dir: str | Path | None = None,
                   test_rows: Sequence[dict] = (), kind: str | None = None, device: str) -> SyntheticTasks:
    """Synthetic tasks for unannotated ``texts`` (a list of strings, or a ``datasets.Dataset``
    and its ``column``): one dict per kept task with ``input`` (instruction, passage filled in),
    ``output`` (response) and ``context_id`` (index into ``texts``), exactly the rows the
    workflow writes, in a list that also carries the funnel's counts (``.counts``) and what
    generated them (``.generator``).

    ``task_type`` is a code (``ynqa``) or a full name. ``generator`` is a model folder, a
    generator the config declares (``bonito_v1``) or a Hub id (``BatsResearch/bonito-v1``, read
    at ``revision``); a Hub model is downloaded once per commit into ``cache_dir`` (see
    ``generate.from_hub``). Or give ``model_dir`` (a model folder) and ``adapter_dir`` (a PEFT
    adapter on it, a trained Bonito). ``params`` is a config's ``generation`` section (sampling,
    batching, filters); by default the paper's, from the packaged config.yaml. ``backend``
    overrides ``params["backend"]``: ``"transformers"``, ``"vllm"`` (in the vLLM environment) or
    an object with the ``Backend`` interface. ``device``, ``"cuda"`` or ``"cpu"``, is where it
    computes: never guessed. With ``shards_dir`` a rerun skips the shards already generated.
    ``params["filters"]`` turns on dropping exact/near duplicates and tasks matching
    ``test_rows`` (``bonito_repro.generate.funnel``). ``kind`` is the generator kind (``bonito``,
    or ``prompted`` for an instruction-tuned model asked under its chat template); a declared
    generator brings its own."""
    from ..core.config import declared_config
    from .from_hub import resolve_generator

    texts = _passages(texts, column)
    config = declared_config() if params is None or generator is not None else None
    params = config["generation"] if params is None else params
    if generator is not None:
        if model_dir is not None:
            raise ValueError("generate_tasks: give generator= or model_dir=, not both")
        resolved = resolve_generator(generator, config["generators"], config["models"], revision=revision,
                                     cache_dir=cache_dir)
        model_dir, kind, source = resolved.model_dir, kind or resolved.kind, resolved.source
    else:
        source = {"path": str(Path(model_dir).resolve())} if model_dir is not None else {"backend": repr(backend)}
        if adapter_dir is not None:
            source["adapter"] = str(Path(adapter_dir).resolve())
    result = run_generation(texts, task_type, params, model_dir=model_dir, adapter_dir=adapter_dir,
                            backend=backend, test_rows=test_rows, shards_dir=shards_dir, kind=kind or PAPER_KIND,
                            device=device)
    if not result.rows:
        log.warning("no task survived the funnel: %s", result.summary["funnel"])
    return SyntheticTasks(result.rows, result.summary, source)
