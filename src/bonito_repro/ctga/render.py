"""Rendering one P3 dataset: sample rows, give each a random annotated template, render its
meta-template (the ctga row) and its original template (the P3 row), in parallel."""
from __future__ import annotations

import random
import zlib

import datasets
import numpy as np
import pandas as pd

from ..core.prompts import CONTEXT_PLACEHOLDER, bonito_input, bonito_output
from .templates import PLACEHOLDER_VAR, TASK_SEPARATOR, MetaTemplate

OK = ""
COLUMNS = ["status", "error", "template", "task_type", "context", "instruction", "response",
           "p3_input", "p3_output"]
# Pool start-up costs more than rendering a small P3 dataset: use one process per this many rows.
ROWS_PER_PROCESS = 2000


def p3_dataset_rng(seed: int, p3_dataset: str) -> np.random.Generator:
    """A generator per (seed, P3 dataset): a P3 dataset's sample does not depend on the others."""
    return np.random.default_rng([seed, zlib.crc32(p3_dataset.encode())])


def sample(n_rows: int, n_templates: int, max_rows: int, seed: int,
           p3_dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (at most max_rows, without replacement) and one template index per row."""
    rng = p3_dataset_rng(seed, p3_dataset)
    rows = rng.choice(n_rows, size=min(n_rows, max_rows), replace=False)
    return np.sort(rows), rng.integers(0, n_templates, size=len(rows))


def render_row(example: dict, template: MetaTemplate, row_seed: str) -> dict[str, str]:
    """The ctga pieces and the P3 rendering of one example, with ``status`` naming a drop reason
    (empty string: kept). Python's global ``random`` is reseeded before each render because
    promptsource's ``choice`` filter draws from it: both renders then make the same choice."""
    row = dict.fromkeys(COLUMNS, "")
    row.update(template=template.name, task_type=template.task_type)
    try:
        random.seed(row_seed)
        parts = template.meta.apply({**example, PLACEHOLDER_VAR: CONTEXT_PLACEHOLDER})
        random.seed(row_seed)
        p3 = template.original.apply(example)
    except Exception as error:  # a malformed P3 row: counted, first message kept per template
        row.update(status="render_error", error=f"{type(error).__name__}: {error}")
        return row
    # A template wholly inside {% if %} renders nothing, hence one empty part: an empty target.
    if len(parts) != 2 or len(p3) > 2:
        row.update(status="render_error",
                   error=f"'|||' split into {len(parts)} and {len(p3)} parts where 2 were expected")
        return row
    context, task = parts
    instruction, _, response = task.partition(TASK_SEPARATOR)
    p3_input, p3_output = (p3 + [""])[:2]
    row.update(context=context.strip(), instruction=instruction.strip(), response=response.strip(),
               p3_input=p3_input, p3_output=p3_output)
    if not row["context"]:
        row["status"] = "empty_context"
    elif not row["response"] or not row["p3_output"]:
        row["status"] = "empty_target"
    return row


def _render_batch(batch: dict, indices: list[int], *, templates: list[MetaTemplate],
                  choices: np.ndarray, row_seeds: str) -> dict[str, list[str]]:
    columns = list(batch)
    out: dict[str, list[str]] = {c: [] for c in COLUMNS}
    for j, i in enumerate(indices):
        row = render_row({c: batch[c][j] for c in columns}, templates[choices[i]],
                         f"{row_seeds}/{i}")
        for c in COLUMNS:
            out[c].append(row[c])
    return out


def render_p3_dataset(dataset: datasets.Dataset, p3_dataset: str, templates: list[MetaTemplate],
                      max_rows: int, seed: int, num_proc: int = 1,
                      rows_per_process: int = ROWS_PER_PROCESS) -> pd.DataFrame:
    """One rendered row (COLUMNS) per sampled row of the P3 dataset, dropped ones included. The
    result does not depend on num_proc: every random choice is seeded per row."""
    rows, choices = sample(len(dataset), len(templates), max_rows, seed, p3_dataset)
    subset = dataset.select(rows)
    procs = max(1, min(num_proc, len(subset) // rows_per_process))
    rendered = subset.map(
        _render_batch, batched=True, with_indices=True, remove_columns=subset.column_names,
        fn_kwargs={"templates": templates, "choices": choices, "row_seeds": f"{seed}/{p3_dataset}"},
        num_proc=procs if procs > 1 else None, load_from_cache_file=False,
        desc=f"rendering {p3_dataset}",
        features=datasets.Features({c: datasets.Value("string") for c in COLUMNS}))
    return rendered.to_pandas()


def ctga_rows(rendered: pd.DataFrame, p3_dataset: str) -> pd.DataFrame:
    """The Bonito training pairs of kept rendered rows."""
    return pd.DataFrame({
        "input": [bonito_input(c, t) for c, t in zip(rendered["context"], rendered["task_type"])],
        "output": [bonito_output(i, r)
                   for i, r in zip(rendered["instruction"], rendered["response"])],
        "task_type": rendered["task_type"].to_numpy(),
        "p3_dataset": p3_dataset,
        "template": rendered["template"].to_numpy(),
    })


def p3_rows(rendered: pd.DataFrame, p3_dataset: str) -> pd.DataFrame:
    """The same kept rows rendered with their original P3 templates."""
    return pd.DataFrame({
        "input": rendered["p3_input"].to_numpy(),
        "output": rendered["p3_output"].to_numpy(),
        "task_type": rendered["task_type"].to_numpy(),
        "p3_dataset": p3_dataset,
        "template": rendered["template"].to_numpy(),
    })


def roundtrip_exact(rendered: pd.DataFrame) -> int:
    """Rows whose instruction and response, with the passage filled in, are exactly the P3
    prompt and target (the rest differ only where the passage renders differently in place,
    e.g. wiki_hop's list of supports)."""
    columns = ["context", "instruction", "response", "p3_input", "p3_output"]
    return int(sum(
        i.replace(CONTEXT_PLACEHOLDER, c) == pi and r.replace(CONTEXT_PLACEHOLDER, c) == po
        for c, i, r, pi, po in zip(*(rendered[column] for column in columns))))
