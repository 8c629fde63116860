"""The paper's main table: target models x {zero-shot, TAPT, Bonito} on the seven datasets.

Reads only evaluation outputs (the collected scores, and the per-example predictions for the
deltas' intervals), so a change of style here never reruns a model. Writes the table (CSV,
Markdown, LaTeX), the deltas against zero-shot with their paired bootstrap intervals
(``delta_intervals``), and the comparison with the few published figures (data/published.yaml).
A cell whose alternative generator kept no task shows "no tasks (0 of N kept)", and its row has
no average.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Mapping

import pandas as pd
import yaml

from ..core.config import COMPARABLE_SCALES
from ..core import PACKAGE_DATA, layout
from ..core.sources import ZERO_SHOT
from ..core.io import (ColumnsError, InputFileError, check_writable, parse_params, read_csv, read_parquet, setup_logging,
                       write_csv, write_text)
from .delta_intervals import Cell, delta_intervals

PUBLISHED = PACKAGE_DATA / "published.yaml"
SOURCE_NAMES = {ZERO_SHOT: "zero-shot", "tapt": "TAPT", "bonito": "Bonito",
                # the authors' generator and their released sets (config/from_*.yaml)
                "bonito_v1": "Bonito (bonito-v1)", "bonito_released": "Bonito (released sets)"}
# the paper's source each route to the main table stands for: the authors' generator and their
# released sets are the paper's Bonito
PAPER_SOURCE = {"bonito_v1": "bonito", "bonito_released": "bonito"}
SCORE_COLUMNS = ("target", "source", "dataset", "f1")  # what the table reads of the collected scores
DEMO_LABEL = "Embedded demo data ({scale} scale), not comparable with the paper."
P3_STAND_IN = ("{target}: a P3-style adapter trained in this workflow on ctga's p3 rows stands in for the "
               "published BatsResearch P3 adapter.")


def hub_provenance(config: dict) -> list[str]:
    """The caption's word on the Hub commits read, for a run that reads the Hub (``hub_lock`` in
    the params: the lock's file, digest and date, or null for a run without one)."""
    if "hub_lock" not in config:
        return []
    lock = config["hub_lock"]
    if lock is None:
        return ["Hub revisions not locked: each repository was read at the commit its revision pointed "
                "at when downloaded (the download manifests record it)."]
    return [f"Hub repositories read at the commits of the Hub lock {lock['file']} (sha256 {lock['sha256']}, "
            f"written {lock['written']})."]


def group_of(target: dict) -> str:
    """Pretrained models are evaluated zero-shot with the plain wrapper; the P3 variants and
    Mistral-Instruct (the abstract's instruction-tuned models) are not."""
    return "pretrained" if target["wrapper"]["zero_shot"] == "plain" else "instruction-tuned"


GROUPS = ("pretrained", "instruction-tuned")


def ordered_datasets(config: dict) -> list[str]:
    """The columns in the config's `run.datasets` order (the paper's, in config.yaml). Not the
    order of the `datasets` mapping: the rule passes the config as JSON with sorted keys."""
    return list(config["run"]["datasets"])


def ordered_rows(config: dict) -> list[tuple[str, str]]:
    """(target, source) rows as the paper orders them: the pretrained models, then the
    instruction-tuned ones, each in `run.targets` order, each with zero-shot then `run.sources`."""
    targets = sorted(config["run"]["targets"], key=lambda t: GROUPS.index(group_of(config["targets"][t])))
    return [(t, s) for t in targets for s in [ZERO_SHOT, *config["run"]["sources"]]]


def column_titles(config: dict) -> dict[str, str]:
    """Each dataset's title from its dataset file (PubMedQA, NYT, ...)."""
    return {**{d: spec["title"] for d, spec in config["datasets"].items()}, "average": "Average"}


def no_task_notes(scores: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """(target, source, dataset) -> "no tasks (0 of N kept)" for the cells with no tasks."""
    if "no_tasks" not in scores:
        return {}
    empty = scores[scores["no_tasks"].notna()]
    return {(t, s, d): note for t, s, d, note in zip(empty.target, empty.source, empty.dataset, empty.no_tasks)}


def score_grid(scores: pd.DataFrame, config: dict) -> pd.DataFrame:
    """One row per (target, source), one column per dataset plus the average, F1 in percent.
    Raises if a configured cell is missing, so a table never silently averages fewer datasets;
    a cell with no tasks (``no_task_notes``) is NaN, and so is its row's average."""
    datasets = ordered_datasets(config)
    wide = scores.pivot_table(index=["target", "source"], columns="dataset", values="f1", aggfunc="first",
                              dropna=False)
    rows = ordered_rows(config)
    notes = no_task_notes(scores)
    missing = [(t, s, d) for t, s in rows for d in datasets if (t, s, d) not in notes and
               ((t, s) not in wide.index or d not in wide.columns or pd.isna(wide.loc[(t, s), d]))]
    if missing:
        raise ValueError(f"no score for (target, source, dataset) {missing[:5]} ({len(missing)} missing)")
    grid = wide.reindex(index=pd.MultiIndex.from_tuples(rows, names=["target", "source"]), columns=datasets)
    grid["average"] = grid[datasets].mean(axis=1, skipna=False)
    return grid


def deltas(grid: pd.DataFrame) -> pd.DataFrame:
    """Each adapted row minus its target's zero-shot row."""
    zero = grid.xs(ZERO_SHOT, level="source")
    adapted = grid.drop(index=ZERO_SHOT, level="source")
    return adapted - zero.reindex(adapted.index.get_level_values("target")).set_axis(adapted.index)


def published_comparison(grid: pd.DataFrame, config: dict, published: dict) -> pd.DataFrame:
    """Our numbers beside the published ones: zero-shot rows of the same Hub model, and the
    abstract's average deltas per group of targets."""
    rows = []
    for entry in published["zero_shot_rows"]:
        for name, target in config["targets"].items():
            hub = config["models"][target["model"]].get("hub", {}).get("id")
            if hub == entry["model"] and "init_adapter" not in target:
                for column, value in entry["scores"].items():
                    if column in grid.columns:
                        ours = grid.loc[(name, ZERO_SHOT), column]
                        rows.append({"what": f"{name} zero-shot {column_titles(config).get(column, column)}",
                                     "ours": ours, "published": value, "difference": ours - value,
                                     "published_in": entry["provenance"]})
    delta = deltas(grid)["average"]
    for entry in published["average_deltas"]:
        targets = [t for t, spec in config["targets"].items() if group_of(spec) == entry["group"]]
        for source in config["run"]["sources"]:
            if PAPER_SOURCE.get(source, source) != entry["source"] or not targets:
                continue
            ours = delta.loc[[(t, source) for t in targets]].mean()
            rows.append({"what": f"{entry['group']} average delta, {source} vs zero-shot "
                                 f"({len(targets)} targets)",
                         "ours": ours, "published": entry["delta"], "difference": ours - entry["delta"],
                         "published_in": entry["provenance"]})
    return pd.DataFrame(rows, columns=["what", "ours", "published", "difference", "published_in"])


def _display(grid: pd.DataFrame, config: dict, notes: dict[tuple[str, str, str], str],
             decimals: int) -> pd.DataFrame:
    """The grid as printed: rounded, each no-task cell's note in place of its number."""
    grid = grid.round(decimals)
    if notes:
        grid = grid.astype(object)
        for (t, s, d), note in notes.items():
            if (t, s) in grid.index and d in grid.columns:
                grid.loc[(t, s), d] = note
                grid.loc[(t, s), "average"] = "n/a"
    table = grid.rename(columns=column_titles(config)).reset_index()
    table.insert(0, "group", [group_of(config["targets"][t]) for t in table["target"]])
    table["source"] = table["source"].map(lambda s: SOURCE_NAMES.get(s, s))
    return table.rename(columns={"target": "model", "source": "adaptation"})


def _deltas_display(delta: pd.DataFrame, low: pd.DataFrame, high: pd.DataFrame, config: dict,
                    notes: dict[tuple[str, str, str], str], decimals: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the CSV's table: each column's delta, then its interval's low and high, as numbers; the
    printed one: "delta [low, high]" in each cell), each no-task cell's note in place of its delta."""
    shown = delta.astype(object).copy()
    for pair, column in itertools.product(delta.index, delta.columns):
        if pd.notna(delta.loc[pair, column]):
            shown.loc[pair, column] = (f"{delta.loc[pair, column]:+.{decimals}f} "
                                       f"[{low.loc[pair, column]:.{decimals}f}, {high.loc[pair, column]:.{decimals}f}]")
    parts = ("", " low", " high")
    numbers = pd.concat([delta, low.add_suffix(" low"), high.add_suffix(" high")], axis=1)
    numbers = numbers[[f"{c}{part}" for c in delta.columns for part in parts]]
    titles = column_titles(config)
    table = _display(numbers, config, notes, decimals).rename(
        columns={f"{c}{part}": f"{titles[c]}{part}" for c in delta.columns for part in parts[1:]})
    return table, _display(shown, config, notes, decimals)


def write_tables(scores: pd.DataFrame, config: dict, out_dir: Path,
                 predictions: Mapping[Cell, pd.DataFrame], names: Mapping[Cell, str] | None = None) -> dict[str, Path]:
    """The three tables in CSV, Markdown and LaTeX. ``predictions``: every cell's per-example
    predictions (an empty frame for a cell with no tasks), for the deltas' paired intervals with
    the config's ``evaluation.bootstrap``; ``names``: how errors name them (their files)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    published = yaml.safe_load(PUBLISHED.read_text())
    grid = score_grid(scores, config)
    empty_cells = no_task_notes(scores)
    notes = [] if config["scale"] in COMPARABLE_SCALES else [DEMO_LABEL.format(scale=config["scale"])]
    notes += [P3_STAND_IN.format(target=t) for t, spec in config["targets"].items()
              if spec.get("init_adapter", {}).get("train_on") == "p3"]
    bootstrap = config["evaluation"]["bootstrap"]
    provenance = hub_provenance(config)
    caption = " ".join(["F1 (mean over five templates) of each target model, zero-shot and after adaptation.",
                        *provenance])
    delta_caption = " ".join([f"Each adapted row minus its target's zero-shot row, in F1 points, with its paired "
                              f"{bootstrap['confidence']:.0%} bootstrap interval ({bootstrap['samples']} resamples of "
                              "the test rows, the same rows for both cells; the average's interval resamples each "
                              "dataset on its own). An interval that excludes 0 is a difference beyond the noise of "
                              "the test rows; it says nothing of the noise of training.", *provenance])
    decimals = config.get("tables", {}).get("decimals", 1)
    delta = deltas(grid)
    low, high = delta_intervals(delta, predictions, bootstrap,
                                names or {cell: "/".join(cell) for cell in predictions})
    deltas_csv, deltas_shown = _deltas_display(delta, low, high, config, empty_cells, decimals)
    main = _display(grid, config, empty_cells, decimals)
    comparison = published_comparison(grid, config, published).round(decimals)
    outputs = {}
    for name, (table, shown, title) in {
        "main_table": (main, main, caption),
        "main_table_deltas": (deltas_csv, deltas_shown, delta_caption),
        "published_comparison": (comparison, comparison, caption),
    }.items():
        csv, md, tex = (out_dir / f"{name}.{ext}" for ext in ("csv", "md", "tex"))
        write_csv(table, csv)
        header = f"{title}\n\n" + "".join(f"**{note}**\n\n" for note in notes)
        write_text(header + shown.to_markdown(index=False, floatfmt=f".{decimals}f") + "\n", md)
        latex = shown.to_latex(index=False, float_format=f"%.{decimals}f", na_rep="--", escape=True)
        write_text("".join(f"% {note}\n" for note in [*notes, *provenance]) + latex, tex)
        outputs.update({f"{name}.csv": csv, f"{name}.md": md, f"{name}.tex": tex})
    return outputs


def read_predictions(paths: list[Path], config: dict) -> tuple[dict[Cell, pd.DataFrame], dict[Cell, str]]:
    """(cell -> its per-example predictions, cell -> its file) for every cell of the table, each
    found among ``paths`` by its place in the layout; raises naming a cell none of them is."""
    given = {Path(p).as_posix(): Path(p) for p in paths}
    found, names, missing = {}, {}, []
    for target, source in ordered_rows(config):
        for dataset in ordered_datasets(config):
            expected = layout.evaluation(target, source, dataset, suffix=layout.PREDICTIONS)
            match = [p for text, p in given.items() if text == expected or text.endswith("/" + expected)]
            if not match:
                missing.append(expected)
                continue
            found[(target, source, dataset)] = read_parquet(match[0]).to_pandas()
            names[(target, source, dataset)] = str(match[0])
    if missing:
        raise InputFileError(f"--predictions: no file for {missing[:3]} ({len(missing)} of the table's cells missing; "
                             "the rule passes every evaluation's predictions)")
    return found, names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bonito-repro main-table", description=__doc__)
    parser.add_argument("--scores", required=True, type=Path, help="collected scores (CSV)")
    parser.add_argument("--predictions", required=True, nargs="+", type=Path,
                        help="every cell's per-example predictions (eval/<target>/<source>/<dataset>.predictions.parquet)")
    parser.add_argument("--params", required=True,
                        help="JSON with the resolved config's scale, run, models, targets, datasets, tables and "
                             "evaluation.bootstrap")
    parser.add_argument("--out-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    setup_logging()
    check_writable(args.out_dir / "main_table.csv")
    scores = read_csv(args.scores)
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ColumnsError(f"{args.scores}: missing column(s) {missing}; it has {list(scores.columns)} "
                           "(the table command writes it)")
    config = parse_params(args.params)
    predictions, names = read_predictions(args.predictions, config)
    write_tables(scores, config, args.out_dir, predictions, names)
    return 0
