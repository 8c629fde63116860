"""Synthetic tasks for one (generator, dataset), as the workflow writes them: the kept tasks
(parquet), every generation with its funnel reason, bagel's prompt formats and a manifest with
the funnel counts (docs/protocol.md, section 6).

    python -m bonito_repro generate --dataset KEY --task-type T --passages P [--test T]
        [--kind bonito|prompted] --model DIR [--adapter DIR] --params JSON --shards DIR
        --out PARQUET --manifest JSON
    python -m bonito_repro generate --kind endpoint --endpoint SPEC ...   (an OpenAI-compatible endpoint)
    python -m bonito_repro generate --published ORIGIN ...   (a published set through the funnel)

A killed job started again with the same arguments reuses the shards finished under --shards.
An alternative generator (kinds prompted and endpoint) that keeps no task writes an empty set
and says so in its manifest (`empty_is_result`): adaptation and evaluation then skip the cell.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import pandas as pd

from ..core.config import ConfigError, check_params
from ..core.errors import InputError
from ..core.generators import GENERATOR_KINDS
from ..runtime.device import add_device_flag, stage_device
from ..core.io import (Manifest, check_writable, parse_params, read_parquet, set_threads, setup_logging, write_parquet)
from ..core.origins import pin_origin
from ..core.tasks import task_type_name
from .funnel import funnel_counts, probe_texts, run_funnel
from .inputs import fit_passages, load_published, position_limit, read_passages
from .kinds import KINDS, PAPER_KIND, PUBLISHED
from .synthetic_tasks import Generation, kind_positions, run_generation

log = logging.getLogger(__name__)


class EmptySyntheticSetError(InputError):
    """No generated task survived the funnel: adapting on nothing would silently be a no-op. The
    command stops in one line (an input error: the generator or the data, not the code) after
    writing the manifest, every drop counted."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bonito-repro generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="dataset key (names errors and the manifest)")
    parser.add_argument("--task-type", required=True, help="task type code or full name")
    parser.add_argument("--passages", type=Path, help="unannotated parquet (column input)")
    parser.add_argument("--test", type=Path,
                        help="test split parquet (contamination probes); none for a dataset without one")
    parser.add_argument("--kind", choices=sorted(KINDS), default=PAPER_KIND,
                        help="generator kind: what is asked and how replies are parsed (generate.kinds)")
    parser.add_argument("--model", type=Path, help="base or full generator model directory")
    parser.add_argument("--endpoint", help="kind endpoint: the generator's config entry (JSON)")
    parser.add_argument("--adapter", type=Path, help="PEFT adapter of the generator on --model")
    parser.add_argument("--published", help="instead of generating: a published set's origin (JSON)")
    parser.add_argument("--params", required=True, help="the config's generation section (JSON)")
    parser.add_argument("--shards", type=Path, help="scratch directory of finished shards (resume)")
    parser.add_argument("--out", type=Path, required=True, help="kept tasks (parquet)")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--records", type=Path, help="every generation with its funnel reason (parquet)")
    parser.add_argument("--formats", type=Path, help="directory for the four bagel prompt formats (JSONL)")
    parser.add_argument("--threads", type=int, default=None)
    add_device_flag(parser)
    return parser


def generation_params(text: str) -> dict:
    """The config's generation section from --params, checked against its schema."""
    try:
        return check_params(parse_params(text), "generation")
    except ConfigError as error:
        raise SystemExit(f"generate: {error}") from None


def from_published(args: argparse.Namespace, params: dict, test_rows: list[dict]) -> tuple[Generation, dict, dict]:
    """A published set through the funnel: (its tasks, no passage counts, their provenance)."""
    origin = pin_origin(parse_params(args.published))  # the manifest records the commit read
    records = run_funnel(load_published(origin), params, probe_texts(test_rows), task_type=args.task_type,
                         device=args.device)
    kept = records[records["kept"]]
    rows = [{"input": i, "output": o, "context_id": None} for i, o in zip(kept["input"], kept["output"])]
    result = Generation(rows=rows, records=records, summary=funnel_counts(records, params), shards=None)
    return result, {}, {"provenance": {"published": origin}}


def prompting_kinds(local_model: bool) -> list[str]:
    """The kinds that prompt a model here (given by --model) or served elsewhere (--endpoint)."""
    return [kind for kind in KINDS if GENERATOR_KINDS[kind].runs_model == local_model]


def from_generator(args: argparse.Namespace, params: dict, test_rows: list[dict]) -> tuple[Generation, dict, dict]:
    """The generator's tasks for the passages: (the tasks, passage counts, their provenance and
    shards)."""
    local, served = prompting_kinds(local_model=True), prompting_kinds(local_model=False)
    if args.passages is None or (args.model is None) == (args.endpoint is None):
        raise SystemExit(f"generate: --passages and one of --model (kinds {', '.join(local)}) or --endpoint "
                         f"(kind {', '.join(served)}) are required unless --published is given")
    if (args.endpoint is not None) != (args.kind in served):
        raise SystemExit(f"generate: --endpoint goes with --kind {' or '.join(served)} (got --kind {args.kind})")
    texts, ids, counts = read_passages(args.passages, params["max_passages"], params["seed"])
    if args.endpoint is None:
        limit = position_limit(args.model, params["max_model_len"])
        if limit:  # a passage too long for the model's context under the kind's prompt is dropped or split
            from ..runtime.models import load_tokenizer

            tokenizer = load_tokenizer(args.model)
            texts, ids, fitted = fit_passages(texts, ids, tokenizer, limit, params,
                                              kind_positions(args.kind, args.task_type, tokenizer,
                                                             params["max_new_tokens"]))
            counts.update(fitted)
        result = run_generation(texts, args.task_type, params, model_dir=args.model, adapter_dir=args.adapter,
                                context_ids=ids, test_rows=test_rows, shards_dir=args.shards, kind=args.kind,
                                device=args.device)
        provenance = {"model": str(args.model), "adapter": str(args.adapter) if args.adapter else None}
        return result, counts, {"provenance": provenance, "shards": result.shards}
    from ..runtime.backends import Sampling
    from .endpoint import EndpointBackend

    spec = parse_params(args.endpoint)
    endpoint = EndpointBackend(spec, Sampling(n=params["n"], temperature=params["temperature"],
                                              top_p=params["top_p"], max_new_tokens=params["max_new_tokens"]))
    try:
        result = run_generation(texts, args.task_type, params, backend=endpoint, context_ids=ids,
                                test_rows=test_rows, shards_dir=args.shards, kind=args.kind,
                                device=args.device)
    finally:
        log.info("%d requests sent to %s", endpoint.requests, endpoint.url)
    shards = {**result.shards, "requests": endpoint.requests}
    return result, counts, {"provenance": endpoint.identity, "shards": shards}


def require_tasks(dataset: str, kind: str, result: Generation) -> None:
    """Stop when no task survived the funnel, showing the first generations, unless the kind is
    an alternative generator, for which an empty set is a result."""
    if result.rows:
        return
    if GENERATOR_KINDS[kind].alternative:
        summary = result.summary
        log.warning("%s: no task kept (0 of %d generated; removed: %s): the set is empty, and adaptation "
                    "and evaluation of this cell are skipped", dataset, summary["funnel"]["generated"],
                    summary["removed"])
        return
    summary = result.summary
    examples = [g[:200] for g in result.records.get("generation", pd.Series(dtype=str)).head(3)]
    raise EmptySyntheticSetError(
        f"dataset {dataset!r}: no synthetic task survived the funnel {summary['funnel']} "
        f"(removed: {summary['removed']}); first generations: {examples!r}. Adapting on an empty "
        f"set would be a silent no-op: check the generator (is it trained?) and generation.max_new_tokens")


def write_tasks(args: argparse.Namespace, result: Generation) -> dict[str, int]:
    """The kept tasks, every record where --records asks, and bagel's formats where --formats
    asks; returns the rows of each format file."""
    tasks = pd.DataFrame(result.rows, columns=["input", "output", "context_id"]).astype({"context_id": "Int64"})
    write_parquet(tasks, args.out)
    if args.records:
        write_parquet(result.records.drop(columns=["passage"]), args.records)
    if not args.formats:
        return {}
    from .formats import export_formats

    return export_formats(result.rows, args.formats, dataset=args.dataset)


def write_manifest(manifest: Manifest, args: argparse.Namespace, result: Generation, counts: dict,
                   extra: dict, formats: dict[str, int], stopped: str | None = None) -> None:
    summary = result.summary
    if manifest.params["long_passages"] == "drop":
        manifest.drop("long_passage", counts.get("long_passages", 0))
    for reason, removed in summary["removed"].items():
        manifest.drop(reason, removed)
    manifest.counts = {**counts, "generated": summary["funnel"]["generated"], "kept": summary["kept"]}
    kind = PUBLISHED if args.published else args.kind
    manifest.extra = {"dataset": args.dataset, "task_type": task_type_name(args.task_type), "kind": kind,
                      "empty_is_result": not result.rows and GENERATOR_KINDS[kind].alternative,
                      **extra, "contamination_probes": str(args.test) if args.test else None,
                      **summary, "formats": formats, **({"stopped": stopped} if stopped else {})}
    manifest.write(args.manifest)


def main(argv: list[str] | None = None) -> int:
    # OpenMP's default spin-waiting makes torch's threads up to 16x slower on a busy CPU (measured
    # on 2 shared cores); it is read once, when torch loads, so set it before set_threads does
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = _parser().parse_args(argv)
    setup_logging()
    stage_device(args.device, f"generate {args.dataset} ({args.published and 'published' or args.model})")
    set_threads(args.threads)
    params = generation_params(args.params)
    check_writable(args.out, args.manifest, args.records, args.formats)
    manifest = Manifest("generate", params=params, seed=params["seed"])
    test_rows = read_parquet(args.test).to_pylist() if args.test else []
    result, counts, extra = (from_published if args.published else from_generator)(args, params, test_rows)
    try:
        require_tasks(args.dataset, PUBLISHED if args.published else args.kind, result)
    except EmptySyntheticSetError as error:  # the funnel's counts are what tell why: kept, as the records
        if args.records:
            write_parquet(result.records.drop(columns=["passage"]), args.records)
        write_manifest(manifest, args, result, counts, extra, {}, stopped=str(error))
        raise EmptySyntheticSetError(f"{error}; every drop is counted in {args.manifest}") from None
    formats = write_tasks(args, result)
    write_manifest(manifest, args, result, counts, extra, formats)
    summary = result.summary
    log.info("%s: kept %d of %d generated tasks; funnel %s", args.dataset, summary["kept"],
             summary["funnel"]["generated"], summary["funnel"])
    return 0
