"""Paired bootstrap intervals of the main table's deltas (an adapted cell minus its target's
zero-shot cell, docs/protocol.md, section 9).

Both cells of a delta were evaluated on the same test rows (the same ``max_examples`` sample), so
each resample draws one set of rows and recomputes both cells' table number on it (the mean over
templates of the per-template F1, as the evaluation computes it), and the interval is the
percentile interval of their difference: the rows' shared difficulty cancels, which two separate
intervals cannot show. The evaluation's per-example predictions (``eval/*.predictions.parquet``)
hold what is recomputed: the gold and predicted label of every (template, row) for rank
classification, the token F1 of every answer for extractive QA. A dataset's resamples are drawn
from ``evaluation.bootstrap``'s seed and the dataset's name, so every delta of a dataset uses
the same rows and datasets are resampled independently; the average's interval averages the
datasets' differences resample by resample. The interval measures the noise of the test rows
only, not that of training (seeds, data order).
"""
from __future__ import annotations

import zlib
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from ..core import metrics
from ..core.io import InputFileError
from ..core.sources import ZERO_SHOT

Cell = tuple[str, str, str]  # (target, source, dataset)
# resamples computed at a time: a (resamples, rows) index of a large test split stays small
CHUNK = 100


def cell_statistic(frame: pd.DataFrame, rows: np.ndarray, where: str) -> Callable[[np.ndarray], np.ndarray]:
    """The table number of one cell recomputed on resampled rows: ``statistic(index)`` maps a
    (resamples, len(rows)) array of positions in ``rows`` to one value per resample, the mean
    over templates of macro F1 (a frame with ``gold`` and ``prediction`` labels) or of token F1
    (a frame with ``f1``), in percent. Raises, naming ``where``, if the frame is neither or a
    template lacks a row."""
    if not {"template", "row"} <= set(frame) or not ({"f1"} <= set(frame) or {"gold", "prediction"} <= set(frame)):
        raise InputFileError(f"{where}: not an evaluation's predictions (columns template, row and f1, or gold and "
                             f"prediction; it has {list(frame.columns)})")
    per_template: list[Callable[[np.ndarray], np.ndarray]] = []
    for template, block in frame.groupby("template", sort=True):
        block = block.set_index("row")
        if block.index.has_duplicates or set(block.index) != set(rows.tolist()):
            raise InputFileError(f"{where}: template {template!r} does not have each of the {len(rows)} rows "
                                 "of the cell it is paired with once (were both evaluated on the same sample?)")
        block = block.loc[rows]
        if "f1" in block:
            f1 = block["f1"].to_numpy(dtype=float)
            per_template.append(lambda index, f1=f1: f1[index].mean(axis=1))
        else:
            code = {label: i for i, label in enumerate(sorted(set(block["gold"]) | set(block["prediction"])))}
            predicted, gold = block["prediction"].map(code).to_numpy(), block["gold"].map(code).to_numpy()
            per_template.append(lambda index, p=predicted, g=gold, k=len(code): metrics.macro_f1_rows(p[index],
                                                                                                     g[index], k))

    def statistic(index: np.ndarray) -> np.ndarray:
        return 100 * np.mean([template(index) for template in per_template], axis=0)
    return statistic


def dataset_rng(seed: int, dataset: str) -> np.random.Generator:
    """The resampling of one dataset's rows: the same for every delta of the dataset, independent
    of the other datasets'."""
    return np.random.default_rng([seed, zlib.crc32(dataset.encode())])


def delta_samples(predictions: Mapping[Cell, pd.DataFrame], pairs: list[tuple[str, str]], dataset: str,
                  bootstrap: dict, names: Mapping[Cell, str]) -> dict[tuple[str, str], np.ndarray]:
    """(target, source) -> the resampled differences (source minus the target's zero-shot) on
    ``dataset``, for every pair whose source cell has predictions (a cell with no tasks has none)."""
    zero = {t: predictions[(t, ZERO_SHOT, dataset)] for t, _ in pairs}
    pairs = [(t, s) for t, s in pairs if not predictions[(t, s, dataset)].empty]
    if not pairs:
        return {}
    reference = zero[pairs[0][0]]
    rows = np.array(sorted(set(reference["row"])))
    statistics = {}
    for t, s in pairs:
        for cell in ((t, ZERO_SHOT, dataset), (t, s, dataset)):
            if cell not in statistics:
                statistics[cell] = cell_statistic(predictions[cell], rows, names[cell])
    rng = dataset_rng(bootstrap["seed"], dataset)
    samples: dict[tuple[str, str], list[np.ndarray]] = {pair: [] for pair in pairs}
    for start in range(0, bootstrap["samples"], CHUNK):
        index = rng.integers(0, len(rows), size=(min(CHUNK, bootstrap["samples"] - start), len(rows)))
        values = {cell: statistic(index) for cell, statistic in statistics.items()}
        for t, s in pairs:
            samples[(t, s)].append(values[(t, s, dataset)] - values[(t, ZERO_SHOT, dataset)])
    return {pair: np.concatenate(chunks) for pair, chunks in samples.items()}


def delta_intervals(deltas: pd.DataFrame, predictions: Mapping[Cell, pd.DataFrame], bootstrap: dict,
                    names: Mapping[Cell, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(low, high): the paired bootstrap interval of every delta of ``deltas`` (rows (target,
    source), columns the datasets and ``average``) at ``bootstrap["confidence"]``; NaN where the
    delta is (a cell with no tasks). ``names`` says how an error names a cell's predictions."""
    datasets = [d for d in deltas.columns if d != "average"]
    pairs = list(deltas.index)
    by_dataset = {d: delta_samples(predictions, pairs, d, bootstrap, names) for d in datasets}
    tail = (1 - bootstrap["confidence"]) / 2
    low, high = (pd.DataFrame(np.nan, index=deltas.index, columns=deltas.columns) for _ in range(2))
    for pair in pairs:
        for d in datasets:
            if pair in by_dataset[d]:
                low.loc[pair, d], high.loc[pair, d] = np.quantile(by_dataset[d][pair], [tail, 1 - tail])
        if all(pair in by_dataset[d] for d in datasets):
            average = np.mean([by_dataset[d][pair] for d in datasets], axis=0)
            low.loc[pair, "average"], high.loc[pair, "average"] = np.quantile(average, [tail, 1 - tail])
    return low, high
