"""Build ctga-v1 (docs/protocol.md, section 4) from the configured P3 datasets: meta-templates per
P3 dataset, rendered rows, a seeded validation split, and every dropped template and row counted by
reason."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..core.origins import load_origin
from . import render, tables, templates

log = logging.getLogger(__name__)
OUTPUT_COLUMNS = ["input", "output", "task_type", "p3_dataset", "template"]


@dataclass
class CtgaBuild:
    """Everything the stage writes: the three tables and the manifest's counts."""

    train: pd.DataFrame
    validation: pd.DataFrame
    p3: pd.DataFrame
    counts: dict = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)
    details: dict = field(default_factory=dict)


def _add(drops: dict[str, int], reason: str, n: int) -> None:
    if n:
        drops[reason] = drops.get(reason, 0) + n


def p3_dataset_meta_templates(p3_dataset: str, annotations: dict,
                              expressions: dict) -> tuple[list[templates.MetaTemplate], dict]:
    """A configured P3 dataset's meta-templates and the annotated template names it lost, by
    reason."""
    if p3_dataset not in expressions:
        raise ValueError(f"ctga.p3_datasets.{p3_dataset}: no context expression for this P3 dataset "
                         f"in {tables.CONTEXT_FIELDS_CSV.name} (known: {sorted(expressions)})")
    if p3_dataset not in annotations:
        return [], {}
    dataset, config = tables.split_p3_dataset(p3_dataset)
    return templates.build_meta_templates(p3_dataset, annotations[p3_dataset], expressions[p3_dataset],
                                          templates.promptsource_templates(dataset, config))


def check_render_errors(p3_dataset: str, failed: pd.DataFrame, sampled: int, max_share: float) -> None:
    """Stop the build when more than ``max_share`` of a P3 dataset's sampled rows fail to render:
    a loss that large is a broken template or a changed schema, not a few malformed rows, and
    would silently shift ctga-v1's task-type mix. Empty targets (a template's {% if %} skipping a
    row) are the templates' own choice and do not count."""
    if sampled and len(failed) / sampled > max_share:
        first = failed.iloc[0]
        raise ValueError(
            f"ctga.p3_datasets.{p3_dataset}: {len(failed)} of {sampled} sampled rows failed to render "
            f"({len(failed) / sampled:.0%}, more than ctga.max_render_error_share {max_share:.0%}); "
            f"first error, template {first['template']!r}: {first['error']}")


def build_p3_dataset(p3_dataset: str, origin: dict, metas: list[templates.MetaTemplate], hp: dict,
                     num_proc: int) -> tuple[pd.DataFrame, dict]:
    """Rendered rows of one P3 dataset and its counts (sampled = kept + drops)."""
    dataset = load_origin(origin, "ctga")
    rendered = render.render_p3_dataset(dataset, p3_dataset, metas, hp["max_examples_per_dataset"],
                                        hp["seed"], num_proc)
    statuses = rendered["status"].value_counts().to_dict()
    kept = rendered[rendered["status"] == render.OK].reset_index(drop=True)
    failed = rendered[rendered["status"] == "render_error"]
    check_render_errors(p3_dataset, failed, len(rendered), hp["max_render_error_share"])
    errors = failed.drop_duplicates("template")
    for name, message in zip(errors["template"], errors["error"]):
        log.warning("%s / %s: render error, e.g. %s", p3_dataset, name, message)
    stats = {
        "available": len(dataset),
        "sampled": len(rendered),
        "kept": len(kept),
        "templates": len(metas),
        "drops": {k: int(v) for k, v in statuses.items() if k != render.OK},
        "p3_roundtrip_exact": render.roundtrip_exact(kept),
    }
    if len(errors):
        stats["render_errors"] = {t: e[:300] for t, e in zip(errors["template"], errors["error"])}
    return kept, stats


def split_validation(frames: list[pd.DataFrame], size: int,
                     seed: int) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """Shuffle the rows of aligned frames with the seed: (validation frames, train frames), the
    first holding `size` rows."""
    n = len(frames[0])
    if size >= n:
        raise ValueError(f"ctga.validation_size: {size} leaves no training rows out of {n}")
    order = np.random.default_rng(seed).permutation(n)

    def pick(rows: np.ndarray) -> list[pd.DataFrame]:
        return [f.iloc[rows].reset_index(drop=True) for f in frames]

    return pick(order[:size]), pick(order[size:])


def per_task_type(frames: dict[str, pd.DataFrame]) -> dict[str, dict[str, int]]:
    """task type -> {frame name: rows}, every task type of any frame listed."""
    counts = {name: f["task_type"].value_counts().to_dict() for name, f in frames.items()}
    names = sorted(set().union(*counts.values()))
    return {t: {name: int(c.get(t, 0)) for name, c in counts.items()} for t in names}


def build(hp: dict, num_proc: int = 1) -> CtgaBuild:
    """ctga-v1 from the P3 datasets of the config section ``ctga`` (the paper's recipe)."""
    annotations = tables.read_annotations()
    expressions = tables.read_context_expressions()
    drops: dict[str, int] = {}
    per_p3_dataset: dict[str, dict] = {}
    template_drops: dict[str, dict[str, list[str]]] = {}
    ctga_parts, p3_parts = [], []
    annotated = 0
    for p3_dataset, origin in hp["p3_datasets"].items():
        metas, dropped = p3_dataset_meta_templates(p3_dataset, annotations, expressions)
        annotated += len(annotations.get(p3_dataset, []))
        for reason, names in dropped.items():
            _add(drops, reason, len(names))
        if any(dropped.values()):
            template_drops[p3_dataset] = {r: names for r, names in dropped.items() if names}
        if not metas:
            log.warning("%s: no usable annotated template; P3 dataset skipped", p3_dataset)
            per_p3_dataset[p3_dataset] = {"templates": 0, "skipped": "no usable annotated template"}
            continue
        kept, stats = build_p3_dataset(p3_dataset, origin, metas, hp, num_proc)
        for reason, n in stats["drops"].items():
            _add(drops, reason, n)
        per_p3_dataset[p3_dataset] = stats
        ctga_parts.append(render.ctga_rows(kept, p3_dataset))
        p3_parts.append(render.p3_rows(kept, p3_dataset))
        log.info("%s: %d of %d sampled rows kept (%d templates)", p3_dataset, stats["kept"],
                 stats["sampled"], stats["templates"])
    if not ctga_parts:
        raise ValueError("ctga.p3_datasets: no P3 dataset produced rows")
    ctga = pd.concat(ctga_parts, ignore_index=True)
    p3 = pd.concat(p3_parts, ignore_index=True)
    (validation, p3_validation), (train, p3_train) = split_validation(
        [ctga, p3], hp["validation_size"], hp["seed"])
    # the P3 mix keeps every kept row: Bonito's validation rows are no test set for P3 training
    p3 = pd.concat([p3_train, p3_validation], ignore_index=True)
    counts = {
        "templates_annotated": annotated,
        "templates_used": sum(s.get("templates", 0) for s in per_p3_dataset.values()),
        "rows_sampled": sum(s.get("sampled", 0) for s in per_p3_dataset.values()),
        "rows_kept": len(ctga),
        "train": len(train),
        "validation": len(validation),
        "p3": len(p3),
        "per_p3_dataset": per_p3_dataset,
        "per_task_type": per_task_type({"train": train, "validation": validation}),
    }
    return CtgaBuild(train, validation, p3, counts, drops, {"template_drops": template_drops})
