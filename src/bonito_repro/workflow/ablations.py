"""This project's reading of the paper's three ablations, as cells of evaluation results, and the
jobs only they need. No available source gives the paper's sizes, targets or designs: the ones
here are this project's choices (docs/ablations.md), and every figure and caption says so
(reporting.ablation_figures.READING).

Naming (docs/ablations.md): a source is what a target is adapted on, as in the main grid, plus
- ``{generator}.n{N}``: a seeded subset of N tasks of the generator's set for a dataset; subsets
  are nested (a bigger one contains the smaller), and a size at or above the set's length is an
  alias of the full set (its adapter and evaluation copy the full set's, nothing is trained);
- ``tapt+{generator}``: TAPT on the dataset's text, then adaptation on the generator's tasks from
  that adapter;
and an evaluation on a dataset other than the one adapted on lies at
``eval/{target}/{source}/{train_dataset}/on_{test_dataset}.json`` (in-domain: the main grid's
``eval/{target}/{source}/{dataset}.json``). A cell that coincides with a main-grid job is that job.

``ablation_cells`` lists every cell of a figure with the files its numbers come from; the rules
(rules/ablations.smk) request those files and the figure job reads only them.

    python -m bonito_repro ablations subsample --rows SET.parquet --size N --seed S --out SUB.parquet --manifest M
    python -m bonito_repro ablations unless-alias --subset M [--copy SRC DST]... -- COMMAND...
    bonito-repro ablations jobs --scale paper|local|smoke
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core import layout
from ..core.config import load_scale
from ..core.generators import generator_label
from ..core.io import Manifest, copy_atomic, read_json, read_parquet, setup_logging, write_json, write_parquet
from ..core.sources import TAPT, ZERO_SHOT, chain_source, chained_generator, parse_size_source, size_source
from ..core.tasks import task_type_code
from ..reporting.ablation_figures import READING

log = logging.getLogger(__name__)

# figure -> the ablation (Snakemake target) it belongs to
FIGURES = {"generators": "generators", "generators_matched": "generators", "size": "size",
           "chain": "domain", "transfer": "domain", "transfer_common": "domain"}
# the matched-N variants, each off when its N is null: figure -> (ablation block, key)
VARIANT_N = {"generators_matched": ("generators", "matched_n"), "transfer_common": ("domain", "common_n")}


def eval_path(target: str, source: str, train_dataset: str, test_dataset: str) -> str:
    return layout.evaluation(target, source, test_dataset, train_dataset)


def adapter_manifest(target: str, source: str, dataset: str) -> str:
    return layout.adapter(target, source, dataset, ".manifest.json")


def synthetic_manifest(generator: str, dataset: str, size: int | None = None) -> str:
    if size:
        return layout.subset(generator, dataset, size, ".manifest.json")
    return layout.synthetic(generator, dataset, ".manifest.json")


@dataclass(frozen=True)
class Cell:
    """One number of an ablation figure: the evaluation of `target` adapted on `source` with
    `train_dataset`'s data, on `test_dataset`; `role` is `point` or a reference line (zero_shot,
    tapt); `label` is the variant the figure shows (a generator, a size, a chain)."""

    figure: str
    role: str
    label: str
    target: str
    source: str
    train_dataset: str
    test_dataset: str
    eval: str
    adapter_manifest: str | None = None   # steps and effective batch (size points)
    tasks_manifest: str | None = None     # the synthetic set or subset trained on (task counts)

    def files(self) -> list[str]:
        return [f for f in (self.eval, self.adapter_manifest, self.tasks_manifest) if f]


def _selected(section: dict, key: str, default: list[str]) -> list[str]:
    return list(default if section.get(key) is None else section[key])


def ablation_generators(config: dict) -> list[str]:
    """The generators ablation's generators: the listed ones, or every one the config declares."""
    return _selected(config["ablations"]["generators"], "generators", sorted(config["generators"]))


def _targets(config: dict, section: str) -> list[str]:
    """The section's targets that `run` selects (the main grid trains what they reuse)."""
    return [t for t in _selected(config["ablations"][section], "targets", config["run"]["targets"])
            if t in config["run"]["targets"]]


def _datasets(config: dict, section: str, key: str = "datasets") -> list[str]:
    """The section's datasets that `run` selects: an overlay that runs other datasets (one's own
    corpus) leaves the others out of the ablations rather than failing."""
    return [d for d in _selected(config["ablations"][section], key, config["run"]["datasets"])
            if d in config["run"]["datasets"]]


def _references(config: dict, figure: str, target: str, dataset: str, roles=(ZERO_SHOT,)) -> list[Cell]:
    return [Cell(figure, role, role, target, role, dataset, dataset, eval_path(target, role, dataset, dataset),
                 adapter_manifest(target, role, dataset) if role == TAPT else None) for role in roles]


def _point(config: dict, figure: str, label: str, target: str, source: str, train: str, test: str) -> Cell:
    size = parse_size_source(source)
    generator = size[0] if size else chained_generator(source) or source
    tasks = None if source == TAPT else synthetic_manifest(generator, train, size[1] if size else None)
    return Cell(figure, "point", label, target, source, train, test, eval_path(target, source, train, test),
                adapter_manifest(target, source, train), tasks)


def transfer_pairs(config: dict) -> list[tuple[str, str]]:
    """(train dataset, test dataset) of the transfer matrix: every ordered pair of the selected
    datasets that share a task type, the in-domain diagonal included."""
    datasets = _datasets(config, "domain", "transfer_datasets")
    kind = {d: task_type_code(config["datasets"][d]["task_type"]) for d in datasets}
    return [(a, b) for a in datasets for b in datasets if kind[a] == kind[b]]


def ablation_cells(config: dict, figure: str) -> list[Cell]:
    """Every cell of one figure, in drawing order (reference lines included)."""
    ab = config["ablations"]
    cells: list[Cell] = []
    if figure in ("generators", "generators_matched"):
        matched = ab["generators"]["matched_n"]
        for target in _targets(config, "generators"):
            for dataset in _datasets(config, "generators"):
                cells += _references(config, figure, target, dataset)
                cells += [_point(config, figure, generator_label(g, config["generators"][g]), target,
                                 g if figure == "generators" else size_source(g, matched), dataset, dataset)
                          for g in ablation_generators(config)]
    elif figure == "size":
        generator = ab["size"]["generator"]
        for target in _targets(config, "size"):
            for dataset in _datasets(config, "size"):
                cells += _references(config, figure, target, dataset, (ZERO_SHOT, TAPT))
                cells += [_point(config, figure, str(n), target, size_source(generator, n), dataset, dataset)
                          for n in ab["size"]["sizes"]]
                cells.append(_point(config, figure, "all", target, generator, dataset, dataset))
    elif figure == "chain":
        generator = ab["domain"]["generator"]
        for target in _targets(config, "domain"):
            for dataset in _datasets(config, "domain", "chain_datasets"):
                cells += _references(config, figure, target, dataset)
                cells += [_point(config, figure, label, target, source, dataset, dataset)
                          for label, source in ((TAPT, TAPT), (generator, generator),
                                                (chain_source(generator), chain_source(generator)))]
    elif figure in ("transfer", "transfer_common"):
        generator = ab["domain"]["generator"]
        source = generator if figure == "transfer" else size_source(generator, ab["domain"]["common_n"])
        for target in _targets(config, "domain"):
            cells += [_point(config, figure, source, target, source, train, test)
                      for train, test in transfer_pairs(config)]
    else:
        raise ValueError(f"unknown ablation figure {figure!r}; known: {sorted(FIGURES)}")
    return cells


def figures_of(config: dict, ablation: str | None = None) -> list[str]:
    """The figures the config draws, of one ablation or of all: a matched-N variant is off when its
    N is null."""
    def drawn(figure: str) -> bool:
        block, key = VARIANT_N.get(figure, (None, None))
        return block is None or config["ablations"][block][key] is not None
    return [f for f, a in FIGURES.items() if ablation in (None, a) and drawn(f)]


def ablation_sources(config: dict) -> list[str]:
    """Sources the ablations add to the main grid's (size points and chains), for the wildcard
    constraints."""
    sources = {c.source for figure in figures_of(config) for c in ablation_cells(config, figure)}
    return sorted(s for s in sources if parse_size_source(s) or chained_generator(s))


# --- jobs


def ablation_jobs(config: dict) -> dict[str, Counter]:
    """Jobs each ablation adds to the main grid, by stage (subsample, adapt, evaluate), each job
    counted once under the first ablation (generators, size, domain) that needs it. A hook for a
    cost model: multiply by the stage's resources."""
    main_sources = [ZERO_SHOT, *config["run"]["sources"]]
    seen = {("evaluate", t, s, d, d) for t in config["run"]["targets"] for s in main_sources
            for d in config["run"]["datasets"]}
    seen |= {("adapt", t, s, d) for t in config["run"]["targets"] for s in config["run"]["sources"]
             for d in config["run"]["datasets"]}
    seen |= {("generate", g, d) for g in config["run"]["sources"] if g != TAPT for d in config["run"]["datasets"]}
    counts: dict[str, Counter] = {}
    for ablation in ("generators", "size", "domain"):
        jobs: list[tuple] = []
        for figure in figures_of(config, ablation):
            for cell in ablation_cells(config, figure):
                jobs.append(("evaluate", cell.target, cell.source, cell.train_dataset, cell.test_dataset))
                if cell.role == "point" or cell.source == TAPT:
                    jobs += _training_jobs(cell.target, cell.source, cell.train_dataset)
        new = [job for job in dict.fromkeys(jobs) if job not in seen]
        seen.update(new)
        counts[ablation] = Counter(job[0] for job in new)
    return counts


def _training_jobs(target: str, source: str, dataset: str) -> list[tuple]:
    size, chained = parse_size_source(source), chained_generator(source)
    generator = size[0] if size else chained or (None if source == TAPT else source)
    jobs = [("adapt", target, source, dataset)]
    if generator:
        jobs.append(("generate", generator, dataset))
    if size:
        jobs.append(("subsample", generator, size[1], dataset))
    if chained:
        jobs += [("adapt", target, TAPT, dataset)]
    return jobs


# --- subsets and aliases


def nested_subset(n_rows: int, size: int, seed: int) -> list[int]:
    """The first `size` rows of one seeded permutation of the set, in file order: for one seed the
    subset of a bigger size contains that of a smaller one."""
    order = np.random.default_rng(seed).permutation(n_rows)
    return sorted(order[:size].tolist())


def subsample(rows: Path, size: int, seed: int, out: Path, manifest_path: Path) -> dict:
    table = read_parquet(rows)
    n_rows = table.num_rows
    keep = nested_subset(n_rows, size, seed)
    write_parquet(table.take(keep).to_pandas(), out)
    manifest = Manifest("subsample", params={"size": size}, seed=seed)
    manifest.counts = {"rows_in": n_rows, "kept": len(keep), "size": size}
    manifest.drops = {"outside_subset": n_rows - len(keep)} if n_rows > len(keep) else {}
    manifest.extra = {"alias_of_full_set": size >= n_rows, "rows": str(rows)}
    log.info("%s: %d of %d rows (size %d%s)", out, len(keep), n_rows, size,
             ", the full set: an alias" if size >= n_rows else "")
    return manifest.write(manifest_path)


def unless_alias(subset_manifest: Path, copies: list[tuple[str, str]], command: list[str]) -> int:
    """Run `command`, unless the subset is the full set: then copy each full-set output (SRC) to
    the size point's (DST) instead, marking JSON files with `alias_of`, so nothing trains or
    evaluates twice. Each copy goes to a temporary beside DST renamed into place when whole."""
    manifest = read_json(subset_manifest)
    if not manifest["alias_of_full_set"]:
        os.execvp(command[0], command)
    for src, dst in copies:
        if dst.endswith(".json") and not os.path.isdir(src):
            record = read_json(src)
            write_json({**record, "alias_of": src}, dst)
        else:
            copy_atomic(src, dst)
    log.info("size %d >= %d rows: copied the full set's outputs %s", manifest["counts"]["size"],
             manifest["counts"]["rows_in"], [src for src, _ in copies])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bonito-repro ablations", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("subsample", help="a nested seeded subset of a synthetic set")
    p.add_argument("--rows", type=Path, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--manifest", type=Path, required=True)
    p = sub.add_parser("unless-alias", help="run a command unless a subset is the full set (then copy)")
    p.add_argument("--subset", type=Path, required=True, help="the subsample manifest")
    p.add_argument("--copy", nargs=2, action="append", default=[], metavar=("SRC", "DST"))
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the command")
    p = sub.add_parser("jobs", help="jobs each ablation adds to the main grid")
    p.add_argument("--scale", choices=("paper", "local", "smoke"), required=True)
    p.add_argument("--root", type=Path, help="a checkout whose config files to read (default: the workflow "
                   "this package runs)")
    args = parser.parse_args(argv)
    setup_logging()
    if args.command == "subsample":
        subsample(args.rows, args.size, args.seed, args.out, args.manifest)
    elif args.command == "unless-alias":
        command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not command:
            parser.error("unless-alias needs a command after --")
        return unless_alias(args.subset, [tuple(c) for c in args.copy], command)
    else:
        counts = ablation_jobs(load_scale(args.scale, args.root))
        print(f"{READING}.")
        for ablation, jobs in counts.items():
            print(f"ablation_{ablation}: {sum(jobs.values())} jobs beyond the main grid "
                  f"({', '.join(f'{stage} {n}' for stage, n in sorted(jobs.items())) or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
