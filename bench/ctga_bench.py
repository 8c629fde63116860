"""How fast ctga-v1 is built: rows per second at local scale, and the projected time for the
paper's 1.65M rows on 16 cores.

    .venv/bin/python bench/ctga_bench.py [--rows-per-p3-dataset 2000]

Measures, in one run: (1) the whole local build (config/local.yaml, one process); (2) rendering
every P3 dataset's embedded rows repeated to --rows-per-p3-dataset, with num_proc=1 and num_proc=2.
Projection assumption: rendering scales linearly with processes at the parallel efficiency
measured here between 1 and 2 processes (rows are independent; Hub loading and parquet writing
are left out, as at paper scale they are a small share of the job).
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import datasets
from bonito_repro.core.config import load_scale

from bonito_repro.ctga import build, render, tables
from bonito_repro.core.origins import load_origin

PAPER_ROWS = 1_650_000
PAPER_CORES = 16
REPO = Path(__file__).resolve().parents[1]


def repeated(p3_dataset: str, rows: int) -> datasets.Dataset:
    dataset = load_origin({"embedded": p3_dataset}, "ctga")
    copies = -(-rows // len(dataset))
    return datasets.concatenate_datasets([dataset] * copies).select(range(rows))


def render_all(inputs: dict, rows: int, seed: int, num_proc: int) -> tuple[int, float]:
    """Rows rendered and seconds taken, every P3 dataset at `rows` rows."""
    start, total = time.perf_counter(), 0
    for p3_dataset, (dataset, metas) in inputs.items():
        total += len(render.render_p3_dataset(dataset, p3_dataset, metas, rows, seed, num_proc,
                                              rows_per_process=rows // 2))
    return total, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-p3-dataset", type=int, default=2000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    datasets.disable_progress_bars()
    hp = load_scale("local", REPO)["ctga"]

    start = time.perf_counter()
    local = build.build(hp, num_proc=1)
    seconds = time.perf_counter() - start
    sampled = local.counts["rows_sampled"]
    print(f"local build: {sampled} rows in {seconds:.1f} s = {sampled / seconds:.0f} rows/s "
          f"(one process, loading and splitting included)")

    annotations, expressions = tables.read_annotations(), tables.read_context_expressions()
    inputs = {}
    for p3_dataset in hp["p3_datasets"]:
        metas, _ = build.p3_dataset_meta_templates(p3_dataset, annotations, expressions)
        inputs[p3_dataset] = (repeated(p3_dataset, args.rows_per_p3_dataset), metas)
    rates = {}
    for num_proc in (1, 2):
        rows, seconds = render_all(inputs, args.rows_per_p3_dataset, hp["seed"], num_proc)
        rates[num_proc] = rows / seconds
        print(f"rendering, num_proc={num_proc}: {rows} rows in {seconds:.1f} s = "
              f"{rates[num_proc]:.0f} rows/s")
    efficiency = rates[2] / (2 * rates[1])
    print(f"speed-up 1 -> 2 processes: {rates[2] / rates[1]:.2f}x (parallel efficiency "
          f"{efficiency:.0%}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})")
    for label, eff in (("linear scaling", 1.0), ("measured efficiency", min(efficiency, 1.0))):
        hours = PAPER_ROWS / (rates[1] * PAPER_CORES * eff) / 3600
        print(f"projected 1.65M rows on {PAPER_CORES} cores ({label}): {hours * 60:.0f} min")


if __name__ == "__main__":
    main()
