"""Synthetic tasks for one (generator, dataset), as the workflow writes them: the kept tasks
(parquet), every generation with its funnel reason, bagel's prompt formats and a manifest with
the funnel counts (docs/protocol.md, section 6).

    python -m bonito_repro generate --dataset KEY --task-type T --passages P --test T
        --model DIR [--adapter DIR] --params JSON --shards DIR --out PARQUET --manifest JSON
    python -m bonito_repro generate --published ORIGIN ...   (a published set through the funnel)

A killed job started again with the same arguments reuses the shards finished under --shards.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import pandas as pd

from ..config import ConfigError, check_params
from ..io import Manifest, check_writable, parse_params, read_parquet, set_threads, setup_logging, write_parquet
from ..origins import pin_origin
from ..tasks import task_type_name
from .funnel import funnel_counts, probe_texts, run_funnel
from .inputs import fit_passages, load_published, model_positions, read_passages
from .synthetic_tasks import Generation, run_generation

log = logging.getLogger(__name__)


class EmptySyntheticSetError(RuntimeError):
    """No generated task survived the funnel: adapting on nothing would silently be a no-op."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bonito_repro generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="dataset key (names errors and the manifest)")
    parser.add_argument("--task-type", required=True, help="task type code or full name")
    parser.add_argument("--passages", type=Path, help="unannotated parquet (column input)")
    parser.add_argument("--test", type=Path, required=True, help="test split parquet (contamination probes)")
    parser.add_argument("--model", type=Path, help="base or full generator model directory")
    parser.add_argument("--adapter", type=Path, help="PEFT adapter of the generator on --model")
    parser.add_argument("--published", help="instead of generating: a published set's origin (JSON)")
    parser.add_argument("--params", required=True, help="the config's generation section (JSON)")
    parser.add_argument("--shards", type=Path, help="scratch directory of finished shards (resume)")
    parser.add_argument("--out", type=Path, required=True, help="kept tasks (parquet)")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--records", type=Path, help="every generation with its funnel reason (parquet)")
    parser.add_argument("--formats", type=Path, help="directory for the four bagel prompt formats (JSONL)")
    parser.add_argument("--threads", type=int, default=None)
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
    records = run_funnel(load_published(origin), params, probe_texts(test_rows))
    kept = records[records["kept"]]
    rows = [{"input": i, "output": o, "context_id": None} for i, o in zip(kept["input"], kept["output"])]
    result = Generation(rows=rows, records=records, summary=funnel_counts(records, params), shards=None)
    return result, {}, {"provenance": {"published": origin}}


def from_generator(args: argparse.Namespace, params: dict, test_rows: list[dict]) -> tuple[Generation, dict, dict]:
    """The generator's tasks for the passages: (the tasks, passage counts, their provenance and
    shards)."""
    if args.passages is None or args.model is None:
        raise SystemExit("generate: --passages and --model are required unless --published is given")
    texts, ids, counts = read_passages(args.passages, params["max_passages"], params["seed"])
    limit = model_positions(args.model)
    if limit:  # a passage too long for the model's context is dropped or split, as configured
        from ..models import load_tokenizer

        texts, ids, fitted = fit_passages(texts, ids, args.task_type, load_tokenizer(args.model), limit, params)
        counts.update(fitted)
    result = run_generation(texts, args.task_type, params, model_dir=args.model, adapter_dir=args.adapter,
                            context_ids=ids, test_rows=test_rows, shards_dir=args.shards)
    provenance = {"model": str(args.model), "adapter": str(args.adapter) if args.adapter else None}
    return result, counts, {"provenance": provenance, "shards": result.shards}


def require_tasks(dataset: str, result: Generation) -> None:
    """Stop when no task survived the funnel, showing the first generations."""
    if result.rows:
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
                   extra: dict, formats: dict[str, int]) -> None:
    summary = result.summary
    if manifest.params["long_passages"] == "drop":
        manifest.drop("long_passage", counts.get("long_passages", 0))
    for reason, removed in summary["removed"].items():
        manifest.drop(reason, removed)
    manifest.counts = {**counts, "generated": summary["funnel"]["generated"], "kept": summary["kept"]}
    manifest.extra = {"dataset": args.dataset, "task_type": task_type_name(args.task_type), **extra,
                      **summary, "formats": formats}
    manifest.write(args.manifest)


def main(argv: list[str] | None = None) -> int:
    # OpenMP's default spin-waiting makes torch's threads up to 16x slower on a busy CPU (measured
    # on 2 shared cores); it is read once, when torch loads, so set it before set_threads does
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = _parser().parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    params = generation_params(args.params)
    check_writable(args.out, args.manifest, args.records, args.formats)
    manifest = Manifest("generate", params=params, seed=params["seed"])
    test_rows = read_parquet(args.test).to_pylist()
    result, counts, extra = (from_published if args.published else from_generator)(args, params, test_rows)
    require_tasks(args.dataset, result)
    formats = write_tasks(args, result)
    write_manifest(manifest, args, result, counts, extra, formats)
    summary = result.summary
    log.info("%s: kept %d of %d generated tasks; funnel %s", args.dataset, summary["kept"],
             summary["funnel"]["generated"], summary["funnel"])
    return 0
