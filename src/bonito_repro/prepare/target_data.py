"""Target data stage: unannotated passages and labelled test splits, read from their origin
(Hub, embedded demo data, or the user's files) and written as parquet with a manifest.

    python -m bonito_repro target-data unannotated --dataset KEY --origin JSON --out X.parquet --manifest M.json
    python -m bonito_repro target-data test --dataset KEY --origin JSON --fields JSON --labels JSON --out X.parquet --manifest M.json

Every row is checked (``bonito_repro.core.schemas``): an unannotated row holds ``input``, a test row
the dataset file's ``test_fields``; a bad row stops the stage with an error naming the file, the
row and the field. Two test rows with one id (``test_fields.id``) that differ stop it too; rows
repeating another exactly are dropped, or kept under ``test_fields.duplicates: keep`` (the paper's
datasets, scored as the authors loaded them), and counted. The rest of the test split is kept: evaluation samples from it
(``evaluation.max_examples``), and the generation funnel checks synthetic tasks against all of it
for contamination.
"""
from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from typing import Any

import datasets
import pandas as pd

from ..core.config import check_params
from ..core.io import InputError, Manifest, atomic_path, check_writable, setup_logging, write_parquet
from ..core.schemas import SchemaError, canonical_label, label_key, validate_rows
from ..core.origins import embedded_path, load_origin, pin_origin

log = logging.getLogger(__name__)


def describe_origin(origin: dict, kind: str) -> str:
    """How errors name an origin: the file path, or the Hub id, config, split and revision."""
    if "hub" in origin:
        hub = origin["hub"]
        return (f"hub {hub['id']} config={hub.get('config')} split={hub.get('split', 'train')} "
                f"revision={hub.get('revision')}")
    if "embedded" in origin:
        return str(embedded_path(kind, origin["embedded"]))
    return ", ".join(origin["files"]) if isinstance(origin.get("files"), list) else str(origin.get("files"))


def load_parts(origin: dict, kind: str) -> list[tuple[str, datasets.Dataset]]:
    """The rows of an origin, one part per file, so that errors name the file and its row."""
    if isinstance(origin.get("files"), list):
        return [(path, load_origin({"files": path}, kind)) for path in origin["files"]]
    return [(describe_origin(origin, kind), load_origin(origin, kind))]


def unannotated_passages(origin: dict, dataset: str) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """Stripped passages of an origin, with counts and drops by reason (null or blank input)."""
    passages: list[str] = []
    drops: Counter[str] = Counter()
    rows_in = 0
    for where, part in load_parts(origin, "unannotated"):
        rows_in += validate_rows(part, dataset, "unannotated", where, columns=part.column_names)
        for value in part["input"]:
            text = (value or "").strip()
            if not text:
                drops["null_input" if value is None else "blank_input"] += 1
                continue
            passages.append(text)
    if not passages:
        raise SchemaError(f"{describe_origin(origin, 'unannotated')}: no passage left of {rows_in} rows "
                          f"(drops: {dict(drops)})")
    duplicates = len(passages) - len(set(passages))
    counts = {"rows_in": rows_in, "rows_out": len(passages), "exact_duplicates_kept": duplicates}
    return passages, counts, dict(drops)


def label_distribution(rows: datasets.Dataset, labels: dict | None) -> dict[str, Any]:
    if not labels or labels["field"] not in rows.column_names:
        return {}
    raw = Counter(label_key(v) for v in rows[labels["field"]])
    canonical = Counter(canonical_label(v, labels) for v in rows[labels["field"]])
    return {"field": labels["field"], "raw": dict(sorted(raw.items())),
            "canonical": dict(sorted(canonical.items()))}


def repeated_rows(parts: list[tuple[str, datasets.Dataset]], id_field: str | None) -> list[int]:
    """Positions (over the parts in order) of the rows that repeat an earlier row exactly. Two
    rows sharing ``id_field``'s value but differing stop, naming the id, and the file and row of
    each: which of them is the test example is the data's author's to say."""
    first_of_row: set[str] = set()
    first_of_id: dict[str, tuple[str, int, str]] = {}
    repeats, offset = [], 0
    for where, part in parts:
        has_id = id_field is not None and id_field in part.column_names
        for number, row in enumerate(part):
            key = json.dumps(row, sort_keys=True, default=str, ensure_ascii=False)
            if has_id and row[id_field] is not None:
                row_id = json.dumps(row[id_field], default=str)
                seen_where, seen_number, seen_key = first_of_id.setdefault(row_id, (where, number, key))
                if seen_key != key:
                    raise SchemaError(f"{where}: row {number} (0-based): {id_field} {row[id_field]!r} is also the id of "
                                      f"{seen_where}: row {seen_number}, a different row; an id names one test "
                                      "example (remove or renumber one of them)")
            if key in first_of_row:
                repeats.append(offset + number)
            first_of_row.add(key)
        offset += len(part)
    return repeats


def load_test_split(origin: dict, dataset: str, fields: dict,
                    labels: dict | None) -> tuple[datasets.Dataset, dict[str, Any], dict[str, int]]:
    """The test split, validated against the dataset's ``test_fields`` (Hub schema kept as is),
    its counts and its drops: rows repeating another exactly are kept (``duplicates: keep``, the
    paper's datasets) or dropped (``drop``, the default), counted either way."""
    parts = []
    for where, part in load_parts(origin, "test"):
        validate_rows(part, dataset, "test", where, test_fields=fields, labels=labels,
                      columns=part.column_names)
        parts.append((where, part))
    rows = parts[0][1] if len(parts) == 1 else datasets.concatenate_datasets([part for _, part in parts])
    if len(rows) == 0:
        raise SchemaError(f"{describe_origin(origin, 'test')}: the test split of {dataset!r} has no rows")
    repeats = repeated_rows(parts, fields.get("id"))
    counts: dict[str, Any] = {"rows_in": len(rows)}
    drops = {}
    if fields.get("duplicates", "drop") == "drop":
        repeated = set(repeats)
        rows = rows.select([i for i in range(len(rows)) if i not in repeated])
        drops = {"exact_duplicate": len(repeats)} if repeats else {}
    else:
        counts["exact_duplicates_kept"] = len(repeats)
    counts.update(rows_out=len(rows), label_distribution=label_distribution(rows, labels))
    return rows, counts, drops


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error}): {text!r}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bonito-repro target-data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="kind", required=True)
    for kind in ("unannotated", "test"):
        sub = commands.add_parser(kind)
        sub.add_argument("--dataset", required=True, help="dataset key (config datasets.KEY)")
        sub.add_argument("--origin", required=True, type=_json_arg,
                         help="where the rows come from, as JSON: {hub: {...}}, {embedded: NAME} or {files: ...}")
        sub.add_argument("--out", required=True, help="output parquet")
        sub.add_argument("--manifest", required=True, help="output manifest JSON")
    test = commands.choices["test"]
    test.add_argument("--fields", required=True, type=_json_arg,
                      help="the dataset file's test_fields as JSON: {required: {...}, optional: {...}, label: FIELD}")
    test.add_argument("--labels", type=_json_arg, default=None,
                      help="the dataset file's labels as JSON (null for extractive QA)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_args(argv)
    params = {"dataset": args.dataset, "origin": args.origin}
    if args.kind == "test":
        params.update(fields=args.fields, labels=args.labels)
    manifest = Manifest(f"data {args.kind}", params=params)
    manifest.extra["origin"] = describe_origin(args.origin, args.kind)
    try:
        check_writable(args.out, args.manifest)
        args.origin = pin_origin(args.origin)  # a Hub origin: every read below is of this commit
        if args.kind == "unannotated":
            passages, counts, drops = unannotated_passages(args.origin, args.dataset)
            write_parquet(pd.DataFrame({"input": pd.Series(passages, dtype=str)}), args.out)
        else:
            fields = check_params(args.fields, "test_fields", flag="--fields")
            rows, counts, drops = load_test_split(args.origin, args.dataset, fields, args.labels)
            with atomic_path(args.out) as tmp:
                rows.to_parquet(str(tmp))
    except InputError as error:  # a config value, an input file or a row
        log.error("%s", error)
        return 1
    manifest.counts, manifest.drops = counts, drops
    manifest.extra["hub"] = args.origin.get("hub")  # id, config, split, revision and the commit sha
    manifest.write(args.manifest)
    log.info("%s %s: %d rows in, %d out, drops %s", args.kind, args.dataset, counts["rows_in"],
             counts["rows_out"], drops or "none")
    return 0
