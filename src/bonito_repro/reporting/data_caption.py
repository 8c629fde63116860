"""The line of every table's caption that says which data it is on: the embedded demo rows, real
rows (your own files, or a Hub repository of yours), or the paper's (a shipped dataset read from
the Hub). A table of demo rows says it is not comparable with the paper."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..core.config import DATASETS_DIR

WORDING = {
    "embedded": "the embedded demo rows ({scale} scale), not comparable with the paper",
    "paper": "the paper's rows, read from the Hub",
    "hub": "real rows read from the Hub",
    "files": "real rows from your own files",
}


def origin_kind(spec: dict, kind: str) -> str:
    """Which data a resolved dataset entry's ``kind`` (test or unannotated) origin is: one of ``WORDING``."""
    origin = spec[kind]
    if "hub" in origin:
        return "paper" if Path(spec["file"]).parent == DATASETS_DIR else "hub"
    return "embedded" if "embedded" in origin else "files"


def data_caption(datasets: Mapping[str, dict], scale: str, kind: str = "test") -> str:
    """"Data: ..." for the resolved ``datasets`` a table is on, their ``kind`` rows (test for the
    scores, unannotated for the synthetic sets), naming the datasets where they differ."""
    groups: dict[str, list[str]] = {}
    for name, spec in datasets.items():
        groups.setdefault(origin_kind(spec, kind), []).append(spec.get("title", name))
    if not groups:  # a table of no dataset (a run that generates no set has no quality profile)
        return ""
    if len(groups) == 1:
        return f"Data: {WORDING[next(iter(groups))].format(scale=scale)}."
    return "Data: " + "; ".join(f"{', '.join(titles)}: {WORDING[k].format(scale=scale)}"
                                for k, titles in groups.items()) + "."
