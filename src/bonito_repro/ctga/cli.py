"""`python -m bonito_repro ctga {download,build}`: fetch the Hub sources once (the one step that
needs the network), then build (or take the published) ctga-v1 offline and write its tables."""
from __future__ import annotations

import argparse
import logging

import pandas as pd

from ..config import check_params
from ..io import Manifest, parse_params, setup_logging, write_csv, write_parquet
from ..sources import load_source
from . import build, published

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bonito_repro ctga", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    download = commands.add_parser("download", help="load every Hub source once (fills the cache)")
    download.add_argument("--manifest", required=True, help="rows per downloaded source (json)")
    run = commands.add_parser("build", help="build ctga-v1 (or take the published set)")
    run.add_argument("--train", required=True, help="ctga training rows (parquet)")
    run.add_argument("--validation", required=True, help="ctga validation rows (parquet)")
    run.add_argument("--p3", required=True, help="the same rows as P3 prompt/target (parquet)")
    run.add_argument("--manifest", required=True, help="counts, drops, params (json)")
    run.add_argument("--comparison", help="rows per task type, built vs the published set (csv); "
                     "reads the config's `published` source")
    run.add_argument("--num-proc", type=int, default=1, help="processes for rendering")
    for sub in (download, run):
        sub.add_argument("--params", required=True, help="the config section `ctga` as JSON")
    return parser.parse_args(argv)


def hub_specs(hp: dict, compare: bool) -> dict[str, dict]:
    """The Hub sources a build with these settings reads, by name."""
    specs = {} if hp["use_published"] else dict(hp["sources"])
    if hp["use_published"] or compare:
        specs["published"] = hp["published"]
    return {name: spec for name, spec in specs.items() if "hub" in spec}


def download(hp: dict, manifest_path: str) -> None:
    manifest = Manifest("ctga_download", params=hp, seed=hp["seed"])
    for name, spec in hub_specs(hp, hp.get("compare_published", False)).items():
        manifest.counts[name] = len(load_source(spec, "ctga"))
        log.info("%s: %d rows", name, manifest.counts[name])
    manifest.write(manifest_path)


def run_build(args: argparse.Namespace, hp: dict) -> None:
    if args.comparison and hp["use_published"]:
        raise ValueError("--comparison compares a built set with the published one; "
                         "ctga.use_published is true, so nothing is built")
    manifest = Manifest("ctga", params=hp, seed=hp["seed"])
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
        if args.command == "download":
            download(hp, args.manifest)
        else:
            run_build(args, hp)
    except ValueError as error:  # SourceError included: a bad config value or input file
        raise SystemExit(f"ctga: {error}") from None
    return 0
