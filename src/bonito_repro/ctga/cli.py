"""`python -m bonito_repro ctga {download,build}`: fetch the Hub datasets once (the one step that
needs the network), then build (or take the published) ctga-v1 offline and write its tables."""
from __future__ import annotations

import argparse
import logging

import pandas as pd

from ..core.config import check_params
from ..core.io import (Manifest, check_writable, parse_params, read_json, setup_logging, write_csv, write_parquet)
from ..core.origins import hub_record, load_origin, pin_origin
from . import build, published

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bonito-repro ctga", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    download = commands.add_parser("download", help="load every Hub dataset once (fills the cache)")
    download.add_argument("--manifest", required=True, help="rows per downloaded dataset (json)")
    run = commands.add_parser("build", help="build ctga-v1 (or take the published set)")
    run.add_argument("--train", required=True, help="ctga training rows (parquet)")
    run.add_argument("--validation", required=True, help="ctga validation rows (parquet)")
    run.add_argument("--p3", required=True, help="the same rows as P3 prompt/target (parquet)")
    run.add_argument("--manifest", required=True, help="counts, drops, params (json)")
    run.add_argument("--comparison", help="rows per task type, built vs the published set (csv); "
                     "reads the config's `published` origin")
    run.add_argument("--num-proc", type=int, default=1, help="processes for rendering")
    run.add_argument("--downloads", help="the manifest of `download`: read the Hub datasets offline, "
                     "from the commits and cached files it records")
    for sub in (download, run):
        sub.add_argument("--params", required=True, help="the config section `ctga` as JSON")
    return parser.parse_args(argv)


def hub_origins(hp: dict, compare: bool) -> dict[str, dict]:
    """The Hub origins a build with these settings reads, by name."""
    origins = {} if hp["use_published"] else dict(hp["p3_datasets"])
    if hp["use_published"] or compare:
        origins["published"] = hp["published"]
    return {name: origin for name, origin in origins.items() if "hub" in origin}


def download(hp: dict, manifest_path: str) -> None:
    manifest = Manifest("ctga_download", params=hp, seed=hp["seed"])
    manifest.extra["hub"] = {}
    for name, origin in hub_origins(hp, hp.get("compare_published", False)).items():
        origin = pin_origin(origin)
        rows = load_origin(origin, "ctga")
        manifest.counts[name] = len(rows)
        manifest.extra["hub"][name] = hub_record(origin, rows)
        log.info("%s: %d rows of %s@%s (%s)", name, len(rows), origin["hub"]["id"],
                 origin["hub"].get("revision", "main"), origin["hub"]["sha"])
    manifest.write(manifest_path)


def downloaded(hp: dict, downloads_path: str, compare: bool) -> dict:
    """The section with each Hub origin replaced by what `download` recorded of it (its commit
    and cached files), so that an offline build reads exactly the downloaded rows."""
    records = read_json(downloads_path)["hub"]
    hp = {**hp, "p3_datasets": dict(hp["p3_datasets"])}
    for name, origin in hub_origins(hp, compare).items():
        record = records.get(name)
        if record is None or any(record.get(k) != v for k, v in origin["hub"].items()):
            key = "ctga.published" if name == "published" else f"ctga.p3_datasets.{name}"
            raise ValueError(f"{key}: {downloads_path} has no download of {origin['hub']} "
                             "(the config changed since; run `ctga download` again)")
        if name == "published":
            hp["published"] = {"hub": record}
        else:
            hp["p3_datasets"][name] = {"hub": record}
    return hp


def run_build(args: argparse.Namespace, hp: dict) -> None:
    if args.comparison and hp["use_published"]:
        raise ValueError("--comparison compares a built set with the published one; "
                         "ctga.use_published is true, so nothing is built")
    manifest = Manifest("ctga", params=hp, seed=hp["seed"])
    if args.downloads:
        hp = downloaded(hp, args.downloads, bool(args.comparison))
        manifest.extra["hub"] = {name: {"id": o["hub"]["id"], "revision": o["hub"].get("revision", "main"),
                                        "sha": o["hub"]["sha"]}
                                 for name, o in hub_origins(hp, bool(args.comparison)).items()}
    result = published.from_published(hp) if hp["use_published"] else build.build(hp, args.num_proc)
    if args.comparison:
        built = pd.concat([result.train, result.validation])
        table = published.compare_task_types(built, published.published_task_types(hp["published"]))
        write_csv(table, args.comparison)
        manifest.extra["published_comparison"] = table.to_dict(orient="records")
    write_parquet(result.train, args.train)
    write_parquet(result.validation, args.validation)
    write_parquet(result.p3, args.p3)
    manifest.counts = result.counts
    manifest.drops = result.drops
    manifest.extra.update(result.details, mode="published" if hp["use_published"] else "built",
                          num_proc=args.num_proc)
    manifest.write(args.manifest)
    log.info("ctga: %d train, %d validation, %d p3 rows; drops %s", len(result.train),
             len(result.validation), len(result.p3), result.drops)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    hp = parse_params(args.params)
    try:
        check_params(hp, "ctga")
        check_writable(args.manifest, *([] if args.command == "download" else
                                        [args.train, args.validation, args.p3, args.comparison]))
        if args.command == "download":
            download(hp, args.manifest)
        else:
            run_build(args, hp)
    except ValueError as error:  # OriginError included: a bad config value or input file
        raise SystemExit(f"ctga: {error}") from None
    return 0
