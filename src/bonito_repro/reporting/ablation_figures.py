"""The ablations' tables and figures, from the evaluation results and manifests the compute jobs
wrote (the cells of ``ablations.ablation_cells``): restyling reruns no training or evaluation.

    python -m bonito_repro ablation-figures --figure generators|generators_matched|size|chain|transfer|transfer_common \\
        --cells JSON --params JSON --png F.png --csv F.csv --md F.md

The CSV holds one row per cell with the files its numbers were read from; the Markdown is the
table a reader wants (F1 per variant and dataset, with the average where one makes sense). Every
title and caption says that the ablation is this project's reading (``READING``): the paper's
sizes, targets and designs are in no available source.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.config import COMPARABLE_SCALES
from ..core.sources import TAPT, ZERO_SHOT
from ..core.io import parse_params, read_json, setup_logging, write_csv, write_text
from .main_table import DEMO_LABEL
from .plot import _pyplot, _save

TITLES = {
    "generators": "F1 after adaptation on each generator's synthetic tasks (full sets)",
    "generators_matched": "F1 after adaptation on each generator's tasks, every set cut to the same N",
    "size": "F1 against the number of synthetic tasks seen in training",
    "chain": "Domain knowledge before tasks: TAPT, Bonito, and TAPT then Bonito",
    "transfer": "In-domain against out-of-domain tasks: each dataset's adapted model on its task type",
    "transfer_common": "Transfer matrix from a common-N subset of every synthetic set",
}
# in every figure's title and table caption: no available source gives the paper's ablations
READING = ("This project's reading of the paper's ablation: its sizes, targets and designs are "
           "this project's choices (no available source gives the paper's)")
CSV_COLUMNS = ["figure", "role", "label", "target", "source", "train_dataset", "test_dataset", "f1", "ci_low",
               "ci_high", "n_examples", "tasks", "tasks_generated", "steps", "examples_seen", "alias_of_full_set",
               "note", "eval", "adapter_manifest", "tasks_manifest"]


def no_tasks_note(generated: int) -> str:
    return f"no tasks (0 of {generated} kept)"


def read_cell(cell: dict) -> dict:
    """A cell's numbers: F1 and interval from its evaluation, the task count from the set (or
    subset) manifest, steps and examples seen from the adapter manifest. A cell whose set kept no
    task has no evaluation to read and says so."""
    row = {key: cell.get(key) for key in CSV_COLUMNS if key in cell}
    row.update(f1=np.nan, ci_low=np.nan, ci_high=np.nan, n_examples=np.nan, tasks=np.nan, tasks_generated=np.nan,
               steps=np.nan, examples_seen=np.nan, alias_of_full_set=False, note="")
    if cell.get("tasks_manifest"):
        tasks = read_json(cell["tasks_manifest"])
        counts = tasks["counts"]
        row.update(tasks=counts["kept"], tasks_generated=counts.get("generated", counts.get("rows_in")),
                   alias_of_full_set=bool(tasks.get("alias_of_full_set", False)))
        if counts["kept"] == 0:
            row["note"] = no_tasks_note(row["tasks_generated"])
            return row
    result = read_json(cell["eval"])
    row.update(f1=result["mean"], ci_low=result["ci"][0], ci_high=result["ci"][1], n_examples=result["n_examples"])
    if cell.get("adapter_manifest"):
        adapter = read_json(cell["adapter_manifest"])
        row["steps"] = adapter["steps"]
        seen = adapter["steps"] * adapter["effective_batch"]
        row["examples_seen"] = min(seen, row["tasks"]) if not math.isnan(row["tasks"]) else seen
    return row


def read_cells(cells: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([read_cell(c) for c in cells], columns=CSV_COLUMNS)


def _f1_text(row: pd.Series, decimals: int) -> str:
    return row["note"] if row["note"] else f"{row['f1']:.{decimals}f}"


def summary_table(data: pd.DataFrame, figure: str, decimals: int) -> pd.DataFrame:
    """The Markdown table: one row per (target, variant), one column per dataset (per test
    dataset for the transfer matrix), F1 or the reason there is none, and the average over the
    datasets where every one has a number."""
    data = data.assign(shown=[_f1_text(r, decimals) for _, r in data.iterrows()])
    if figure.startswith("transfer"):
        index, column = ["target", "train_dataset"], "test_dataset"
    else:
        index, column = ["target", "label"], "test_dataset"
    order = list(dict.fromkeys(data[column]))
    table = data.pivot_table(index=index, columns=column, values="shown", aggfunc="first", sort=False)
    table = table.reindex(columns=order)
    if not figure.startswith("transfer"):
        means = data.groupby(index, sort=False)["f1"].agg(lambda v: v.mean() if v.notna().all() else np.nan)
        table["average"] = [f"{means[i]:.{decimals}f}" if not np.isnan(means[i]) else "--" for i in table.index]
    if figure in ("size", "chain"):  # a chain's steps are TAPT's and its own (chain_steps)
        steps = data.groupby(index, sort=False)["steps"].agg(lambda v: "/".join(str(int(s)) for s in v if s == s))
        table["steps per dataset"] = [steps[i] for i in table.index]
    if figure.startswith("transfer"):  # a blank: the datasets' task types differ
        table = table.fillna("")
    if figure == "chain":
        table = table.rename(index={ZERO_SHOT: "zero-shot", TAPT: "TAPT"}, level="label")
    return table.reset_index()


def scale_note(scale: str) -> str:
    return "" if scale in COMPARABLE_SCALES else DEMO_LABEL.format(scale=scale)


def chain_steps(data: pd.DataFrame) -> pd.DataFrame:
    """A chained adaptation trains TAPT's steps and then its own: record the total."""
    data = data.copy()
    tapt = data[data["source"] == TAPT].set_index(["target", "train_dataset"])["steps"]
    chained = data["source"].str.startswith(TAPT + "+")
    data.loc[chained, "steps"] = [s + tapt.get((t, d), np.nan) for s, t, d in
                                  data.loc[chained, ["steps", "target", "train_dataset"]].itertuples(index=False)]
    return data


# --- figures


def _bars(ax, data: pd.DataFrame, datasets: list[str], labels: list[str]) -> None:
    """Grouped bars per dataset with the bootstrap interval; zero-shot as a line over each group."""
    width = 0.8 / max(len(labels), 1)
    for i, label in enumerate(labels):
        rows = data[data["label"] == label].set_index("test_dataset").reindex(datasets)
        x = np.arange(len(datasets)) + (i - (len(labels) - 1) / 2) * width
        f1 = rows["f1"].to_numpy(dtype=float)
        err = np.vstack([f1 - rows["ci_low"].to_numpy(dtype=float), rows["ci_high"].to_numpy(dtype=float) - f1])
        ax.bar(x, np.nan_to_num(f1), width, yerr=np.nan_to_num(err), capsize=2, label=label)
        for xi, note in zip(x, rows["note"]):
            if isinstance(note, str) and note:
                ax.text(xi, 1, note, rotation=90, ha="center", va="bottom", fontsize=6)
    zero = data[data["role"] == ZERO_SHOT].set_index("test_dataset").reindex(datasets)["f1"]
    for j, value in enumerate(zero):
        ax.hlines(value, j - 0.45, j + 0.45, colors="black", linestyles="--", label="zero-shot" if j == 0 else None)
    ax.set_xticks(range(len(datasets)), datasets, rotation=20, fontsize=8)
    ax.set_ylabel("F1")


def plot_bars(data: pd.DataFrame, path: Path, title: str, dpi: int) -> None:
    plt = _pyplot()
    targets = list(dict.fromkeys(data["target"]))
    points = data[data["role"] == "point"]
    labels = list(dict.fromkeys(points["label"]))
    fig, axes = plt.subplots(len(targets), 1, figsize=(8, 3.4 * len(targets)), squeeze=False)
    for ax, target in zip(axes[:, 0], targets):
        rows = data[data["target"] == target]
        _bars(ax, rows, list(dict.fromkeys(rows["test_dataset"])), labels)
        ax.set_title(target, fontsize=9)
        ax.legend(fontsize=7, ncols=2)
    fig.suptitle(title, fontsize=9)
    _save(fig, path, dpi)


def plot_size(data: pd.DataFrame, path: Path, title: str, dpi: int) -> None:
    """One panel per (target, dataset): F1 against examples seen (log axis) with the interval as
    a band and each point's steps written beside it; zero-shot and TAPT as reference lines."""
    plt = _pyplot()
    targets, datasets = list(dict.fromkeys(data["target"])), list(dict.fromkeys(data["test_dataset"]))
    fig, axes = plt.subplots(len(targets), len(datasets), figsize=(3.6 * len(datasets), 3 * len(targets)),
                             squeeze=False)
    for r, target in enumerate(targets):
        for c, dataset in enumerate(datasets):
            ax = axes[r, c]
            rows = data[(data["target"] == target) & (data["test_dataset"] == dataset)]
            points = rows[(rows["role"] == "point") & rows["f1"].notna()].sort_values("examples_seen")
            ax.plot(points["examples_seen"], points["f1"], "o-", label="Bonito tasks")
            ax.fill_between(points["examples_seen"], points["ci_low"], points["ci_high"], alpha=0.25)
            for x, y, steps in zip(points["examples_seen"], points["f1"], points["steps"]):
                ax.annotate(f"{int(steps)} st", (x, y), textcoords="offset points", xytext=(2, 4), fontsize=6)
            for role, style in ((ZERO_SHOT, "--"), (TAPT, ":")):
                ref = rows[rows["role"] == role]
                if len(ref):
                    ax.axhline(ref["f1"].iloc[0], color="black", linestyle=style,
                               label="zero-shot" if role == ZERO_SHOT else "TAPT")
            ax.set_xscale("log")
            ax.set_title(f"{target} / {dataset}", fontsize=8)
            ax.set_xlabel("examples seen (log)", fontsize=8)
            ax.set_ylabel("F1", fontsize=8)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    _save(fig, path, dpi)


def plot_transfer(data: pd.DataFrame, path: Path, title: str, dpi: int) -> None:
    """A heatmap per target: rows adapted on, columns evaluated on; datasets of another task type
    are blank, the in-domain diagonal is boxed."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    targets = list(dict.fromkeys(data["target"]))
    datasets = list(dict.fromkeys(data["train_dataset"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(1.1 * len(datasets) * len(targets) + 2, 1.0 * len(datasets) + 2),
                             squeeze=False)
    for ax, target in zip(axes[0], targets):
        rows = data[data["target"] == target]
        grid = rows.pivot_table(index="train_dataset", columns="test_dataset", values="f1", aggfunc="first")
        grid = grid.reindex(index=datasets, columns=datasets)
        image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis")
        for i, train in enumerate(datasets):
            for j, test in enumerate(datasets):
                value = grid.loc[train, test]
                if not np.isnan(value):
                    ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7, color="white")
            ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
        ax.set_xticks(range(len(datasets)), datasets, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(datasets)), datasets, fontsize=7)
        ax.set_xlabel("evaluated on")
        ax.set_ylabel("adapted on")
        ax.set_title(f"{target} (boxed: in-domain)", fontsize=8)
        fig.colorbar(image, ax=ax, shrink=0.7, label="F1")
    fig.suptitle(title, fontsize=9)
    _save(fig, path, dpi)


def figure_title(figure: str, params: dict, data: pd.DataFrame) -> str:
    lines = [TITLES[figure]]
    if figure == "generators_matched":
        lines.append(f"(every set subsampled to {params['matched_n']} tasks; a smaller set is used whole)")
    if figure == "size":
        below, steps = params["one_epoch_below"], params["max_steps"]
        lines.append(f"Steps grow with N: one epoch below {below} examples, else {steps} steps "
                     "(points marked with their steps)")
    if figure == "chain":
        lines.append("The chain trains longer: TAPT's steps, then the tasks' steps (table: total steps)")
    if figure == "transfer_common":
        lines.append(f"(every set subsampled to {params['common_n']} tasks, so every adapter trained alike)")
    if figure == "transfer":
        lines.append("(each adapter on its full set: sets and steps differ by dataset)")
    note = scale_note(params["scale"])
    return "\n".join(lines + [READING] + ([note] if note else []))


def write_figure(figure: str, cells: list[dict], params: dict, png: Path, csv: Path, md: Path) -> pd.DataFrame:
    data = read_cells(cells)
    if figure == "chain":
        data = chain_steps(data)
    decimals = params["decimals"]
    write_csv(data.assign(data=scale_note(params["scale"])) if params["scale"] not in COMPARABLE_SCALES else data, csv)
    title = figure_title(figure, params, data)
    table = summary_table(data, figure, decimals)
    write_text(title.replace("\n", "\n\n") + "\n\n" + table.to_markdown(index=False) + "\n", md)
    if figure == "size":
        plot_size(data, png, title, params["dpi"])
    elif figure.startswith("transfer"):
        plot_transfer(data, png, title, params["dpi"])
    else:
        plot_bars(data, png, title, params["dpi"])
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bonito-repro ablation-figures", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figure", required=True, choices=sorted(TITLES))
    parser.add_argument("--cells", required=True, help="the figure's cells (JSON: {\"cells\": [...]})")
    parser.add_argument("--params", required=True,
                        help="JSON: scale, dpi, decimals, the step rule (one_epoch_below, max_steps), matched_n, common_n")
    parser.add_argument("--png", type=Path, required=True)
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--md", type=Path, required=True)
    args = parser.parse_args(argv)
    setup_logging()
    cells = parse_params(args.cells, "--cells")["cells"]
    write_figure(args.figure, cells, parse_params(args.params), args.png, args.csv, args.md)
    return 0
